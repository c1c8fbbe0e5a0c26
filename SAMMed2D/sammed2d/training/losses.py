"""The SAM-Med2D training loss (reference §4.5): 20 · focal + dice + IoU-prediction MSE.

Every term is computed over the whole batch at once, as the reference does: the focal term is the
mean over all pixels, the dice is one global dice, and the IoU target is the batch's single soft IoU.
Inputs are logits (N, 1, H, W) at the model's input resolution, binary targets of the same shape
and the predicted IoU (N, 1).
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class LossTerms(NamedTuple):
    total: torch.Tensor
    focal: torch.Tensor
    dice: torch.Tensor
    iou: torch.Tensor


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    probability = torch.sigmoid(logits)
    positive = -alpha * target * (1 - probability) ** gamma * torch.log(probability + 1e-12)
    negative = -(1 - alpha) * (1 - target) * probability**gamma * torch.log(1 - probability + 1e-12)
    return (positive.sum() + negative.sum()) / (target.numel() + 1e-12)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    probability = torch.sigmoid(logits)
    overlap = (probability * target).sum()
    return 1 - (2 * overlap + smooth) / (probability.sum() + target.sum() + smooth)


def iou_prediction_loss(logits: torch.Tensor, target: torch.Tensor, predicted_iou: torch.Tensor) -> torch.Tensor:
    probability = torch.sigmoid(logits)
    overlap = (probability * target).sum()
    union = probability.sum() + target.sum() - overlap
    soft_iou = (overlap + 1e-7) / (union + 1e-7)
    return torch.mean((soft_iou - predicted_iou) ** 2)


def sam_med2d_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    predicted_iou: torch.Tensor,
    focal_weight: float = 20.0,
    iou_weight: float = 1.0,
) -> LossTerms:
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same shape")
    focal = focal_loss(logits, target)
    dice = dice_loss(logits, target)
    iou = iou_prediction_loss(logits, target, predicted_iou)
    return LossTerms(focal_weight * focal + dice + iou_weight * iou, focal, dice, iou)
