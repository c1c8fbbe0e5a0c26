"""The benchmark's prompting modes on one mask, and the names they are reported under.

Every mode family draws from its own generator, seeded by the mask's identity (not by the model or
by which other modes run), so all models see the same prompts and a mode's prompts do not change
when modes are added. Iterative clicks depend on each model's own errors after the first click, as
in the paper's test. Everything mode prompts nothing per mask: the slice's automatic masks (one run per
slice) are matched to each ground-truth mask, the best one (highest Dice) scoring, as Huang et al. do.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from typing import Callable, Hashable, Iterator, Sequence

import numpy as np

from ..everything import Suggestion, Suggestions
from ..masks import bounding_box
from ..predictor import Prediction
from ..paper_prompts import box_from_mask, error_region_points, init_point_sampling
from .prompts import huang_points, shift_box, shift_points
from ..errors import InputError

#: prompt-randomness distances of Huang et al., in pixels
SHIFTS: tuple[tuple[int, int], ...] = ((0, 10), (10, 20), (20, 30))
MAX_CLICKS = 5

PAPER_MODES = ("box", "point1", "clicks3", "clicks5", "points3", "points5")
CLICK_MODES = ("point1", *(f"clicks{k}" for k in range(2, MAX_CLICKS + 1)))
#: one box on the largest slice; boxes on the first and last slice (2) and on the middle one too (3), filled
#: between them, as a user bounds a structure; one click on the largest slice
PROPAGATION_MODES = ("propagate-box", "propagate-box2", "propagate-box3", "propagate-click")
#: Huang's "box" is the tight box of the mask: the "box" mode (masks are single connected components)
HUANG_MODES = ("huang-1pt", "huang-5pos", "huang-5pos-5neg", "box", "huang-box-1pt")
RANDOMNESS_MODES = tuple(f"{kind}-shift-{low}-{high}" for kind in ("box", "1pt") for low, high in SHIFTS)
#: Huang's S1: masks from a 32×32 grid of clicks with SAM's automatic mask generator filters (m² decoder calls
#: per slice: minutes on a CPU)
EVERYTHING_MODE = "everything"
ALL_MODES = ("box", *CLICK_MODES, "points3", "points5", *PROPAGATION_MODES, *HUANG_MODES[:3], HUANG_MODES[4],
             *RANDOMNESS_MODES, EVERYTHING_MODE)
GROUPS = {"paper": PAPER_MODES, "clicks": CLICK_MODES, "propagation": PROPAGATION_MODES, "huang": HUANG_MODES,
          "randomness": RANDOMNESS_MODES, "all": ALL_MODES}

Segment = Callable[..., Prediction]  # segment(points=, point_labels=, box=, mask_logits=) on one slice
Suggest = Callable[[], Suggestions]  # Everything mode on the mask's slice


def propagation_key_slices(areas: np.ndarray, mode: str) -> list[int]:
    """A propagation mode's key slices from a structure's area on each slice: the largest, or its first and
    last slices (and the middle one)."""
    present = np.flatnonzero(areas)
    first, last = int(present[0]), int(present[-1])
    if mode == "propagate-box2":
        return sorted({first, last})
    if mode == "propagate-box3":  # the label's slice nearest the middle (a label may skip slices)
        middle = int(present[np.argmin(np.abs(present - (first + last) / 2))])
        return sorted({first, middle, last})
    return [int(np.argmax(areas))]


def expand_modes(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Mode names and group names (paper, clicks, propagation, huang, randomness, all) → modes, in catalogue order."""
    chosen: set[str] = set()
    for name in names:
        if name in GROUPS:
            chosen.update(GROUPS[name])
        elif name in ALL_MODES:
            chosen.add(name)
        else:
            raise InputError(f"unknown benchmark mode {name!r}; choose from {', '.join(ALL_MODES)} "
                             f"or the groups {', '.join(GROUPS)}")
    return tuple(mode for mode in ALL_MODES if mode in chosen)


def prompt_count(mode: str) -> int:
    """Number of clicks a mode gives (boxes count 0): the x axis of the Dice-vs-clicks plot."""
    counts = {"point1": 1, "points3": 3, "points5": 5, "huang-1pt": 1, "huang-5pos": 5, "huang-5pos-5neg": 10,
              "huang-box-1pt": 1, "propagate-click": 1}
    if mode.startswith("clicks"):
        return int(mode.removeprefix("clicks"))
    if mode.startswith("1pt-shift"):
        return 1
    return counts.get(mode, 0)


def structure_rng(seed: int, identity: str, family: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(f"{identity}|{family}".encode())])


@dataclass(frozen=True)
class Outcome:
    mode: str
    mask: np.ndarray  # bool, slice pixels
    score: float
    decoder_seconds: float  # every decoder pass that led to this mask


