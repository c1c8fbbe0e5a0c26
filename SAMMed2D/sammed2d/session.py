"""A volume prepared for one model: intensity mapping fitted once, slices as the model sees them,
and image embeddings cached per (volume, axis, index, intensity, model).

Slices with non-square pixels (a sagittal slice of 5 mm CT, say) are resampled along their rows to
square pixels before the model sees them, so anatomy keeps its shape; prompts are mapped into that
image and masks back to the slice's own pixels exactly (each pixel takes the model's mask at its centre).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Hashable, Iterable

import numpy as np

from .bounded_lru import BoundedLRU
from .everything import CancelCheck, EverythingSettings, ProgressCallback, Suggestions, generate
from .ids import volume_id
from .intensity import IntensityMapping
from .model_images import model_image, model_rows, rows_under_centres
from .predictor import ImageEmbedding, Prediction, Predictor
from .slice_prompts import SlicePrompt
from .volumes import Axis, Volume


class EmbeddingCache(BoundedLRU[Hashable, ImageEmbedding]):
    """Image embeddings under a byte budget, shared by sessions; each is computed once (see ``BoundedLRU``)."""

    def __init__(self, budget_bytes: int = 1 << 30) -> None:
        super().__init__(budget_bytes, sizeof=_nbytes)


def _nbytes(embedding: ImageEmbedding) -> int:
    return embedding.features.element_size() * embedding.features.nelement()


@dataclass(frozen=True)
class SliceResampling:
    """Maps between a slice's pixels (H rows) and the model image (``model_rows`` rows, same columns)."""

    rows: int
    model_rows: int

    @property
    def factor(self) -> float:
        return self.model_rows / self.rows

    def prompt_to_model(self, prompt: SlicePrompt) -> SlicePrompt:
        """The prompt on the model image: y scales, x stays (continuous coordinates: pixel edges map to edges)."""
        if self.factor == 1:
            return prompt
        scale = np.array([1.0, self.factor])
        points = None if prompt.points is None else prompt.points * scale
        boxes = None if prompt.boxes is None else (prompt.boxes.reshape(-1, 2, 2) * scale).reshape(-1, 4)
        return replace(prompt, points=points, boxes=boxes)

    def mask_to_slice(self, masks: np.ndarray) -> np.ndarray:
        if self.model_rows == self.rows:
            return masks
        return masks[..., rows_under_centres(self.model_rows, self.rows), :]


class VolumeSession:
    """Segment any slice of one volume with one model; embeddings are computed once per slice."""

    def __init__(
        self,
        volume: Volume,
        predictor: Predictor,
        mapping: IntensityMapping,
        cache: EmbeddingCache | None = None,
        model_lock: threading.Lock | None = None,
        content_id: str | None = None,
    ) -> None:
        """``content_id`` is the volume's ``ids.volume_id`` when the caller already has it (the server checked
        it at upload); otherwise it is computed here, which hashes every voxel."""
        self.volume = volume
        self.predictor = predictor
        self.mapping = mapping
        self.cache = cache if cache is not None else EmbeddingCache()
        self.model_lock = model_lock if model_lock is not None else threading.Lock()
        if content_id is None:
            geometry = volume.geometry
            content_id = volume_id(volume.array, geometry.spacing, geometry.origin, geometry.direction)
        self.volume_id = content_id

    def cache_key(self, axis: Axis, index: int) -> tuple:
        mapping = (self.mapping.preset, self.mapping.low, self.mapping.high)
        return (self.volume_id, axis, index, mapping, self.predictor.model.identity)

    def resampling(self, axis: Axis) -> SliceResampling:
        return SliceResampling(self.volume.slice_shape(axis)[0], model_rows(self.volume, axis))

    def model_image(self, axis: Axis, index: int) -> np.ndarray:
        """The slice as the model sees it (``model_images``: the path training takes too)."""
        return model_image(self.volume, self.mapping, axis, index)

    def embedding(self, axis: Axis, index: int) -> ImageEmbedding:
        """The slice's embedding: cached, or computed once however many callers ask for it meanwhile."""
        return self.cache.get_or_compute(self.cache_key(axis, index), lambda: self._encode(axis, [index])[0])

    def encode_ahead(self, axis: Axis, indices: Iterable[int]) -> None:
        """Encode the slices among ``indices`` not cached yet, a batch at a time (the model's preferred size)."""
        missing = [index for index in dict.fromkeys(indices) if not self.is_cached(axis, index)]
        batch_size = self.predictor.model.encoder.batch_size
        for start in range(0, len(missing), batch_size):
            batch = {self.cache_key(axis, index): index for index in missing[start : start + batch_size]}
            self.cache.get_or_compute_many(list(batch), lambda keys: self._encode(axis, [batch[key] for key in keys]))

    def _encode(self, axis: Axis, indices: list[int]) -> list[ImageEmbedding]:
        """Encode these slices in one model call."""
        images = [self.model_image(axis, index) for index in indices]
        with self.model_lock:
            return self.predictor.encode_batch(images)

    def is_cached(self, axis: Axis, index: int) -> bool:
        """Whether the slice's embedding is cached or being computed (asking for it computes nothing more)."""
        return self.cache.claimed(self.cache_key(axis, index))

    def segment(
        self,
        axis: Axis,
        index: int,
        points: np.ndarray | list | None = None,
        point_labels: np.ndarray | list | None = None,
        box: np.ndarray | list | None = None,
        mask_logits: np.ndarray | None = None,
        multimask_output: bool | None = None,
        all_masks: bool = False,
    ) -> Prediction:
        """Prompts in the slice's pixel coordinates; masks come back on the slice's pixels.

        ``mask_logits`` is a previous result's ``low_res_logits`` on the same axis; ``all_masks`` as in
        ``Predictor.predict``. Prompts are checked here, once, on the slice the caller sees (not the
        resampled image the model sees).
        """
        self.volume.check_slice(axis, index)
        height, width = self.volume.slice_shape(axis)
        prompt = SlicePrompt.check(width, height, self.predictor.low_res_size, points, point_labels, box, mask_logits)
        resampling = self.resampling(axis)
        embedding = self.embedding(axis, index)
        with self.model_lock:  # not for the predictor (it holds no state): interactive calls go first
            prediction = self.predictor.predict_checked(embedding, resampling.prompt_to_model(prompt),
                                                        multimask_output, all_masks)
        return Prediction(resampling.mask_to_slice(prediction.masks), prediction.scores, prediction.low_res_logits)

    def suggest(self, axis: Axis, index: int, settings: EverythingSettings = EverythingSettings(),
                progress: ProgressCallback | None = None, cancel: CancelCheck | None = None) -> Suggestions:
        """Everything mode on one slice (``sammed2d.everything``): masks found from a grid of clicks, on the
        slice's pixels. The model lock is taken per batch of clicks, so other requests interleave; ``progress``
        and ``cancel`` as in ``everything.candidates``."""
        found = generate(self.predictor, self.embedding(axis, index), settings, self.model_lock, progress, cancel)
        resampling = self.resampling(axis)
        if resampling.factor == 1:
            return found
        return found.mapped(resampling.mask_to_slice, lambda xy: (xy[0], xy[1] / resampling.factor))
