"""Turn one or a few annotated key slices into a 3D segmentation, slice by slice.

Each slice is prompted from its neighbour's result (the box of its mask with a margin, its low-res
logits as the mask prompt, optionally its innermost point), walking away from the key slices in both
directions until the structure ends. Each answer loses what its outline took in that does not look like
the key slice's structure. The box also covers what the slice before the neighbour had at that
place, so a structure that narrows on one slice and widens again is not cut to the narrow slice's box.
Each connected part of the neighbour's mask is prompted on its own, and parts that no neighbour leads
to (a lesion splitting away from its largest slice) are looked for near the key mask and kept only if
they look like it. The checks in ``STOP_CHECKS`` decide where a chain ends. Between two key slices the
chain from the larger key mask goes first, since a box drawn around a larger cross-section still holds a
smaller one while a growing structure outruns its box, and it may grow beyond its key's area; where it
stops, the other key's chain fills the rest. The two chains have met where the second one's answer touches
the first one's; until then they follow different parts (a lesion in two pieces, each key on one of them),
and a slice both reached shows both. Key slices are never overwritten. After a key changes, only
the slices whose chain of predictions passes through it are recomputed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Callable, Mapping

import numpy as np
from scipy import ndimage

from .errors import InputError
from .masks import bounding_box
from .metrics import iou
from .session import VolumeSession
from .volumes import Axis, stack_slices

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, int], None]  # (done, planned, slice index just finished)
CancelCheck = Callable[[], bool]


@dataclass(frozen=True)
class PropagationSettings:
    """How each slice is prompted from its neighbour, and when the structure counts as ended."""

    #: pixels of the model's input added to every side of the prompt box, so a box drawn around the previous
    #: mask looks like the boxes the model learnt from, whatever the slice's own pixel size: LiteMedSAM's
    #: published inference widens its box by 3 pixels of the 256 input, SAM-Med2D trains with boxes jittered
    #: by up to 5. (A 6-pixel margin wins the held-out protocol's leave-one-out by 0.015, but lies outside
    #: what either model was made for and takes lung2 a slice past its end.)
    box_margin: float = 3.0
    #: whether each answer also gets the neighbour's low-res logits as its mask prompt; None: as the model was
    #: trained. A model trained with boxes only never saw a mask prompt, and the logits it is fed shrink its
    #: answer slice after slice (LiteMedSAM on the chest CT's lungs: 3D Dice 0.52–0.59 with them, 0.86–0.88
    #: without, the oracle 0.84)
    use_mask_prompt: bool | None = None
    use_point: bool = False
    #: how many slices back the prompt box looks: each part of the previous mask is widened by the parts of
    #: the masks before it that lie in its box (measured: 2 recovers brain1's slice 13, which the narrow slice
    #: 14 cut to half, 0.834 → 0.860 3D Dice, and changes no other case by more than +0.004; 3 leaks on
    #: lung2); 1 = the previous slice only
    box_memory: int = 2
    #: re-prompt each slice with the box of its own first answer (and that answer's logits), so a
    #: structure that shrinks from one slice to the next is not filled out to the previous, larger box
    refine_passes: int = 1
    min_score: float = 0.5  # the model's own IoU estimate
    min_area: int = 4  # pixels
    max_growth: float = 2.0  # area ratio to the previous slice
    max_growth_from_key: float = 3.0  # area ratio to the key slice: slow creep is leakage too
    min_shrink: float = 0.15
    min_overlap: float = 0.3  # fraction of the new mask inside the prompt box (previous mask + margin)
    #: IoU between the answers to the box alone and to the box with the neighbour's logits as mask prompt:
    #: inside a structure both find it; past its end the neighbour's mask leads the model elsewhere than the
    #: box does (decided on the pyradiomics lesions: past their ends ≤ 0.08, inside ≥ 0.47)
    min_agreement: float = 0.2
    #: fraction of the new mask's voxels whose intensity lies in the key mask's 5–95 % range: when the
    #: structure ends the model still fills the box, but with tissue that looks different
    min_appearance: float = 0.3
    #: take from each answer the pixels outside the key mask's 5–95 % range that its outline reaches: where a
    #: structure shrinks, a box-prompted model fills the previous slice's box with the surroundings (lung
    #: around lung2's last slices: 3603 pixels against 1070), and the next box, drawn around them, takes in
    #: more. Pixels inside stay (holes are filled), so a structure with a varied interior keeps it
    trim_unlike_outline: bool = True
    #: a connected component of the previous mask smaller than this fraction of the mask is not prompted
    #: on its own: specks the model leaves around a structure are not parts of it
    min_part: float = 0.1
    #: how far from the key mask's outline (in its equivalent diameters) to look for parts of the structure
    #: that no part of the previous slice leads to, such as a lesion splitting below its largest slice; the
    #: area is anchored on the key, not on the chain, so a wrongly found part cannot walk the search away
    #: (measured: 1–2 find brain1's split part, 0.5 finds nothing, 3 runs off into other tissue); 0 = off, the
    #: default: its thresholds were fitted to brain1, and on the other cases it costs more than it finds
    #: (benchmarks/propagation_heldout.py: mean 3D Dice 0.640 with 1, 0.652 without)
    discover_radius: float = 0.0
    #: candidate parts are blobs of pixels within these percentiles of the key mask's intensities: narrower
    #: than the appearance check's 5–95 % because candidates are found without the model
    discover_percentiles: tuple[float, float] = (25.0, 75.0)
    #: smallest candidate blob, as a fraction of the key mask's area: smaller blobs are vessels and noise
    discover_min_size: float = 0.1
    #: a found part must stand out from the pixels around it at least this fraction as much as the key mask
    #: does (same sign): neighbouring tissue of the same intensity as the structure does not stand out
    discover_min_contrast: float = 0.5
    slice_range: tuple[int, int] | None = None  # inclusive; default the whole axis

    def __post_init__(self) -> None:
        if self.min_area < 1:
            raise InputError("min_area must be at least 1 pixel: an empty mask cannot prompt the next slice")
        if self.refine_passes < 0 or self.box_margin < 0:
            raise InputError("refine_passes and box_margin cannot be negative")
        if self.box_memory < 1:
            raise InputError("box_memory must be at least 1: the previous slice prompts the next")


@dataclass
class _SliceImage:
    """One slice's pixels, and their smoothed copy, made once per slice however many answers are trimmed."""

    index: int
    pixels: np.ndarray

    @cached_property
    def smoothed(self) -> np.ndarray:
        return smoothed(self.pixels)


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
class StopReason:
    """Why a chain ends on a slice: the check that failed, what it measured and the limit it missed."""

    check: str  # a key of STOP_CHECKS
    measured: float
    limit: float

    def __str__(self) -> str:
        return STOP_CHECKS[self.check].format(measured=self.measured, limit=self.limit)


