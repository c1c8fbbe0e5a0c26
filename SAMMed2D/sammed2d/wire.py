"""What travels between ``sammed2d serve`` and its clients: array encoding and packed masks.

Both sides import this module, so it needs numpy only (no torch): Slicer's Python loads it through
the client. Arrays travel as zlib streams of their little-endian C-order bytes and are named by their
content ids (``ids``). Masks travel as the bits of their bounding-box crop.
"""

from __future__ import annotations

import base64
import zlib
from typing import Any, Mapping, Sequence

import numpy as np

from .masks import bounding_box
from .errors import InputError

#: bumped on any incompatible change of routes, fields or encodings
PROTOCOL_VERSION = 1
#: voxel types a volume or image may have on the wire
DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
IDENTITY_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def wire_dtype(dtype: np.dtype | str) -> np.dtype:
    """The little-endian dtype an array of ``dtype`` travels as; refuses types the models cannot take."""
    name = np.dtype(dtype).name
    if name not in DTYPES:
        raise InputError(f"dtype {name} is not supported; use one of {', '.join(DTYPES)}")
    return np.dtype(name).newbyteorder("<")


def to_wire(array: np.ndarray) -> np.ndarray:
    """``array`` as little-endian C-contiguous data (a no-op on the usual little-endian machines)."""
    return np.ascontiguousarray(array, dtype=wire_dtype(array.dtype))


def encode_array(array: np.ndarray, level: int = 1) -> bytes:
    """zlib stream of the wire bytes; level 1 because CT compresses well and upload time matters more."""
    return zlib.compress(to_wire(array).data, level)


def decode_array(data: bytes, shape: Sequence[int], dtype: str, max_bytes: int) -> np.ndarray:
    """Inverse of ``encode_array``; never inflates more than the declared size (no zip bombs)."""
    dims = [int(v) for v in shape]
    if not dims or any(v < 1 for v in dims):
        raise InputError(f"shape must have positive sizes; got {list(shape)}")
    kind = wire_dtype(dtype)
    expected = int(np.prod(dims, dtype=np.int64)) * kind.itemsize
    if expected > max_bytes:
        size = "×".join(map(str, dims))
        raise OverflowError(f"{size} {kind.name} is {expected} bytes, over the limit of {max_bytes}")
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, expected + 1)
    except zlib.error as error:
        raise InputError(f"the data is not a zlib stream: {error}") from None
    if len(raw) != expected or not inflater.eof or inflater.unused_data:
        raise InputError(
            f"the data does not match shape {dims} and dtype {kind.name}: expected exactly {expected} bytes "
            "in one complete zlib stream"
        )
    return np.frombuffer(raw, dtype=kind).reshape(dims).astype(kind.newbyteorder("="), copy=False)


def encode_image(array: np.ndarray) -> dict[str, Any]:
    """A 2D image as JSON fields (shape, dtype, base64 of the zlib stream)."""
    return {
        "shape": [int(v) for v in array.shape],
        "dtype": np.dtype(array.dtype).name,
        "data": base64.b64encode(encode_array(array)).decode("ascii"),
    }


def decode_image(fields: Mapping[str, Any], max_bytes: int) -> np.ndarray:
    try:
        data = base64.b64decode(fields["data"], validate=True)
    except (ValueError, TypeError):
        raise InputError("image data must be base64") from None
    return decode_array(data, fields["shape"], fields["dtype"], max_bytes)


def pack_mask(mask: np.ndarray, covering: np.ndarray | None = None) -> dict[str, Any]:
    """The mask's bits inside a box that also covers ``covering`` (the result it replaces).

    Writing the crop over the old result is then exact: every pixel that may have changed is inside.
    """
    mask = np.asarray(mask, dtype=bool)
    region = mask if covering is None else mask | np.asarray(covering, dtype=bool)
    box = bounding_box(region)
    if box is None:
        return {"shape": list(mask.shape), "box": None, "bits": ""}
    x0, y0, x1, y1 = box
    bits = np.packbits(mask[y0:y1, x0:x1], axis=None)
    return {"shape": list(mask.shape), "box": list(box), "bits": base64.b64encode(bits.tobytes()).decode("ascii")}


def unpack_crop(packed: Mapping[str, Any]) -> tuple[tuple[int, int, int, int] | None, np.ndarray]:
    """(box, crop) of a packed mask; validates everything, since the other side may be anyone."""
    height, width = _shape2d(packed.get("shape"))
    box = packed.get("box")
    if box is None:
        return None, np.zeros((0, 0), dtype=bool)
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(isinstance(v, int) for v in box):
        raise InputError(f"a mask box is four integers x0, y0, x1, y1; got {box!r}")
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise InputError(f"the mask box {list(box)} does not lie inside the {width}×{height} slice")
    try:
        bits = np.frombuffer(base64.b64decode(packed.get("bits", ""), validate=True), dtype=np.uint8)
    except (ValueError, TypeError):
        raise InputError("mask bits must be base64") from None
    count = (y1 - y0) * (x1 - x0)
    if bits.size != (count + 7) // 8:
        raise InputError(f"the mask bits hold {bits.size} bytes; a {x1 - x0}×{y1 - y0} box needs {(count + 7) // 8}")
    crop = np.unpackbits(bits, count=count).reshape(y1 - y0, x1 - x0).astype(bool)
    return (x0, y0, x1, y1), crop


def unpack_mask(packed: Mapping[str, Any]) -> np.ndarray:
    """The full-size boolean mask of a packed one."""
    mask = np.zeros(_shape2d(packed.get("shape")), dtype=bool)
    box, crop = unpack_crop(packed)
    if box is not None:
        x0, y0, x1, y1 = box
        mask[y0:y1, x0:x1] = crop
    return mask


def _shape2d(shape: Any) -> tuple[int, int]:
    if not isinstance(shape, (list, tuple)) or len(shape) != 2 or not all(isinstance(v, int) and v > 0 for v in shape):
        raise InputError(f"a mask shape is two positive integers (rows, columns); got {shape!r}")
    return int(shape[0]), int(shape[1])
