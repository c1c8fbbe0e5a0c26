"""Recent segmentation results by handle, so a client refines or propagates from one by naming it.

The low-res logits a refinement needs stay on the server (they are 256×256 floats: too big to send
back and forth on every click). The oldest handles are forgotten first.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np

from ..bounded_lru import BoundedLRU


@dataclass(frozen=True)
class SliceContext:
    """A result computed on one slice of an uploaded volume: only a result of the same slice refines it."""

    volume_id: str
    preset: str
    axis: str
    index: int

    def __str__(self) -> str:
        return f"volume {self.volume_id} ({self.preset}), slice {self.index} along {self.axis}"


@dataclass(frozen=True)
class ImageContext:
    """A result computed on a 2D image of the stateless mode."""

    image_id: str
    preset: str

    def __str__(self) -> str:
        return f"image {self.image_id} ({self.preset})"


ResultContext = SliceContext | ImageContext


@dataclass(frozen=True)
class StoredResult:
    context: ResultContext  # what the result was computed on
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
