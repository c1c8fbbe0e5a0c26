"""What makes a ground-truth mask hard: its size, elongation and contrast with its surroundings.

Huang et al. (Segment Anything Model for Medical Images?, §4.8) relate SAM's Dice to properties of the
object; the benchmark measures three per mask so its report can do the same:

- ``area_fraction``: mask pixels / slice pixels (independent of the slice's resolution).
- ``aspect_ratio``: long side / short side (≥ 1) of the mask's minimum-area bounding rectangle, in
  millimetres when the pixels are not square. The axis-aligned box would call a thin structure lying
  at 45° round (aspect 1); the minimum-area rectangle does not depend on how the object is turned,
  and millimetres are what the model sees once slices are resampled to square pixels.
- ``contrast``: |mean inside − mean of a ring around the mask| / pooled standard deviation of the two
  (Cohen's d), on the slice as the model sees it (mapped to 0..255, CT windows clipping). The ring
  is every pixel outside the mask within 5 pixels at the model's 256-pixel input scale (10 pixels on
  a 512 slice). The deviation is floored at one grey level, so flat regions give a finite value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull

#: ring width in pixels of the model's input (its longest side is 256 for SAM-Med2D and LiteMedSAM)
RING_PIXELS_AT_256 = 5
MODEL_SIDE = 256
#: deviation floor in grey levels of the 0..255 slice
MIN_DEVIATION = 1.0
#: the factors, as named in the per-mask rows and the report
FACTORS = ("area_fraction", "aspect_ratio", "contrast")


@dataclass(frozen=True)
class MaskFactors:
    area_fraction: float
    aspect_ratio: float
    contrast: float  # NaN when the mask leaves no pixel around it


def mask_factors(mask: np.ndarray, image: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0)) -> MaskFactors:
    """Factors of one non-empty (H, W) mask on its slice ``image`` ((H, W) or (H, W, C), 0..255).

    ``spacing`` is (row, column) pixel spacing; only its ratio matters.
    """
    mask = np.asarray(mask, dtype=bool)
    grey = np.asarray(image, dtype=np.float64)
    if grey.ndim == 3:
        grey = grey.mean(axis=2)
    if grey.shape != mask.shape or not mask.any():
        raise ValueError(f"mask {mask.shape} must be non-empty and match its image {grey.shape}")
    return MaskFactors(float(mask.sum()) / mask.size, aspect_ratio(mask, spacing), contrast(mask, grey))


def aspect_ratio(mask: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0)) -> float:
    """Long over short side of the minimum-area rectangle around the mask's pixel squares (rotating calipers)."""
    boundary = mask & ~ndimage.binary_erosion(mask)
    rows, columns = np.nonzero(boundary)
    corners = np.concatenate([np.stack([columns + dx, rows + dy], axis=1) for dx in (0, 1) for dy in (0, 1)])
    points = np.unique(corners, axis=0) * np.array([spacing[1], spacing[0]], dtype=np.float64)
    hull = points[ConvexHull(points).vertices]
    best_area, best_ratio = math.inf, 1.0
    for start, end in zip(hull, np.roll(hull, -1, axis=0)):
        along = (end - start) / np.linalg.norm(end - start)
        across = np.array([-along[1], along[0]])
        length, width = np.ptp(hull @ along), np.ptp(hull @ across)
        if length * width < best_area - 1e-9:
            best_area, best_ratio = length * width, max(length, width) / min(length, width)
    return float(best_ratio)


def ring_pixels(shape: tuple[int, ...]) -> float:
    """Ring width in this slice's pixels: ``RING_PIXELS_AT_256`` at the model's input scale."""
    return RING_PIXELS_AT_256 * max(shape[:2]) / MODEL_SIDE


def contrast(mask: np.ndarray, grey: np.ndarray) -> float:
    """Cohen's d between the pixels inside the mask and those of the ring around it."""
    width = ring_pixels(mask.shape)
    margin = int(math.ceil(width)) + 1
    rows, columns = np.nonzero(mask)
    window = (slice(max(rows.min() - margin, 0), rows.max() + margin + 1),
              slice(max(columns.min() - margin, 0), columns.max() + margin + 1))
    inside, patch = mask[window], grey[window]
    ring = ~inside & (ndimage.distance_transform_edt(~inside) <= width)
    if not ring.any():
        return math.nan
    values_in, values_ring = patch[inside], patch[ring]
    deviation = math.sqrt((values_in.var() + values_ring.var()) / 2)
    return float(abs(values_in.mean() - values_ring.mean()) / max(deviation, MIN_DEVIATION))
