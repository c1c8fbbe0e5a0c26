"""Who may use ``sammed2d web`` and which server paths a page can reach.

The command line refuses a network address without a password; with a password every route (the page,
the websocket, uploads, downloads) needs the session cookie of a login; requests from another origin or
for another host name are refused; names from the page are confined to the data and output folders;
uploads stop at the size limit. The app here has no working model server: none of this needs one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import requests

from conftest import DATA, require

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
pytest.importorskip("trame_slicer", reason="trame-slicer is not installed (pip install -e '.[web]')")
from web_harness import VIEWPORT, RunningApp, launch_chromium  # noqa: E402

from sammed2d.interaction import InteractionError  # noqa: E402
from sammed2d.server.security import TOKEN_ENV  # noqa: E402
from sammed2d.web.options import PASSWORD_ENV, WebOptions  # noqa: E402
from sammed2d.web.paths import Folder, PathRefused, output_name  # noqa: E402

LUNG2 = DATA / "pyradiomics" / "lung2_image.nrrd"
BRAIN1 = DATA / "pyradiomics" / "brain1_image.nrrd"
PASSWORD = "correct horse battery"
MAX_UPLOAD = 1 << 20


def web_command(*args: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key not in (PASSWORD_ENV, TOKEN_ENV)}
    return subprocess.run([sys.executable, "-m", "sammed2d", "web", str(require(LUNG2)), *args], env=environment,
                          capture_output=True, encoding="utf-8", timeout=120)


def test_a_network_address_needs_a_password():
    refused = web_command("--host", "0.0.0.0")
    assert refused.returncode == 2 and "refusing to listen on 0.0.0.0 without a password" in refused.stderr
    short = web_command("--host", "0.0.0.0", "--password", "short")
    assert short.returncode == 2 and "at least 12" in short.stderr
    tokenless = web_command("--server", "http://127.0.0.1:8765")
    assert tokenless.returncode == 2 and "needs the server's token" in tokenless.stderr


def test_the_command_line_loads_the_web_stack_only_to_serve():
    """Building the parser loads no trame or VTK; the web command's own parser loads no torch either."""
    code = ("import sys; from sammed2d.cli import build_parser; build_parser(only='web'); "
            "loaded = {'torch', 'trame', 'trame_slicer', 'vtk', 'vtkmodules', 'slicer'} & set(sys.modules); "
            "assert not loaded, loaded; build_parser(); "
            "loaded = {'trame', 'trame_slicer', 'vtk', 'vtkmodules', 'slicer', 'aiohttp'} & set(sys.modules); "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_names_from_the_page_stay_inside_their_folder(tmp_path):
    data = tmp_path / "data"
    (data / "case").mkdir(parents=True)
    shutil.copy(require(BRAIN1), data / "case" / "brain1.nrrd")
    (data / "case" / "brain1.seg.nrrd").write_bytes(b"")
    (data / "outside.nrrd").symlink_to(require(LUNG2))
    folder = Folder(data)
    assert folder.volumes() == ["case/brain1.nrrd"], "segmentations and links leading out are not offered"
    assert folder.inside("case/brain1.nrrd") == (data / "case" / "brain1.nrrd").resolve()
    for name in ("../secret.nrrd", "/etc/passwd", "case/../../secret.nrrd", "outside.nrrd"):
        with pytest.raises(PathRefused):
            folder.inside(name)
    assert output_name(" tumour ") == "tumour.seg.nrrd"
    for name in ("../tumour", "a/b", "..seg.nrrd", ".hidden", ""):
        with pytest.raises(InteractionError):
            output_name(name)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    shutil.copy(require(BRAIN1), data / "brain1_image.nrrd")
    options = WebOptions(server_url="http://127.0.0.1:9", token="x" * 32, port=0, password=PASSWORD,
                         data_dir=data, max_upload=MAX_UPLOAD)
    with RunningApp(options) as app:
        yield app


def logged_in(url: str) -> requests.Session:
    session = requests.Session()
    response = session.post(url + "login", data={"password": PASSWORD}, allow_redirects=False)
    assert response.status_code == 302 and session.cookies.get("sammed2d_session")
    return session


def test_every_route_needs_a_login(guarded):
    url = guarded.url
    assert requests.get(url + "index.html", allow_redirects=False).headers["Location"] == "/login"
    assert requests.get(url + "download", allow_redirects=False).status_code == 302
    assert requests.post(url + "upload", files={"files": ("a.nrrd", b"x")}).status_code == 401
    websocket = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    assert requests.get(url + "ws", headers=websocket).status_code == 401
    assert requests.post(url + "login", data={"password": "wrong password!"}).status_code == 401
    session = logged_in(url)
    assert session.get(url + "index.html").status_code == 200


def test_other_origins_and_host_names_are_refused(guarded):
    url = guarded.url
    session = logged_in(url)
    assert session.get(url + "index.html", headers={"Origin": "http://evil.example"}).status_code == 403
    assert session.get(url + "index.html", headers={"Host": "evil.example"}).status_code == 403
    same = url.rstrip("/")
    assert session.get(url + "index.html", headers={"Origin": same}).status_code == 200


def test_uploads_stop_at_the_size_limit(guarded):
    session = logged_in(guarded.url)
    declared = session.post(guarded.url + "upload", files={"files": ("big.nrrd", b"\0" * (2 * MAX_UPLOAD))})
    assert declared.status_code == 413 and "too large" in declared.json()["message"]

    def streamed():  # no length announced: the server counts as the bytes arrive
        boundary = b"--limit\r\n"
        yield boundary + b'Content-Disposition: form-data; name="files"; filename="big.nrrd"\r\n\r\n'
        for _ in range(4):
            yield b"\0" * MAX_UPLOAD
        yield b"\r\n--limit--\r\n"

    chunked = session.post(guarded.url + "upload", data=streamed(),
                           headers={"Content-Type": "multipart/form-data; boundary=limit"})
    assert chunked.status_code == 413
    assert guarded.state("volumes") == []


def test_the_page_logs_in_and_opens_only_data_folder_volumes(guarded):
    from playwright.sync_api import sync_playwright

    guarded.call(lambda: guarded.app.editor.open_data("../../etc/passwd"))
    assert "outside the folder" in guarded.state("error") and guarded.state("volumes") == []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(guarded.url)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.locator("#data-file").click(force=True)  # the field's own arrow covers the input
        page.get_by_role("option", name="brain1_image.nrrd").click()
        guarded.wait_for(lambda: len(guarded.app.state.volumes) == 1, what="the data folder's volume")
        assert guarded.state("volumes")[0]["name"] == "brain1_image"
        browser.close()
