"""Validation Dice as the paper reports it: one tight box per mask, Dice at the slice's own resolution.

It runs the network through the same ``Predictor`` users run, so the number selecting the best
checkpoint is the one they will get.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from segment_anything.modeling import Sam

from ..metrics import dice
from ..models import LoadedModel, ModelSpec
from ..models.acceleration import EXACT, EncoderRunner
from ..paper_prompts import box_from_mask
from ..predictor import Predictor
from .datasets import TrainingItem


def box_dice_sum(
    network: Sam, spec: ModelSpec, device: torch.device, items: Iterable[TrainingItem]
) -> tuple[float, int]:
    """Sum of per-mask Dice and the number of masks (summed, so shards from several processes add up)."""
    was_training = network.training
    network.eval()
    predictor = Predictor(LoadedModel(spec, network, device, None, None,
                                      EncoderRunner(network.image_encoder, EXACT, device)))
    total, count = 0.0, 0
    try:
        for item in items:
            prediction = predictor.predict(predictor.encode(item.image),
                                           box=np.stack([box_from_mask(mask) for mask in item.masks]))
            total += sum(dice(predicted, truth) for predicted, truth in zip(prediction.masks, item.masks))
            count += len(item.masks)
    finally:
        network.train(was_training)
    return total, count
