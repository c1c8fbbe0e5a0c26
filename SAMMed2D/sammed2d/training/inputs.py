"""Turn training items into model input: images through the model's own transform, masks resized alike.

The image goes through exactly the predictor's recipe (``spec.transform``), so the weights are trained
on what they will see at inference. Masks follow the same geometry with nearest-neighbour resizing:
both recipes put the resized image at the top-left of the S×S input and pad the rest (SAM-Med2D's
stretch simply has no padding), so one rule serves every model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..models import ModelSpec
from .datasets import TrainingItem


@dataclass(frozen=True)
class PreparedBatch:
    images: torch.Tensor  # (B, 3, S, S) model input
    targets: torch.Tensor  # (B·K, 1, S, S) float 0/1: K masks per image, grouped by image
    masks_per_image: int


def image_to_input(image: np.ndarray, spec: ModelSpec, device: torch.device) -> tuple[torch.Tensor, tuple[int, int]]:
    """(1, 3, S, S) input of an (H, W) or (H, W, 3) 8-bit slice, and the size it was resized to before padding."""
    pixels = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
    return spec.transform.image_to_input(torch.from_numpy(pixels.astype(np.float32)).to(device))


def masks_to_input(masks: Sequence[np.ndarray], resized: tuple[int, int], size: int) -> torch.Tensor:
    """(M, S, S) bool: nearest-neighbour to the resized extent (floor indexing, as the image), zero-padded."""
    stacked = torch.from_numpy(np.stack(masks).astype(np.float32))[None]
    scaled = F.interpolate(stacked, size=resized, mode="nearest")[0]
    return F.pad(scaled, (0, size - resized[1], 0, size - resized[0])) > 0.5


def prepare_batch(
    items: Sequence[TrainingItem],
    spec: ModelSpec,
    masks_per_image: int,
    rng: np.random.Generator,
    device: torch.device,
) -> PreparedBatch:
    """Stack the images and draw ``masks_per_image`` masks per image with replacement (reference §4.2).

    Masks that vanish at the input size (a few pixels resized away) are only drawn when an image
    has nothing else, so the targets are real structures whenever possible.
    """
    images, targets = [], []
    for item in items:
        model_input, resized = image_to_input(item.image, spec, device)
        resized_masks = masks_to_input(item.masks, resized, spec.image_size)
        visible = np.flatnonzero(resized_masks.flatten(1).any(dim=1).numpy())
        pool = visible if len(visible) else np.arange(len(item.masks))
        chosen = pool[rng.integers(len(pool), size=masks_per_image)]
        images.append(model_input)
        targets.append(resized_masks[torch.from_numpy(chosen)])
    return PreparedBatch(
        torch.cat(images), torch.cat(targets)[:, None].float().to(device), masks_per_image
    )
