"""The interaction core: prompts on a slice view → model answer → preview → Apply (undoable) → propagation.
Or, with no prompt: the masks the model suggests on a slice, shown one at a time, the chosen one applied.

One class drives both front-ends (the Segment Editor effect in desktop Slicer and the web page): they
turn mouse and key events into calls of ``InteractionCore`` and draw what ``markers()`` and ``status``
say. Everything here runs on MRML objects and the torch-free client; model calls run on a worker
thread and come back through ``poll()``, which the front-end calls from its GUI timer (scripts call
``wait()``). The user's segmentation changes only in ``apply()``, on the calling thread, as one undo step
through the segment editor logic, so a failed request or a dead server leaves it exactly as it was.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from ..client import BadRequest, Client, PropagatedSlice, SAMMed2DClientError, SegmentResult, SuggestResult
from ..volumes import Axis
from .background import BackgroundRunner, Superseded
from .errors import InteractionError
from .labelmaps import read_segment_slice, slab_extent, slice_labelmap
from .preview import PreviewLayer
from .slice_mapping import SliceView, locate_view, pixel_to_ras, ras_to_pixel, view_of_index
from .uploads import VolumeUploads
from .writers import SegmentWriter, WriteMode

logger = logging.getLogger(__name__)

#: "between" keeps to the span of the key slices: boxes on a structure's first and last slices bound it
Direction = Literal["both", "increasing", "decreasing", "between"]
RAS = tuple[float, float, float]
_STALE_HANDLE_CODES = ("handle_unknown", "handle_mismatch")
#: Everything mode as the suggest tool asks it: each point of an 8×8 grid answered as a click there would be,
#: duplicates removed, every answer kept and shown best rated first. SAM's rating thresholds are off: they are
#: calibrated on SAM, and with them a box-trained model (LiteMedSAM) keeps nothing, so the user judges instead.
SUGGEST_SETTINGS: dict[str, Any] = {"points_per_side": 8, "grid_answer": "click", "pred_iou_thresh": 0.0,
                                    "stability_score_thresh": 0.0}


@dataclass(frozen=True)
class Target:
    """Where results go: the segment of a segmentation, prompted on slices of a source volume."""

    volume_id: str
    segmentation_id: str
    segment_id: str


@dataclass(frozen=True)
class Prompts:
    """The prompts on one slice, in its pixels (x = column, y = row)."""

    view: SliceView
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class Status:
    """What the front-end shows: one line, whether the model is working, the last error, progress."""

    message: str = "Click (+/−) or drag a box on a slice view."
    busy: bool = False
    error: str | None = None
    progress: tuple[int, int] | None = None  # (done, planned) of long work: a propagation's slices, Suggest's clicks
    #: which long work ``progress`` counts; a propagation can be stopped keeping its slices, Suggest only cancelled
    work: Literal["propagation", "suggestion"] | None = None


@dataclass(frozen=True)
class Markers:
    """Prompt positions in RAS for the front-end to draw; ``labels`` 1 = include, 0 = exclude."""

    points: tuple[RAS, ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[RAS, RAS] | None = None  # opposite corners on the slice plane


@dataclass
class _Key:
    """A slice the user applied: propagation starts from it and never overwrites it."""

    mask: np.ndarray
    result: SegmentResult | None


@dataclass
class _Suggestions:
    """Everything mode's answer for one slice and which of its masks the preview shows."""

    view: SliceView
    masks: tuple[np.ndarray, ...]
    scores: tuple[float, ...]
    points: tuple[tuple[float, float], ...]  # the grid click each mask answers, in slice pixels
    shown: int = 0


@dataclass
class _Propagation:
    ticket: int
    axis: Axis
    key_indices: tuple[int, ...]
    masks: dict[int, np.ndarray] = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event)
    running: bool = True
    report: dict[str, Any] | None = None


