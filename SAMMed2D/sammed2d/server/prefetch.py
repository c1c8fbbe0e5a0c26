"""Embeddings of the slices next to the one being worked on, computed in the background.

One worker thread; a new click replaces the pending plan (the user moved on), and its model calls
yield to interactive ones (``ModelLock.background``). A click on a slice the worker is encoding
right now waits for that encoding instead of repeating it (the embedding cache computes each once).
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from ..session import VolumeSession
from ..volumes import Axis
from .locking import ModelLock

logger = logging.getLogger(__name__)


class Prefetcher:
    def __init__(self, lock: ModelLock, radius: int) -> None:
        self.radius = radius
        self._lock = lock
        self._pending: deque[tuple[VolumeSession, Axis, int]] = deque()
        self._condition = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._work, name="sammed2d-prefetch", daemon=True)

    def start(self) -> None:
        if self.radius > 0:
            self._thread.start()

    def stop(self) -> None:
        with self._condition:
            self._stopped = True
            self._pending.clear()
            self._condition.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def schedule(self, session: VolumeSession, axis: Axis, index: int) -> None:
        """Plan the neighbours of ``index``, nearest first, replacing the previous plan."""
        if self.radius <= 0:
            return
        count = session.volume.slice_count(axis)
        plan = [index + step * sign for step in range(1, self.radius + 1) for sign in (1, -1)]
        with self._condition:
            self._pending = deque((session, axis, i) for i in plan if 0 <= i < count)
            self._condition.notify_all()

    def _work(self) -> None:
        with self._lock.background():
            while True:
                with self._condition:
                    while not self._pending and not self._stopped:
                        self._condition.wait()
                    if self._stopped:
                        return
                    session, axis, index = self._pending.popleft()
                if session.is_cached(axis, index):
                    continue
                try:
                    session.embedding(axis, index)
                except Exception:  # a prefetch failure must not stop the worker; the click will report it
                    logger.exception("prefetching slice %d along %s failed", index, axis)
