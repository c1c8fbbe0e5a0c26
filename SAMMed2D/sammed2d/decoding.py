"""The one decoder pass of a SAM network: prompts in model-input coordinates → low-res masks and their IoU.

Inference (``Predictor``) and training (the simulated interaction) both decode through here, so the
prompt encoding, the per-image decoder call, the best-of-three choice and the mask prompt are the same
in both: what the model is trained on is what it is asked at inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from segment_anything.modeling import Sam

MaskPromptKind = Literal["probabilities", "logits"]


@dataclass(frozen=True)
class DecoderPrompts:
    """Prompts of N = B·K masks (K per image, grouped by image), in model-input coordinates."""

    points: tuple[torch.Tensor, torch.Tensor] | None = None  # (N, P, 2) xy and (N, P) labels
    boxes: torch.Tensor | None = None  # (N, 4) xyxy
    masks: torch.Tensor | None = None  # (N, 1, h, w) a previous result as the model's mask prompt (``mask_prompt``)


def mask_prompt(low_res_logits: torch.Tensor, kind: MaskPromptKind) -> torch.Tensor:
    """A previous result's low-res logits as the mask prompt the model was trained with: SAM-Med2D takes
    probabilities, SAM and LiteMedSAM raw logits."""
    return torch.sigmoid(low_res_logits) if kind == "probabilities" else low_res_logits


def decode(network: Sam, embeddings: torch.Tensor, prompts: DecoderPrompts, multimask: bool, *,
           all_masks: bool = False, prompt_encoder_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode the prompts of every image of ``embeddings`` (B, C, e, e).

    Returns low-res logits (N, M, h, w) and predicted IoU (N, M). With multimask output the decoder gives
    three masks; M = 1 keeps the one of highest predicted IoU, as every SAM-Med2D entry point does, and
    ``all_masks`` keeps all three (an ambiguous prompt's alternatives). segment-anything's decoder repeats an
    image embedding once per prompt itself, so it is called once per image with that image's K prompts.
    ``prompt_encoder_grad`` False runs the prompt encoder without gradients (training's later steps).
    """
    with torch.set_grad_enabled(prompt_encoder_grad and torch.is_grad_enabled()):
        sparse, dense = network.prompt_encoder(points=prompts.points, boxes=prompts.boxes, masks=prompts.masks)
    images = len(embeddings)
    count, remainder = divmod(len(sparse), images)
    if remainder:
        raise ValueError(f"{len(sparse)} prompts cannot be shared equally by {images} images")
    position = network.prompt_encoder.get_dense_pe()
    logits, scores = zip(*(
        network.mask_decoder(
            image_embeddings=embeddings[image : image + 1],
            image_pe=position,
            sparse_prompt_embeddings=sparse[image * count : (image + 1) * count],
            dense_prompt_embeddings=dense[image * count : (image + 1) * count],
            multimask_output=multimask,
        )
        for image in range(images)
    ))
    low_res, iou = (logits[0], scores[0]) if images == 1 else (torch.cat(logits), torch.cat(scores))
    if multimask and not all_masks:
        best = iou.argmax(dim=1)
        rows = torch.arange(len(best), device=best.device)
        low_res, iou = low_res[rows, best][:, None], iou[rows, best][:, None]
    return low_res, iou
