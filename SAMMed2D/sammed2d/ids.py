"""Content ids of volumes and images: what the embedding cache, the server and its clients name data by.

An id is SHA-256 over a canonical description plus the little-endian C-order bytes of the array, so the
same data gets the same id on any machine and a client can ask whether the server already holds it
before sending it. numpy only: the torch-free client computes ids too.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Sequence

import numpy as np

ID_LENGTH = 32  # hex characters of the SHA-256 kept in ids (128 bits)


def volume_id(
    array: np.ndarray, spacing: Sequence[float], origin: Sequence[float], direction: Sequence[float]
) -> str:
    """Content id of a volume: voxels and geometry (the same voxels with another spacing segment differently).

    Geometry is rounded to 1e-6 (mm, direction cosines) so the same scan read through different routes
    (a file, a Slicer node converted RAS→LPS) gets the same id despite last-digit float differences.
    """
    return _digest(
        {
            "kind": "volume",
            "shape": [int(v) for v in array.shape],
            "dtype": np.dtype(array.dtype).name,
            "spacing": _rounded(spacing),
            "origin": _rounded(origin),
            "direction": _rounded(direction),
        },
        array,
    )


def image_id(array: np.ndarray) -> str:
    """Content id of a single 2D image (H×W or H×W×3) for the stateless mode."""
    description = {"kind": "image", "shape": [int(v) for v in array.shape], "dtype": np.dtype(array.dtype).name}
    return _digest(description, array)


def _digest(description: Mapping[str, Any], array: np.ndarray) -> str:
    digest = hashlib.sha256(json.dumps(description, sort_keys=True, separators=(",", ":")).encode())
    digest.update(b"\0")
    digest.update(np.ascontiguousarray(array, dtype=np.dtype(array.dtype).newbyteorder("<")).data)
    return digest.hexdigest()[:ID_LENGTH]


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(float(value), 6) + 0.0 for value in values]  # + 0.0 turns -0.0 into 0.0
