"""The interaction core end to end: real slice nodes and segment editor logic (slicer-core), a real model
server (LiteMedSAM on loopback) and real CT from ../shared/data.

Clicks and drags are given as view positions on a slice node, converted as the desktop effect converts
them; results are read back with Slicer's own segment export and compared with the ground truth.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import DATA, log_lines_with, require, wait_for_log_line
from slicer_scene import dice, new_scene, segment_array, set_segment_array

from sammed2d.client import LocalServer
from sammed2d.interaction import InteractionCore, InteractionError, ras_to_xy, xy_to_ras
from sammed2d.interaction.slice_mapping import pixel_to_ras, ras_to_pixel
from sammed2d.volumes import read_labels, read_volume

import slicer
import slicer.util

LUNG2 = DATA / "pyradiomics" / "lung2_image.nrrd"
LUNG2_LABEL = DATA / "pyradiomics" / "lung2_label.nrrd"
TUMOUR_SLICE = 22  # the tumour's largest axial slice
SERVER_ARGS = ["--threads", "2", "--no-compile"]


@pytest.fixture(scope="module")
def server():
    with LocalServer(SERVER_ARGS) as running:
        yield running


@pytest.fixture(scope="module")
def label() -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(require(LUNG2_LABEL)))).astype(bool)


class Desk:
    """One editing session on lung2: scene, segmentation with two segments, an axial view, the core."""

    def __init__(self, client_of) -> None:
        self.scene = new_scene()
        self.volume = self.scene.load_volume(require(LUNG2), "lung2")
        self.segmentation, (self.tumour, self.other) = self.scene.segmentation_for(self.volume, "tumour", "other")
        self.editor_node, self.logic = self.scene.editor(self.segmentation, self.volume, self.tumour)
        from sammed2d.interaction import EditorLogicWriter

        self.writer = EditorLogicWriter(self.logic)
        self.core = InteractionCore(self.scene.scene, self.editor_node, self.writer, client_of, preset="ct-lung")
        self.view, self.view_logic = self.scene.slice_view(self.volume, "Axial")
        self.show_slice(TUMOUR_SLICE)

    def show_slice(self, index: int) -> None:
        ras = pixel_to_ras(self.volume, self._axial_view(index), 0.5, 0.5)
        self.view_logic.SetSliceOffset(ras[2])

    def _axial_view(self, index: int):
        from sammed2d.interaction.slice_mapping import view_of_index

        return view_of_index(self.volume, "K", index)

    def xy_of_pixel(self, x: float, y: float) -> tuple[float, float]:
        """The view position of slice pixel (x, y) on the slice shown."""
        view = self.core.view_at(self.view)
        return ras_to_xy(self.view, pixel_to_ras(self.volume, view, x, y))

    def click(self, x: float, y: float, positive: bool = True) -> None:
        self.core.add_point(self.view, xy_to_ras(self.view, self.xy_of_pixel(x, y)), positive)

    def drag_box(self, box) -> None:
        corner, opposite = self.xy_of_pixel(box[0], box[1]), self.xy_of_pixel(box[2], box[3])
        self.core.set_box(self.view, xy_to_ras(self.view, corner), xy_to_ras(self.view, opposite))

    def segment(self, segment_id: str | None = None) -> np.ndarray:
        return segment_array(self.segmentation, segment_id or self.tumour, self.volume)

    def wait(self):
        status = self.core.wait(timeout=600)
        return status


def tight_box(mask: np.ndarray) -> list[float]:
    rows, columns = np.nonzero(mask)
    return [float(columns.min()), float(rows.min()), float(columns.max() + 1), float(rows.max() + 1)]


@pytest.fixture()
def desk(server):
    session = Desk(lambda: server.client)
    yield session
    session.core.close()


def test_a_tight_box_on_the_tumour_gives_the_tumour(desk, label):
    desk.drag_box(tight_box(label[TUMOUR_SLICE]))
    status = desk.wait()
    assert status.error is None, status.error
    assert set(desk.core.preview.masks) == {TUMOUR_SLICE}
    assert desk.segment().sum() == 0, "a preview must not write into the segment"
    assert desk.core.apply() == [TUMOUR_SLICE]
    result = desk.segment()
    assert dice(result[TUMOUR_SLICE], label[TUMOUR_SLICE]) >= 0.85
    assert result[np.arange(result.shape[0]) != TUMOUR_SLICE].sum() == 0, "only the slice may be written"
    assert desk.core.key_slices("K") == [TUMOUR_SLICE]


def test_the_prompts_on_show_are_given_in_slice_pixels(desk, label):
    """What a front-end (or a test comparing with the engine) reads back: the box and points the model gets."""
    assert desk.core.prompts is None
    box = tight_box(label[TUMOUR_SLICE])
    desk.drag_box(box)
    desk.click(box[0] + 5.5, box[1] + 7.5, positive=False)
    prompts = desk.core.prompts
    assert prompts is not None and (prompts.view.axis, prompts.view.index) == ("K", TUMOUR_SLICE)
    assert np.allclose(prompts.box, box, atol=1e-6)
    assert np.allclose(prompts.points, [(box[0] + 5.5, box[1] + 7.5)], atol=1e-6) and prompts.labels == (0,)
    desk.wait()
    desk.core.cancel()
    assert desk.core.prompts is None


def test_a_negative_click_removes_what_it_marks(desk, label):
    box = tight_box(label[TUMOUR_SLICE])
    desk.drag_box([box[0] - 40, box[1] - 40, box[2] + 40, box[3] + 40])  # a loose box takes in more than the tumour
    desk.wait()
    loose = desk.core.preview.masks[TUMOUR_SLICE]
    outside = loose & ~label[TUMOUR_SLICE]
    assert outside.sum() > 0
    rows, columns = np.nonzero(outside)
    far = np.argmax((columns - columns.mean()) ** 2 + (rows - rows.mean()) ** 2)
    desk.click(columns[far] + 0.5, rows[far] + 0.5, positive=False)
    desk.wait()
    refined = desk.core.preview.masks[TUMOUR_SLICE]
    assert not refined[rows[far], columns[far]], "the pixel clicked as negative is still in the mask"


def test_undo_restores_the_segmentation_bit_for_bit(desk, label):
    before_tumour = np.zeros_like(label, dtype=np.uint8)
    before_tumour[TUMOUR_SLICE - 3 : TUMOUR_SLICE + 4] = label[TUMOUR_SLICE - 3 : TUMOUR_SLICE + 4]
    before_tumour[TUMOUR_SLICE, 0:40, 0:40] = 1  # something the user drew on the same slice
    set_segment_array(desk.segmentation, desk.tumour, desk.volume, before_tumour)
    before = desk.segment()
    desk.drag_box(tight_box(label[TUMOUR_SLICE]))
    desk.wait()
    desk.core.apply()
    after = desk.segment()
    changed = np.flatnonzero((after != before).reshape(after.shape[0], -1).any(axis=1))
    assert list(changed) == [TUMOUR_SLICE], "Apply touched slices other than the one prompted"
    desk.writer.undo()
    assert np.array_equal(desk.segment(), before)


def test_the_overwrite_setting_protects_finished_segments(desk, label):
    """'Modify other segments: overwrite none' leaves the other segment as it was (they may overlap)."""
    other = np.zeros_like(label, dtype=np.uint8)
    other[TUMOUR_SLICE] = label[TUMOUR_SLICE]
    other[TUMOUR_SLICE, :, : int(np.mean(np.nonzero(label[TUMOUR_SLICE])[1]))] = 0  # the tumour's right half
    set_segment_array(desk.segmentation, desk.other, desk.volume, other)
    desk.editor_node.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteNone)
    desk.drag_box(tight_box(label[TUMOUR_SLICE]))
    desk.wait()
    desk.core.apply()
    assert np.array_equal(desk.segment(desk.other), other), "a finished segment was overwritten"
    assert (desk.segment() & other).sum() > 0, "with overwrite none the segments overlap"

    desk.writer.undo()
    desk.editor_node.SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteAllSegments)
    desk.drag_box(tight_box(label[TUMOUR_SLICE]))
    desk.wait()
    desk.core.apply()
    assert desk.segment(desk.other).sum() < other.sum(), "overwrite-all must take the overlap from the other segment"


def test_the_editable_area_and_intensity_range_are_honoured(desk, label):
    desk.editor_node.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedInsideSingleSegment)
    allowed = np.zeros_like(label, dtype=np.uint8)
    allowed[TUMOUR_SLICE, : int(np.mean(np.nonzero(label[TUMOUR_SLICE])[0]))] = 1  # upper half of the slice
    set_segment_array(desk.segmentation, desk.other, desk.volume, allowed)
    desk.editor_node.SetMaskSegmentID(desk.other)
    desk.editor_node.SetSourceVolumeIntensityMask(True)
    desk.editor_node.SetSourceVolumeIntensityMaskRange(-400.0, 4000.0)
    desk.drag_box(tight_box(label[TUMOUR_SLICE]))
    desk.wait()
    preview = desk.core.preview.masks[TUMOUR_SLICE]
    desk.core.apply()
    written = desk.segment()[TUMOUR_SLICE].astype(bool)
    intensities = slicer.util.arrayFromVolume(desk.volume)[TUMOUR_SLICE]
    assert written.sum() > 0
    assert not (written & ~allowed[TUMOUR_SLICE].astype(bool)).any(), "wrote outside the editable area"
    assert (intensities[written] >= -400).all(), "wrote outside the editable intensity range"
    assert written.sum() < preview.sum()


def test_propagation_fills_the_tumour_in_one_undo_step(desk, label):
    desk.drag_box(tight_box(label[TUMOUR_SLICE]))
    desk.wait()
    desk.core.propagate("both")
    status = desk.wait()
    assert status.error is None, status.error
    slices = sorted(desk.core.preview.masks)
    assert desk.segment().sum() == 0, "propagation must only preview"
    written = desk.core.apply()
    assert written == slices and TUMOUR_SLICE in written
    result = desk.segment()
    tumour_slices = set(np.flatnonzero(label.any(axis=(1, 2))))
    assert len(tumour_slices & set(written)) >= len(tumour_slices) - 2
    assert dice(result, label) >= 0.85
    desk.writer.undo()
    assert desk.segment().sum() == 0, "the propagation's Apply was more than one undo step"


def test_propagation_never_overwrites_applied_slices(desk, label):
    desk.drag_box(tight_box(label[TUMOUR_SLICE]))
    desk.wait()
    desk.core.apply()
    key = desk.segment()[TUMOUR_SLICE].copy()
    desk.core.propagate("increasing")
    desk.wait()
    assert all(index >= TUMOUR_SLICE for index in desk.core.preview.masks)
    written = desk.core.apply()
    assert TUMOUR_SLICE not in written and written, written
    assert np.array_equal(desk.segment()[TUMOUR_SLICE], key)
    assert desk.segment()[:TUMOUR_SLICE].sum() == 0, "an increasing propagation went below its key slice"


def test_boxes_on_the_first_middle_and_last_slice_bound_a_between_propagation(desk, label):
    tumour = np.flatnonzero(label.any(axis=(1, 2)))
    first, last = int(tumour.min()), int(tumour.max())
    for index in (first, TUMOUR_SLICE, last):
        desk.show_slice(index)
        desk.drag_box(tight_box(label[index]))
        desk.wait()
        desk.core.apply()
    desk.core.propagate("between")
    status = desk.wait()
    assert status.error is None, status.error
    shown = set(desk.core.preview.masks)
    assert shown <= set(range(first, last + 1)), f"a between propagation left the keys' span: {sorted(shown)}"
    assert len(shown & set(range(first + 1, last))) >= last - first - 2, sorted(shown)
    desk.core.apply()
    assert not desk.segment()[:first].any() and not desk.segment()[last + 1 :].any()
    assert dice(desk.segment(), label) >= 0.80  # the benchmark's propagate-box3 measures 0.839 on lung2


def test_cancelling_a_propagation_keeps_or_drops_its_slices(desk, label):
    desk.drag_box(tight_box(label[TUMOUR_SLICE]))
    desk.wait()
    # a slice range of its own: the server keeps earlier tests' propagations and would answer from them at once
    desk.core.propagate("both", slice_range=(5, 55))
    desk.core.cancel_propagation(keep=False)
    desk.wait()
    assert set(desk.core.preview.masks) == {TUMOUR_SLICE}
    desk.core.propagate("both", slice_range=(5, 55))
    while desk.core.status.busy and desk.core.status.progress in (None, (0, 0)):  # until a slice came back
        desk.core.poll()
    desk.core.cancel_propagation(keep=True)
    status = desk.wait()
    assert "cancelled" in status.message
    kept = set(desk.core.preview.masks)
    assert TUMOUR_SLICE in kept and len(kept) >= 2


def test_a_superseded_answer_is_never_applied(desk, server, label):
    box = tight_box(label[TUMOUR_SLICE])
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    desk.click(*centre)
    desk.drag_box(box)  # before the click's answer came back
    desk.wait()
    assert desk.core.runner.dropped >= 1
    client = server.client
    remote = desk.core.uploads.resolve(client, desk.core.uploads.snapshot(desk.volume, "ct-lung"))
    expected = client.segment(remote, "K", TUMOUR_SLICE, [centre], [1], box).mask
    only_click = client.segment(remote, "K", TUMOUR_SLICE, [centre], [1]).mask
    assert not np.array_equal(expected, only_click), "the two answers must differ for this test to mean anything"
    assert np.array_equal(desk.core.preview.masks[TUMOUR_SLICE], expected)

    desk.click(*centre, positive=False)
    desk.core.cancel()  # the user pressed Cancel while the model worked
    desk.wait()
    assert desk.core.preview.masks == {}


def test_the_volume_is_uploaded_once_and_again_when_its_voxels_change(desk, server, label):
    client = server.client
    box = tight_box(label[TUMOUR_SLICE])
    desk.drag_box(box)
    desk.wait()
    uploads = client.pixel_uploads
    desk.click((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    desk.wait()
    desk.drag_box(box)
    desk.wait()
    assert client.pixel_uploads == uploads
    voxels = slicer.util.arrayFromVolume(desk.volume)
    voxels[0, 0, 0] += 1
    slicer.util.arrayFromVolumeModified(desk.volume)
    desk.drag_box(box)
    desk.wait()
    assert client.pixel_uploads == uploads + 1


def test_mistakes_are_refused_before_anything_runs(desk, label):
    with pytest.raises(InteractionError, match="outside slice"):
        desk.core.prompt_slice("K", TUMOUR_SLICE, points=[[600.0, 10.0]])
    with pytest.raises(InteractionError, match="nothing to apply"):
        desk.core.apply()
    with pytest.raises(InteractionError, match="segmented slice"):
        desk.core.propagate()
    no_server = InteractionCore(desk.scene.scene, desk.editor_node, desk.writer, lambda: None)
    with pytest.raises(InteractionError, match="no model server"):
        no_server.prompt_slice("K", TUMOUR_SLICE, box=tight_box(label[TUMOUR_SLICE]))
    desk.editor_node.SetSelectedSegmentID("")
    with pytest.raises(InteractionError, match="no segment selected"):
        desk.core.prompt_slice("K", TUMOUR_SLICE, box=tight_box(label[TUMOUR_SLICE]))


def test_a_killed_server_leaves_the_segmentation_unchanged(label):
    with LocalServer(SERVER_ARGS) as doomed:
        session = Desk(lambda: doomed.client)
        drawn = np.zeros_like(label, dtype=np.uint8)
        drawn[TUMOUR_SLICE - 1 : TUMOUR_SLICE + 2] = label[TUMOUR_SLICE - 1 : TUMOUR_SLICE + 2]
        set_segment_array(session.segmentation, session.tumour, session.volume, drawn)
        before = session.segment()
        session.drag_box(tight_box(label[TUMOUR_SLICE]))
        assert session.wait().error is None
        session.core.propagate("both")
        while session.core.status.busy and session.core.status.progress in (None, (0, 0)):
            session.core.poll()
        doomed.process.kill()
        doomed.process.wait()
        status = session.wait()
        assert status.error is not None and "propagation" in status.message
        assert set(session.core.preview.masks) == {TUMOUR_SLICE}, "a failed propagation left slices in the preview"
        session.click(*np.mean(np.reshape(tight_box(label[TUMOUR_SLICE]), (2, 2)), axis=0))
        status = session.wait()
        assert "no SAM-Med2D server answers" in status.error
        assert np.array_equal(session.segment(), before)
        session.core.close()


def test_the_result_round_trips_through_seg_nrrd(desk, label, tmp_path):
    desk.drag_box(tight_box(label[TUMOUR_SLICE]))
    desk.wait()
    desk.core.apply()
    path = tmp_path / "lung2.seg.nrrd"
    storage = desk.scene.scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.WriteData(desk.segmentation), "Slicer could not write the .seg.nrrd"
    read = read_labels(path, like=read_volume(require(LUNG2)))  # slicerio underneath, placed on the image grid
    names = read.label_names
    tumour_value = next(value for value, name in names.items() if name == "tumour")
    assert np.array_equal(read.array == tumour_value, desk.segment().astype(bool))


def test_key_slices_follow_undo_and_edits(desk, label):
    """A key slice the user undid is no key; one the user edited keeps its edited content through propagation."""
    desk.drag_box(tight_box(label[TUMOUR_SLICE]))
    desk.wait()
    desk.core.apply()
    desk.writer.undo()
    assert desk.core.key_slices("K") == []
    with pytest.raises(InteractionError, match="segmented slice"):
        desk.core.propagate()

    desk.drag_box(tight_box(label[TUMOUR_SLICE]))
    desk.wait()
    desk.core.apply()
    edited = desk.segment()
    rows = np.nonzero(edited[TUMOUR_SLICE])[0]
    edited[TUMOUR_SLICE, : int(rows.mean())] = 0  # the user erased the upper half by hand
    set_segment_array(desk.segmentation, desk.tumour, desk.volume, edited)
    desk.core.propagate("increasing")
    desk.wait()
    desk.core.apply()
    assert np.array_equal(desk.segment()[TUMOUR_SLICE], edited[TUMOUR_SLICE])


def test_suggestions_are_shown_one_at_a_time_and_the_chosen_one_applied(desk, label):
    """Everything mode with no prompt: LiteMedSAM's answers to an 8×8 grid of clicks, best rated first; one of them
    is the tumour (measured: 62 suggestions, the best Dice 0.773); Apply writes the one on show, undo takes it back."""
    before = desk.segment()
    seen: list = []
    desk.core.on_change = seen.append
    desk.core.suggest(desk.view)
    status = desk.wait()
    assert status.error is None, status.error
    counted = [shown.progress for shown in seen if shown.work == "suggestion"]
    assert counted == [(0, 0)] + [(done, 64) for done in range(1, 65)], "one step per grid click, in order"
    count = desk.core.suggestion_count
    assert count >= 30, status.message
    assert status.message.startswith(f"Suggestion 1 of {count} on slice {TUMOUR_SLICE}")
    assert np.array_equal(desk.segment(), before), "suggestions must not write into the segment"
    shown = []
    for _ in range(count):
        (index, mask), = desk.core.preview.masks.items()
        assert index == TUMOUR_SLICE
        shown.append(mask.copy())
        desk.core.next_suggestion()
    assert np.array_equal(desk.core.preview.masks[TUMOUR_SLICE], shown[0]), "the list goes round"
    scores = [dice(mask, label[TUMOUR_SLICE]) for mask in shown]
    best = int(np.argmax(scores))
    assert scores[best] >= 0.70
    desk.core.next_suggestion(best)
    assert desk.core.apply() == [TUMOUR_SLICE]
    assert np.array_equal(desk.segment()[TUMOUR_SLICE], shown[best])
    assert desk.core.key_slices("K") == [TUMOUR_SLICE]
    with pytest.raises(InteractionError, match="no suggestions"):
        desk.core.next_suggestion()
    desk.writer.undo()
    assert np.array_equal(desk.segment(), before)


def test_cancel_stops_suggest_on_the_server_and_its_late_progress_is_not_shown(desk, server):
    seen: list = []
    desk.core.on_change = seen.append
    stops_before = len(log_lines_with(server, "suggestions stopped"))
    desk.core.suggest_slice("K", TUMOUR_SLICE, {"points_per_side": 16})  # 256 clicks: minutes on a CPU
    deadline = time.monotonic() + 300
    while not any(shown.progress not in (None, (0, 0)) for shown in seen) and time.monotonic() < deadline:
        desk.core.poll()
        time.sleep(0.05)
    assert seen[-1].work == "suggestion" and seen[-1].progress[1] == 256, seen[-1]
    desk.core.cancel()
    status = desk.wait()
    assert status.message.startswith("Cancelled") and not status.busy and desk.core.suggestion_count == 0
    assert not desk.core.preview.masks
    stopped = wait_for_log_line(server, "suggestions stopped", known=stops_before)
    assert int(re.search(r"after (\d+) of 256 grid points", stopped).group(1)) < 256


def test_a_click_refines_the_suggestion_on_show_and_cancel_starts_afresh(desk, label):
    """The suggestion on show is the answer to its grid click: that click is the prompt (and its marker), so a
    click adds to it; after Cancel a click stands alone."""
    desk.core.suggest_slice("K", TUMOUR_SLICE, {"points_per_side": 2})
    desk.wait()
    assert desk.core.suggestion_count >= 1
    prompts = desk.core.prompts
    assert prompts.labels == (1,) and prompts.points[0] in {(128.0, 128.0), (384.0, 128.0), (128.0, 384.0),
                                                            (384.0, 384.0)}  # the 2×2 grid's cell centres
    (marker,) = desk.core.markers().points
    assert np.allclose(ras_to_pixel(desk.volume, prompts.view, marker), prompts.points[0])
    rows, columns = np.nonzero(label[TUMOUR_SLICE])
    centre = (float(np.median(columns)) + 0.5, float(np.median(rows)) + 0.5)
    desk.click(*centre)
    assert desk.core.suggestion_count == 0
    assert desk.core.prompts.points == (prompts.points[0], centre) and desk.core.prompts.labels == (1, 1)
    assert desk.wait().error is None
    desk.core.cancel()
    desk.click(*centre)
    assert desk.core.prompts.points == (centre,)
    desk.wait()
    assert dice(desk.core.preview.masks[TUMOUR_SLICE], label[TUMOUR_SLICE]) >= 0.70