#: every check that ends a chain, with how its failure reads
STOP_CHECKS = {
    "empty": "empty mask ({measured:.0f} pixels, fewer than {limit:.0f})",
    "score": "the model's IoU estimate {measured:.2f} is below {limit:g}",
    "growth": "area grew ×{measured:.1f} from the previous slice (limit ×{limit:g})",
    "shrink": "area collapsed to {measured:.0%} of the previous slice's (limit {limit:.0%})",
    "growth-from-key": "area grew ×{measured:.1f} beyond the key slice's (limit ×{limit:g})",
    "appearance": "only {measured:.0%} of the mask looks like the key slice's structure (limit {limit:.0%})",
    "placement": "only {measured:.0%} of the mask lies inside its prompt box (limit {limit:.0%})",
    "agreement": "the answers with and without the previous slice's mask overlap {measured:.0%} (limit {limit:.0%})",
}


@dataclass(frozen=True)
class Stop:
    source: int
    direction: int  # +1 or -1 along the axis
    index: int  # the first slice not segmented
    reason: StopReason
    version: int


@dataclass
class PropagationReport:
    computed: list[int] = field(default_factory=list)  # slices with an answer computed in this run
    reused: list[int] = field(default_factory=list)  # slices shown as an earlier run left them
    stops: list[Stop] = field(default_factory=list)
    cancelled: bool = False

    @property
    def done(self) -> int:
        """Slices answered so far (one both chains between two keys reached counts once)."""
        return len(set(self.computed) | set(self.reused))


@dataclass(frozen=True)
class _Part:
    mask: np.ndarray
    score: float
    logits: np.ndarray


@dataclass(frozen=True)
class _Chain:
    source: int
    direction: int
    indices: list[int]
    #: runs towards another key slice, so the structure may grow beyond its own key's area on the way
    bounded: bool = False
    #: the key slice whose chain was walked first over the same slices: this one ends where its answer touches
    #: that one's
    meets: int | None = None


