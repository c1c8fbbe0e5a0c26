"""Overlap metrics, defined as the SAM-Med2D evaluation does (with its 1e-7 smoothing)."""

from __future__ import annotations

import numpy as np

_SMOOTH = 1e-7


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    prediction, truth = np.asarray(prediction, bool), np.asarray(truth, bool)
    intersection = np.logical_and(prediction, truth).sum()
    return float((2 * intersection + _SMOOTH) / (prediction.sum() + truth.sum() + _SMOOTH))


def iou(prediction: np.ndarray, truth: np.ndarray) -> float:
    prediction, truth = np.asarray(prediction, bool), np.asarray(truth, bool)
    intersection = np.logical_and(prediction, truth).sum()
    return float((intersection + _SMOOTH) / (np.logical_or(prediction, truth).sum() + _SMOOTH))


def hd95(prediction: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...]) -> float:
    """95th percentile of the symmetric surface distance in mm (2D slice or 3D volume).

    Surfaces are the mask voxels with a neighbour outside the mask (face connectivity); the distances
    from each surface to the other, pooled, give the percentile (the MedPy/nnU-Net convention).
    ``spacing`` is per array axis (rows, columns for a slice). Empty prediction or truth: NaN, since
    no distance is defined; both empty: 0.
    """
    from scipy import ndimage

    prediction, truth = np.asarray(prediction, bool), np.asarray(truth, bool)
    if prediction.shape != truth.shape or len(spacing) != prediction.ndim:
        raise ValueError(f"shapes {prediction.shape} and {truth.shape} with spacing {spacing} do not match")
    if not prediction.any() and not truth.any():
        return 0.0
    if not prediction.any() or not truth.any():
        return float("nan")
    # distances only matter near the two masks: crop to their joint bounding box plus a one-voxel border
    both = np.argwhere(prediction | truth)
    low = np.maximum(both.min(axis=0) - 1, 0)
    high = both.max(axis=0) + 2
    window = tuple(slice(a, b) for a, b in zip(low, high))
    prediction, truth = np.pad(prediction[window], 1), np.pad(truth[window], 1)

    def surface(mask: np.ndarray) -> np.ndarray:
        return mask & ~ndimage.binary_erosion(mask)

    surface_prediction, surface_truth = surface(prediction), surface(truth)
    to_truth = ndimage.distance_transform_edt(~surface_truth, sampling=spacing)[surface_prediction]
    to_prediction = ndimage.distance_transform_edt(~surface_prediction, sampling=spacing)[surface_truth]
    return float(np.percentile(np.concatenate([to_truth, to_prediction]), 95))
