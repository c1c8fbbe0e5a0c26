"""The model behind the API: volumes, sessions, embeddings, results and jobs around one predictor.

Every model call goes through one ``ModelLock``; sessions (one per volume and intensity preset)
share one embedding cache, so its budget covers the whole server. What it refuses it raises as a
``Refusal`` of its kind, or the engine's ``InputError``; the routes turn them into HTTP answers.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..bounded_lru import BoundedLRU
from ..errors import InputError
from ..everything import CancelCheck, EverythingSettings, ProgressCallback, Suggestions
from ..ids import image_id, volume_id
from ..intensity import fit_mapping
from ..models import LoadedModel
from ..predictor import ImageEmbedding, Prediction, Predictor
from ..propagation import Propagation, PropagationSettings
from ..session import EmbeddingCache, VolumeSession
from ..volumes import Geometry, Volume
from ..wire import decode_array, decode_image, pack_mask, unpack_mask, wire_dtype
from .jobs import Emit, JobRegistry, PropagationJob
from .locking import ModelLock
from .prefetch import Prefetcher
from .refusals import Mismatch, TooLarge, Unknown
from .results import ImageContext, ResultContext, ResultStore, SliceContext, StoredResult
from .schemas import (
    Prompt,
    PropagateRequest,
    PropagationKey,
    SegmentImageRequest,
    SegmentSliceRequest,
    SuggestSliceRequest,
)
from .store import VolumeStore

logger = logging.getLogger(__name__)

#: propagations kept for re-runs after a correction (each holds its slices' masks and logits)
KEPT_PROPAGATIONS = 8

#: Everything mode on one checked slice: ``run(progress, cancel)`` → (suggestions, embedding was cached)
SuggestionRun = Callable[[ProgressCallback | None, CancelCheck | None], tuple[Suggestions, bool]]


@dataclass(frozen=True)
class ServiceLimits:
    volume_budget_bytes: int = 2 << 30
    embedding_budget_bytes: int = 1 << 30
    max_results: int = 256
    max_jobs: int = 4
    prefetch_radius: int = 2
    max_image_bytes: int = 256 << 20


@dataclass(frozen=True)
class VolumeMetadata:
    shape: tuple[int, int, int]
    dtype: str
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]


@dataclass(frozen=True)
class SegmentOutcome:
    packed: dict[str, Any]
    score: float
    area: int
    handle: str
    embedding_cached: bool


class SegmentationService:
    def __init__(self, model: LoadedModel, limits: ServiceLimits) -> None:
        self.model = model
        self.limits = limits
        self.lock = ModelLock()
        self.predictor = Predictor(model)
        self.embeddings = EmbeddingCache(limits.embedding_budget_bytes)
        self.volumes = VolumeStore(limits.volume_budget_bytes, on_evict=self._forget_sessions)
        self.results = ResultStore(limits.max_results)
        self.jobs = JobRegistry(limits.max_jobs)
        self._propagations: BoundedLRU[tuple, Propagation] = BoundedLRU(KEPT_PROPAGATIONS)
        self.prefetcher = Prefetcher(self.lock, limits.prefetch_radius)
        self._sessions: dict[tuple[str, str], VolumeSession] = {}
        self._sessions_lock = threading.Lock()

    def start(self) -> None:
        self.prefetcher.start()

    def stop(self) -> None:
        self.jobs.shutdown()
        self.prefetcher.stop()

    # volumes

    def add_volume(self, given_id: str, metadata: VolumeMetadata, body: bytes) -> tuple[Volume, bool]:
        """Decode, verify the content id, keep; returns (volume, newly stored)."""
        existing = self.volumes.get(given_id)
        if existing is not None:
            return existing, False
        _check_geometry(metadata)
        try:
            array = decode_array(body, metadata.shape, metadata.dtype, self.limits.volume_budget_bytes)
        except OverflowError as error:
            raise TooLarge("volume_too_large", f"{error}: the server's volume budget "
                           "(--memory-budget) is smaller than this volume") from None
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise InputError("the volume contains NaN or infinite values; replace them before uploading")
        actual = volume_id(array, metadata.spacing, metadata.origin, metadata.direction)
        if actual != given_id:
            raise Mismatch("content_mismatch", f"the data hashes to {actual}, not {given_id}: compute the id with "
                           "sammed2d.ids.volume_id over the same voxels and geometry")
        geometry = Geometry(metadata.spacing, metadata.origin, metadata.direction)
        volume = Volume(array, geometry, source=f"upload {given_id}")
        self.volumes.put(given_id, volume)
        return volume, True

    def volume(self, given_id: str) -> Volume:
        volume = self.volumes.get(given_id)
        if volume is None:
            raise Unknown("volume_unknown", f"volume {given_id} is not on the server (never uploaded, deleted or "
                          "evicted to stay within the memory budget): upload it again")
        return volume

    def _forget_sessions(self, given_id: str) -> None:
        """An evicted volume takes its sessions and kept propagations (which hold its voxels) with it."""
        with self._sessions_lock:
            for key in [key for key in self._sessions if key[0] == given_id]:
                del self._sessions[key]
        self._propagations.remove_where(lambda key: key[0] == given_id)

    def session(self, given_id: str, preset: str) -> VolumeSession:
        volume = self.volume(given_id)
        with self._sessions_lock:
            session = self._sessions.get((given_id, preset))
        if session is not None:
            return session
        # fitted outside the lock: a percentile over a large volume takes a while
        mapping = fit_mapping(volume.array, preset)
        session = VolumeSession(volume, self.predictor, mapping, self.embeddings, self.lock, content_id=given_id)
        with self._sessions_lock:
            session = self._sessions.setdefault((given_id, preset), session)
        if self.volumes.get(given_id) is None:  # evicted meanwhile: do not keep its voxels alive here
            self._forget_sessions(given_id)
        return session

    # segmentation

    def segment_slice(self, given_id: str, request: SegmentSliceRequest) -> SegmentOutcome:
        session = self.session(given_id, request.preset)
        context = SliceContext(given_id, request.preset, request.axis, request.index)
        previous = self._previous(request.previous, context)
        points, labels, box = _prompt_arrays(request)
        cached = session.is_cached(request.axis, request.index)  # or being encoded (by the prefetcher, say)
        prediction = session.segment(request.axis, request.index, points, labels, box,
                                     None if previous is None else previous.low_res_logits, request.multimask)
        if request.prefetch:
            self.prefetcher.schedule(session, request.axis, request.index)
        return self._outcome(prediction, context, previous, cached)

    def segment_image(self, request: SegmentImageRequest) -> SegmentOutcome:
        key = ("image", request.image_id, request.preset, *self.model.identity)
        cached = self.embeddings.claimed(key)
        embedding = self.embeddings.get_or_compute(key, lambda: self._encode_image(request))
        context = ImageContext(request.image_id, request.preset)
        previous = self._previous(request.previous, context)
        points, labels, box = _prompt_arrays(request)
        with self.lock:  # the lock orders model calls; the predictor itself holds no state
            logits = None if previous is None else previous.low_res_logits
            prediction = self.predictor.predict(embedding, points, labels, box, logits, request.multimask)
        return self._outcome(prediction, context, previous, cached)

    def _encode_image(self, request: SegmentImageRequest) -> ImageEmbedding:
        if request.image is None:
            raise Unknown("image_not_cached", f"the server has no embedding for image {request.image_id}: "
                          "send the pixels with the prompt")
        pixels = self._decode_image(request)
        mapped = fit_mapping(pixels, request.preset).apply(pixels)
        with self.lock:
            return self.predictor.encode(mapped)

    def _decode_image(self, request: SegmentImageRequest) -> np.ndarray:
        assert request.image is not None
        shape = request.image.shape
        if len(shape) == 3 and shape[2] != 3:
            raise InputError(f"an image is H×W or H×W×3 (RGB); got shape {shape}")
        try:
            pixels = decode_image(request.image.model_dump(), self.limits.max_image_bytes)
        except OverflowError as error:
            raise TooLarge("image_too_large", str(error)) from None
        actual = image_id(pixels)
        if actual != request.image_id:
            raise Mismatch("content_mismatch", f"the pixels hash to {actual}, not {request.image_id}: compute the "
                           "id with sammed2d.ids.image_id over the same array")
        return pixels

    def _previous(self, handle: str | None, context: ResultContext) -> StoredResult | None:
        if handle is None:
            return None
        previous = self.results.get(handle)
        if previous is None:
            raise Unknown("handle_unknown", f"result {handle} is no longer on the server (only the latest "
                          f"{self.limits.max_results} are kept): segment again without 'previous'")
        if previous.context != context:
            raise Mismatch("handle_mismatch", f"result {handle} belongs to {previous.context}, not {context}: "
                           "refine a result of the same slice")
        return previous

    def _outcome(self, prediction: Prediction, context: ResultContext, previous: StoredResult | None,
                 cached: bool) -> SegmentOutcome:
        mask = prediction.masks[0]
        score = float(prediction.scores[0])
        handle = self.results.add(StoredResult(context, mask, prediction.low_res_logits[0], score))
        packed = pack_mask(mask, None if previous is None else previous.mask)
        return SegmentOutcome(packed, score, int(mask.sum()), handle, cached)

    # Everything mode

    def suggestion(self, given_id: str, request: SuggestSliceRequest) -> SuggestionRun:
        """Everything mode on one slice, checked now (so a bad request is refused before any answer starts) and
        run when called: its suggestions, and whether the slice's embedding was ready. Its model calls yield to
        clicks (a grid takes m² decoder calls), one batch of grid points at a time."""
        session = self.session(given_id, request.preset)
        session.volume.check_slice(request.axis, request.index)
        settings = EverythingSettings(**request.settings.model_dump(exclude_none=True))

        def run(progress: ProgressCallback | None = None, cancel: CancelCheck | None = None
                ) -> tuple[Suggestions, bool]:
            cached = session.is_cached(request.axis, request.index)
            with self.lock.background():
                return session.suggest(request.axis, request.index, settings, progress, cancel), cached

        return run

    # propagation

    def start_propagation(self, given_id: str, request: PropagateRequest, emit: Emit) -> PropagationJob:
        session = self.session(given_id, request.preset)
        options = request.settings.model_dump(exclude_none=True)
        for pair in ("slice_range", "discover_percentiles"):  # tuples in the engine, lists in JSON
            if pair in options:
                options[pair] = tuple(options[pair])
        keys = {key.index: self._key(given_id, request, key) for key in request.keys}
        propagation = self._propagation_for(session, given_id, request, options)
        propagation.sync_keys(keys)
        job = PropagationJob(propagation, given_id, self.lock, emit)
        self.jobs.start(job)
        return job

    def _propagation_for(self, session: VolumeSession, given_id: str, request: PropagateRequest,
                         options: dict) -> Propagation:
        """The propagation this volume, axis, intensity mapping and settings had last time, so that a correction
        re-runs only the chains whose key changed; a new one when none is kept or a job is still using it."""
        identity = (given_id, request.axis, request.preset, json.dumps(options, sort_keys=True, default=list))
        kept = self._propagations.get(identity)
        if kept is None or self.jobs.busy(kept):
            kept = Propagation(session, request.axis, PropagationSettings(**options))
            self._propagations.put(identity, kept)
        return kept

    def _key(self, given_id: str, request: PropagateRequest,
             key: PropagationKey) -> tuple[np.ndarray, np.ndarray | None, float]:
        if (key.handle is None) == (key.mask is None):
            raise InputError(f"key slice {key.index}: give either a result handle or a mask, not both or neither")
        if key.handle is not None:
            stored = self._previous(key.handle, SliceContext(given_id, request.preset, request.axis, key.index))
            assert stored is not None
            return stored.mask, stored.low_res_logits, stored.score
        return unpack_mask(key.mask.model_dump()), None, 1.0


def _check_geometry(metadata: VolumeMetadata) -> None:
    wire_dtype(metadata.dtype)
    if len(metadata.shape) != 3:
        raise InputError(f"a volume has three dimensions (K, J, I); got shape {list(metadata.shape)}")
    values = {"spacing": metadata.spacing, "origin": metadata.origin, "direction": metadata.direction}
    sizes = {"spacing": 3, "origin": 3, "direction": 9}
    for name, vector in values.items():
        if len(vector) != sizes[name] or not np.isfinite(vector).all():
            raise InputError(f"{name} must be {sizes[name]} finite numbers; got {list(vector)}")
    if min(metadata.spacing) <= 0:
        raise InputError(f"spacing must be positive; got {list(metadata.spacing)}")


def _prompt_arrays(prompt: Prompt) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Prompts as arrays; the engine checks them against the slice (``SlicePrompt.check``)."""
    points = np.array([(p.x, p.y) for p in prompt.points], dtype=np.float64) if prompt.points else None
    labels = np.array([p.label for p in prompt.points], dtype=np.int64) if prompt.points else None
    box = None if prompt.box is None else np.asarray(prompt.box, dtype=np.float64)
    return points, labels, box
