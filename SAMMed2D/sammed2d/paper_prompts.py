"""Prompt rules of the SAM-Med2D paper (reference §4.3–4.4), seeded by a numpy Generator.

Training simulates interaction with them and the benchmark scores the paper's modes with them, so both
import this one module. Every function works on one 2D mask at the model's input resolution and returns
coordinates as (x = column, y = row), the order the prompt encoder expects.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: 8-connectivity, as skimage.measure.label (which the reference uses) labels 2D masks by default
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def box_from_mask(mask: np.ndarray, rng: np.random.Generator | None = None, max_jitter: int = 5) -> np.ndarray:
    """(x0, y0, x1, y1) of the mask's largest connected component, max corner exclusive.

    With a generator, the box is translated (never scaled) by the reference jitter: one offset per
    axis drawn from [-m, m) with m = min(max_jitter, int(0.1 · min(w, h) · 5)), the same for both corners.
    Without one there is no jitter (the evaluation rule). An empty mask has nothing to bound and gives
    the whole frame, so a batch never fails on a structure too small to survive resizing.
    """
    components, count = ndimage.label(np.asarray(mask, dtype=bool), structure=EIGHT_CONNECTED)
    if count == 0:
        height, width = components.shape
        return np.array([0.0, 0.0, float(width), float(height)])
    areas = np.bincount(components.ravel())[1:]
    rows, cols = ndimage.find_objects(components)[int(np.argmax(areas))]
    box = np.array([cols.start, rows.start, cols.stop, rows.stop], dtype=np.float64)
    if rng is not None:
        limit = min(max_jitter, int(0.1 * min(cols.stop - cols.start, rows.stop - rows.start) * 5))
        if limit > 0:
            dx, dy = rng.integers(-limit, limit, size=2)
            box += (dx, dy, dx, dy)
    return box


def init_point_sampling(mask: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The first click(s): one random foreground pixel (label 1), or a background one (label 0) if empty.

    For ``count > 1`` (the evaluation's one-shot points): ``count // 2`` foreground and the rest
    background pixels, drawn with replacement and shuffled. Returns coords (count, 2) and labels (count,).
    """
    foreground = np.argwhere(mask)[:, ::-1]
    background = np.argwhere(~np.asarray(mask, dtype=bool))[:, ::-1]
    if count == 1:
        pool, label = (foreground, 1) if len(foreground) else (background, 0)
        return pool[[rng.integers(len(pool))]].astype(np.float64), np.array([label])
    positives = count // 2 if len(foreground) else 0
    coords = np.concatenate([
        foreground[rng.integers(len(foreground), size=positives)] if positives else np.empty((0, 2), np.int64),
        background[rng.integers(len(background), size=count - positives)],
    ])
    labels = np.concatenate([np.ones(positives, np.int64), np.zeros(count - positives, np.int64)])
    order = rng.permutation(count)
    return coords[order].astype(np.float64), labels[order]


def error_region_points(
    prediction: np.ndarray, truth: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` corrective clicks drawn uniformly, with replacement, from the pixels the prediction gets wrong.

    Label 1 where the structure was missed (false negative), 0 where the prediction leaks (false
    positive). With no error left, random pixels labelled -1, which the prompt encoder treats as padding.
    """
    prediction, truth = np.asarray(prediction, dtype=bool), np.asarray(truth, dtype=bool)
    errors = np.argwhere(prediction != truth)
    if len(errors):
        chosen = errors[rng.integers(len(errors), size=count)]
        labels = truth[chosen[:, 0], chosen[:, 1]].astype(np.int64)
    else:
        chosen = np.stack([rng.integers(size, size=count) for size in truth.shape], axis=1)
        labels = np.full(count, -1, dtype=np.int64)
    return chosen[:, ::-1].astype(np.float64), labels
