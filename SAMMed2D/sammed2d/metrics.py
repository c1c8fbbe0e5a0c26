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