class Propagation:
    """Key slices and the slices propagated from them, along one axis of a volume session."""

    def __init__(self, session: VolumeSession, axis: Axis, settings: PropagationSettings | None = None) -> None:
        self.session = session
        self.axis = axis
        self.settings = settings or PropagationSettings()
        self.keys: dict[int, SliceResult] = {}
        self.results: dict[int, SliceResult] = {}
        self._stops: dict[tuple[int, int], Stop] = {}
        #: a second chain's own answers on slices the first chain between the same keys also reached, where the
        #: two followed different parts, with the version of the first chain's key they were checked against
        self._beside: dict[int, tuple[SliceResult, int]] = {}
        #: where each second chain met the first: (slice, its key's version, the first chain's key's version)
        self._meetings: dict[tuple[int, int], tuple[int, int, int]] = {}
        self._versions = 0
        count = session.volume.slice_count(axis)
        first, last = self.settings.slice_range or (0, count - 1)
        if not 0 <= first <= last < count:
            raise InputError(f"slice range {first}..{last} is outside the volume (0..{count - 1} along {axis})")
        self.first, self.last = first, last
        #: the prompt box's margin on this axis's slices, (columns, rows) in slice pixels
        self.margin = _margin_on_slice(session, axis, self.settings.box_margin)
        mask_prompt = self.settings.use_mask_prompt
        #: whether answers are given the neighbour's logits as mask prompt
        self.mask_prompted = not session.predictor.model.spec.clicks_as_boxes if mask_prompt is None else mask_prompt

    def set_key(
        self, index: int, mask: np.ndarray, low_res_logits: np.ndarray | None = None, score: float = 1.0
    ) -> None:
        """Add or replace a key slice (a user's mask, or the model's answer to the user's prompt)."""
        if not self.first <= index <= self.last:
            raise InputError(f"key slice {index} lies outside the propagation range {self.first}..{self.last}")
        image = self.session.volume.slice(self.axis, index)
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != image.shape:
            raise InputError(f"the mask for slice {index} has shape {mask.shape}; the slice is {image.shape}")
        if not mask.any():
            raise InputError(f"the key mask on slice {index} is empty")
        self._versions += 1
        low, high = np.percentile(image[mask], (5, 95))
        self.keys[index] = SliceResult(mask, score, low_res_logits, index, self._versions, (float(low), float(high)))
        self.results.pop(index, None)
        self._beside.pop(index, None)

    def sync_keys(self, keys: Mapping[int, tuple[np.ndarray, np.ndarray | None, float]]) -> None:
        """Make the key slices exactly ``keys`` (index → mask, logits, score) and keep what still holds: a key
        whose mask is unchanged keeps its version, so its chains are reused by the next ``run``."""
        for index in [index for index in self.keys if index not in keys]:
            del self.keys[index]
        for index, (mask, logits, score) in keys.items():
            current = self.keys.get(index)
            if current is None or not np.array_equal(current.mask, np.asarray(mask, dtype=bool)):
                self.set_key(index, mask, logits, score)

    def masks(self) -> dict[int, np.ndarray]:
        """Every segmented slice: keys and propagated ones."""
        combined = {index: self.shown(index).mask for index in self.results}
        combined.update({index: key.mask for index, key in self.keys.items()})
        return combined

    def shown(self, index: int) -> SliceResult:
        """A propagated slice as shown: the first chain's answer, with a second chain's beside it if there is one."""
        result = self.results[index]
        beside = self._beside.get(index)
        if beside is None:
            return result
        return replace(result, mask=result.mask | beside[0].mask, score=min(result.score, beside[0].score))

    def labelmap(self) -> np.ndarray:
        """The (K, J, I) boolean volume of all segmented slices."""
        return stack_slices(self.masks(), self.axis, self.session.volume.shape, dtype=bool)

    def run(
        self, progress: ProgressCallback | None = None, cancel: CancelCheck | None = None, keep_partial: bool = True
    ) -> PropagationReport:
        """Predict every slice that is missing or depends on a changed key; reuse the rest."""
        if not self.keys:
            raise InputError("propagation needs at least one key slice")
        before = dict(self.results), dict(self._stops), dict(self._beside), dict(self._meetings)
        chains = self._plan()
        planned = {index for chain in chains for index in chain.indices}
        self.results = {index: result for index, result in self.results.items() if index in planned}
        self._beside = {index: beside for index, beside in self._beside.items() if index in planned}
        report = PropagationReport()
        total = len(planned)
        for chain in chains:
            if not self._walk(chain, report, total, progress, cancel):
                report.cancelled = True
                if not keep_partial:
                    self.results, self._stops, self._beside, self._meetings = before
                break
        report.computed = list(dict.fromkeys(report.computed))  # a slice both chains reached, once
        report.reused = [index for index in dict.fromkeys(report.reused) if index not in report.computed]
        return report

    def _plan(self) -> list[_Chain]:
        keys = sorted(self.keys)
        chains = [_Chain(keys[0], -1, list(range(keys[0] - 1, self.first - 1, -1)))]
        for lower, upper in zip(keys, keys[1:]):
            upward = list(range(lower + 1, upper))
            if self.keys[lower].mask.sum() >= self.keys[upper].mask.sum():
                chains += [_Chain(lower, +1, upward, True), _Chain(upper, -1, upward[::-1], True, meets=lower)]
            else:
                chains += [_Chain(upper, -1, upward[::-1], True), _Chain(lower, +1, upward, True, meets=upper)]
        chains.append(_Chain(keys[-1], +1, list(range(keys[-1] + 1, self.last + 1))))
        return [chain for chain in chains if chain.indices]

    def _walk(
        self, chain: _Chain, report: PropagationReport, total: int, progress: ProgressCallback | None,
        cancel: CancelCheck | None,
    ) -> bool:
        key = self.keys[chain.source]
        trail = [key]  # this chain's results so far, nearest last
        stop = self._stops.get((chain.source, chain.direction))
        reusing = True
        batch_size = self.session.predictor.model.encoder.batch_size
        for position, index in enumerate(chain.indices):
            met = self._first_chain_result(chain, index)
            own = self._own_result(chain, index, met)
            if reusing and own is not None:
                report.reused.append(index)
                trail.append(own)
                if progress is not None:  # a reused slice is part of the answer too (a stream sends every slice)
                    progress(report.done, total, index)
                continue
            meeting = None if met is None else (index, key.version, met.version)
            if reusing and meeting is not None and self._meetings.get((chain.source, chain.direction)) == meeting:
                self._drop_from(chain, index)
                return True
            if reusing and stop is not None and stop.version == key.version and stop.index == index:
                report.stops.append(stop)
                self._drop_from(chain, index)
                return True
            reusing = False
            if cancel is not None and cancel():
                return False
            # on a GPU the next slices of the chain are encoded together; a CPU does one at a time (batch size 1)
            self.session.encode_ahead(self.axis, chain.indices[position : position + batch_size])
            result, reason = self._predict(index, chain, trail[-self.settings.box_memory :], key)
            if meeting is not None and (result is None or (result.mask & met.mask).any()):
                # met: its answer joins the first chain's, or it ends where that one has come
                self._meetings[(chain.source, chain.direction)] = meeting
                self._drop_from(chain, index)
                return True
            if result is None:
                stop = Stop(chain.source, chain.direction, index, reason, key.version)
                self._stops[(chain.source, chain.direction)] = stop
                report.stops.append(stop)
                self._drop_from(chain, index)
                logger.info("propagation from slice %d stopped at %d: %s", chain.source, index, reason)
                return True
            if met is None:
                self.results[index] = result
            else:  # another part of the structure than the first chain followed here
                self._beside[index] = (result, met.version)
            report.computed.append(index)
            trail.append(result)
            if progress is not None:
                progress(report.done, total, index)
        self._stops.pop((chain.source, chain.direction), None)
        self._meetings.pop((chain.source, chain.direction), None)
        return True

    def _first_chain_result(self, chain: _Chain, index: int) -> SliceResult | None:
        """The current result of the chain this one ``meets`` on a slice, if that chain reached it."""
        result = self.results.get(index)
        if chain.meets is None or result is None or result.source != chain.meets or not self._current(result):
            return None
        return result

    def _own_result(self, chain: _Chain, index: int, met: SliceResult | None) -> SliceResult | None:
        """This chain's result on a slice from an earlier run, if it still holds (its key, and the first chain's
        result it was found beside, unchanged)."""
        if met is None:
            result = self.results.get(index)
        else:
            result, met_version = self._beside.get(index, (None, None))
            if met_version != met.version:
                return None
        return result if result is not None and result.source == chain.source and self._current(result) else None

    def _drop_from(self, chain: _Chain, index: int) -> None:
        """Forget this chain's results from ``index`` on (the other key's chain may still fill them)."""
        for later in chain.indices[chain.indices.index(index):]:
            if later in self.results and self.results[later].source == chain.source:
                del self.results[later]
            if later in self._beside and self._beside[later][0].source == chain.source:
                del self._beside[later]

    def _current(self, result: SliceResult) -> bool:
        """Whether a result comes from a key slice as it is now."""
        key = self.keys.get(result.source)
        return key is not None and key.version == result.version

    def _predict(
        self, index: int, chain: _Chain, recent: list[SliceResult], key: SliceResult
    ) -> tuple[SliceResult | None, StopReason | None]:
        """This slice from the chain's ``recent`` results (nearest last), or why the structure ends here."""
        settings = self.settings
        image = self._image(index)
        previous = recent[-1]
        logits = previous.low_res_logits
        earlier = [result.mask for result in recent[:-1]]
        parts: list[_Part] = []
        reasons: list[StopReason] = []  # the largest part's first
        for region in _parts(previous.mask, settings.min_area, settings.min_part):
            region = _widen_by_earlier(region, earlier)
            part, reason = self._follow(image, region, logits, key)
            if part is None:
                reasons.append(reason)
            else:
                parts.append(part)
        if not parts:
            return None, reasons[0]
        found = np.logical_or.reduce([part.mask for part in parts])
        if settings.discover_radius > 0:
            parts += self._discover(chain.direction, image, found, key)
        mask = np.logical_or.reduce([part.mask for part in parts])
        growth = mask.sum() / key.mask.sum()
        if not chain.bounded and growth > settings.max_growth_from_key:
            return None, StopReason("growth-from-key", float(growth), settings.max_growth_from_key)
        score = min(part.score for part in parts)
        logits = np.maximum.reduce([part.logits for part in parts])
        return SliceResult(mask, score, logits, key.source, key.version, key.intensity_range), None

    def _image(self, index: int) -> _SliceImage:
        return _SliceImage(index, self.session.volume.slice(self.axis, index))

    def _follow(
        self, image: _SliceImage, region: np.ndarray, logits: np.ndarray | None, key: SliceResult
    ) -> tuple[_Part | None, StopReason | None]:
        """Prompt one part of the previous slice's mask on this slice, and check that the answer continues it.

        ``logits`` (the neighbour's, None after a key drawn by hand) are the mask prompt of the answer kept if
        ``mask_prompted``; otherwise of a second answer, asked only to check that the kept one agrees with it."""
        settings = self.settings
        box = _box_with_margin(region, self.margin)
        point = _innermost_point(region) if settings.use_point else None
        kept_prompted = self.mask_prompted and logits is not None
        part = self._segment(image, box, logits if kept_prompted else None, point, key)
        area = int(part.mask.sum())
        if area < settings.min_area:
            return None, StopReason("empty", area, settings.min_area)
        reason = _stop_reason(image.pixels, part, region, box, key, settings)
        if reason is None and logits is not None and settings.min_agreement > 0:  # the other asking, as a check
            other = self._segment(image, box, None if kept_prompted else logits, point, key)
            agreement = iou(part.mask, other.mask)
            if agreement < settings.min_agreement:
                reason = StopReason("agreement", agreement, settings.min_agreement)
        return (None, reason) if reason else (part, None)

    def _discover(self, direction: int, image: _SliceImage, found: np.ndarray, key: SliceResult) -> list[_Part]:
        """Parts of the structure on this slice that the previous slice's parts do not lead to.

        Candidates are blobs of the key mask's middle intensities within ``discover_radius`` of the key mask.
        The model segments each from its box; the answer is kept only if it is new, passes the checks a
        followed part passes (score, appearance, staying in its box), stands out from its surroundings as
        the key does, and can itself be followed onto the next slice.
        """
        settings = self.settings
        key_area = int(key.mask.sum())
        key_image = self.session.volume.slice(self.axis, key.source)
        low, high = np.percentile(smoothed(key_image)[key.mask], settings.discover_percentiles)
        blobs, count = ndimage.label((image.smoothed >= low) & (image.smoothed <= high))
        sizes = np.bincount(blobs.ravel(), minlength=count + 1)
        radius = settings.discover_radius * 2.0 * np.sqrt(key_area / np.pi)  # the key's equivalent diameter
        reachable = np.unique(blobs[ndimage.distance_transform_edt(~key.mask) <= radius])
        key_contrast = _contrast(key_image, key.mask)
        min_contrast = settings.discover_min_contrast * abs(key_contrast)
        taken = found.copy()
        parts = []
        for label in reachable[reachable > 0]:
            if not settings.discover_min_size * key_area <= sizes[label] <= key_area:
                continue
            candidate = blobs == label
            if (candidate & taken).sum() * 2 > sizes[label]:
                continue
            box = _box_with_margin(candidate, self.margin)
            part = self._segment(image, box, None, None, key)
            area = int(part.mask.sum())
            if (
                area < settings.min_area or area > key_area or (part.mask & ~taken).sum() * 2 < area
                or part.score < settings.min_score
                or _unlike_key(image.pixels, part.mask, key, settings) or _misplaced(part.mask, box, settings)
                or np.sign(key_contrast) * _contrast(image.pixels, part.mask) < min_contrast
                or not self._continues(image.index + direction, part, key)
            ):
                continue
            logger.debug("slice %d: found a new part of %d pixels (score %.2f)", image.index, area, part.score)
            parts.append(part)
            taken |= part.mask
        return parts

    def _continues(self, index: int, part: _Part, key: SliceResult) -> bool:
        """Whether a part found on one slice can be followed onto the next one (a structure spans slices)."""
        if not self.first <= index <= self.last:
            return False
        return self._follow(self._image(index), part.mask, part.logits, key)[0] is not None

    def _segment(self, image: _SliceImage, box: list[float], logits: np.ndarray | None, point: list[float] | None,
                 key: SliceResult) -> _Part:
        """The model's answer to a box (and ``logits`` as mask prompt), re-prompted with its own box (and its own
        logits, when it was given some) ``refine_passes`` times, then trimmed to what looks like ``key``'s
        structure along its outline (``trim_unlike_outline``)."""
        settings = self.settings
        points, labels = ([point], [1]) if point is not None else (None, None)
        prediction = self.session.segment(
            self.axis, image.index, points=points, point_labels=labels, box=box, mask_logits=logits
        )
        for _ in range(settings.refine_passes):
            if prediction.masks[0].sum() < settings.min_area:
                break
            own_box = _box_with_margin(prediction.masks[0], self.margin)
            own_logits = None if logits is None else prediction.low_res_logits[0]
            prediction = self.session.segment(
                self.axis, image.index, points=points, point_labels=labels, box=own_box, mask_logits=own_logits
            )
        mask = prediction.masks[0]
        if settings.trim_unlike_outline and mask.sum() >= settings.min_area:
            mask = without_unlike_outline(mask, image.smoothed, key.intensity_range, settings)
        return _Part(mask, float(prediction.scores[0]), prediction.low_res_logits[0])


