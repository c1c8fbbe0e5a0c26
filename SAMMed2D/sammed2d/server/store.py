"""Uploaded volumes by content id, under a memory budget with least-recently-used eviction."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Callable

from ..volumes import Volume

logger = logging.getLogger(__name__)


class VolumeStore:
    """Thread-safe; ``on_evict`` lets the owner drop what it derived from a volume (its sessions)."""

    def __init__(self, budget_bytes: int, on_evict: Callable[[str], None]) -> None:
        self.budget_bytes = budget_bytes
        self._on_evict = on_evict
        self._volumes: OrderedDict[str, Volume] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, volume_id: str) -> Volume | None:
        with self._lock:
            volume = self._volumes.get(volume_id)
            if volume is not None:
                self._volumes.move_to_end(volume_id)
            return volume

    def add(self, volume_id: str, volume: Volume) -> list[str]:
        """Keep ``volume``; returns the ids evicted to make room (the caller checked it fits the budget)."""
        evicted = []
        with self._lock:
            if volume_id in self._volumes:
                self._volumes.move_to_end(volume_id)
                return []
            self._volumes[volume_id] = volume
            self._bytes += volume.array.nbytes
            while self._bytes > self.budget_bytes and len(self._volumes) > 1:
                old_id, old = self._volumes.popitem(last=False)
                self._bytes -= old.array.nbytes
                evicted.append(old_id)
        for old_id in evicted:
            logger.info("evicted volume %s to stay within the %d byte budget", old_id, self.budget_bytes)
            self._on_evict(old_id)
        return evicted

    def remove(self, volume_id: str) -> bool:
        with self._lock:
            volume = self._volumes.pop(volume_id, None)
            if volume is not None:
                self._bytes -= volume.array.nbytes
        if volume is not None:
            self._on_evict(volume_id)
        return volume is not None

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._volumes)
