"""Prompt rules of the evaluation study by Huang et al., "Segment anything model for medical images?"
(Medical Image Analysis 92, 2024), and its prompt-randomness perturbation.

The SAM-Med2D rules (tight box, ``init_point_sampling``, error-region clicks) live in
``sammed2d.paper_prompts``. Coordinates are (x = column, y = row) in the slice's pixels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..masks import bounding_box
from ..errors import InputError

Points = tuple[np.ndarray, np.ndarray]  # (N, 2) xy and (N,) labels


def huang_points(mask: np.ndarray, positives: int, negatives: int, rng: np.random.Generator) -> Points:
    """Huang's point rule.

    The first positive point is the mask's centre of mass when that pixel lies in the mask (an
    annotator clicks the middle), otherwise a uniform mask pixel; further positives are uniform
    mask pixels. Negatives are uniform among the pixels outside the mask but inside its bounding
    box enlarged twice (about its centre, clipped to the slice). Pixels are drawn without repeats
    while enough are available.
    """
    mask = np.asarray(mask, dtype=bool)
    inside = np.argwhere(mask)
    if not len(inside):
        raise InputError("cannot place points on an empty mask")
    centre = np.rint(ndimage.center_of_mass(mask)).astype(int)
    first = [centre] if mask[tuple(centre)] else []
    rest = inside[~np.all(inside == centre, axis=1)] if first else inside
    chosen = list(first) + list(_draw(rest, positives - len(first), rng))
    coords = [np.array(chosen, dtype=np.int64).reshape(-1, 2)]
    if negatives:
        x0, y0, x1, y1 = bounding_box(mask)
        half_width, half_height = x1 - x0, y1 - y0  # doubling the size: half of it on each side of the centre
        centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
        height, width = mask.shape
        rows = slice(max(int(np.floor(centre_y - half_height)), 0), min(int(np.ceil(centre_y + half_height)), height))
        cols = slice(max(int(np.floor(centre_x - half_width)), 0), min(int(np.ceil(centre_x + half_width)), width))
        outside = np.argwhere(~mask[rows, cols]) + (rows.start, cols.start)
        coords.append(_draw(outside, negatives, rng))
    stacked = np.concatenate(coords)
    labels = np.concatenate([np.ones(len(chosen), np.int64), np.zeros(len(stacked) - len(chosen), np.int64)])
    return stacked[:, ::-1].astype(np.float64), labels


def _draw(pixels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    if count <= 0 or not len(pixels):
        return np.empty((0, 2), np.int64)
    return pixels[rng.choice(len(pixels), size=count, replace=len(pixels) < count)]


def shift_points(
    xy: np.ndarray, distance: tuple[float, float], shape: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """Move each point by a length drawn uniformly in [low, high) pixels, in a uniform direction; kept on the slice."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    length = rng.uniform(*distance, size=len(xy))
    angle = rng.uniform(0, 2 * np.pi, size=len(xy))
    moved = xy + np.stack([length * np.cos(angle), length * np.sin(angle)], axis=1)
    height, width = shape
    return np.clip(moved, 0, [width, height])


def shift_box(
    box: np.ndarray, distance: tuple[float, float], shape: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """Move both corners independently (``shift_points``); the result is re-ordered and at least one pixel wide."""
    corners = shift_points(np.asarray(box, dtype=np.float64).reshape(2, 2), distance, shape, rng)
    low, high = corners.min(axis=0), corners.max(axis=0)
    height, width = shape
    limit = np.array([width, height], dtype=np.float64)
    high = np.maximum(high, np.minimum(low + 1, limit))
    low = np.minimum(low, high - 1)
    return np.concatenate([low, high])
