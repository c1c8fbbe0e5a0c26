"""Recent segmentation results by handle, so a client refines or propagates from one by naming it.

The low-res logits a refinement needs stay on the server (they are 256×256 floats: too big to send
back and forth on every click). The oldest handles are forgotten first.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Hashable

import numpy as np

from ..bounded_lru import BoundedLRU


@dataclass(frozen=True)
class StoredResult:
    #: what the result was computed on: ("volume", id, preset, axis, index) or ("image", id, preset)
    context: tuple[Hashable, ...]
    mask: np.ndarray  # bool, slice pixels
    low_res_logits: np.ndarray  # float32, the model's low-res grid
    score: float


class ResultStore:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._results: BoundedLRU[str, StoredResult] = BoundedLRU(capacity)

    def add(self, result: StoredResult) -> str:
        handle = uuid.uuid4().hex
        self._results.put(handle, result)
        return handle

    def get(self, handle: str) -> StoredResult | None:
        return self._results.get(handle)
