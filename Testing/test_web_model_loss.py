"""The page when its model server goes away: a visible error, and the segmentation exactly as it was.

The page is connected to a running ``sammed2d serve`` (remote mode, --server/--token) that the test owns
and kills mid-session.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import DATA, require

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
pytest.importorskip("trame_slicer", reason="trame-slicer is not installed (pip install -e '.[web]')")
from web_harness import RunningApp, drag_box, launch_chromium, open_page, segment_mask, show_slice  # noqa: E402

from sammed2d.client import LocalServer  # noqa: E402
from sammed2d.web.options import WebOptions  # noqa: E402

LUNG2 = DATA / "pyradiomics" / "lung2_image.nrrd"
TUMOUR_SLICE = 22


@pytest.fixture(scope="module")
def label() -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(require(DATA / "pyradiomics" / "lung2_label.nrrd")))) > 0


def tight_box(mask: np.ndarray) -> list[float]:
    rows, columns = np.nonzero(mask)
    return [float(columns.min()), float(rows.min()), float(columns.max() + 1), float(rows.max() + 1)]


def test_a_stopped_model_server_shows_an_error_and_changes_nothing(label):
    from playwright.sync_api import sync_playwright

    with LocalServer(["--threads", "2", "--no-compile"]) as model:
        options = WebOptions(volumes=(require(LUNG2),), server_url=model.url, token=model.token, port=0,
                             preset="ct-lung")
        with RunningApp(options) as web, sync_playwright() as playwright:
            assert web.app.model.wait(60), web.app.model.describe()
            browser = launch_chromium(playwright)
            show_slice(web, "Red", "K", TUMOUR_SLICE)
            page = open_page(browser, web)
            assert "remote server" in page.locator("#model-status").inner_text()
            web.settle(lambda: drag_box(web, page, "Red", "K", TUMOUR_SLICE, tight_box(label[TUMOUR_SLICE])))
            web.settle(lambda: page.click("#apply"), what="Apply")
            before = segment_mask(web)
            assert before.sum() > 1000

            model.process.kill()
            model.process.wait()
            box = tight_box(label[TUMOUR_SLICE + 1])
            show_slice(web, "Red", "K", TUMOUR_SLICE + 1)
            page.wait_for_timeout(500)
            web.settle(lambda: drag_box(web, page, "Red", "K", TUMOUR_SLICE + 1, box))
            page.locator("#error").wait_for(state="visible")
            assert "no SAM-Med2D server answers" in page.locator("#error").inner_text()
            assert "unchanged" in page.locator("#status").inner_text()
            assert web.call(lambda: web.app.editor.core.preview.masks) == {}

            page.click("#propagate")
            web.wait_for(lambda: "propagation failed" in web.app.state.status, what="the failed propagation")
            page.locator("#error").wait_for(state="visible")
            assert np.array_equal(segment_mask(web), before), "the segmentation changed without a model"
            browser.close()
