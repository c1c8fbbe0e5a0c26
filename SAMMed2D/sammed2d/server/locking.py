"""One lock in front of the model, with interactive calls served before background work.

A plain ``threading.Lock`` gives no order: a propagation or prefetch thread that releases and
re-acquires it in a loop can keep a user's click waiting for several model calls. Here a thread
marked as background (prefetch, propagation) only takes the lock when no interactive caller is
waiting, so a click waits for at most the one model call already running.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator


class ModelLock:
    """Serialises model calls; usable wherever the engine expects a lock (``with lock:``)."""

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._held = False
        self._interactive_waiting = 0
        self._thread = threading.local()

    @contextmanager
    def background(self) -> Iterator[None]:
        """Mark the calling thread's model calls as background work for the duration."""
        previous = getattr(self._thread, "background", False)
        self._thread.background = True
        try:
            yield
        finally:
            self._thread.background = previous

    def acquire(self) -> None:
        background = getattr(self._thread, "background", False)
        with self._condition:
            if background:
                while self._held or self._interactive_waiting:
                    self._condition.wait()
            else:
                self._interactive_waiting += 1
                try:
                    while self._held:
                        self._condition.wait()
                finally:
                    self._interactive_waiting -= 1
            self._held = True

    def release(self) -> None:
        with self._condition:
            self._held = False
            self._condition.notify_all()

    def __enter__(self) -> "ModelLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