def _margin_on_slice(session: VolumeSession, axis: Axis, model_pixels: float) -> tuple[float, float]:
    """``model_pixels`` of the model's input as (columns, rows) of the slice: the slice is scaled so its longer side
    fills the input, after its rows are resampled to square pixels."""
    resampling = session.resampling(axis)
    columns = session.volume.slice_shape(axis)[1]
    per_model_pixel = session.predictor.model.spec.input_pixel(resampling.model_rows, columns)
    return model_pixels * per_model_pixel, model_pixels * per_model_pixel / resampling.factor


def _box_with_margin(mask: np.ndarray, margin: tuple[float, float]) -> list[float]:
    x0, y0, x1, y1 = bounding_box(mask)  # callers pass non-empty masks
    height, width = mask.shape
    dx, dy = margin
    return [max(x0 - dx, 0.0), max(y0 - dy, 0.0), min(x1 + dx, float(width)), min(y1 + dy, float(height))]


def _parts(mask: np.ndarray, min_area: int, min_fraction: float) -> list[np.ndarray]:
    """The connected components of a mask big enough to follow on their own; the whole mask if none is."""
    labels, count = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    threshold = max(min_area, min_fraction * sizes.sum())
    parts = [labels == label for label in np.flatnonzero(sizes >= threshold) + 1]
    return parts or [mask]


