"""The SAMMed2D module's console API (``SAMMed2DLib.scripting``) on real lung2 CT with a real LiteMedSAM server."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import DATA, REPO, require
from slicer_scene import dice, new_scene, segment_array

from sammed2d.client import LocalServer
from sammed2d.interaction import InteractionError

LUNG2 = DATA / "pyradiomics" / "lung2_image.nrrd"
TUMOUR_SLICE = 22


@pytest.fixture(scope="module")
def server():
    with LocalServer(["--threads", "2", "--no-compile"]) as running:
        yield running


@pytest.fixture(scope="module")
def label() -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(require(DATA / "pyradiomics" / "lung2_label.nrrd")))) > 0


@pytest.fixture()
def scripted(server, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "SAMMed2D"))
    from SAMMed2DLib.scripting import ScriptedSegmentation

    scene = new_scene()
    volume = scene.load_volume(require(LUNG2), "lung2")
    segmentation, (segment_id,) = scene.segmentation_for(volume, "tumour")
    session = ScriptedSegmentation(volume, segmentation, segment_id, lambda: server.client, preset="ct-lung")
    session.segmentation, session.segment_id = segmentation, segment_id
    yield session
    session.close()


def _box_ijk(label: np.ndarray) -> list[float]:
    rows, columns = np.nonzero(label[TUMOUR_SLICE])
    return [columns.min(), rows.min(), TUMOUR_SLICE, columns.max(), rows.max(), TUMOUR_SLICE]


def test_a_box_in_ijk_and_the_same_box_in_ras_give_the_same_tumour(scripted, label):
    box = _box_ijk(label)
    mask = scripted.segment(box=box, coordinates="IJK")
    written = segment_array(scripted.segmentation, scripted.segment_id, scripted.volumeNode)
    assert dice(written[TUMOUR_SLICE], label[TUMOUR_SLICE]) >= 0.85
    assert np.array_equal(written[TUMOUR_SLICE].astype(bool), mask)

    from sammed2d.interaction.slice_mapping import ras_to_ijk

    to_ras = np.linalg.inv(ras_to_ijk(scripted.volumeNode))
    corners = [to_ras @ np.array([*box[:3], 1.0]), to_ras @ np.array([*box[3:], 1.0])]
    again = scripted.segment(box=[*corners[0][:3], *corners[1][:3]], coordinates="RAS", apply=False)
    assert np.array_equal(again, mask)


def test_refine_propagate_and_undo(scripted, label):
    box = _box_ijk(label)
    first = scripted.segment(box=box, coordinates="IJK", apply=False)
    rows, columns = np.nonzero(first)
    refined = scripted.segment(points=[[columns[0], rows[0], TUMOUR_SLICE]], labels=[0], coordinates="IJK",
                               refine=True, apply=False)
    assert 0 < refined.sum() < first.sum(), "a negative click must take something away"
    assert scripted.core.markers().labels == (0,) and scripted.core.markers().box is not None
    scripted.apply()
    slices = scripted.propagate("both")
    assert len(slices) >= 8 and TUMOUR_SLICE not in slices
    written = segment_array(scripted.segmentation, scripted.segment_id, scripted.volumeNode)
    assert dice(written, label) >= 0.8
    scripted.undo()
    after_undo = segment_array(scripted.segmentation, scripted.segment_id, scripted.volumeNode)
    assert after_undo[np.arange(after_undo.shape[0]) != TUMOUR_SLICE].sum() == 0
    assert after_undo[TUMOUR_SLICE].sum() > 0


def test_a_suggestion_is_applied_by_its_number(scripted):
    """A 2×2 grid: four clicks' answers; the one chosen by number is what the segment gets, as one undo step."""
    masks = scripted.suggest(TUMOUR_SLICE, pointsPerSide=2)
    assert 1 <= len(masks) <= 4 and all(mask.shape == (512, 512) and mask.any() for mask in masks)
    chosen = len(masks) - 1
    assert scripted.applySuggestion(chosen) == [TUMOUR_SLICE]
    written = segment_array(scripted.segmentation, scripted.segment_id, scripted.volumeNode)
    np.testing.assert_array_equal(written[TUMOUR_SLICE], masks[chosen])
    assert written.sum() == masks[chosen].sum()
    with pytest.raises(InteractionError, match="no suggestions"):
        scripted.applySuggestion(0)
    scripted.undo()
    assert not segment_array(scripted.segmentation, scripted.segment_id, scripted.volumeNode).any()


def test_prompts_on_two_slices_are_refused(scripted):
    with pytest.raises(InteractionError, match="different slices"):
        scripted.segment(points=[[100, 100, 10], [100, 100, 12]], coordinates="IJK")


def test_the_module_self_test_scenario_passes_here(server, monkeypatch):
    """What SAMMed2DTest.test_SegmentAndUndo checks inside Slicer, run under slicer-core."""
    monkeypatch.syspath_prepend(str(REPO / "SAMMed2D"))
    from SAMMed2DLib.scripting import ScriptedSegmentation
    from SAMMed2DLib.selfcheck import checkLiver, phantomScene

    scene = new_scene()
    volume, segmentation, segment_id, liver = phantomScene(scene.scene)
    scripted = ScriptedSegmentation(volume, segmentation, segment_id, lambda: server.client, preset="ct-soft-tissue")
    check = checkLiver(scripted, volume, segmentation, segment_id, liver)
    scripted.close()
    assert check.dice >= 0.85 and check.written_elsewhere == 0 and check.left_after_undo == 0, check
