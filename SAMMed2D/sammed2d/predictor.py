"""Interactive prediction on one 2D slice: encode once, then answer each prompt with the decoder.

Semantics follow the reference ``SammedPredictor``: prompts in slice pixels (x = column, y = row),
scaled into the model's input; with multimask output the mask of highest predicted IoU among the
three is kept; a previous result refines the next through its low-res logits. A model trained with
boxes only answers clicks through boxes around them (``sammed2d.click_search``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from . import click_search
from .models.registry import LoadedModel
from .errors import InputError

ArrayLike = np.ndarray | list | tuple


@dataclass(frozen=True)
class ImageEmbedding:
    """Encoder output of one slice plus the geometry needed to map prompts and masks."""

    features: torch.Tensor  # (1, 256, e, e)
    original_size: tuple[int, int]  # (H, W) of the slice
    resized_size: tuple[int, int]  # (h, w) inside the model input before padding


@dataclass(frozen=True)
class Prediction:
    """One mask per box (a single mask without boxes)."""

    masks: np.ndarray  # (K, H, W) bool at the slice's resolution
    scores: np.ndarray  # (K,) predicted IoU of each mask
    low_res_logits: np.ndarray  # (K, h, w) float32: pass back as ``mask_logits`` to refine


class Predictor:
    """Holds one model and the embedding of the current slice."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.embedding: ImageEmbedding | None = None

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

    def set_image(self, image: np.ndarray) -> None:
        self.embedding = self.encode(image)

    def set_embedding(self, embedding: ImageEmbedding) -> None:
        """Reuse an embedding computed earlier (cached per slice by callers)."""
        self.embedding = embedding

    @torch.inference_mode()
    def predict(
        self,
        points: ArrayLike | None = None,
        point_labels: ArrayLike | None = None,
        box: ArrayLike | None = None,
        mask_logits: ArrayLike | None = None,
        multimask_output: bool | None = None,
    ) -> Prediction:
        """Segment with any mix of points (label 1 = include, 0 = exclude), box(es) xyxy and a previous result.

        ``mask_logits`` is a previous ``Prediction.low_res_logits`` entry; it is turned into the mask
        prompt the model was trained with (probabilities for SAM-Med2D, raw logits for SAM).
        """
        if self.embedding is None:
            raise RuntimeError("no slice is set: call set_image() (or set_embedding()) before predict()")
        height, width = self.embedding.original_size
        spec = self.model.spec
        coords, labels = _validate_points(points, point_labels, width, height)
        boxes = _validate_boxes(box, width, height)
        mask_prompt = _validate_mask(mask_logits, self.low_res_size)
        if coords is None and boxes is None and mask_prompt is None:
            raise InputError("empty prompt: give at least one point, a box or a previous mask")

        if spec.clicks_as_boxes and boxes is None and coords is not None and (labels == 1).any():
            return self._answer_clicks_with_boxes(coords, labels, mask_prompt, multimask_output)
        return self._decode(coords, labels, boxes, mask_prompt, multimask_output)

    @torch.inference_mode()
    def decode_points(self, embedding: ImageEmbedding, points: np.ndarray,
                      multimask_output: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Each of ``points`` (N, 2 as x, y in slice pixels) as its own one-click prompt, one decoder call for all.

        The decoder's raw answer (no click search, every output kept), as SAM's automatic mask generator asks
        it: logits at the slice's resolution (N, M, H, W) and predicted IoU (N, M), M = 3 with multimask
        output, on the model's device. Needs no ``set_embedding``.
        """
        height, width = embedding.original_size
        coords, _ = _validate_points(points, np.ones(len(points)), width, height)
        if coords is None:
            raise InputError("decode_points needs at least one point")
        spec, network, device = self.model.spec, self.model.network, self.model.device
        scaled = torch.as_tensor(spec.transform.scale_points(coords, embedding.original_size), dtype=torch.float32)
        labels = torch.ones((len(coords), 1), dtype=torch.int64, device=device)
        sparse, dense = network.prompt_encoder(points=(scaled[:, None].to(device), labels), boxes=None, masks=None)
        low_res, iou = network.mask_decoder(
            image_embeddings=embedding.features,
            image_pe=network.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )
        logits = spec.transform.logits_to_original(low_res.flatten(0, 1)[:, None], embedding.resized_size,
                                                   embedding.original_size)
        return logits[:, 0].unflatten(0, low_res.shape[:2]), iou.float()

    def _answer_clicks_with_boxes(self, coords: np.ndarray, labels: np.ndarray, mask_prompt: np.ndarray | None,
                                  multimask_output: bool | None) -> Prediction:
        """Clicks for a model trained with boxes only (see ``sammed2d.click_search``)."""
        embedding = self.embedding
        assert embedding is not None
        previous = None
        if mask_prompt is not None:
            logits = self.model.spec.transform.logits_to_original(
                torch.as_tensor(mask_prompt, dtype=torch.float32)[None, None], embedding.resized_size,
                embedding.original_size)
            previous = (logits[0, 0] > self.model.network.mask_threshold).numpy()
        candidates = click_search.candidate_boxes(coords, labels, embedding.original_size, previous)
        first = self._decode(None, None, candidates, None, multimask_output)
        reprompts = click_search.reprompt_boxes(first.masks, candidates, coords, labels)
        again = self._decode(None, None, reprompts, None, multimask_output)
        best = click_search.choose(first.masks, again.masks, again.scores, coords, labels)
        return Prediction(again.masks[best : best + 1], again.scores[best : best + 1],
                          again.low_res_logits[best : best + 1])

    def _decode(self, coords: np.ndarray | None, labels: np.ndarray | None, boxes: np.ndarray | None,
                mask_prompt: np.ndarray | None, multimask_output: bool | None) -> Prediction:
        """One decoder call on the current embedding with validated prompts (one mask per box)."""
        embedding = self.embedding
        assert embedding is not None
        spec = self.model.spec
        device = self.model.device
        count = 1 if boxes is None else len(boxes)
        point_input = None
        if coords is not None:
            scaled = torch.as_tensor(spec.transform.scale_points(coords, embedding.original_size), dtype=torch.float32)
            point_input = (
                scaled[None].expand(count, -1, -1).to(device),
                torch.as_tensor(labels, dtype=torch.int64)[None].expand(count, -1).to(device),
            )
        box_input = None
        if boxes is not None:
            scaled_boxes = spec.transform.scale_points(boxes.reshape(-1, 2, 2), embedding.original_size)
            box_input = torch.as_tensor(scaled_boxes.reshape(-1, 4), dtype=torch.float32, device=device)
        mask_input = None
        if mask_prompt is not None:
            mask_input = torch.as_tensor(mask_prompt, dtype=torch.float32, device=device)[None, None]
            if spec.mask_prompt == "probabilities":
                mask_input = torch.sigmoid(mask_input)
            mask_input = mask_input.expand(count, -1, -1, -1)

        network = self.model.network
        sparse, dense = network.prompt_encoder(points=point_input, boxes=box_input, masks=mask_input)
        multimask = spec.multimask_default if multimask_output is None else multimask_output
        low_res, iou = network.mask_decoder(
            image_embeddings=embedding.features,
            image_pe=network.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
        if multimask:
            best = iou.argmax(dim=1)
            rows = torch.arange(len(best), device=device)
            low_res, iou = low_res[rows, best][:, None], iou[rows, best][:, None]
        logits = spec.transform.logits_to_original(low_res, embedding.resized_size, embedding.original_size)
        return Prediction(
            masks=(logits[:, 0] > network.mask_threshold).cpu().numpy(),
            scores=iou[:, 0].float().cpu().numpy(),
            low_res_logits=low_res[:, 0].float().cpu().numpy(),
        )


def validate_prompts(
    points: ArrayLike | None, point_labels: ArrayLike | None, box: ArrayLike | None, width: int, height: int
) -> None:
    """Raise the predictor's ``ValueError`` for prompts that are malformed or off a ``width``×``height`` slice.

    For callers that map prompts into another image first, so errors speak of the user's slice.
    """
    _validate_points(points, point_labels, width, height)
    _validate_boxes(box, width, height)


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


def _as_finite(values: ArrayLike, what: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(f"{what} must be numbers: {error}") from None
    if not np.isfinite(array).all():
        raise InputError(f"{what} contain NaN or infinite values")
    return array


def _check_inside(xy: np.ndarray, width: int, height: int, what: str) -> None:
    outside = (xy[..., 0] < 0) | (xy[..., 0] > width) | (xy[..., 1] < 0) | (xy[..., 1] > height)
    if outside.any():
        first = xy[outside][0]
        raise InputError(
            f"{what} ({first[0]:g}, {first[1]:g}) lies outside the {width}×{height} slice "
            "(x must be in 0..width, y in 0..height)"
        )


def _validate_points(
    points: ArrayLike | None, labels: ArrayLike | None, width: int, height: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    if points is None and labels is None:
        return None, None
    if points is None or labels is None:
        raise InputError("points and point_labels must be given together")
    coords = _as_finite(points, "points")
    label_array = _as_finite(labels, "point labels")
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise InputError(f"points must have shape (N, 2) as (x, y); got {coords.shape}")
    if label_array.shape != (coords.shape[0],):
        raise InputError(f"point_labels must have shape ({coords.shape[0]},); got {label_array.shape}")
    if len(coords) == 0:
        return None, None
    if not np.isin(label_array, (0, 1)).all():
        raise InputError(f"point labels must be 1 (include) or 0 (exclude); got {sorted(set(label_array.tolist()))}")
    _check_inside(coords, width, height, "point")
    return coords, label_array.astype(np.int64)


def _validate_boxes(box: ArrayLike | None, width: int, height: int) -> np.ndarray | None:
    if box is None:
        return None
    boxes = _as_finite(box, "box coordinates")
    if boxes.ndim == 1:
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) == 0:
        raise InputError(f"a box is (x0, y0, x1, y1); several boxes are (K, 4); got shape {np.shape(box)}")
    if ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any():
        raise InputError("a box needs x1 > x0 and y1 > y0 (corners as x0, y0, x1, y1)")
    _check_inside(boxes.reshape(-1, 2), width, height, "box corner")
    return boxes


def _validate_mask(mask_logits: ArrayLike | None, size: int) -> np.ndarray | None:
    if mask_logits is None:
        return None
    array = _as_finite(mask_logits, "mask_logits")
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.shape != (size, size):
        raise InputError(
            f"mask_logits must be one previous low-res result of shape ({size}, {size}); got {np.shape(mask_logits)}"
        )
    return array