def _widen_by_earlier(region: np.ndarray, earlier: list[np.ndarray]) -> np.ndarray:
    """The region together with the parts of earlier slices' masks that reach into its box."""
    x0, y0, x1, y1 = (int(round(v)) for v in _box_with_margin(region, (1.0, 1.0)))
    widened = region.copy()
    for mask in earlier:
        labels, _ = ndimage.label(mask)
        touching = np.unique(labels[y0:y1, x0:x1])
        widened |= np.isin(labels, touching[touching > 0])
    return widened


def without_unlike_outline(mask: np.ndarray, smoothed_image: np.ndarray, intensity_range: tuple[float, float],
                            settings: PropagationSettings) -> np.ndarray:
    """The mask without the pixels of other intensity than ``intensity_range`` on the slice (as ``smoothed``) that
    connect to its outline, holes filled and specks left over dropped (``min_part``, as ``_parts``); the mask as
    it was when that would leave it empty."""
    low, high = intensity_range
    around = _around(mask)
    inside, values = mask[around], smoothed_image[around]
    unlike = inside & ((values < low) | (values > high))
    labels, _ = ndimage.label(unlike)
    outline = inside & ~ndimage.binary_erosion(inside)
    reached = np.unique(labels[outline & unlike])
    kept = ndimage.binary_fill_holes(inside & ~np.isin(labels, reached[reached > 0]))
    if kept.sum() < settings.min_area:
        return mask
    trimmed = np.zeros_like(mask)
    trimmed[around] = np.logical_or.reduce(_parts(kept, settings.min_area, settings.min_part))
    return trimmed


