"""Run every model on every case in every chosen mode and keep one row per mask and per volume.

Each slice is encoded once per model (embeddings are cached per slice) and every mode reuses it,
so encoder and decoder time are measured apart: the encoder once per slice, the decoder per mode.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

from ..everything import EverythingSettings, Suggestions, generate
from ..intensity import fit_mapping
from ..metrics import dice, hd95, iou
from ..models import LoadedModel
from ..predictor import ImageEmbedding, Prediction, Predictor
from ..progress import progress_bar
from ..propagation import Propagation, PropagationSettings
from ..session import EmbeddingCache, VolumeSession
from ..paper_prompts import EIGHT_CONNECTED, box_from_mask
from ..volumes import Axis, stack_slices
from .cases import Case, ImageSetCase, Structure, VolumeCase
from .factors import MaskFactors, mask_factors
from .modes import PROPAGATION_MODES, SliceSuggestions, evaluate_modes, propagation_key_slices, structure_rng
from .prompts import huang_points
from ..errors import InputError

logger = logging.getLogger(__name__)


@dataclass
class BenchmarkModel:
    """A loaded model under the name it is reported with; its embedding cache may be shared between runs."""

    key: str
    model: LoadedModel
    cache: EmbeddingCache = field(default_factory=EmbeddingCache)


@dataclass(frozen=True)
class BenchmarkSettings:
    modes: tuple[str, ...]
    axis: Axis = "K"
    labels: tuple[str, ...] = ()  # label values or names; empty: all
    min_mask_pixels: int = 100  # at 256×256, the paper's filter
    seed: int = 0
    progress: bool = True
    #: first and last slice (inclusive) along the axis; 3D metrics then cover this slab only
    slices: tuple[int, int] | None = None
    #: the everything mode's grid and filters (default: SAM's automatic mask generator)
    everything: EverythingSettings = EverythingSettings()


@dataclass(frozen=True)
class MaskRow:
    model: str
    mode: str
    case: str
    label: str
    slice: int
    component: int
    pixels: int
    dice: float
    iou: float
    hd95_mm: float  # NaN when the prediction is empty; in pixels for 2D sets, which carry no spacing
    score: float  # the model's IoU estimate (NaN for propagated slices)
    decoder_seconds: float | None  # None for propagation (its time is per volume)
    area_fraction: float  # of the ground-truth mask; the three factors are defined in .factors
    aspect_ratio: float
    contrast: float


@dataclass(frozen=True)
class VolumeRow:
    model: str
    mode: str
    case: str
    label: str
    dice_3d: float
    hd95_mm: float
    slices: int  # slices with a predicted mask
    seconds: float | None  # propagation only: encoder and decoder for the whole volume


@dataclass
class BenchmarkResults:
    masks: list[MaskRow] = field(default_factory=list)
    volumes: list[VolumeRow] = field(default_factory=list)
    #: model → (encoder seconds, slices encoded)
    encoder: dict[str, tuple[float, int]] = field(default_factory=dict)


def run_benchmark(
    models: Sequence[BenchmarkModel], cases: Sequence[Case], settings: BenchmarkSettings
) -> BenchmarkResults:
    results = BenchmarkResults()
    for entry in models:
        predictor = Predictor(entry.model)
        results.encoder[entry.key] = (0.0, 0)
        for case in cases:
            if isinstance(case, VolumeCase):
                _run_volume(entry, predictor, case, settings, results)
            else:
                _run_image_set(entry, predictor, case, settings, results)
    return results


class _EncodeTimer:
    """Times embeddings that are actually computed (cache hits cost nothing and are not counted)."""

    def __init__(self, results: BenchmarkResults, key: str) -> None:
        self.results, self.key = results, key

    def ensure(self, is_cached: Callable[[], bool], encode: Callable[[], object]) -> None:
        if not is_cached():
            self.record(1, encode)

    def record(self, slices: int, encode: Callable[[], object]) -> None:
        if slices == 0:
            return
        started = time.perf_counter()
        encode()
        seconds, count = self.results.encoder[self.key]
        self.results.encoder[self.key] = (seconds + time.perf_counter() - started, count + slices)


def _run_volume(entry: BenchmarkModel, predictor: Predictor, case: VolumeCase, settings: BenchmarkSettings,
                results: BenchmarkResults) -> None:
    axis = settings.axis
    session = VolumeSession(case.image, predictor, fit_mapping(case.image.array, case.preset), entry.cache)
    slab = _slab(case, settings)
    structures = [structure for structure in case.structures(axis, settings.labels, settings.min_mask_pixels)
                  if slab[0] <= structure.index <= slab[1]]
    if not structures:
        logger.warning("%s has no mask to evaluate along %s (labels %s, masks under %d pixels at 256² dropped)",
                       case.name, axis, list(settings.labels) or "all", settings.min_mask_pixels)
    spacing = case.image.pixel_spacing(axis)
    timer = _EncodeTimer(results, entry.key)
    modes_2d = tuple(mode for mode in settings.modes if mode not in PROPAGATION_MODES)
    predicted: dict[tuple[str, str], dict[int, np.ndarray]] = {}
    missing = [index for index in sorted({s.index for s in structures}) if not session.is_cached(axis, index)]
    everything = SliceSuggestions()
    timer.record(len(missing), lambda: session.encode_ahead(axis, missing))  # batched where the device gains
    progress = progress_bar(structures, desc=f"{entry.key} {case.name}", unit="mask", disable=not settings.progress)
    for structure in progress:  # a slice evicted from a small cache meanwhile is encoded again, and counted
        timer.ensure(lambda: session.is_cached(axis, structure.index),
                     lambda: session.embedding(axis, structure.index))
        factors = mask_factors(structure.mask, session.mapping.apply(case.image.slice(axis, structure.index)),
                               spacing)

        def segment(**prompt) -> Prediction:
            return session.segment(axis, structure.index, **prompt)

        def suggest() -> Suggestions:
            return everything.get(structure.index, lambda: session.suggest(axis, structure.index, settings.everything))

        for outcome in evaluate_modes(segment, structure.mask, modes_2d, settings.seed,
                                      _identity(case.name, structure), suggest):
            results.masks.append(_mask_row(entry.key, outcome.mode, case.name, structure, outcome.mask, spacing,
                                           outcome.score, outcome.decoder_seconds, factors))
            slices = predicted.setdefault((outcome.mode, structure.label), {})
            slices[structure.index] = slices.get(structure.index, False) | outcome.mask
    keys = {case.label_key(value): value for value in case.label_values(settings.labels)}
    for mode in modes_2d:
        for label, value in keys.items():
            slices = predicted.get((mode, label), {})
            volume = stack_slices(slices, axis, case.image.shape, dtype=bool)
            results.volumes.append(_volume_row(entry.key, mode, case, axis, slab, label, value, volume, None))
    for mode in settings.modes:
        if mode in PROPAGATION_MODES:
            for label, value in keys.items():
                _run_propagation(entry.key, session, case, mode, label, value, settings, results)


def _run_propagation(key: str, session: VolumeSession, case: VolumeCase, mode: str, label: str, value: int,
                     settings: BenchmarkSettings, results: BenchmarkResults) -> None:
    """Prompts on key slices (each on the label's largest part there), propagated through the volume: one on the
    slice where the label is largest, or boxes on its first and last slices (and the middle one), filled between."""
    axis = settings.axis
    slab = _slab(case, settings)
    areas = (case.labels.array == value).sum(axis=_other_dimensions(axis))
    areas[: slab[0]] = areas[slab[1] + 1 :] = 0
    if not areas.any():
        logger.info("%s: label %s is absent from slices %d..%d; no %s", case.name, label, *slab, mode)
        return
    keys = propagation_key_slices(areas, mode)
    started = time.perf_counter()
    seeds = {}
    for index in keys:
        components = _largest_component(case.labels.slice(axis, index) == value)
        if mode == "propagate-click":
            rng = structure_rng(settings.seed, f"{case.name}|{axis}|{index}|{label}", mode)
            points, labels = huang_points(components, 1, 0, rng)
            seed = session.segment(axis, index, points=points, point_labels=labels)
        else:
            seed = session.segment(axis, index, box=box_from_mask(components))
        if seed.masks[0].any():
            seeds[index] = seed
        else:
            logger.info("%s: %s found nothing on the key slice %d of label %s", case.name, mode, index, label)
    if seeds:
        bounds = (min(keys), max(keys)) if len(keys) > 1 else slab
        propagation = Propagation(session, axis, PropagationSettings(slice_range=bounds))
        for index, seed in seeds.items():
            propagation.set_key(index, seed.masks[0], seed.low_res_logits[0], float(seed.scores[0]))
        propagation.run()
        volume = propagation.labelmap()
    else:
        volume = np.zeros(case.image.shape, dtype=bool)
    seconds = time.perf_counter() - started
    spacing = case.image.pixel_spacing(axis)
    for index in range(slab[0], slab[1] + 1):
        truth_slice = case.labels.slice(axis, index) == value
        if truth_slice.any():
            whole = Structure(index, label, 0, truth_slice)
            predicted_slice = np.take(volume, index, axis="KJI".index(axis))
            factors = mask_factors(truth_slice, session.mapping.apply(case.image.slice(axis, index)), spacing)
            results.masks.append(_mask_row(key, mode, case.name, whole, predicted_slice, spacing, float("nan"), None,
                                           factors))
    results.volumes.append(_volume_row(key, mode, case, axis, slab, label, value, volume, seconds))


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labelled, _ = ndimage.label(mask, structure=EIGHT_CONNECTED)
    return labelled == int(np.argmax(np.bincount(labelled.ravel())[1:])) + 1


def _run_image_set(entry: BenchmarkModel, predictor: Predictor, case: ImageSetCase, settings: BenchmarkSettings,
                   results: BenchmarkResults) -> None:
    images, structures = case.read(settings.labels)
    skipped = [mode for mode in settings.modes if mode in PROPAGATION_MODES]
    if skipped:
        logger.info("%s is a 2D set: %s need volumes and are skipped", case.name, ", ".join(skipped))
    modes_2d = tuple(mode for mode in settings.modes if mode not in PROPAGATION_MODES)
    timer = _EncodeTimer(results, entry.key)
    identity = predictor.model.identity
    everything = SliceSuggestions()
    progress = progress_bar(structures, desc=f"{entry.key} {case.name}", unit="mask", disable=not settings.progress)
    for structure in progress:
        cache_key = ("image-set", case.name, structure.index, *identity)

        def encode() -> ImageEmbedding:
            embedding = predictor.encode(images[structure.index])
            entry.cache.put(cache_key, embedding)
            return embedding

        timer.ensure(lambda: cache_key in entry.cache, encode)
        embedding = entry.cache.get(cache_key) or encode()
        factors = mask_factors(structure.mask, images[structure.index])

        def segment(**prompt) -> Prediction:
            return predictor.predict(embedding, **prompt)

        def suggest() -> Suggestions:
            return everything.get(structure.index, lambda: generate(predictor, embedding, settings.everything))

        for outcome in evaluate_modes(segment, structure.mask, modes_2d, settings.seed,
                                      _identity(case.name, structure), suggest):
            results.masks.append(_mask_row(entry.key, outcome.mode, case.name, structure, outcome.mask, (1.0, 1.0),
                                           outcome.score, outcome.decoder_seconds, factors))


def _identity(case: str, structure: Structure) -> str:
    return f"{case}|{structure.index}|{structure.label}|{structure.component}"


def _mask_row(model: str, mode: str, case: str, structure: Structure, mask: np.ndarray, spacing: tuple[float, float],
              score: float, seconds: float | None, factors: MaskFactors) -> MaskRow:
    truth = structure.mask
    return MaskRow(model, mode, case, structure.label, structure.index, structure.component, int(truth.sum()),
                   dice(mask, truth), iou(mask, truth), hd95(mask, truth, spacing), score, seconds,
                   factors.area_fraction, factors.aspect_ratio, factors.contrast)


def _other_dimensions(axis: Axis) -> tuple[int, int]:
    """Array dimensions (K, J, I order) within a slice normal to ``axis``."""
    along = "KJI".index(axis)
    return tuple(d for d in range(3) if d != along)  # type: ignore[return-value]


def _slab(case: VolumeCase, settings: BenchmarkSettings) -> tuple[int, int]:
    last = case.image.slice_count(settings.axis) - 1
    first, end = settings.slices or (0, last)
    if not 0 <= first <= end <= last:
        raise InputError(f"slices {first}..{end} are outside {case.name} (0..{last} along {settings.axis})")
    return first, end


def _volume_row(model: str, mode: str, case: VolumeCase, axis: Axis, slab: tuple[int, int], label: str, value: int,
                volume: np.ndarray, seconds: float | None) -> VolumeRow:
    outside = np.ones(case.labels.slice_count(axis), dtype=bool)
    outside[slab[0] : slab[1] + 1] = False
    truth = case.labels.array == value
    np.moveaxis(truth, "KJI".index(axis), 0)[outside] = False  # a view: clears the slices outside the slab
    spacing = tuple(reversed(case.image.geometry.spacing))  # array order K, J, I
    slices = int(np.count_nonzero(volume.any(axis=_other_dimensions(axis))))
    return VolumeRow(model, mode, case.name, label, dice(volume, truth), hd95(volume, truth, spacing), slices, seconds)
