"""Turn one or a few annotated key slices into a 3D segmentation, slice by slice.

Each slice is prompted from its neighbour's result (the box of its mask with a margin, its low-res
logits as the mask prompt, optionally its innermost point), walking away from the key slices in both
directions until the structure ends. Between two key slices each half is predicted from the nearer
key; key slices are never overwritten. After a key changes, only the slices whose chain of
predictions passes through it are recomputed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import ndimage

from .masks import bounding_box
from .session import VolumeSession
from .volumes import Axis, stack_slices

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, int], None]  # (done, planned, slice index just finished)
CancelCheck = Callable[[], bool]


@dataclass(frozen=True)
class PropagationSettings:
    """How each slice is prompted from its neighbour, and when the structure counts as ended."""

    box_margin: float = 0.0  # fraction of the box size added on every side
    min_box_margin: float = 1.0  # pixels
    use_mask_prompt: bool = True
    use_point: bool = False
    #: re-prompt each slice with the box of its own first answer (and that answer's logits), so a
    #: structure that shrinks from one slice to the next is not filled out to the previous, larger box
    refine_passes: int = 1
    min_score: float = 0.5  # the model's own IoU estimate
    min_area: int = 4  # pixels
    max_growth: float = 2.0  # area ratio to the previous slice
    max_growth_from_key: float = 3.0  # area ratio to the key slice: slow creep is leakage too
    min_shrink: float = 0.15
    min_overlap: float = 0.3  # fraction of the new mask inside the prompt box (previous mask + margin)
    #: fraction of the new mask's voxels whose intensity lies in the key mask's 5–95 % range: when the
    #: structure ends the model still fills the box, but with tissue that looks different
    min_appearance: float = 0.3
    slice_range: tuple[int, int] | None = None  # inclusive; default the whole axis

    def __post_init__(self) -> None:
        if self.min_area < 1:
            raise ValueError("min_area must be at least 1 pixel: an empty mask cannot prompt the next slice")
        if self.refine_passes < 0 or self.box_margin < 0 or self.min_box_margin < 0:
            raise ValueError("refine_passes and box margins cannot be negative")


@dataclass(frozen=True)
class SliceResult:
    mask: np.ndarray  # bool, slice pixels
    score: float
    low_res_logits: np.ndarray | None
    source: int  # the key slice this chain started from
    version: int  # that key's version when computed
    #: the key's 5–95 % intensity range (raw volume values), the appearance its chain must keep
    intensity_range: tuple[float, float]


@dataclass(frozen=True)
class Stop:
    source: int
    direction: int  # +1 or -1 along the axis
    index: int  # the first slice not segmented
    reason: str
    version: int


@dataclass
class PropagationReport:
    computed: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)
    stops: list[Stop] = field(default_factory=list)
    cancelled: bool = False


@dataclass(frozen=True)
class _Chain:
    source: int
    direction: int
    indices: list[int]


class Propagation:
    """Key slices and the slices propagated from them, along one axis of a volume session."""

    def __init__(self, session: VolumeSession, axis: Axis, settings: PropagationSettings | None = None) -> None:
        self.session = session
        self.axis = axis
        self.settings = settings or PropagationSettings()
        self.keys: dict[int, SliceResult] = {}
        self.results: dict[int, SliceResult] = {}
        self._stops: dict[tuple[int, int], Stop] = {}
        self._versions = 0
        count = session.volume.slice_count(axis)
        first, last = self.settings.slice_range or (0, count - 1)
        if not 0 <= first <= last < count:
            raise ValueError(f"slice range {first}..{last} is outside the volume (0..{count - 1} along {axis})")
        self.first, self.last = first, last

    def set_key(self, index: int, mask: np.ndarray, low_res_logits: np.ndarray | None = None, score: float = 1.0) -> None:
        """Add or replace a key slice (a user's mask, or the model's answer to the user's prompt)."""
        if not self.first <= index <= self.last:
            raise ValueError(f"key slice {index} lies outside the propagation range {self.first}..{self.last}")
        image = self.session.volume.slice(self.axis, index)
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != image.shape:
            raise ValueError(f"the mask for slice {index} has shape {mask.shape}; the slice is {image.shape}")
        if not mask.any():
            raise ValueError(f"the key mask on slice {index} is empty")
        self._versions += 1
        low, high = np.percentile(image[mask], (5, 95))
        self.keys[index] = SliceResult(mask, score, low_res_logits, index, self._versions, (float(low), float(high)))
        self.results.pop(index, None)

    def remove_key(self, index: int) -> None:
        del self.keys[index]
        self._versions += 1

    def masks(self) -> dict[int, np.ndarray]:
        """Every segmented slice: keys and propagated ones."""
        combined = {index: result.mask for index, result in self.results.items()}
        combined.update({index: key.mask for index, key in self.keys.items()})
        return combined

    def labelmap(self) -> np.ndarray:
        """The (K, J, I) boolean volume of all segmented slices."""
        return stack_slices(self.masks(), self.axis, self.session.volume.shape, dtype=bool)

    def run(
        self, progress: ProgressCallback | None = None, cancel: CancelCheck | None = None, keep_partial: bool = True
    ) -> PropagationReport:
        """Predict every slice that is missing or depends on a changed key; reuse the rest."""
        if not self.keys:
            raise ValueError("propagation needs at least one key slice")
        before = dict(self.results), dict(self._stops)
        chains = self._plan()
        planned = {index for chain in chains for index in chain.indices}
        self.results = {index: result for index, result in self.results.items() if index in planned}
        report = PropagationReport()
        total = len(planned)
        for chain in chains:
            if not self._walk(chain, report, total, progress, cancel):
                report.cancelled = True
                if not keep_partial:
                    self.results, self._stops = before
                break
        return report

    def _plan(self) -> list[_Chain]:
        keys = sorted(self.keys)
        chains = [_Chain(keys[0], -1, list(range(keys[0] - 1, self.first - 1, -1)))]
        for lower, upper in zip(keys, keys[1:]):
            middle = (lower + upper) // 2
            chains.append(_Chain(lower, +1, list(range(lower + 1, middle + 1))))
            chains.append(_Chain(upper, -1, list(range(upper - 1, middle, -1))))
        chains.append(_Chain(keys[-1], +1, list(range(keys[-1] + 1, self.last + 1))))
        return [chain for chain in chains if chain.indices]

    def _walk(
        self, chain: _Chain, report: PropagationReport, total: int, progress: ProgressCallback | None,
        cancel: CancelCheck | None,
    ) -> bool:
        key = self.keys[chain.source]
        previous = key
        stop = self._stops.get((chain.source, chain.direction))
        reusing = True
        for index in chain.indices:
            cached = self.results.get(index)
            if reusing and cached is not None and cached.source == chain.source and cached.version == key.version:
                report.reused.append(index)
                previous = cached
                continue
            if reusing and stop is not None and stop.version == key.version and stop.index == index:
                report.stops.append(stop)
                self._drop_from(chain, index)
                return True
            reusing = False
            if cancel is not None and cancel():
                return False
            result, reason = self._predict(index, previous, key)
            if result is None:
                stop = Stop(chain.source, chain.direction, index, reason, key.version)
                self._stops[(chain.source, chain.direction)] = stop
                report.stops.append(stop)
                self._drop_from(chain, index)
                logger.info("propagation from slice %d stopped at %d: %s", chain.source, index, reason)
                return True
            self.results[index] = result
            report.computed.append(index)
            previous = result
            if progress is not None:
                progress(len(report.computed) + len(report.reused), total, index)
        self._stops.pop((chain.source, chain.direction), None)
        return True

    def _drop_from(self, chain: _Chain, index: int) -> None:
        for later in chain.indices[chain.indices.index(index):]:
            self.results.pop(later, None)

    def _predict(self, index: int, previous: SliceResult, key: SliceResult) -> tuple[SliceResult | None, str]:
        settings = self.settings
        previous_mask = previous.mask
        box = _box_with_margin(previous_mask, settings.box_margin, settings.min_box_margin)
        points = labels = None
        if settings.use_point:
            points, labels = [_innermost_point(previous_mask)], [1]
        logits = previous.low_res_logits if settings.use_mask_prompt else None
        prediction = self.session.segment(self.axis, index, points=points, point_labels=labels, box=box, mask_logits=logits)
        for _ in range(settings.refine_passes):
            if prediction.masks[0].sum() < settings.min_area:
                break
            own_box = _box_with_margin(prediction.masks[0], settings.box_margin, settings.min_box_margin)
            own_logits = prediction.low_res_logits[0] if settings.use_mask_prompt else None
            prediction = self.session.segment(
                self.axis, index, points=points, point_labels=labels, box=own_box, mask_logits=own_logits
            )
        mask, score = prediction.masks[0], float(prediction.scores[0])
        values = self.session.volume.slice(self.axis, index)[mask]
        low, high = key.intensity_range
        appearance = float(np.mean((values >= low) & (values <= high))) if values.size else 0.0
        reason = _stop_reason(mask, score, appearance, previous_mask, box, settings)
        if not reason and mask.sum() > settings.max_growth_from_key * key.mask.sum():
            reason = f"area grew ×{mask.sum() / key.mask.sum():.1f} beyond the key slice's"
        if reason:
            return None, reason
        logits = prediction.low_res_logits[0]
        return SliceResult(mask, score, logits, key.source, key.version, key.intensity_range), ""


def _box_with_margin(mask: np.ndarray, fraction: float, minimum: float) -> list[float]:
    x0, y0, x1, y1 = bounding_box(mask)  # callers pass non-empty masks
    height, width = mask.shape
    dx = max((x1 - x0) * fraction, minimum)
    dy = max((y1 - y0) * fraction, minimum)
    return [max(x0 - dx, 0.0), max(y0 - dy, 0.0), min(x1 + dx, float(width)), min(y1 + dy, float(height))]


def _innermost_point(mask: np.ndarray) -> list[float]:
    distance = ndimage.distance_transform_edt(mask)
    row, col = np.unravel_index(int(np.argmax(distance)), mask.shape)
    return [col + 0.5, row + 0.5]


def _stop_reason(
    mask: np.ndarray, score: float, appearance: float, previous: np.ndarray, box: list[float], settings: PropagationSettings
) -> str:
    area, previous_area = int(mask.sum()), int(previous.sum())
    if area < settings.min_area:
        return "empty mask"
    if score < settings.min_score:
        return f"score {score:.2f} below {settings.min_score:g}"
    if area > settings.max_growth * previous_area:
        return f"area grew ×{area / previous_area:.1f}"
    if area < settings.min_shrink * previous_area:
        return f"area collapsed to {area / previous_area:.0%}"
    if appearance < settings.min_appearance:
        return f"only {appearance:.0%} of the mask looks like the key slice's structure"
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    inside = mask[y0:y1, x0:x1].sum() / area
    if inside < settings.min_overlap:
        return f"only {inside:.0%} of the mask near the previous one"
    return ""
