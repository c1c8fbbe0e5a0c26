"""Interactive prediction on one 2D slice: encode once, then answer each prompt with the decoder.

Semantics follow the reference ``SammedPredictor``: prompts in slice pixels (x = column, y = row),
scaled into the model's input; with multimask output the mask of highest predicted IoU among the
three is kept (or all three, on request); a previous result refines the next through its low-res
logits. A model trained with boxes only answers clicks through boxes around them
(``sammed2d.click_search``). The predictor holds no slice: each call is given the embedding it answers
on, so threads share one predictor without a lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from . import click_search
from .decoding import DecoderPrompts, decode, mask_prompt
from .errors import InputError
from .models.registry import LoadedModel
from .slice_prompts import ArrayLike, SlicePrompt


@dataclass(frozen=True)
class ImageEmbedding:
    """Encoder output of one slice plus the geometry needed to map prompts and masks."""

    features: torch.Tensor  # (1, 256, e, e)
    original_size: tuple[int, int]  # (H, W) of the slice
    resized_size: tuple[int, int]  # (h, w) inside the model input before padding


@dataclass(frozen=True)
class Prediction:
    """One mask per box (a single mask without boxes); with ``all_masks`` the decoder's M = 3 per box, best first."""

    masks: np.ndarray  # (K, H, W) bool at the slice's resolution; (K, M, H, W) with all_masks
    scores: np.ndarray  # (K,) predicted IoU of each mask; (K, M)
    low_res_logits: np.ndarray  # (K, h, w) float32: pass back as ``mask_logits`` to refine; (K, M, h, w)


