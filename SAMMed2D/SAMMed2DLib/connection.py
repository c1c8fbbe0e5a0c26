"""The one link between Slicer and the model process: a local ``sammed2d serve`` child, or a remote server.

The module panel starts and stops it; the Segment Editor effect only asks ``shared_connection().client``.
Starting a local server loads a model (seconds to minutes), so it runs on a background thread and the UI
polls ``state``. Imports stay torch- and Qt-free: the client is numpy + requests.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from sammed2d.client import Client, LocalServer, SAMMed2DClientError

logger = logging.getLogger(__name__)

STOPPED, STARTING, RUNNING, FAILED, REMOTE = "stopped", "starting", "running", "failed", "remote"
NOT_CONNECTED = "not connected: start a local server or connect to a remote one in the SAM-Med2D module"
#: where the engine package lives: a child Python must find it there (Slicer does not install it with pip)
ENGINE_FOLDER = Path(__file__).resolve().parents[1]
_Detached = tuple[Optional[Client], Optional[LocalServer]]
_SHORT_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


@dataclass(frozen=True)
class ModelChoice:
    id: str
    label: str
    needs_checkpoint: bool


#: the models ``sammed2d serve`` knows (its registry imports torch, so the list is kept here; a test compares)
MODEL_CHOICES: tuple[ModelChoice, ...] = (
    ModelChoice("litemedsam", "LiteMedSAM (weights included, fast on a CPU)", False),
    ModelChoice("sam-med2d", "SAM-Med2D ViT-B with adapters (sam-med2d_b.pth)", True),
    ModelChoice("sam-med2d-no-adapter", "SAM-Med2D* without adapters (sam-med2d_b.pth)", True),
    ModelChoice("sam-vit-b", "SAM ViT-B (sam_vit_b_01ec64.pth)", True),
    ModelChoice("sam-vit-l", "SAM ViT-L (sam_vit_l_0b3195.pth)", True),
    ModelChoice("sam-vit-h", "SAM ViT-H (sam_vit_h_4b8939.pth)", True),
)


@dataclass(frozen=True)
class ConnectionReport:
    """What the server said in its handshake, for "Test connection" and the status line."""

    url: str
    model: str
    device: str
    dtype: str
    server_version: str
    protocol: int

    @classmethod
    def from_info(cls, url: str, info: dict[str, Any]) -> "ConnectionReport":
        model = info.get("model", {})
        dtype = str(model.get("dtype", "?"))
        return cls(url, str(model.get("id", "?")), str(model.get("device", "?")), _SHORT_DTYPES.get(dtype, dtype),
                   str(info.get("server_version", "?")), int(info.get("protocol", 0)))

    def describe(self) -> str:
        return f"{self.model} on {self.device} ({self.dtype}), sammed2d {self.server_version}"


def slicer_python(executable: str = sys.executable, windows: bool = os.name == "nt") -> str:
    """Slicer's ``PythonSlicer`` (its Python with the right library paths) next to, or in ``bin`` below, the
    running executable; any other Python (tests, a plain venv) runs the server itself."""
    name = "PythonSlicer.exe" if windows else "PythonSlicer"
    folder = Path(executable).parent
    for candidate in (folder / name, folder / "bin" / name):
        if candidate.is_file():
            return str(candidate)
    return executable


def child_environment() -> dict[str, str]:
    """What a child Python needs to find the engine shipped beside the module (Slicer does not pip-install it)."""
    entries = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    if str(ENGINE_FOLDER) not in entries:
        entries.insert(0, str(ENGINE_FOLDER))
    return {"PYTHONPATH": os.pathsep.join(entries)}


def _failure_message(error: Exception, python: str, log: Sequence[str]) -> str:
    """One line for the user: the server's own error line when it printed one (the full log is in the panel)."""
    if isinstance(error, OSError):
        return f"cannot run {python}: {error}"
    lines = [line.strip() for line in log if line.strip()]
    errors = [line for line in lines if line.lower().startswith("error:") or "Error:" in line]
    reason = (errors or lines or [str(error) or type(error).__name__])[-1]
    return f"the local model server did not start: {reason.removeprefix('error:').strip()}"