def evaluate_modes(
    segment: Segment, truth: np.ndarray, modes: tuple[str, ...], seed: int, identity: str,
    suggest: Suggest | None = None,
) -> Iterator[Outcome]:
    """Prompt the model for one ground-truth mask in every chosen 2D mode (propagation is volume-level).

    ``suggest`` gives the slice's Everything-mode masks; it is needed only for that mode."""
    shape = truth.shape
    clicks = [mode for mode in CLICK_MODES if mode in modes]
    if clicks:
        yield from _iterative_clicks(segment, truth, clicks, structure_rng(seed, identity, "clicks"))
    for mode in modes:
        if mode in CLICK_MODES or mode in PROPAGATION_MODES:
            continue
        if mode == EVERYTHING_MODE:
            if suggest is None:
                raise ValueError("the everything mode needs the slice's suggestions (suggest=)")
            yield _matched(suggest(), truth)
            continue
        rng = structure_rng(seed, identity, mode)
        prompt: dict = {}
        if mode == "box":
            prompt["box"] = box_from_mask(truth)
        elif mode in ("points3", "points5"):
            prompt["points"], prompt["point_labels"] = init_point_sampling(truth, int(mode[-1]), rng)
        elif mode in ("huang-1pt", "huang-5pos", "huang-5pos-5neg"):
            counts = {"huang-1pt": (1, 0), "huang-5pos": (5, 0), "huang-5pos-5neg": (5, 5)}[mode]
            prompt["points"], prompt["point_labels"] = huang_points(truth, *counts, rng)
        elif mode == "huang-box-1pt":
            prompt["box"] = np.array(bounding_box(truth), dtype=np.float64)
            prompt["points"], prompt["point_labels"] = huang_points(truth, 1, 0, rng)
        elif mode.startswith("box-shift-"):
            prompt["box"] = shift_box(box_from_mask(truth), _distance(mode), shape, rng)
        elif mode.startswith("1pt-shift-"):
            points, labels = huang_points(truth, 1, 0, rng)
            prompt["points"], prompt["point_labels"] = shift_points(points, _distance(mode), shape, rng), labels
        else:  # pragma: no cover - expand_modes admits only the catalogue
            raise InputError(f"unknown mode {mode!r}")
        started = time.perf_counter()
        prediction = segment(**prompt)
        yield Outcome(mode, prediction.masks[0], float(prediction.scores[0]), time.perf_counter() - started)


def best_match(masks: Sequence[Suggestion], truth: np.ndarray) -> Suggestion | None:
    """The suggested mask with the highest Dice against ``truth`` (None when nothing overlaps it)."""
    best, best_dice = None, 0.0
    truth_area = int(truth.sum())
    for item in masks:
        x0, y0, x1, y1 = item.box
        overlap = int(np.logical_and(truth[y0:y1, x0:x1], item.crop).sum())
        score = 2 * overlap / (truth_area + item.area)
        if score > best_dice:
            best, best_dice = item, score
    return best


def _matched(suggestions: Suggestions, truth: np.ndarray) -> Outcome:
    """The timing is the slice's whole Everything run, shared by all its masks."""
    match = best_match(suggestions.masks, truth)
    if match is None:
        return Outcome(EVERYTHING_MODE, np.zeros(truth.shape, dtype=bool), float("nan"), suggestions.seconds)
    return Outcome(EVERYTHING_MODE, match.mask, match.score, suggestions.seconds)


class SliceSuggestions:
    """Everything mode's result for the slice being evaluated, computed once for all of its masks (the
    benchmark visits a slice's masks together, so only the last slice is kept)."""

    def __init__(self) -> None:
        self._key: Hashable = None
        self._value: Suggestions | None = None

    def get(self, key: Hashable, compute: Suggest) -> Suggestions:
        if self._value is None or key != self._key:
            self._key, self._value = key, compute()
        return self._value


def _distance(mode: str) -> tuple[float, float]:
    low, high = mode.rsplit("-", 2)[-2:]
    return float(low), float(high)


def _iterative_clicks(
    segment: Segment, truth: np.ndarray, modes: list[str], rng: np.random.Generator
) -> Iterator[Outcome]:
    """The paper's interactive test: one click, then one error-region click per step, points accumulating,
    the previous low-res result as the mask prompt. Once nothing is wrong, the result stands."""
    last = max(int(mode.removeprefix("clicks")) if mode != "point1" else 1 for mode in modes)
    points, labels = init_point_sampling(truth, 1, rng)
    started = time.perf_counter()
    prediction = segment(points=points, point_labels=labels)
    seconds = time.perf_counter() - started
    for count in range(1, last + 1):
        if count > 1:
            new_points, new_labels = error_region_points(prediction.masks[0], truth, 1, rng)
            if new_labels[0] >= 0:  # -1: no error left to click on
                points, labels = np.concatenate([points, new_points]), np.concatenate([labels, new_labels])
                started = time.perf_counter()
                prediction = segment(points=points, point_labels=labels, mask_logits=prediction.low_res_logits[0])
                seconds += time.perf_counter() - started
        mode = "point1" if count == 1 else f"clicks{count}"
        if mode in modes:
            yield Outcome(mode, prediction.masks[0], float(prediction.scores[0]), seconds)
