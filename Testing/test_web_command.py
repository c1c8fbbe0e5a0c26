"""``sammed2d web`` as a user starts it: the command line, a segmentation file to continue, and shutdown.

A terminated page must take its model server child with it (no orphaned model process holding memory);
a label map given with ``--segmentation`` becomes segments with exactly its voxels.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, require

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
pytest.importorskip("trame_slicer", reason="trame-slicer is not installed (pip install -e '.[web]')")
from web_harness import RunningApp, segment_mask  # noqa: E402

from sammed2d.volumes import read_labels, read_volume  # noqa: E402
from sammed2d.web.options import WebOptions  # noqa: E402

BRAIN1 = DATA / "pyradiomics" / "brain1_image.nrrd"
BRAIN1_LABEL = DATA / "pyradiomics" / "brain1_label.nrrd"


def children(pid: int) -> dict[int, str]:
    """The processes whose parent is ``pid``, with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            found[int(entry.name)] = command
    return found


def test_the_command_serves_the_page_and_a_terminated_page_stops_its_model_server():
    command = [sys.executable, "-m", "sammed2d", "web", str(require(BRAIN1)), "--port", "0", "--threads", "1",
               "--no-compile"]
    page = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, encoding="utf-8")
    try:
        line = page.stdout.readline()
        assert "SAM-Med2D web page at http://127.0.0.1:" in line, line
        deadline = time.monotonic() + 30
        while not (servers := [pid for pid, cmd in children(page.pid).items() if "sammed2d serve" in cmd]):
            assert time.monotonic() < deadline, "the page started no model server"
            time.sleep(0.2)
        page.send_signal(signal.SIGTERM)
        assert page.wait(60) == 0
        for pid in servers:
            assert not Path(f"/proc/{pid}").exists(), "the model server outlived the page"
    finally:
        if page.poll() is None:
            page.kill()


def test_a_segmentation_file_is_opened_as_segments():
    options = WebOptions(volumes=(require(BRAIN1),), segmentation=require(BRAIN1_LABEL),
                         server_url="http://127.0.0.1:9", token="x" * 32, port=0)
    with RunningApp(options) as web:
        rows = web.state("segments")
        assert [row["name"] for row in rows][-1] == "Label 1"
        imported = segment_mask(web, rows[-1]["id"])
    truth = read_labels(BRAIN1_LABEL, like=read_volume(BRAIN1)).array == 1
    assert imported.sum() > 1000 and np.array_equal(imported, truth)