class ModelConnection:
    """Owns at most one server link. All public methods may be called from the main thread at any time."""

    def __init__(self, python: Optional[str] = None) -> None:
        self.python = python or slicer_python()
        self._lock = threading.Lock()
        self._server: Optional[LocalServer] = None
        self._client: Optional[Client] = None
        self._report: Optional[ConnectionReport] = None
        self._state = STOPPED
        self._error: Optional[str] = None
        self._model = ""
        self._attempt = 0  # bumped by every start and stop: a start that was overtaken cleans up after itself
        self._exit_hook = False

    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    @property
    def error(self) -> Optional[str]:
        with self._lock:
            return self._error

    @property
    def client(self) -> Optional[Client]:
        """The client to use, or None while nothing is connected (or a local server is still starting)."""
        with self._lock:
            return self._client if self._state in (RUNNING, REMOTE) else None

    @property
    def report(self) -> Optional[ConnectionReport]:
        with self._lock:
            return self._report if self._state in (RUNNING, REMOTE) else None

    def serve_arguments(self, model: str, checkpoint: Optional[str], device: str, compile: bool,
                        extra_args: Sequence[str]) -> list[str]:
        """``sammed2d serve`` options; compiling is left to the server only when asked (it costs 20-90 s)."""
        arguments = ["--model", model, "--device", device]
        if checkpoint:
            arguments += ["--checkpoint", str(checkpoint)]
        if not compile:
            arguments.append("--no-compile")
        return arguments + list(extra_args)

    def start_local(self, model: str = "litemedsam", checkpoint: Optional[str] = None, device: str = "auto",
                    extra_args: Sequence[str] = (), *, python: Optional[str] = None, compile: bool = False,
                    startup_timeout: float = 900.0) -> ConnectionReport:
        """Start a local server and wait until it answers (blocks: use ``start_local_async`` from a UI).

        Replaces whatever was connected. Raises ``SAMMed2DClientError`` with a user message when it cannot start.
        """
        server = self._new_server(model, checkpoint, device, extra_args, python, compile, startup_timeout)
        detached, attempt = self._begin_start(server, model)
        self._close(detached)
        return self._finish_start(server, attempt)

    def start_local_async(self, model: str = "litemedsam", checkpoint: Optional[str] = None, device: str = "auto",
                          extra_args: Sequence[str] = (), *, python: Optional[str] = None, compile: bool = False,
                          startup_timeout: float = 900.0) -> threading.Thread:
        """``start_local`` on a daemon thread. ``state`` is "starting" when this returns; poll it from the UI.

        Even stopping the previous server happens on that thread, so the caller never waits.
        """
        server = self._new_server(model, checkpoint, device, extra_args, python, compile, startup_timeout)
        detached, attempt = self._begin_start(server, model)

        def run() -> None:
            self._close(detached)
            try:
                self._finish_start(server, attempt)
            except SAMMed2DClientError as error:
                logger.warning("%s", error)

        thread = threading.Thread(target=run, name="sammed2d-local-server", daemon=True)
        thread.start()
        return thread

    def _new_server(self, model: str, checkpoint: Optional[str], device: str, extra_args: Sequence[str],
                    python: Optional[str], compile: bool, startup_timeout: float) -> LocalServer:
        arguments = self.serve_arguments(model, checkpoint, device, compile, extra_args)
        return LocalServer(arguments, python=python or self.python, startup_timeout=startup_timeout,
                           environment=child_environment())

    def _begin_start(self, server: LocalServer, model: str) -> tuple[_Detached, int]:
        with self._lock:
            detached = self._detach()
            self._server, self._model = server, model
            self._state, self._error = STARTING, None
            if not self._exit_hook:
                atexit.register(self.stop)
                self._exit_hook = True
            return detached, self._attempt

    def _finish_start(self, server: LocalServer, attempt: int) -> ConnectionReport:
        overtaken = SAMMed2DClientError("the local model server was stopped before it finished starting")
        if not self._current(attempt):
            raise overtaken
        logger.info("starting the local model server: %s -m sammed2d serve %s", server.python,
                    " ".join(server.serve_args))
        try:
            client = server.start()
        except (SAMMed2DClientError, OSError) as error:
            server.stop()
            with self._lock:
                if attempt != self._attempt:  # stopped or replaced meanwhile: not a failure to show
                    raise overtaken from None
                self._state, self._error = FAILED, _failure_message(error, server.python, list(server.log))
                raise SAMMed2DClientError(self._error) from None
        with self._lock:
            if attempt == self._attempt:
                self._client, self._report = client, ConnectionReport.from_info(client.url, client.info)
                self._state = RUNNING
                logger.info("local model server running at %s: %s", client.url, self._report.describe())
                return self._report
        server.stop()
        raise overtaken

    def _current(self, attempt: int) -> bool:
        with self._lock:
            return attempt == self._attempt

    def connect_remote(self, url: str, token: str) -> ConnectionReport:
        """Handshake with a remote server and use it from now on ("Test connection").

        Raises the client's error (nothing listening, wrong token, other protocol version) and then changes
        nothing; on success a running local server is stopped, as the remote one replaces it.
        """
        client = Client(url.strip(), token.strip())
        report = ConnectionReport.from_info(client.url, client.info)
        with self._lock:
            detached = self._detach()
            self._client, self._report, self._model = client, report, report.model
            self._state, self._error = REMOTE, None
        self._close(detached)
        logger.info("connected to %s: %s", client.url, report.describe())
        return report

    def stop(self) -> None:
        """Stop the local server (waits for the child to exit) or forget the remote one."""
        with self._lock:
            detached = self._detach()
            self._state, self._error = STOPPED, None
        self._close(detached)

    def _detach(self) -> _Detached:
        """Forget what is connected (the caller holds the lock and sets the new state) and hand it over to be closed
        by ``_close`` outside the lock: stopping a child can take seconds, and ``state`` must stay readable."""
        self._attempt += 1
        detached = self._client, self._server
        self._client, self._report = None, None
        return detached

    @staticmethod
    def _close(detached: _Detached) -> None:
        client, server = detached
        if client is not None:
            client.close()
        if server is not None:
            server.stop()

    def log_lines(self) -> list[str]:
        """The last local server's output, kept after it stopped or failed so the user can see why."""
        with self._lock:
            server = self._server
        return list(server.log) if server is not None else []

    def process_id(self) -> Optional[int]:
        with self._lock:
            process = self._server.process if self._server is not None else None
        return process.pid if process is not None else None

    def describe(self) -> str:
        """One line for the module panel and the Segment Editor effect."""
        with self._lock:
            state, report, error, model = self._state, self._report, self._error, self._model
        if state == RUNNING and report is not None:
            return f"local server running: {report.describe()}"
        if state == REMOTE and report is not None:
            return f"connected to {report.url}: {report.describe()}"
        if state == STARTING:
            return f"local server starting: loading {model or 'the model'} (this can take a minute)"
        if state == FAILED:
            return f"local server failed: {error}"
        return NOT_CONNECTED


_shared: Optional[ModelConnection] = None
_shared_lock = threading.Lock()


def shared_connection() -> ModelConnection:
    """The process-wide connection used by the module panel and the Segment Editor effect."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ModelConnection()
        return _shared
