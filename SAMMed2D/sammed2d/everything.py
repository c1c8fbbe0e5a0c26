"""Everything mode: masks for a whole slice from a grid of one-click prompts, with no user prompt.

This is the "everything" setting of Huang et al. (S1), which runs SAM's automatic mask generator: one
positive click at the centre of every cell of an m×m grid, each answered by the decoder as it is (all
three multimask outputs kept); a mask stays only if the model rates it well (predicted IoU above a
threshold) and it is stable (thresholding its logits a little higher or lower changes little: the IoU of
the masks at +offset and −offset), and duplicates are removed by non-maximum suppression on their boxes.
The defaults are SAM's. A model trained with boxes only (LiteMedSAM) rates its own answers to single
clicks low, so with these defaults it keeps little or nothing: the thresholds are settings, not facts.

Each grid point can also be asked as a user's click is answered (``grid_answer="click"``): one mask per
point, which for a box-trained model is the click search's (``sammed2d.click_search``). That costs the
search's two decoder calls of several boxes per point, and finds what the raw decoder's single-point answers
of such a model miss (see the README's Everything-mode table).

The decoder runs once per grid point, so time grows with m²: it is done in batches, and the model lock
(when given) is taken per batch (per point for click answers) so that a user's clicks are not held up for the
whole grid. Progress is reported and cancellation honoured between batches too: on a CPU a grid of click
answers takes tens of seconds.
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Literal

import numpy as np
import torch
from torchvision.ops import nms

from .errors import Cancelled, InputError
from .masks import bounding_box
from .predictor import ImageEmbedding, Predictor

logger = logging.getLogger(__name__)

#: the paper's grid-size ablation goes up to 256² points
MAX_POINTS_PER_SIDE = 256
#: "decoder": SAM's automatic mask generator (the decoder's three answers to the bare point); "click": the
#: predictor's answer to a click there (one mask, the click search's for a box-trained model)
GridAnswer = Literal["decoder", "click"]
ProgressCallback = Callable[[int, int], None]  # (grid points answered, grid points in all)
CancelCheck = Callable[[], bool]


@dataclass(frozen=True)
class EverythingSettings:
    """SAM's automatic mask generator settings (its names and defaults), without crops or hole filling."""

    points_per_side: int = 32
    #: grid points per decoder call (bare-point answers; a click answer is one point at a time)
    points_per_batch: int = 64
    #: keep masks whose predicted IoU is above this
    pred_iou_thresh: float = 0.88
    #: keep masks whose stability score is at least this
    stability_score_thresh: float = 0.95
    #: logit offset of the stability score's two thresholds
    stability_score_offset: float = 1.0
    #: of two masks whose boxes overlap more than this (IoU), the lower-rated one goes
    box_nms_thresh: float = 0.7
    #: how each grid point is asked (``GridAnswer``)
    grid_answer: GridAnswer = "decoder"

    def __post_init__(self) -> None:
        if self.grid_answer not in ("decoder", "click"):
            raise InputError(f"grid_answer must be 'decoder' or 'click'; got {self.grid_answer!r}")
        if not 1 <= self.points_per_side <= MAX_POINTS_PER_SIDE:
            raise InputError(f"points_per_side must be 1..{MAX_POINTS_PER_SIDE}; got {self.points_per_side}")
        if self.points_per_batch < 1:
            raise InputError(f"points_per_batch must be at least 1; got {self.points_per_batch}")
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise InputError(f"{name} must be in 0..1; got {value}")
        if not 0 <= self.stability_score_offset <= 100:
            raise InputError(f"stability_score_offset must be in 0..100 (logits); got {self.stability_score_offset}")


@dataclass(frozen=True)
class Suggestion:
    """One mask found on the slice, stored as the crop of its bounding box."""

    shape: tuple[int, int]  # (H, W) of the slice
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the crop, max corner exclusive
    crop: np.ndarray = field(repr=False)  # bool (y1 - y0, x1 - x0)
    score: float  # the model's predicted IoU
    stability: float
    point: tuple[float, float]  # the grid click (x, y) it answers

    @property
    def area(self) -> int:
        return int(self.crop.sum())

    @property
    def mask(self) -> np.ndarray:
        """The full-size boolean mask."""
        mask = np.zeros(self.shape, dtype=bool)
        x0, y0, x1, y1 = self.box
        mask[y0:y1, x0:x1] = self.crop
        return mask

    @classmethod
    def from_mask(cls, mask: np.ndarray, score: float, stability: float, point: tuple[float, float]) -> "Suggestion":
        box = bounding_box(mask)
        if box is None:
            raise ValueError("a suggestion needs a non-empty mask")
        x0, y0, x1, y1 = box
        return cls((mask.shape[0], mask.shape[1]), box, mask[y0:y1, x0:x1].copy(), score, stability, point)


@dataclass(frozen=True)
class Suggestions:
    """What Everything mode kept on one slice, best rated first, and what it cost."""

    masks: tuple[Suggestion, ...]
    prompts: int  # grid points decoded
    decoded: int  # masks the decoder returned (three per point with multimask output)
    seconds: float

    def mapped(self, mask_to_slice: Callable[[np.ndarray], np.ndarray],
               point_to_slice: Callable[[tuple[float, float]], tuple[float, float]]) -> "Suggestions":
        """The same suggestions on another pixel grid (a session's slice when the model saw it resampled)."""
        moved = []
        for item in self.masks:
            mask = mask_to_slice(item.mask)
            if mask.any():
                moved.append(Suggestion.from_mask(mask, item.score, item.stability, point_to_slice(item.point)))
        return Suggestions(tuple(moved), self.prompts, self.decoded, self.seconds)


