"""The paper's simulated interaction: 1 + n optimizer steps per batch (reference §4.4).

Step 0 prompts every mask with a jittered box or one click (50/50 per batch) and back-propagates
into whatever trains (adapters, prompt encoder, decoder). The n further steps reuse the detached
image embeddings, prompt with 1/3/5/9 clicks drawn from the current error region plus the previous
mask, run the prompt encoder without gradients (so only the decoder learns), and prompt with the
mask alone at one random step and at the last. Clicks replace the previous ones, as in the reference.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..decoding import DecoderPrompts, MaskPromptKind, decode, mask_prompt
from ..paper_prompts import box_from_mask, error_region_points, init_point_sampling
from .inputs import PreparedBatch
from .losses import sam_med2d_loss


class PromptedSam(nn.Module):
    """Encoder, prompt encoder and decoder in one ``forward``, so DDP sees and synchronises every pass.

    The decoder pass is ``sammed2d.decoding.decode``, the one inference uses (best of three with multimask).
    """

    def __init__(self, network: Sam, multimask: bool) -> None:
        super().__init__()
        self.network = network
        self.multimask = multimask

    def forward(self, source: torch.Tensor, prompts: DecoderPrompts, first: bool) -> tuple[torch.Tensor, ...]:
        """``source`` is the images on the first step and the detached embeddings afterwards.

        Returns the low-res logits (N, 1, h, w), their predicted IoU (N, 1) and the image embeddings.
        """
        network = self.network
        if first:
            encoder_trains = any(parameter.requires_grad for parameter in network.image_encoder.parameters())
            with torch.set_grad_enabled(encoder_trains and torch.is_grad_enabled()):
                embeddings = network.image_encoder(source)
        else:
            embeddings = source
        low_res, iou = decode(network, embeddings, prompts, self.multimask, prompt_encoder_grad=first)
        return low_res, iou, embeddings


@dataclass(frozen=True)
class InteractionSettings:
    steps: int = 8  # the reference's iter_point: steps after the first
    point_choices: tuple[int, ...] = (1, 3, 5, 9)
    mask_prompt: MaskPromptKind = "probabilities"


@dataclass
class _Episode:
    """One micro-batch on its way through the steps."""

    batch: PreparedBatch
    source: torch.Tensor
    prompts: DecoderPrompts
    mask_only_steps: frozenset[int]


def first_prompts(targets: torch.Tensor, rng: np.random.Generator) -> DecoderPrompts:
    """A jittered box per mask, or one click per mask: one kind for the whole batch, 50/50."""
    masks = targets[:, 0].cpu().numpy() > 0.5
    if rng.random() > 0.5:
        boxes = np.stack([box_from_mask(mask, rng) for mask in masks])
        return DecoderPrompts(boxes=torch.as_tensor(boxes, dtype=torch.float32, device=targets.device))
    coords, labels = zip(*(init_point_sampling(mask, 1, rng) for mask in masks))
    return DecoderPrompts(points=_as_points(coords, labels, targets.device))


def corrective_prompts(
    logits: torch.Tensor,
    low_res: torch.Tensor,
    targets: torch.Tensor,
    point_count: int | None,
    kind: MaskPromptKind,
    rng: np.random.Generator,
) -> DecoderPrompts:
    """Clicks in the error region of the upsampled prediction (none for a mask-only step) and the previous mask."""
    mask_input = mask_prompt(low_res.detach().float(), kind)
    if point_count is None:
        return DecoderPrompts(masks=mask_input)
    predicted = (logits.detach() > 0)[:, 0].cpu().numpy()
    truth = targets[:, 0].cpu().numpy() > 0.5
    coords, labels = zip(*(error_region_points(p, t, point_count, rng) for p, t in zip(predicted, truth)))
    return DecoderPrompts(points=_as_points(coords, labels, targets.device), masks=mask_input)


def _as_points(
    coords: Sequence[np.ndarray], labels: Sequence[np.ndarray], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.as_tensor(np.stack(coords), dtype=torch.float32, device=device),
        torch.as_tensor(np.stack(labels), dtype=torch.int64, device=device),
    )


def mask_only_steps(steps: int, rng: np.random.Generator) -> frozenset[int]:
    """The last step, and one random step in between (the reference's ``randint(1, iter_point - 1)``)."""
    if steps == 0:
        return frozenset()
    chosen = {steps}
    if steps >= 3:
        chosen.add(int(rng.integers(1, steps - 1)) + 1)
    return frozenset(chosen)


def run_interaction(
    model: nn.Module,
    batches: Sequence[PreparedBatch],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    settings: InteractionSettings,
    rng: np.random.Generator,
    autocast: Callable[[], AbstractContextManager],
) -> list[float]:
    """Train on ``batches`` (micro-batches accumulated into each optimizer step); returns the loss of every step.

    ``model`` is a ``PromptedSam``, possibly inside DistributedDataParallel: gradients are then
    synchronised once per step, on the last micro-batch.
    """
    episodes = [
        _Episode(batch, batch.images, first_prompts(batch.targets, rng), mask_only_steps(settings.steps, rng))
        for batch in batches
    ]
    losses = []
    for step in range(settings.steps + 1):
        step_loss = 0.0
        for number, episode in enumerate(episodes):
            last = number == len(episodes) - 1
            synchronise = nullcontext() if last or not isinstance(model, DistributedDataParallel) else model.no_sync()
            with synchronise:
                with autocast():
                    low_res, iou, embeddings = model(episode.source, episode.prompts, step == 0)
                targets = episode.batch.targets
                logits = F.interpolate(low_res.float(), size=targets.shape[-2:], mode="bilinear", align_corners=False)
                loss = sam_med2d_loss(logits, targets, iou.float()).total
                scaler.scale(loss / len(episodes)).backward()
            step_loss += loss.item() / len(episodes)
            if step < settings.steps:
                next_step = step + 1
                count = None if next_step in episode.mask_only_steps else int(rng.choice(settings.point_choices))
                episode.prompts = corrective_prompts(logits, low_res, targets, count, settings.mask_prompt, rng)
                episode.source = embeddings.detach()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        losses.append(step_loss)
    return losses
