"""Run ``sammed2d serve`` as a child process: loopback only, a free port, a fresh random token.

This is how Slicer starts a local model process (with ``PythonSlicer`` or any Python that has the
engine installed as ``python``), and how the tests and benchmarks start a real server.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import IO

from .client import Client, Timeouts
from .errors import SAMMed2DClientError, ServerNotRunning

_LISTENING = re.compile(r"listening on (https?://\S+)")


class LocalServer:
    """``with LocalServer(["--model", "litemedsam"]) as server: server.client.segment(...)``."""

    def __init__(self, serve_args: Sequence[str] = (), *, python: str = sys.executable, startup_timeout: float = 300.0,
                 timeouts: Timeouts = Timeouts(), verify: bool | str = True,
                 environment: Mapping[str, str] | None = None) -> None:
        """``environment`` adds to (or overrides) this process's environment for the child only."""
        self.serve_args = list(serve_args)
        self.environment = dict(environment or {})
        self.python = python
        self.startup_timeout = startup_timeout
        self.timeouts = timeouts
        self.verify = verify  # with TLS: True (system store) or the server's certificate / CA file
        self.token = secrets.token_urlsafe(32)
        self.url = ""
        self.process: subprocess.Popen[str] | None = None
        #: the server's recent log lines (stderr), for diagnostics
        self.log: deque[str] = deque(maxlen=2000)
        self._announced = threading.Event()
        self.client: Client | None = None

    def start(self) -> Client:
        command = [self.python, "-m", "sammed2d", "serve", "--host", "127.0.0.1", "--port", "0", *self.serve_args]
        env = {**os.environ, **self.environment, "SAMMED2D_TOKEN": self.token}
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, encoding="utf-8", env=env)
        threading.Thread(target=self._read_stdout, args=(self.process.stdout,), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(self.process.stderr,), daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._announced.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = "\n".join(list(self.log)[-15:])
                code = self.process.returncode
                raise SAMMed2DClientError(f"the model server did not start (exit code {code}):\n{tail}")
        while True:
            try:
                self.client = Client(self.url, self.token, timeouts=self.timeouts, verify=self.verify)
                return self.client
            except ServerNotRunning:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "LocalServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _read_stdout(self, stream: IO[str]) -> None:
        for line in stream:
            self.log.append(line.rstrip("\n"))
            match = _LISTENING.search(line)
            if match and not self._announced.is_set():
                self.url = match.group(1)
                self._announced.set()

    def _read_stderr(self, stream: IO[str]) -> None:
        for line in stream:
            self.log.append(line.rstrip("\n"))
