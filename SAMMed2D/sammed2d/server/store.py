"""Uploaded volumes by content id, under a memory budget with least-recently-used eviction."""

from __future__ import annotations

import logging
from typing import Callable

from ..bounded_lru import BoundedLRU
from ..volumes import Volume

logger = logging.getLogger(__name__)


class VolumeStore(BoundedLRU[str, Volume]):
    """Thread-safe; ``on_evict(volume_id)`` lets the owner drop what it derived from a volume (its sessions)
    when the volume is evicted or removed."""

    def __init__(self, budget_bytes: int, on_evict: Callable[[str], None]) -> None:
        def dropped(volume_id: str, volume: Volume) -> None:
            logger.info("dropped volume %s (%d bytes; the budget is %d)", volume_id, volume.array.nbytes, budget_bytes)
            on_evict(volume_id)

        super().__init__(budget_bytes, sizeof=lambda volume: volume.array.nbytes, on_evict=dropped)
