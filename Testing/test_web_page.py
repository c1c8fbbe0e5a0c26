"""``sammed2d web`` in real Chromium on real CT (lung2) with the real LiteMedSAM in a local model server.

One app (with its own model server child) serves the whole module; each test starts from a fresh segment.
The mouse drags and clicks on the page's views; results are read from the app's scene (Slicer's own
export) and compared with lung2's ground truth, with the engine's own propagation, and with screenshots.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import DATA, require

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
pytest.importorskip("trame_slicer", reason="trame-slicer is not installed (pip install -e '.[web]')")
from web_harness import (  # noqa: E402
    RunningApp, click_pixel, coloured_pixels, dice, drag_box, fresh_segment, launch_chromium, open_page,
    page_position, screenshot_of, segment_mask, show_slice, view_area, voxel_ras,
)

from sammed2d.volumes import read_labels, read_volume, stack_slices  # noqa: E402
from sammed2d.web.options import WebOptions  # noqa: E402

LUNG2 = DATA / "pyradiomics" / "lung2_image.nrrd"
LUNG2_LABEL = DATA / "pyradiomics" / "lung2_label.nrrd"
TUMOUR_SLICE = 22
MAX_UPLOAD = 48 << 20


@pytest.fixture(scope="module")
def label() -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(require(LUNG2_LABEL)))) > 0


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("web-output")


@pytest.fixture(scope="module")
def web(output_dir):
    options = WebOptions(volumes=(require(LUNG2),), serve_args=("--threads", "2", "--no-compile"), port=0,
                         preset="ct-lung", output_dir=output_dir, max_upload=MAX_UPLOAD)
    with RunningApp(options) as app:
        assert app.app.model.wait(300), app.app.model.describe()
        yield app


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(web, browser):
    fresh_segment(web)
    show_slice(web, "Red", "K", TUMOUR_SLICE)
    tab = open_page(browser, web)
    yield tab
    tab.close()


def tight_box(mask: np.ndarray) -> list[float]:
    rows, columns = np.nonzero(mask)
    return [float(columns.min()), float(rows.min()), float(columns.max() + 1), float(rows.max() + 1)]


def preview(web) -> dict[int, np.ndarray]:
    return web.call(lambda: dict(web.app.editor.core.preview.masks))


def segment_box(web, page, label) -> None:
    """Drag a tight box around the tumour on its largest slice and wait for the preview."""
    web.settle(lambda: drag_box(web, page, "Red", "K", TUMOUR_SLICE, tight_box(label[TUMOUR_SLICE])))


def tumour_on_screen(web, page, label) -> np.ndarray:
    """Of the axial view's pixels inside the tumour's box, the share drawn in colour (the segment's)."""
    box = tight_box(label[TUMOUR_SLICE])
    area = view_area(page, "Red").bounding_box()
    corners = [page_position(web, page, "Red", voxel_ras(web, "K", TUMOUR_SLICE, x, y))
               for x, y in ((box[0] + 4, box[1] + 4), (box[2] - 4, box[3] - 4))]
    (x0, y0), (x1, y1) = [(int(x - area["x"]), int(y - area["y"])) for x, y in corners]
    image = screenshot_of(view_area(page, "Red"))
    return coloured_pixels(image[min(y0, y1) : max(y0, y1), min(x0, x1) : max(x0, x1)])


def test_the_page_shows_lung2_in_every_view(web, page):
    for view in ("Red", "Yellow", "Green", "ThreeD"):
        image = screenshot_of(view_area(page, view)).astype(float)
        assert image.std() > 20 and (image.max(axis=-1) > 40).mean() > 0.2, f"the {view} view looks blank"
    axial = screenshot_of(view_area(page, "Red"))
    assert coloured_pixels(axial).mean() < 0.001, "the CT should be grey before anything is segmented"
    assert "litemedsam" in page.locator("#model-status").inner_text()
    assert page.locator("#shortcuts").inner_text().count("\n") >= 7, "the keyboard shortcuts are listed"


def test_a_box_dragged_over_the_tumour_segments_it_and_shows_it(web, page, label):
    segment_box(web, page, label)
    assert set(preview(web)) == {TUMOUR_SLICE}
    assert segment_mask(web).sum() == 0, "a preview must not write into the segment"
    web.settle(lambda: page.click("#apply"), what="Apply")
    written = segment_mask(web)
    assert dice(written[TUMOUR_SLICE], label[TUMOUR_SLICE]) >= 0.85
    assert written[np.arange(written.shape[0]) != TUMOUR_SLICE].sum() == 0, "only the prompted slice is written"
    page.wait_for_function("document.querySelector('#status').innerText.includes('Applied')")
    page.wait_for_timeout(1000)  # the next frame
    assert tumour_on_screen(web, page, label).mean() > 0.5, "the segment is not drawn over the tumour"


def test_a_negative_point_removes_a_region(web, page, label):
    box = tight_box(label[TUMOUR_SLICE])
    web.settle(lambda: drag_box(web, page, "Red", "K", TUMOUR_SLICE,
                                [box[0] - 40, box[1] - 40, box[2] + 40, box[3] + 40]))
    loose = preview(web)[TUMOUR_SLICE]
    outside = loose & ~label[TUMOUR_SLICE]
    assert outside.sum() > 200, "a loose box should take in more than the tumour"
    rows, columns = np.nonzero(outside)
    far = int(np.argmax((columns - columns.mean()) ** 2 + (rows - rows.mean()) ** 2))
    page.keyboard.press("n")
    web.wait_for(lambda: web.app.editor.effect.tool == "point-", what="the − point tool")
    web.settle(lambda: click_pixel(web, page, "Red", "K", TUMOUR_SLICE, columns[far] + 0.5, rows[far] + 0.5))
    removed = loose & ~preview(web)[TUMOUR_SLICE]
    assert removed[rows[far], columns[far]], "the pixel clicked as negative is still in the mask"
    assert removed.sum() > 20, "the negative point took out a pixel, not a region"
    assert web.call(lambda: web.app.editor.core.prompts.labels) == (0,)
    page.keyboard.press("b")


def test_stopping_a_propagation_keeps_or_drops_its_slices_and_undo_restores(web, page, label):
    segment_box(web, page, label)
    web.settle(lambda: page.keyboard.press("Enter"), what="Apply")
    before = segment_mask(web)

    def stop_after(done: int, button: str) -> None:
        web.wait_for(lambda: web.app.state.progress_done >= done, what=f"{done} propagated slices")
        page.locator("#progress").wait_for(state="visible")
        page.click(button)

    page.click("#propagate")
    stop_after(1, "#stop-discard")
    web.wait_for(lambda: not web.app.state.propagating, what="the propagation to stop")
    assert set(preview(web)) == {TUMOUR_SLICE}, "dropped slices are still in the preview"

    page.keyboard.press("g")
    stop_after(2, "#stop-keep")
    web.wait_for(lambda: not web.app.editor.core.runner.busy and not web.app.state.propagating,
                 what="the propagation to stop")
    kept = preview(web)
    assert "cancelled" in web.state("status")
    assert TUMOUR_SLICE in kept and 2 <= len(kept) < 9, sorted(kept)
    assert np.array_equal(segment_mask(web), before), "stopping must not write"

    web.settle(lambda: page.click("#apply"), what="Apply")
    after = segment_mask(web)
    changed = set(np.flatnonzero((after != before).any(axis=(1, 2))))
    assert changed and changed <= set(kept) - {TUMOUR_SLICE}
    page.click("#undo")
    web.wait_for(lambda: web.app.state.can_redo, what="Undo")
    assert np.array_equal(segment_mask(web), before), "undo did not restore the segment exactly"
    page.keyboard.press("Control+y")
    web.wait_for(lambda: not web.app.state.can_redo, what="Redo")
    assert np.array_equal(segment_mask(web), after)


def test_propagation_through_the_page_matches_the_engine(web, page, label):
    segment_box(web, page, label)
    box = web.call(lambda: web.app.editor.core.prompts.box)
    page.click("#propagate")
    page.locator("#busy").wait_for(state="visible")
    web.wait_for(lambda: not web.app.state.busy and "Propagation finished" in web.app.state.status, timeout=600,
                 what="the propagation")
    web.settle(lambda: page.click("#apply"), what="Apply")
    through_page = segment_mask(web)

    client = web.app.model.client()
    volume = read_volume(LUNG2)
    remote = client.upload(volume.array, volume.geometry.spacing, volume.geometry.origin, volume.geometry.direction,
                           preset="ct-lung")
    key = client.segment(remote, "K", TUMOUR_SLICE, box=list(box))
    stream = client.propagate(remote, "K", {TUMOUR_SLICE: key}, {"slice_range": [0, volume.shape[0] - 1]})
    masks = {result.index: result.mask for result in stream}
    masks.setdefault(TUMOUR_SLICE, key.mask)
    engine = stack_slices(masks, "K", volume.shape, dtype=bool)

    page_dice, engine_dice = dice(through_page, label), dice(engine, label)
    assert page_dice >= 0.85, page_dice
    assert abs(page_dice - engine_dice) <= 0.02, (page_dice, engine_dice)


def test_the_segmentation_is_saved_and_downloaded_as_seg_nrrd(web, page, label, output_dir, tmp_path):
    segment_box(web, page, label)
    web.settle(lambda: page.click("#apply"), what="Apply")
    written = segment_mask(web)
    name = web.call(lambda: next(row["name"] for row in web.app.state.segments))
    image = read_volume(LUNG2)

    page.fill("#save-name", "lung2 tumour")
    page.click("#save")
    saved = output_dir / "lung2 tumour.seg.nrrd"
    web.wait_for(lambda: saved.exists(), what="the saved file")
    with page.expect_download() as download:
        page.click("#download")
    downloaded = tmp_path / download.value.suggested_filename
    download.value.save_as(downloaded)
    assert downloaded.name == "lung2_image.seg.nrrd"
    for path in (saved, downloaded):
        labels = read_labels(path, like=image)  # refuses labels off the image's grid
        assert labels.geometry.matches(image.geometry) and labels.shape == image.shape
        value = next(value for value, segment in labels.label_names.items() if segment == name)
        assert np.array_equal(labels.array == value, written), path

    page.fill("#save-name", "../escaped")
    page.click("#save")
    page.locator("#error").wait_for(state="visible")
    assert "plain file name" in page.locator("#error").inner_text()
    assert not (output_dir.parent / "escaped.seg.nrrd").exists()


def test_suggestions_are_browsed_and_the_chosen_one_applied(web, page, label):
    """Suggest with no prompt finds LiteMedSAM's answers to a grid of clicks on the axial slice (measured: 62 on
    slice 22); M walks through them until the tumour is on show, and Enter writes that one."""
    web.settle(lambda: page.click("#suggest"), timeout=600, what="the suggestions")
    count = web.state("suggestions")
    assert count >= 30, web.state("status")
    page.wait_for_function(f"document.querySelector('#status').innerText.includes('Suggestion 1 of {count} on slice "
                           f"{TUMOUR_SLICE}')")
    assert page.locator("#next-suggestion").is_enabled()
    assert segment_mask(web).sum() == 0, "suggestions must not write into the segment"
    for _ in range(count):
        if dice(preview(web)[TUMOUR_SLICE], label[TUMOUR_SLICE]) >= 0.7:
            break
        web.settle(lambda: page.keyboard.press("m"), what="the next suggestion")
    else:
        pytest.fail("no suggestion is the tumour")
    shown = preview(web)[TUMOUR_SLICE]
    web.settle(lambda: page.keyboard.press("Enter"), what="Apply")
    written = segment_mask(web)
    assert np.array_equal(written[TUMOUR_SLICE], shown)
    assert written[np.arange(written.shape[0]) != TUMOUR_SLICE].sum() == 0, "only the suggested slice is written"
    assert web.state("suggestions") == 0
    page.wait_for_function("document.querySelector('#next-suggestion').disabled")


def test_suggest_counts_its_clicks_in_the_bar_and_cancel_stops_it(web, page):
    """While Suggest works the bar fills with the grid's clicks answered (no propagation controls light up);
    Cancel stops it and nothing is offered."""
    page.click("#suggest")
    web.wait_for(lambda: web.app.state.progress_done >= 1, timeout=300, what="the first grid click answered")
    assert web.state("progress_planned") == 64 and not web.state("propagating")
    bar = page.locator("#busy[role=progressbar]")
    page.wait_for_function("Number(document.querySelector('#busy').getAttribute('aria-valuenow')) > 0")
    assert bar.get_attribute("aria-valuemax") == "100"
    assert page.locator("#stop-keep").is_disabled() and not page.locator("#progress").is_visible()
    page.click("#cancel")
    web.wait_for(lambda: not web.app.editor.core.runner.busy and not web.app.state.busy, what="Suggest to stop")
    assert web.state("status").startswith("Cancelled") and web.state("suggestions") == 0


def test_a_refused_action_says_why_in_the_panel(web, page):
    page.keyboard.press("m")
    page.wait_for_function("document.querySelector('#error').innerText.includes('no suggestions on show')")
    page.click("#propagate")
    page.wait_for_function("document.querySelector('#error').innerText.includes('segmented slice')")


def test_a_sagittal_click_lands_on_the_right_voxel(web, page, label):
    k, j, i = (int(round(v)) for v in np.mean(np.nonzero(label), axis=1))
    assert label[k, j, i]
    target = voxel_ras(web, "I", i, j + 0.5, k + 0.5)  # sagittal slices: columns J, rows K

    def aim() -> None:  # zoom the sagittal view in, with the target off its centre
        node = web.app.slicer.view_manager.get_view("Yellow").get_view_node()
        node.JumpSliceByCentering(target[0], target[1] + 12.0, target[2] - 9.0)
        width, height, _ = node.GetDimensions()
        node.SetFieldOfView(60.0, 60.0 * height / width, node.GetFieldOfView()[2])

    web.call(aim)
    page.wait_for_timeout(500)
    page.keyboard.press("p")
    web.wait_for(lambda: web.app.editor.effect.tool == "point+", what="the + point tool")
    web.settle(lambda: page.mouse.click(*page_position(web, page, "Yellow", target)))
    prompts = web.call(lambda: web.app.editor.core.prompts)
    assert (prompts.view.axis, prompts.view.index) == ("I", i)
    (x, y), = prompts.points
    assert (int(np.floor(y)), int(np.floor(x))) == (k, j), "the click landed on another voxel"
    assert preview(web)[i][k, j], "the tumour under the + point is not in the preview"
    page.keyboard.press("b")


def test_uploads_are_checked_and_opened(web, page, tmp_path):
    too_large = tmp_path / "huge.nrrd"
    too_large.write_bytes(b"\0" * (MAX_UPLOAD + 1))
    page.set_input_files("#upload", str(too_large))
    page.wait_for_function("document.querySelector('#error') && "
                           "document.querySelector('#error').innerText.includes('too large')")

    not_an_image = tmp_path / "notes.nrrd"
    not_an_image.write_text("these are notes, not voxels", encoding="utf-8")
    page.set_input_files("#upload", str(not_an_image))
    page.wait_for_function("document.querySelector('#error').innerText.includes('not opened')")
    volumes = web.state("volumes")
    assert len(volumes) == 1, "a refused upload must not add a volume"

    brain = require(DATA / "pyradiomics" / "brain1_image.nrrd")
    page.set_input_files("#upload", str(brain))
    web.wait_for(lambda: len(web.app.state.volumes) == 2, what="the uploaded volume")
    opened = web.call(lambda: web.app.editor.editor_node.GetSourceVolumeNode().GetImageData().GetDimensions())
    assert opened == read_volume(brain).shape[::-1]
    web.call(lambda: web.app.editor.show_volume(volumes[0]["id"]))
