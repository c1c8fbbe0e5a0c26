"""One ``sammed2d train`` or ``sammed2d benchmark`` running as a child process, watched from Slicer's main thread.

Fine-tuning and benchmarking take minutes to hours and need torch; in a child process they neither freeze Slicer
nor load torch into it, and a cancel is a plain terminate. The child reports progress with ``--progress-json``
(one JSON line per step on stdout); reader threads keep those and the log, and every property here returns at
once, so a ``qt.QTimer`` can poll them. Qt-free and torch-free.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Optional

from SAMMed2DLib.connection import child_environment, slicer_python

logger = logging.getLogger(__name__)

RUNNING, FINISHED, FAILED, CANCELLED = "running", "finished", "failed", "cancelled"
ENGINE_COMMANDS = ("train", "benchmark")


@dataclass(frozen=True)
class Progress:
    """The child's last progress line: ``done`` of ``total`` steps of ``stage`` (total 0: nothing reported yet)."""

    done: int = 0
    total: int = 0
    stage: str = ""


def parseProgress(line: str) -> Optional[Progress]:
    """A ``--progress-json`` line as Progress; None for any other output line."""
    if not line.startswith("{"):
        return None
    try:
        fields = json.loads(line)
        return Progress(int(fields["done"]), int(fields["total"]), str(fields.get("stage", "")))
    except (ValueError, TypeError, KeyError):
        return None


class ChildRun:
    """``python -m sammed2d COMMAND ARGUMENTS --progress-json``, started on construction.

    ``state`` is "running" until the child ends, then "finished" (exit status 0), "cancelled" (after
    ``cancel``) or "failed" (with ``error``, the engine's own one-line reason). ``on_end`` runs once the
    child has ended and its output is read, e.g. to remove the files written for it.
    """

    def __init__(self, command: str, arguments: Sequence[str], *, python: Optional[str] = None,
                 environment: Optional[Mapping[str, str]] = None, on_end: Optional[Callable[[], None]] = None,
                 kill_after: float = 10.0, max_log_lines: int = 5000) -> None:
        if command not in ENGINE_COMMANDS:
            raise ValueError(f"the engine command must be one of {', '.join(ENGINE_COMMANDS)}; got {command!r}")
        self.python = python or slicer_python()
        self.name = f"sammed2d {command}"
        self.command = [self.python, "-m", "sammed2d", "--log-level", "INFO", command, *map(str, arguments),
                        "--progress-json"]
        self.kill_after = kill_after
        self._on_end = on_end
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self._log: deque[str] = deque(maxlen=max_log_lines)
        self._progress = Progress()
        self._state = RUNNING
        self._error: Optional[str] = None
        self._engine_error: Optional[str] = None  # the last "error: ..." line on stderr
        self._last_stderr = ""
        self._cancelled = False
        # lines as they are written, in the encoding they are read with (Windows consoles default to others)
        env = {**os.environ, **child_environment(), "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8",
               **(environment or {})}
        logger.info("starting %s", " ".join(self.command))
        try:
            self._process: Optional[subprocess.Popen[str]] = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                encoding="utf-8", errors="replace", env=env)
        except OSError as error:
            self._process = None
            self._finish(FAILED, f"cannot run {self.python}: {error}")
            return
        atexit.register(self._kill_at_exit)
        readers = [threading.Thread(target=self._read, args=(stream, is_stderr), daemon=True,
                                    name=f"sammed2d-{command}-{'stderr' if is_stderr else 'stdout'}")
                   for stream, is_stderr in ((self._process.stdout, False), (self._process.stderr, True))]
        for reader in readers:
            reader.start()
        threading.Thread(target=self._watch, args=(readers,), daemon=True, name=f"sammed2d-{command}").start()

    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    @property
    def progress(self) -> Progress:
        with self._lock:
            return self._progress

    @property
    def returncode(self) -> Optional[int]:
        """The child's exit status once it has ended (negative: ended by that signal); None while running."""
        return self._process.returncode if self._process is not None else None

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process is not None else None

    @property
    def error(self) -> Optional[str]:
        """Why a failed run failed, in one line; None otherwise."""
        with self._lock:
            return self._error

    def log_lines(self) -> list[str]:
        """The child's output so far (stdout and stderr in arrival order, progress lines left out)."""
        with self._lock:
            return list(self._log)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the run has ended (True) or ``timeout`` seconds have passed (False). Not for the UI thread."""
        return self._ended.wait(timeout)

    def cancel(self) -> None:
        """Ask the child to stop (terminate), and kill it if it is still there after ``kill_after`` seconds.

        Returns at once; ``state`` becomes "cancelled" when the child has gone. A run that already ended is left as
        it is.
        """
        with self._lock:
            if self._state != RUNNING or self._process is None or self._cancelled:
                return
            self._cancelled = True
        logger.info("cancelling %s (pid %d)", self.name, self._process.pid)
        self._signal(self._process.terminate)
        timer = threading.Timer(self.kill_after, self._signal, args=(self._process.kill,))
        timer.daemon = True
        timer.start()

    def _signal(self, send: Callable[[], None]) -> None:
        if self._process is not None and self._process.returncode is None:
            try:
                send()
            except OSError:  # it ended in between
                pass

    def _read(self, stream: IO[str], is_stderr: bool) -> None:
        for raw in stream:
            line = raw.rstrip("\r\n")
            progress = None if is_stderr else parseProgress(line)
            with self._lock:
                if progress is not None:
                    self._progress = progress
                    continue
                self._log.append(line)
                if is_stderr and line.strip():
                    self._last_stderr = line.strip()
                    if line.startswith("error:"):
                        self._engine_error = line.removeprefix("error:").strip()

    def _watch(self, readers: list[threading.Thread]) -> None:
        assert self._process is not None
        code = self._process.wait()
        for reader in readers:
            reader.join(timeout=5.0)  # a grandchild still holding the pipes must not keep the run "running"
        atexit.unregister(self._kill_at_exit)
        with self._lock:
            reason = self._engine_error or self._last_stderr or f"the engine exited with status {code}"
            cancelled = self._cancelled
        if code == 0:
            self._finish(FINISHED, None)
        elif cancelled:
            self._finish(CANCELLED, None)
        else:
            self._finish(FAILED, reason)

    def _finish(self, state: str, error: Optional[str]) -> None:
        if self._on_end is not None:
            try:
                self._on_end()
            except Exception:  # tidying up must not leave the run "running" forever
                logger.exception("cleaning up after %s failed", self.name)
        with self._lock:
            self._state, self._error = state, error
        logger.info("%s %s%s", self.name, state, f": {error}" if error else "")
        self._ended.set()

    def _kill_at_exit(self) -> None:
        """Slicer is closing: a run nobody can watch any more must not go on."""
        if self._process is not None:
            self._signal(self._process.kill)