class InteractionCore:
    """Interactive SAM-Med2D segmentation on a Slicer scene (see the module docstring)."""

    def __init__(self, scene, editor_node, writer: SegmentWriter, client: Callable[[], Client | None], *,
                 preset: str = "percentile", write_mode: WriteMode = "replace",
                 propagation_settings: Mapping[str, Any] | None = None,
                 on_change: Callable[[Status], None] | None = None) -> None:
        """``editor_node`` names the segmentation, selected segment and source volume (the Segment Editor's
        parameter node); ``client()`` gives the model server's client at the time of a request."""
        self.scene = scene
        self.editor_node = editor_node
        self.writer = writer
        self.client = client
        self.preset = preset
        self.write_mode: WriteMode = write_mode
        self.propagation_settings: dict[str, Any] = dict(propagation_settings or {})
        self.on_change = on_change
        self.status = Status()
        self.preview = PreviewLayer(scene)
        self.runner = BackgroundRunner()
        self.uploads = VolumeUploads()
        self._prompts: Prompts | None = None
        self._prompt_target: Target | None = None
        self._marker_points: list[RAS] = []
        self._marker_box: tuple[RAS, RAS] | None = None
        self._result: SegmentResult | None = None  # the answer shown in the preview
        self._result_prompts: Prompts | None = None
        self._keys: dict[tuple[Target, Axis], dict[int, _Key]] = {}
        self._propagation: _Propagation | None = None
        self._suggestions: _Suggestions | None = None
        self._preview_stale = False

    # prompts

    def view_at(self, slice_node) -> SliceView:
        """The slice of the source volume shown in ``slice_node`` (oblique views are refused)."""
        return locate_view(slice_node, self._source_volume())

    def add_point(self, slice_node, ras: Sequence[float], positive: bool = True) -> None:
        """A click at ``ras`` on ``slice_node``: include (+) or exclude (−) that spot; the answer follows."""
        view = self.view_at(slice_node)
        x, y = ras_to_pixel(self._source_volume(), view, ras)
        self._check_on_slice(view, [(x, y)])
        prompts = self._prompts_for(view)
        self._marker_points.append(tuple(map(float, ras[:3])))  # type: ignore[arg-type]
        self._set_prompts(replace(prompts, points=(*prompts.points, (x, y)),
                                  labels=(*prompts.labels, 1 if positive else 0)))

    def set_box(self, slice_node, corner: Sequence[float], opposite: Sequence[float]) -> None:
        """A box dragged from ``corner`` to ``opposite`` (RAS) on ``slice_node``; it replaces an earlier box."""
        view = self.view_at(slice_node)
        volume = self._source_volume()
        (xa, ya), (xb, yb) = ras_to_pixel(volume, view, corner), ras_to_pixel(volume, view, opposite)
        box = _clip_box((min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)), view)
        prompts = self._prompts_for(view)
        self._marker_box = (tuple(map(float, corner[:3])), tuple(map(float, opposite[:3])))  # type: ignore[assignment]
        self._set_prompts(replace(prompts, box=box), keep_previous=False)

    def prompt_slice(self, axis: Axis, index: int, points: Sequence[Sequence[float]] = (),
                     labels: Sequence[int] | None = None, box: Sequence[float] | None = None,
                     refine: bool = False) -> None:
        """Prompts in slice pixels of slice ``index`` normal to ``axis`` (scripts and the console).

        They replace earlier prompts; with ``refine`` they are added to the prompts already on that slice
        and the answer shown is refined (its mask is the model's mask prompt), as more clicks would.
        """
        volume = self._source_volume()
        view = view_of_index(volume, axis, index)
        point_list = [(float(x), float(y)) for x, y in points]
        label_list = [1] * len(point_list) if labels is None else [int(v) for v in labels]
        if len(label_list) != len(point_list):
            raise InteractionError(f"{len(point_list)} points but {len(label_list)} labels")
        corners = [] if box is None else [(float(box[0]), float(box[1])), (float(box[2]), float(box[3]))]
        self._check_on_slice(view, point_list + corners)
        prompts = self._prompts_for(view) if refine else self._fresh_prompts(view)
        self._marker_points += [pixel_to_ras(volume, view, x, y) for x, y in point_list]
        if corners:
            self._marker_box = (pixel_to_ras(volume, view, *corners[0]), pixel_to_ras(volume, view, *corners[1]))
        self._set_prompts(Prompts(view, prompts.points + tuple(point_list), prompts.labels + tuple(label_list),
                                  tuple(float(v) for v in box) if box is not None else prompts.box),  # type: ignore
                          keep_previous=refine)

    def markers(self) -> Markers:
        prompts = self._prompts
        if prompts is None:
            return Markers()
        return Markers(tuple(self._marker_points), prompts.labels, self._marker_box)

    @property
    def prompt_view(self) -> SliceView | None:
        return self._prompts.view if self._prompts is not None else None

    @property
    def prompts(self) -> Prompts | None:
        """The prompts on show, in slice pixels as the model gets them (None when there are none)."""
        return self._prompts

    def cancel(self) -> None:
        """Forget the prompts and the preview (and any answer still on its way); the segment is untouched."""
        self._drop_pending()
        self.preview.clear()
        self._set_status(Status("Cancelled: nothing was written."))

    def pause(self) -> None:
        """The front-end's tool was switched off: as ``cancel``, and the preview node leaves the scene.
        Applied key slices stay known for a later propagation."""
        self._drop_pending()
        self.preview.remove()
        self._set_status(Status())

    def _drop_pending(self) -> None:
        self.runner.supersede("segment")
        if self._propagation is not None and self._propagation.running:
            self._propagation.cancel.set()
            self.runner.supersede("propagate")
        self._reset_prompts()
        self._propagation = None

    # apply

    def apply(self) -> list[int]:
        """Write the preview into the selected segment as one undo step; returns the slices written.

        A propagation's preview writes every slice it found except the slices the user applied before
        (key slices are never overwritten); the slice the prompts were on becomes a key slice.
        """
        if self._propagation is not None and self._propagation.running:
            raise InteractionError("a propagation is running: wait for it or cancel it before Apply")
        masks = dict(self.preview.masks)
        if not masks:
            raise InteractionError("nothing to apply: click or drag a box on a slice first")
        target = self._target()
        axis: Axis = self.preview.axis  # type: ignore[assignment]
        if self._prompt_target is not None and target != self._prompt_target:
            raise InteractionError("the source volume, segmentation or selected segment changed since the preview "
                                   "was made: Cancel and prompt again")
        keys = self._current_keys(target, axis)
        new_key = self._result_prompts.view.index if self._result is not None and self._result_prompts else None
        if self._suggestions is not None:
            new_key = self._suggestions.view.index
        writes = {index: mask for index, mask in masks.items() if index not in keys or index == new_key}
        volume = self._source_volume()
        self.runner.supersede("segment")
        self.writer.save_state_for_undo()
        for index in sorted(writes):
            self._write_slice(volume, view_of_index(volume, axis, index), writes[index])
        if new_key is not None and new_key in writes:  # the key is what the segment holds there now (masking)
            keys[new_key] = _Key(self._segment_slice(volume, view_of_index(volume, axis, new_key)), self._result)
        self._reset_prompts()
        self.preview.clear()
        self._propagation = None
        self._set_status(Status(f"Applied {len(writes)} slice{'s' if len(writes) != 1 else ''} to the segment "
                                "(one undo step)."))
        return sorted(writes)

    def _write_slice(self, volume, view: SliceView, mask: np.ndarray) -> None:
        """Replace: clear the segment on the slice, then add the mask (both masked by the editor's settings)."""
        extent = slab_extent(volume, view.axis, view.index, view.index)
        if self.write_mode == "replace":
            self.writer.modify(slice_labelmap(volume, view, np.ones(view.shape, dtype=bool)), "remove", extent)
        self.writer.modify(slice_labelmap(volume, view, mask), "add", extent)

    def key_slices(self, axis: Axis) -> list[int]:
        """The slices of the selected segment the user applied along ``axis`` (as they are now)."""
        return sorted(self._current_keys(self._target(), axis))

    def _current_keys(self, target: Target, axis: Axis) -> dict[int, _Key]:
        """The key slices, checked against the segment: the user may have undone or edited them since.

        An emptied key slice is no key any more; an edited one keeps being a key with its new content (the
        model's answer for it no longer matches, so its mask is what propagation is given).
        """
        keys = self._keys.setdefault((target, axis), {})
        volume = self._source_volume()
        for index in list(keys):
            now = self._segment_slice(volume, view_of_index(volume, axis, index))
            if not now.any():
                del keys[index]
            elif not np.array_equal(now, keys[index].mask):
                keys[index] = _Key(now, None)
        return keys

    def _segment_slice(self, volume, view: SliceView) -> np.ndarray:
        return read_segment_slice(self.editor_node.GetSegmentationNode(), self.editor_node.GetSelectedSegmentID(),
                                  volume, view)

    # suggestions

    def suggest(self, slice_node, settings: Mapping[str, Any] | None = None) -> None:
        """The masks the model finds with no prompt on the slice shown in ``slice_node`` (Everything mode).

        They come best rated first; the preview shows one at a time (``next_suggestion``) and ``apply()`` writes
        the one shown. Each is the answer to a click at a grid point, so the one on show stands as that click's
        prompt: its marker is drawn, and more points or a box refine it as they would the click. ``settings``
        override ``SUGGEST_SETTINGS``.
        """
        view = self.view_at(slice_node)
        self.suggest_slice(view.axis, view.index, settings)

    def suggest_slice(self, axis: Axis, index: int, settings: Mapping[str, Any] | None = None) -> None:
        """``suggest`` on slice ``index`` normal to ``axis`` (scripts and the console)."""
        volume = self._source_volume()
        view = view_of_index(volume, axis, index)
        client = self._require_client()
        self._fresh_prompts(view)
        snapshot = self.uploads.snapshot(volume, self.preset)
        asked = {**SUGGEST_SETTINGS, **(settings or {})}
        looking = f"Looking for structures on slice {index} ({asked['points_per_side']}² grid of clicks)"

        def work(is_current: Callable[[], bool]) -> SuggestResult:
            remote = self.uploads.resolve(client, snapshot)
            if not is_current():
                raise Superseded()

            def progress(done: int, planned: int) -> None:
                status = Status(f"{looking}: {done} of {planned}…", busy=True, progress=(done, planned),
                                work="suggestion")

                def show() -> None:
                    if is_current():  # a cancelled request's late progress is not shown
                        self._set_status(status)

                self.runner.post(show)

            return client.suggest(remote, axis, index, asked, progress=progress, cancel=lambda: not is_current())

        self.runner.submit("segment", work, lambda found: self._on_suggested(view, found), self._on_error)
        self._set_status(Status(f"{looking}…", busy=True, progress=(0, 0), work="suggestion"))

    def next_suggestion(self, step: int = 1) -> None:
        """Show the next suggestion (``step=-1``: the previous one), round the list."""
        found = self._require_suggestions()
        self.show_suggestion(found.shown + step)

    def show_suggestion(self, number: int) -> None:
        """Show suggestion ``number`` (0 = best rated; counted round the list)."""
        found = self._require_suggestions()
        found.shown = number % len(found.masks)
        self._show_suggestion(found)

    @property
    def suggested_masks(self) -> tuple[np.ndarray, ...]:
        """The masks of the last suggestion request, best rated first (none when they are no longer on show)."""
        return self._suggestions.masks if self._suggestions is not None else ()

    @property
    def suggestion_count(self) -> int:
        return len(self.suggested_masks)

    def _require_suggestions(self) -> _Suggestions:
        if self._suggestions is None:
            raise InteractionError("no suggestions on show: ask for suggestions on a slice first")
        return self._suggestions

    def _on_suggested(self, view: SliceView, found: SuggestResult) -> None:
        masks = tuple(item.mask for item in found.masks)
        if not masks:
            self._set_status(Status(f"The model suggested nothing on slice {view.index}: click on the structure or "
                                    "draw a box around it."))
            return
        self._suggestions = _Suggestions(view, masks, tuple(item.score for item in found.masks),
                                         tuple(item.point for item in found.masks))
        self._show_suggestion(self._suggestions)

    def _show_suggestion(self, found: _Suggestions) -> None:
        mask, point = found.masks[found.shown], found.points[found.shown]
        volume = self._source_volume()
        self._prompts = Prompts(found.view, (point,), (1,))
        self._marker_points = [pixel_to_ras(volume, found.view, *point)]
        self._show_preview(volume, found.view.axis, {found.view.index: mask})
        self._set_status(Status(
            f"Suggestion {found.shown + 1} of {len(found.masks)} on slice {found.view.index}: {int(mask.sum())} "
            f"pixels, model's quality estimate {found.scores[found.shown]:.2f}. Next suggestion for another, "
            "points to refine it; Apply (Enter) writes it."))

    # propagation

    def propagate(self, direction: Direction = "both", slice_range: tuple[int, int] | None = None,
                  axis: Axis | None = None) -> None:
        """Carry the segment through the volume from its key slices (and the answer or suggestion on show).

        ``direction`` is along the slice index ("between" stays within the outermost key slices); ``slice_range``
        (inclusive) bounds it. The result comes as a preview, slice by slice; ``apply()`` writes it as one undo
        step.
        """
        if self._propagation is not None and self._propagation.running:
            raise InteractionError("a propagation is already running: wait for it or cancel it")
        target = self._target()
        axis = axis or (self._prompts.view.axis if self._prompts is not None else None) or self._last_axis(target)
        if axis is None:
            raise InteractionError("propagation starts from a segmented slice: click or drag a box on the structure "
                                   "on one slice first")
        current = self._current_keys(target, axis)
        keys: dict[int, SegmentResult | np.ndarray] = {
            index: key.result if key.result is not None else key.mask for index, key in current.items()}
        masks = {index: key.mask for index, key in current.items()}
        pending = self._result if self._result is not None and self.preview.axis == axis else None
        if pending is not None and self._result_prompts is not None:
            keys[self._result_prompts.view.index] = pending
            masks[self._result_prompts.view.index] = pending.mask
        shown = self._suggestions
        if shown is not None and shown.view.axis == axis:
            keys[shown.view.index] = masks[shown.view.index] = shown.masks[shown.shown]
        volume = self._source_volume()
        count = _slice_count(volume, axis)
        low, high = slice_range if slice_range is not None else (0, count - 1)
        low, high = max(0, int(min(low, high))), min(count - 1, int(max(low, high)))
        if keys:
            if direction == "increasing":
                low = max(low, min(keys))
            elif direction == "decreasing":
                high = min(high, max(keys))
            elif direction == "between":
                low, high = max(low, min(keys)), min(high, max(keys))
        in_range = {index: key for index, key in keys.items() if low <= index <= high}
        if not in_range:
            raise InteractionError(
                f"no segmented slice lies in slices {low}..{high} along {axis}: segment one slice there first")
        client = self._require_client()
        snapshot = self.uploads.snapshot(volume, self.preset)
        settings = {**self.propagation_settings, "slice_range": [low, high]}
        self.runner.supersede("segment")
        propagation = _Propagation(0, axis, tuple(sorted(in_range)))
        propagation.masks.update({index: masks[index] for index in in_range})

        def work(is_current: Callable[[], bool]) -> dict[str, Any]:
            remote = self.uploads.resolve(client, snapshot)
            stream_keys = in_range
            for attempt in range(2):
                try:
                    stream = client.propagate(remote, axis, stream_keys, settings,
                                              cancel=lambda: propagation.cancel.is_set() or not is_current())
                    for result in stream:
                        self.runner.post(lambda result=result: self._on_propagated(propagation, result))
                    return stream.report or {}
                except BadRequest as error:  # a key's result expired on the server: send its mask instead
                    if attempt or error.code not in _STALE_HANDLE_CODES:
                        raise
                    stream_keys = {index: masks[index] for index in in_range}
            raise AssertionError("unreachable")

        propagation.ticket = self.runner.submit(
            "propagate", work, lambda report: self._on_propagation_end(propagation, report),
            lambda error: self._on_propagation_error(propagation, error))
        self._propagation = propagation
        self._show_preview(volume, axis, propagation.masks)
        self._set_status(Status(f"Propagating along {axis} through slices {low}..{high}…", busy=True,
                                progress=(0, 0), work="propagation"))

    def cancel_propagation(self, keep: bool = True) -> None:
        """Stop a running propagation; ``keep`` leaves the slices found so far in the preview, else drops them."""
        propagation = self._propagation
        if propagation is None or not propagation.running:
            return
        propagation.cancel.set()
        if not keep:
            self.runner.supersede("propagate")
            propagation.running = False
            for index in [index for index in propagation.masks if index not in propagation.key_indices]:
                del propagation.masks[index]
            self._show_preview(self._source_volume(), propagation.axis, propagation.masks)
            self._set_status(Status("Propagation cancelled; its slices were discarded."))
        else:
            self._set_status(replace(self.status, message="Cancelling the propagation (keeping the slices found)…"))

    # event loop

    def poll(self) -> bool:
        """Deliver answers that arrived (call on the GUI thread, e.g. every 50 ms); True while work is pending."""
        pending = self.runner.poll()
        if self._preview_stale and self._propagation is not None:
            self._preview_stale = False
            self._show_preview(self._source_volume(), self._propagation.axis, self._propagation.masks)
        return pending

    def wait(self, timeout: float = 600.0) -> Status:
        """Block until every request has been answered (scripts and tests); returns the final status."""
        self.runner.wait(timeout)
        self.poll()
        return self.status

    def close(self) -> None:
        """Stop listening to answers and take the preview out of the scene."""
        if self._propagation is not None:
            self._propagation.cancel.set()
        self.runner.shutdown()
        self.preview.remove()

    # internals

    def _source_volume(self):
        volume = self.editor_node.GetSourceVolumeNode()
        if volume is None or volume.GetImageData() is None:
            raise InteractionError("no source volume: select the volume to segment in the Segment Editor")
        return volume

    def _target(self) -> Target:
        segmentation = self.editor_node.GetSegmentationNode()
        segment_id = self.editor_node.GetSelectedSegmentID()
        if segmentation is None or not segment_id or segmentation.GetSegmentation().GetSegment(segment_id) is None:
            raise InteractionError("no segment selected: add a segment (or select one) in the Segment Editor first")
        return Target(self._source_volume().GetID(), segmentation.GetID(), segment_id)

    def _last_axis(self, target: Target) -> Axis | None:
        axes = [axis for (key_target, axis), keys in self._keys.items() if key_target == target and keys]
        return axes[-1] if axes else None

    def _require_client(self) -> Client:
        client = self.client()
        if client is None:
            raise InteractionError("no model server: start the local server or connect to a remote one in the "
                                   "SAM-Med2D module (Model server section)")
        return client

    def _check_on_slice(self, view: SliceView, positions: Sequence[tuple[float, float]]) -> None:
        for x, y in positions:
            if not view.contains(x, y):
                raise InteractionError(
                    f"({x:.1f}, {y:.1f}) lies outside slice {view.index} ({view.shape[1]}×{view.shape[0]} pixels): "
                    "click on the image")

    def _prompts_for(self, view: SliceView) -> Prompts:
        """The prompts to extend: the current ones if they are on ``view`` for the same target, else new."""
        target = self._target()
        if self._prompts is not None and self._prompts.view == view and self._prompt_target == target:
            return self._prompts
        return self._fresh_prompts(view)

    def _fresh_prompts(self, view: SliceView) -> Prompts:
        target = self._target()
        self._discard_pending(view)
        self._prompt_target = target
        return Prompts(view)

    def _discard_pending(self, view: SliceView) -> None:
        if self._propagation is not None and self._propagation.running:
            raise InteractionError("a propagation is running: wait for it or cancel it before prompting again")
        dropped = bool(self.preview.masks)
        self.runner.supersede("segment")
        self._reset_prompts()
        self.preview.clear()
        self._propagation = None
        if dropped:
            self._set_status(Status(f"The earlier preview was not applied and is gone; prompting slice {view.index}."))

    def _reset_prompts(self) -> None:
        self._prompts = None
        self._prompt_target = None
        self._marker_points = []
        self._marker_box = None
        self._result = None
        self._result_prompts = None
        self._suggestions = None

    def _set_prompts(self, prompts: Prompts, keep_previous: bool = True) -> None:
        self._prompts = prompts
        self._suggestions = None  # a suggestion the user refines is their prompt now
        self._request_segment(keep_previous)

    def _request_segment(self, keep_previous: bool) -> None:
        prompts = self._prompts
        assert prompts is not None
        client = self._require_client()
        volume = self._source_volume()
        snapshot = self.uploads.snapshot(volume, self.preset)
        previous = self._result if keep_previous and self._result_prompts is not None \
            and self._result_prompts.view == prompts.view else None
        view = prompts.view

        def work(is_current: Callable[[], bool]) -> SegmentResult:
            remote = self.uploads.resolve(client, snapshot)
            if not is_current():
                raise Superseded()
            box = list(prompts.box) if prompts.box is not None else None
            points = list(prompts.points) or None
            labels = list(prompts.labels) or None
            try:
                return client.segment(remote, view.axis, view.index, points, labels, box, previous=previous)
            except BadRequest as error:  # the refined result expired on the server: prompt afresh
                if previous is None or error.code not in _STALE_HANDLE_CODES:
                    raise
                return client.segment(remote, view.axis, view.index, points, labels, box)

        self.runner.submit("segment", work, lambda result: self._on_segmented(prompts, result), self._on_error)
        self._set_status(Status("Segmenting…", busy=True))

    def _on_segmented(self, prompts: Prompts, result: SegmentResult) -> None:
        self._result = result
        self._result_prompts = prompts
        volume = self._source_volume()
        self._show_preview(volume, prompts.view.axis, {prompts.view.index: result.mask})
        if result.area == 0:
            message = "The model found nothing there: add a point on the structure or draw a box around it."
        else:
            message = (f"Slice {prompts.view.index}: {result.area} pixels, model's quality estimate "
                       f"{result.score:.2f}. Apply (Enter) to keep it, add points to refine.")
        self._set_status(Status(message))

    def _on_error(self, error: BaseException) -> None:
        self._set_status(Status("The request failed; the segmentation is unchanged.", error=_describe(error)))

    def _on_propagated(self, propagation: _Propagation, result: PropagatedSlice) -> None:
        if propagation is not self._propagation or not propagation.running:
            return
        if result.index not in propagation.key_indices:
            propagation.masks[result.index] = result.mask
        self._preview_stale = True
        self._set_status(Status(f"Propagating: slice {result.index} ({result.done} of {result.planned})…",
                                busy=True, progress=(result.done, result.planned), work="propagation"))

    def _on_propagation_end(self, propagation: _Propagation, report: dict[str, Any]) -> None:
        if propagation is not self._propagation:
            return
        propagation.running = False
        propagation.report = report
        found = len([index for index in propagation.masks if index not in propagation.key_indices])
        self._show_preview(self._source_volume(), propagation.axis, propagation.masks)
        ended = "cancelled" if report.get("cancelled") else "finished"
        self._set_status(Status(f"Propagation {ended}: {found} slices found. Apply writes them as one undo step; "
                                "Cancel drops them."))

    def _on_propagation_error(self, propagation: _Propagation, error: BaseException) -> None:
        if propagation is not self._propagation:
            return
        propagation.running = False
        for index in [index for index in propagation.masks if index not in propagation.key_indices]:
            del propagation.masks[index]
        self._show_preview(self._source_volume(), propagation.axis, propagation.masks)
        self._set_status(Status("The propagation failed; the segmentation is unchanged.", error=_describe(error)))

    def _show_preview(self, volume, axis: Axis, masks: Mapping[int, np.ndarray]) -> None:
        self.preview.show(volume, axis, masks, color=self._segment_color())

    def _segment_color(self) -> tuple[float, float, float]:
        segmentation = self.editor_node.GetSegmentationNode()
        segment = segmentation.GetSegmentation().GetSegment(self.editor_node.GetSelectedSegmentID() or "") \
            if segmentation is not None else None
        return tuple(segment.GetColor()) if segment is not None else (1.0, 1.0, 0.0)  # type: ignore[return-value]

    def _set_status(self, status: Status) -> None:
        self.status = status
        if self.on_change is not None:
            self.on_change(status)


def _slice_count(volume_node, axis: Axis) -> int:
    return int(volume_node.GetImageData().GetDimensions()[("I", "J", "K").index(axis)])


def _clip_box(box: tuple[float, float, float, float], view: SliceView) -> tuple[float, float, float, float]:
    """A dragged box kept on the slice (a drag may leave the image); a box with no area is refused."""
    rows, columns = view.shape
    x0, y0 = min(max(box[0], 0.0), columns), min(max(box[1], 0.0), rows)
    x1, y1 = min(max(box[2], 0.0), columns), min(max(box[3], 0.0), rows)
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise InteractionError("the box is smaller than a pixel or lies off the image: drag a box around the structure")
    return x0, y0, x1, y1


def _describe(error: BaseException) -> str:
    if isinstance(error, (SAMMed2DClientError, InteractionError)):
        return str(error)
    logger.error("interaction request failed", exc_info=error)
    return f"unexpected {type(error).__name__}: {error} (see the Python console / log for details)"