def _around(mask: np.ndarray) -> tuple[slice, slice]:
    """A non-empty mask's bounding box and one pixel more on each side: erosion, hole filling and labelling
    give the same answer there as on the whole slice, at a fraction of the cost."""
    x0, y0, x1, y1 = bounding_box(mask)
    return slice(max(y0 - 1, 0), y1 + 1), slice(max(x0 - 1, 0), x1 + 1)


def smoothed(image: np.ndarray) -> np.ndarray:
    """The slice smoothed over about a pixel, so noise does not break a structure's blob into specks."""
    return ndimage.gaussian_filter(image.astype(np.float32), 1.0)


def _contrast(image: np.ndarray, mask: np.ndarray, width: int = 3) -> float:
    """How much the mask's median intensity exceeds that of a ring of ``width`` pixels around it."""
    ring = ndimage.binary_dilation(mask, iterations=width) & ~mask
    if not mask.any() or not ring.any():
        return 0.0
    return float(np.median(image[mask]) - np.median(image[ring]))


def _innermost_point(mask: np.ndarray) -> list[float]:
    distance = ndimage.distance_transform_edt(mask)
    row, col = np.unravel_index(int(np.argmax(distance)), mask.shape)
    return [col + 0.5, row + 0.5]


def _stop_reason(
    image: np.ndarray, part: _Part, previous: np.ndarray, box: list[float], key: SliceResult,
    settings: PropagationSettings,
) -> StopReason | None:
    """Why a non-empty ``part`` does not continue ``previous`` (that part of the previous slice's mask), or None."""
    area, previous_area = int(part.mask.sum()), int(previous.sum())
    if part.score < settings.min_score:
        return StopReason("score", part.score, settings.min_score)
    if area > settings.max_growth * previous_area:
        return StopReason("growth", area / previous_area, settings.max_growth)
    if area < settings.min_shrink * previous_area:
        return StopReason("shrink", area / previous_area, settings.min_shrink)
    return _unlike_key(image, part.mask, key, settings) or _misplaced(part.mask, box, settings)


def _unlike_key(image: np.ndarray, mask: np.ndarray, key: SliceResult, settings: PropagationSettings
                ) -> StopReason | None:
    """Whether a non-empty mask holds other tissue than the key's: too few of its pixels in the key's intensities."""
    values = image[mask]
    low, high = key.intensity_range
    appearance = float(np.mean((values >= low) & (values <= high)))
    if appearance < settings.min_appearance:
        return StopReason("appearance", appearance, settings.min_appearance)
    return None


def _misplaced(mask: np.ndarray, box: list[float], settings: PropagationSettings) -> StopReason | None:
    """Whether a non-empty mask lies mostly outside the box it was asked for (it found something else)."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    inside = float(mask[y0:y1, x0:x1].sum() / mask.sum())
    return StopReason("placement", inside, settings.min_overlap) if inside < settings.min_overlap else None