def point_grid(points_per_side: int, height: int, width: int) -> np.ndarray:
    """(m², 2) clicks (x, y) at the centres of an m×m grid of equal cells over the slice, row by row."""
    centres = (np.arange(points_per_side) + 0.5) / points_per_side
    xs, ys = np.meshgrid(centres * width, centres * height)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """IoU of the masks thresholded at ``threshold + offset`` and ``threshold - offset`` over the last two
    dimensions. The first lies inside the second, so it is a ratio of areas; NaN when both are empty."""
    inner = (logits > threshold + offset).flatten(-2).sum(-1)
    outer = (logits > threshold - offset).flatten(-2).sum(-1)
    return inner.double() / outer.double()


def suppress_duplicates(masks: list[Suggestion], iou_threshold: float) -> list[Suggestion]:
    """Greedy box non-maximum suppression by predicted IoU (best first), as SAM does; returns the kept, best first."""
    if not masks:
        return []
    boxes = torch.tensor([item.box for item in masks], dtype=torch.float32)
    scores = torch.tensor([item.score for item in masks], dtype=torch.float32)
    return [masks[i] for i in nms(boxes, scores, iou_threshold).tolist()]


def passes(score: float | torch.Tensor, stability: float | torch.Tensor,
           settings: EverythingSettings) -> bool | torch.Tensor:
    """SAM's two thresholds: predicted IoU above one, stability at least the other (NaN stability fails). Works on
    numbers and elementwise on tensors."""
    return (score > settings.pred_iou_thresh) & (stability >= settings.stability_score_thresh)


def select(masks: list[Suggestion], settings: EverythingSettings) -> list[Suggestion]:
    """The masks that pass the settings' thresholds (``passes``), then box NMS."""
    passed = [item for item in masks if passes(item.score, item.stability, settings)]
    return suppress_duplicates(passed, settings.box_nms_thresh)


def candidates(predictor: Predictor, embedding: ImageEmbedding, settings: EverythingSettings,
               lock: AbstractContextManager | None = None, progress: ProgressCallback | None = None,
               cancel: CancelCheck | None = None) -> tuple[list[Suggestion], int, int]:
    """Every non-empty mask of the grid that passes the two thresholds (before NMS), the points decoded and the
    masks decoded. ``lock`` is taken around each batch's decoder calls; ``progress`` is called after each batch
    and ``cancel`` asked before each (raising ``Cancelled``)."""
    height, width = embedding.original_size
    points = point_grid(settings.points_per_side, height, width)
    answer = predictor.decode_points if settings.grid_answer == "decoder" else partial(_click_answers, predictor)
    threshold = predictor.model.network.mask_threshold
    # a click's answer is itself a search of several decoder calls: one point per batch, so that a user's click
    # waits for one grid point at most
    per_batch = settings.points_per_batch if settings.grid_answer == "decoder" else 1
    found: list[Suggestion] = []
    decoded = 0
    for start in range(0, len(points), per_batch):
        if cancel is not None and cancel():
            raise Cancelled(f"everything mode cancelled after {start} of {len(points)} grid points")
        batch = points[start : start + per_batch]
        with lock if lock is not None else nullcontext():
            logits, scores = answer(embedding, batch)
        outputs = logits.shape[1]
        decoded += len(batch) * outputs
        logits, scores = logits.flatten(0, 1), scores.flatten()
        origins = np.repeat(batch, outputs, axis=0)
        rated = torch.nonzero(scores > settings.pred_iou_thresh).flatten()  # stability only where it can matter
        stability = stability_score(logits[rated], threshold, settings.stability_score_offset)
        passing = passes(scores[rated], stability, settings)
        kept = rated[passing]
        masks = (logits[kept] > threshold).cpu().numpy()
        for mask, score, steady, number in zip(masks, scores[kept].tolist(), stability[passing].tolist(),
                                               kept.tolist()):
            if mask.any():
                x, y = origins[number]
                found.append(Suggestion.from_mask(mask, score, steady, (float(x), float(y))))
        if progress is not None:
            progress(start + len(batch), len(points))
    return found, len(points), decoded


def _click_answers(predictor: Predictor, embedding: ImageEmbedding,
                   points: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Every point answered as a user's click there is: (N, 1, H, W) logits, (N, 1) predicted IoU."""
    logits, scores = [], []
    for point in points:
        answer = predictor.predict(embedding, point[None], [1])
        logits.append(predictor.logits_on_slice(embedding, torch.from_numpy(answer.low_res_logits[:, None]))[:, 0])
        scores.append(torch.from_numpy(answer.scores))
    return torch.stack(logits), torch.stack(scores)


def generate(predictor: Predictor, embedding: ImageEmbedding, settings: EverythingSettings = EverythingSettings(),
             lock: AbstractContextManager | None = None, progress: ProgressCallback | None = None,
             cancel: CancelCheck | None = None) -> Suggestions:
    """Everything mode on one encoded slice (see the module's description; ``progress`` and ``cancel`` as in
    ``candidates``)."""
    started = time.perf_counter()
    found, prompts, decoded = candidates(predictor, embedding, settings, lock, progress, cancel)
    kept = select(found, settings)
    seconds = time.perf_counter() - started
    logger.info("everything mode: %d points, %d masks decoded, %d pass the thresholds, %d kept after NMS (%.1f s)",
                prompts, decoded, len(found), len(kept), seconds)
    return Suggestions(tuple(kept), prompts, decoded, seconds)