class Predictor:
    """One model: encodes slices and answers prompts on an embedding given with each call."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model

    @property
    def low_res_size(self) -> int:
        return 4 * self.model.network.prompt_encoder.image_embedding_size[0]

    def encode(self, image: np.ndarray) -> ImageEmbedding:
        """Run the image encoder on a slice already mapped to 0..255 (see ``sammed2d.intensity``)."""
        return self.encode_batch([image])[0]

    @torch.inference_mode()
    def encode_batch(self, images: Sequence[np.ndarray]) -> list[ImageEmbedding]:
        """Encode several slices in one encoder call (they may differ in size: inputs are padded to S×S).

        One call per slice is as fast on a CPU; on a GPU a batch fills the device.
        """
        prepared = []
        for image in images:
            pixels = _validate_image(image)
            model_input, resized = self.model.spec.transform.image_to_input(
                torch.from_numpy(pixels).to(self.model.device)
            )
            prepared.append((model_input, resized, (pixels.shape[0], pixels.shape[1])))
        if not prepared:
            return []
        features = self.model.encoder(torch.cat([model_input for model_input, _, _ in prepared]))
        return [ImageEmbedding(features[i : i + 1], original, resized)
                for i, (_, resized, original) in enumerate(prepared)]

    def check(self, embedding: ImageEmbedding, points: ArrayLike | None = None,
              point_labels: ArrayLike | None = None, box: ArrayLike | None = None,
              mask_logits: ArrayLike | None = None) -> SlicePrompt:
        """Prompts checked against the embedding's slice (``SlicePrompt.check``)."""
        height, width = embedding.original_size
        return SlicePrompt.check(width, height, self.low_res_size, points, point_labels, box, mask_logits)

    def predict(
        self,
        embedding: ImageEmbedding,
        points: ArrayLike | None = None,
        point_labels: ArrayLike | None = None,
        box: ArrayLike | None = None,
        mask_logits: ArrayLike | None = None,
        multimask_output: bool | None = None,
        all_masks: bool = False,
    ) -> Prediction:
        """Segment with any mix of points (label 1 = include, 0 = exclude), box(es) xyxy and a previous result.

        ``mask_logits`` is a previous ``Prediction.low_res_logits`` entry; it is turned into the mask
        prompt the model was trained with (probabilities for SAM-Med2D, raw logits for SAM).
        ``all_masks`` returns the decoder's three masks per prompt, best first (see ``Prediction``).
        """
        prompt = self.check(embedding, points, point_labels, box, mask_logits)
        return self.predict_checked(embedding, prompt, multimask_output, all_masks)

    @torch.inference_mode()
    def predict_checked(self, embedding: ImageEmbedding, prompt: SlicePrompt, multimask_output: bool | None = None,
                        all_masks: bool = False) -> Prediction:
        """``predict`` for a prompt already checked on the embedding's slice."""
        if self.model.spec.clicks_as_boxes and prompt.boxes is None and prompt.labels is not None \
                and (prompt.labels == 1).any():
            return self._answer_clicks_with_boxes(embedding, prompt, multimask_output, all_masks)
        return self._decode(embedding, prompt, multimask_output, all_masks)

    @torch.inference_mode()
    def decode_points(self, embedding: ImageEmbedding, points: np.ndarray,
                      multimask_output: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Each of ``points`` (N, 2 as x, y in slice pixels) as its own one-click prompt, one decoder call for all.

        The decoder's raw answer (no click search, every output kept), as SAM's automatic mask generator asks
        it: logits at the slice's resolution (N, M, H, W) and predicted IoU (N, M), M = 3 with multimask
        output, on the model's device.
        """
        if len(points) == 0:
            raise InputError("decode_points needs at least one point")
        coords = self.check(embedding, points, np.ones(len(points))).points
        spec, device = self.model.spec, self.model.device
        scaled = torch.as_tensor(spec.transform.scale_points(coords, embedding.original_size), dtype=torch.float32)
        labels = torch.ones((len(coords), 1), dtype=torch.int64, device=device)
        low_res, iou = decode(self.model.network, embedding.features,
                              DecoderPrompts(points=(scaled[:, None].to(device), labels)), multimask_output,
                              all_masks=True)
        return self.logits_on_slice(embedding, low_res), iou.float()

    def _answer_clicks_with_boxes(self, embedding: ImageEmbedding, prompt: SlicePrompt,
                                  multimask_output: bool | None, all_masks: bool) -> Prediction:
        """Clicks for a model trained with boxes only (see ``sammed2d.click_search``); with ``all_masks`` the
        chosen box's three masks."""
        assert prompt.points is not None and prompt.labels is not None
        previous = None
        if prompt.mask_logits is not None:
            low_res = torch.as_tensor(prompt.mask_logits, dtype=torch.float32)[None, None]
            previous = (self.logits_on_slice(embedding, low_res)[0, 0] > self.model.network.mask_threshold).numpy()
        coords, labels = prompt.points, prompt.labels
        candidates = click_search.candidate_boxes(coords, labels, embedding.original_size, previous)
        first = self._decode(embedding, SlicePrompt(boxes=candidates), multimask_output)
        reprompts = click_search.reprompt_boxes(first.masks, candidates, coords, labels)
        again = self._decode(embedding, SlicePrompt(boxes=reprompts), multimask_output)
        per_model_pixel = self.model.spec.input_pixel(*embedding.original_size)
        best = click_search.choose(first.masks, again.masks, again.scores, coords, labels,
                                   tolerance=int(np.ceil(per_model_pixel)))
        if all_masks:
            return self._decode(embedding, SlicePrompt(boxes=reprompts[best : best + 1]), True, all_masks=True)
        return Prediction(again.masks[best : best + 1], again.scores[best : best + 1],
                          again.low_res_logits[best : best + 1])

    def _decoder_prompts(self, embedding: ImageEmbedding, prompt: SlicePrompt) -> DecoderPrompts:
        """The prompt in the model's input coordinates, one row per box (one row without boxes)."""
        spec, device = self.model.spec, self.model.device
        count = 1 if prompt.boxes is None else len(prompt.boxes)
        points = None
        if prompt.points is not None:
            scaled = torch.as_tensor(spec.transform.scale_points(prompt.points, embedding.original_size),
                                     dtype=torch.float32)
            points = (
                scaled[None].expand(count, -1, -1).to(device),
                torch.as_tensor(prompt.labels, dtype=torch.int64)[None].expand(count, -1).to(device),
            )
        boxes = None
        if prompt.boxes is not None:
            scaled_boxes = spec.transform.scale_points(prompt.boxes.reshape(-1, 2, 2), embedding.original_size)
            boxes = torch.as_tensor(scaled_boxes.reshape(-1, 4), dtype=torch.float32, device=device)
        masks = None
        if prompt.mask_logits is not None:
            previous = torch.as_tensor(prompt.mask_logits, dtype=torch.float32, device=device)[None, None]
            masks = mask_prompt(previous, spec.mask_prompt).expand(count, -1, -1, -1)
        return DecoderPrompts(points, boxes, masks)

    def _decode(self, embedding: ImageEmbedding, prompt: SlicePrompt, multimask_output: bool | None,
                all_masks: bool = False) -> Prediction:
        """One decoder call on ``embedding`` (one mask per box, or all three with ``all_masks``)."""
        spec, network = self.model.spec, self.model.network
        multimask = spec.multimask_default if multimask_output is None else multimask_output
        low_res, iou = decode(network, embedding.features, self._decoder_prompts(embedding, prompt),
                              multimask or all_masks, all_masks=all_masks)
        if all_masks:
            order = iou.argsort(dim=1, descending=True)
            low_res, iou = low_res.gather(1, order[..., None, None].expand_as(low_res)), iou.gather(1, order)
        logits = self.logits_on_slice(embedding, low_res)
        masks, scores = (logits > network.mask_threshold).cpu().numpy(), iou.float().cpu().numpy()
        low_res_logits = low_res.float().cpu().numpy()
        if not all_masks:
            masks, scores, low_res_logits = masks[:, 0], scores[:, 0], low_res_logits[:, 0]
        return Prediction(masks=masks, scores=scores, low_res_logits=low_res_logits)

    def logits_on_slice(self, embedding: ImageEmbedding, low_res: torch.Tensor) -> torch.Tensor:
        """Low-res logits (N, M, h, w) brought to the embedding's slice: (N, M, H, W) (a ``Prediction``'s
        ``low_res_logits`` as the masks were thresholded from them)."""
        logits = self.model.spec.transform.logits_to_original(low_res.flatten(0, 1)[:, None], embedding.resized_size,
                                                              embedding.original_size)
        return logits[:, 0].unflatten(0, low_res.shape[:2])


def _validate_image(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise InputError(f"a slice must be H×W or H×W×3; got shape {np.shape(image)}")
    if min(array.shape[:2]) < 2:
        raise InputError(f"the slice is too small to segment: {array.shape[0]}×{array.shape[1]} pixels")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputError(f"slice pixels must be numeric; got dtype {array.dtype}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise InputError("the slice contains NaN or infinite values")
    if array.min() < 0 or array.max() > 255:
        raise InputError(
            f"slice values must be in 0..255 (got {array.min():g}..{array.max():g}); map intensities first "
            "with a preset from sammed2d.intensity (CT window, percentiles or min-max)"
        )
    return array
