"""SAMMed2DLib.connection against real servers: a LiteMedSAM child process on loopback, started as the panel does.

There is no PythonSlicer here, so the venv's Python runs the server (``python=sys.executable``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import venv

import numpy as np
import pytest

from conftest import put_slicer_modules_on_path

put_slicer_modules_on_path()

import sammed2d  # noqa: E402
from sammed2d.client import ServerNotRunning, Unauthorized  # noqa: E402
from SAMMed2DLib.connection import (  # noqa: E402
    ENGINE_FOLDER,
    FAILED,
    MODEL_CHOICES,
    NOT_CONNECTED,
    REMOTE,
    RUNNING,
    STARTING,
    STOPPED,
    ModelConnection,
    child_environment,
    shared_connection,
    slicer_python,
)


def wait_for_state(connection: ModelConnection, states: tuple[str, ...], seconds: float = 300.0) -> str:
    deadline = time.monotonic() + seconds
    while connection.state not in states:
        assert time.monotonic() < deadline, f"still {connection.state!r} after {seconds} s: {connection.log_lines()}"
        time.sleep(0.1)
    return connection.state


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module", autouse=True)
def restore_pythonpath():
    """Starting a server puts the engine on PYTHONPATH for children; leave the environment as it was found."""
    saved = os.environ.get("PYTHONPATH")
    yield
    if saved is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved


@pytest.fixture(scope="module")
def local():
    connection = ModelConnection(python=sys.executable)
    connection.start_local(model="litemedsam", device="cpu")
    yield connection
    connection.stop()


def test_a_new_connection_says_how_to_connect():
    connection = ModelConnection(python=sys.executable)
    assert connection.state == STOPPED and connection.client is None
    assert connection.describe() == NOT_CONNECTED


def test_local_server_runs_litemedsam(local):
    assert local.state == RUNNING
    assert local.describe() == f"local server running: litemedsam on cpu (fp32), sammed2d {sammed2d.__version__}"
    info = local.client.info
    assert info["model"]["id"] == "litemedsam" and info["server_version"] == sammed2d.__version__
    assert local.client.url.startswith("http://127.0.0.1:")
    assert any("listening on" in line for line in local.log_lines())
    assert "compiled" not in info["model"]["acceleration"]  # --no-compile by default: ready in seconds


def test_the_client_segments(local):
    image = np.zeros((64, 64), dtype=np.uint8)
    image[20:40, 16:48] = 200
    result = local.client.segment_image(image, box=[14, 18, 50, 42])
    assert result.mask[30, 30] and not result.mask[5, 5]


def test_connect_remote_with_the_right_token(local):
    remote = ModelConnection(python=sys.executable)
    report = remote.connect_remote(local.client.url, local._server.token)  # the token LocalServer generated
    assert remote.state == REMOTE and remote.client is not None
    assert (report.model, report.device, report.dtype) == ("litemedsam", "cpu", "fp32")
    assert report.server_version == sammed2d.__version__ and report.protocol == local.report.protocol
    assert remote.describe() == f"connected to {local.client.url}: {report.describe()}"
    remote.stop()
    assert remote.state == STOPPED and local.state == RUNNING  # forgetting a remote server stops nothing


def test_a_wrong_token_is_refused_and_changes_nothing(local):
    remote = ModelConnection(python=sys.executable)
    with pytest.raises(Unauthorized, match="refused the token"):
        remote.connect_remote(local.client.url, "not-the-token")
    assert remote.state == STOPPED and remote.client is None


def test_a_closed_port_says_no_server_is_running():
    remote = ModelConnection(python=sys.executable)
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServerNotRunning, match="no SAM-Med2D server answers"):
        remote.connect_remote(url, "token")
    assert remote.describe() == NOT_CONNECTED


def test_async_start_reaches_running_and_stop_ends_the_process():
    connection = ModelConnection(python=sys.executable)
    started = time.monotonic()
    thread = connection.start_local_async(model="litemedsam", device="cpu")
    assert time.monotonic() - started < 1.0, "start_local_async must not wait for the model"
    assert connection.state == STARTING and connection.client is None
    assert connection.describe().startswith("local server starting: loading litemedsam")
    assert wait_for_state(connection, (RUNNING, FAILED)) == RUNNING, connection.error
    thread.join(timeout=10)
    assert connection.client.info["model"]["id"] == "litemedsam"
    pid = connection.process_id()
    connection.stop()
    assert connection.state == STOPPED and connection.client is None
    assert process_gone(pid)
    assert connection.log_lines(), "the log of the stopped server stays readable"


def test_stop_while_starting_ends_the_process_without_a_failure():
    connection = ModelConnection(python=sys.executable)
    thread = connection.start_local_async(model="litemedsam", device="cpu")
    deadline = time.monotonic() + 30
    while connection.process_id() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pid = connection.process_id()
    connection.stop()
    thread.join(timeout=30)
    assert connection.state == STOPPED and connection.error is None
    assert process_gone(pid)


def test_a_missing_checkpoint_fails_with_a_message_naming_the_file(tmp_path):
    connection = ModelConnection(python=sys.executable)
    checkpoint = tmp_path / "no-such-sam-med2d_b.pth"
    connection.start_local_async(model="sam-med2d", checkpoint=str(checkpoint), device="cpu")
    assert wait_for_state(connection, (RUNNING, FAILED), seconds=120) == FAILED
    assert str(checkpoint) in connection.error
    assert connection.describe() == f"local server failed: {connection.error}"
    assert connection.client is None


def test_a_python_that_cannot_run_fails_clearly(tmp_path):
    connection = ModelConnection(python=str(tmp_path / "no-python"))
    with pytest.raises(Exception, match="cannot run"):
        connection.start_local()
    assert connection.state == FAILED and str(tmp_path / "no-python") in connection.error


def test_serve_arguments_skip_compiling_unless_asked():
    connection = ModelConnection(python=sys.executable)
    assert connection.serve_arguments("litemedsam", None, "auto", False, ()) == [
        "--model", "litemedsam", "--device", "auto", "--no-compile"]
    assert connection.serve_arguments("sam-vit-b", "/w/sam.pth", "cuda", True, ["--threads", "2"]) == [
        "--model", "sam-vit-b", "--device", "cuda", "--checkpoint", "/w/sam.pth", "--threads", "2"]


def test_model_choices_are_the_servers_models():
    from sammed2d.models.registry import MODELS

    assert [choice.id for choice in MODEL_CHOICES] == list(MODELS)
    assert {choice.id: choice.needs_checkpoint for choice in MODEL_CHOICES} == {
        name: spec.embedded_weights is None for name, spec in MODELS.items()}


@pytest.mark.parametrize("windows", [False, True])
def test_slicer_python_is_found_next_to_the_executable_or_in_bin(tmp_path, windows):
    name = "PythonSlicer.exe" if windows else "PythonSlicer"
    executable = tmp_path / "python-real"
    assert slicer_python(str(executable), windows) == str(executable)  # not in Slicer: the Python itself
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / name).write_text("", encoding="utf-8")
    assert slicer_python(str(executable), windows) == str(tmp_path / "bin" / name)
    (tmp_path / name).write_text("", encoding="utf-8")
    assert slicer_python(str(executable), windows) == str(tmp_path / name)


def test_shared_connection_is_one_per_process():
    assert shared_connection() is shared_connection()


def test_a_child_python_without_the_engine_finds_the_shipped_one(tmp_path, monkeypatch):
    """In Slicer the engine is not pip-installed: PythonSlicer finds it beside the module (child's PYTHONPATH)."""
    venv.create(tmp_path / "bare", with_pip=False)  # a real Python that has no sammed2d installed
    bare = tmp_path / "bare" / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    environment = child_environment()
    assert environment["PYTHONPATH"].split(os.pathsep) == [str(ENGINE_FOLDER), str(tmp_path)]
    assert os.environ["PYTHONPATH"] == str(tmp_path), "Slicer's own environment must stay as it was"
    found = subprocess.run([str(bare), "-c", "import sammed2d; print(sammed2d.__file__)"], capture_output=True,
                           encoding="utf-8", check=True, cwd=tmp_path, env={**os.environ, **environment}).stdout.strip()
    assert found == str(ENGINE_FOLDER / "sammed2d" / "__init__.py")
