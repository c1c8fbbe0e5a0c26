"""A user's prompts on one slice, checked once where they enter the engine.

``SlicePrompt.check`` turns what a caller gave (lists, arrays) into arrays of known shape or raises an
``InputError`` that speaks of the caller's slice; everything past it (resampling, the predictor, the
decoder) takes a ``SlicePrompt`` and checks nothing again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError, PromptOutside

ArrayLike = np.ndarray | list | tuple


@dataclass(frozen=True)
class SlicePrompt:
    """Checked prompts in slice pixels (x = column, y = row; continuous, pixel edges at integers)."""

    points: np.ndarray | None = None  # (N, 2) float64 xy, N ≥ 1
    labels: np.ndarray | None = None  # (N,) int64: 1 include, 0 exclude
    boxes: np.ndarray | None = None  # (K, 4) float64 xyxy
    mask_logits: np.ndarray | None = None  # (h, w) a previous result's low-res logits

    @classmethod
    def check(cls, width: int, height: int, low_res_size: int, points: ArrayLike | None = None,
              point_labels: ArrayLike | None = None, box: ArrayLike | None = None,
              mask_logits: ArrayLike | None = None) -> "SlicePrompt":
        """Points (label 1 = include, 0 = exclude), box(es) xyxy and a previous result on a ``width``×``height``
        slice; ``low_res_size`` is the model's low-res mask size. At least one of them must be given."""
        coords, labels = _check_points(points, point_labels, width, height)
        prompt = cls(coords, labels, _check_boxes(box, width, height), _check_mask(mask_logits, low_res_size))
        if prompt.points is None and prompt.boxes is None and prompt.mask_logits is None:
            raise InputError("empty prompt: give at least one point, a box or a previous mask")
        return prompt


def _as_finite(values: ArrayLike, what: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(f"{what} must be numbers: {error}") from None
    if not np.isfinite(array).all():
        raise InputError(f"{what} contain NaN or infinite values")
    return array


def _check_inside(xy: np.ndarray, width: int, height: int, what: str) -> None:
    outside = (xy[..., 0] < 0) | (xy[..., 0] > width) | (xy[..., 1] < 0) | (xy[..., 1] > height)
    if outside.any():
        first = xy[outside][0]
        raise PromptOutside(
            f"{what} ({first[0]:g}, {first[1]:g}) lies outside the {width}×{height} slice "
            "(x must be in 0..width, y in 0..height)"
        )


def _check_points(points: ArrayLike | None, labels: ArrayLike | None, width: int,
                  height: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    if points is None and labels is None:
        return None, None
    if points is None or labels is None:
        raise InputError("points and point_labels must be given together")
    coords = _as_finite(points, "points")
    label_array = _as_finite(labels, "point labels")
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise InputError(f"points must have shape (N, 2) as (x, y); got {coords.shape}")
    if label_array.shape != (coords.shape[0],):
        raise InputError(f"point_labels must have shape ({coords.shape[0]},); got {label_array.shape}")
    if len(coords) == 0:
        return None, None
    if not np.isin(label_array, (0, 1)).all():
        raise InputError(f"point labels must be 1 (include) or 0 (exclude); got {sorted(set(label_array.tolist()))}")
    _check_inside(coords, width, height, "point")
    return coords, label_array.astype(np.int64)


def _check_boxes(box: ArrayLike | None, width: int, height: int) -> np.ndarray | None:
    if box is None:
        return None
    boxes = _as_finite(box, "box coordinates")
    if boxes.ndim == 1:
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) == 0:
        raise InputError(f"a box is (x0, y0, x1, y1); several boxes are (K, 4); got shape {np.shape(box)}")
    if ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any():
        raise InputError("a box needs x1 > x0 and y1 > y0 (corners as x0, y0, x1, y1)")
    _check_inside(boxes.reshape(-1, 2), width, height, "box corner")
    return boxes


def _check_mask(mask_logits: ArrayLike | None, size: int) -> np.ndarray | None:
    if mask_logits is None:
        return None
    array = _as_finite(mask_logits, "mask_logits")
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.shape != (size, size):
        raise InputError(
            f"mask_logits must be one previous low-res result of shape ({size}, {size}); got {np.shape(mask_logits)}"
        )
    return array
