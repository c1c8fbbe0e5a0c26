"""``sammed2d web`` driven for real: the app on a thread of this process, Chromium on its page.

The app runs its own asyncio loop on a thread (the scene, the views and their GL contexts live there);
``RunningApp.call`` runs a function on that loop, which is how tests read the scene the page edits.
Browser coordinates are derived from the server's slice nodes, so a test can aim at a voxel. Used by the
web tests and by benchmarks/web_latency.py (so it needs playwright and trame-slicer, not pytest).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from sammed2d.interaction.slice_mapping import pixel_to_ras, ras_to_xy, view_of_index
from sammed2d.web.app import WebApp
from sammed2d.web.options import WebOptions

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 900}
T = TypeVar("T")
_names = itertools.count()


class RunningApp:
    """``with RunningApp(options) as app:`` serves the page until the block ends."""

    def __init__(self, options: WebOptions) -> None:
        self.options = options
        self.app: WebApp | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sammed2d-web-test", daemon=True)

    def __enter__(self) -> "RunningApp":
        self._thread.start()
        if not self._ready.wait(120):
            raise TimeoutError("the web app did not start within 120 s")
        if self._failure is not None:
            raise self._failure
        return self

    def __exit__(self, *exc: object) -> None:
        if self.app is not None:
            asyncio.run_coroutine_threadsafe(self.app.stop(), self._loop).result(30)
        self._thread.join(60)

    @property
    def url(self) -> str:
        assert self.app is not None
        return self.app.url

    def call(self, function: Callable[[], T], timeout: float = 60) -> T:
        """``function()`` on the app's loop (where the scene lives), awaited if it is a coroutine; its result or
        exception."""

        async def run() -> T:
            result = function()
            return await result if inspect.isawaitable(result) else result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def wait_for(self, condition: Callable[[], Any], timeout: float = 120, what: str = "the condition") -> Any:
        """Poll ``condition`` on the app's loop until it returns something true."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.call(condition)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not happen within {timeout:g} s (status: {self.state('status')!r}, "
                                   f"error: {self.state('error')!r})")
            time.sleep(0.1)

    def state(self, key: str) -> Any:
        return self.call(lambda: self.app.state[key])

    def settle(self, action: Callable[[], None], timeout: float = 300, what: str = "the model's answer") -> None:
        """Do ``action`` (in the browser) and wait until the core has answered it: its status changed and
        nothing is pending."""
        core = self.app.editor.core
        before = self.call(lambda: core.status)
        action()
        self.wait_for(lambda: core.status is not before and not core.status.busy and not core.runner.busy, timeout,
                      what)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:  # as asyncio.run ends: no executor thread of this loop outlives the test
            self._loop.run_until_complete(self._loop.shutdown_default_executor())
            self._loop.close()

    async def _serve(self) -> None:
        try:
            self.app = WebApp(self.options, name=f"sammed2d-web-test-{next(_names)}")
            await self.app.serve(on_ready=lambda url: self._ready.set())
        except BaseException as error:  # reported to the test thread
            self._failure = error
            self._ready.set()


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def open_page(browser, app: RunningApp):
    """A page showing the app, once every view has drawn a frame."""
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(app.url)
    page.wait_for_function("document.querySelectorAll('.remote-controlled-area img').length >= 4", timeout=60_000)
    page.wait_for_timeout(1500)  # the views' first frames after the page has sized them
    return page


def view_area(page, view: str):
    """The image element of a view ('Red' axial, 'Yellow' sagittal, 'Green' coronal, 'ThreeD')."""
    return page.locator(f"#view-{view}").locator("xpath=..").locator(".remote-controlled-area img")


def page_position(app: RunningApp, page, view: str, ras: Sequence[float]) -> tuple[float, float]:
    """Where on the page a RAS point on the view's plane is drawn."""

    def view_geometry():
        slice_view = app.app.slicer.view_manager.get_view(view)
        return ras_to_xy(slice_view.get_view_node(), ras), slice_view.render_window().GetSize()

    (x, y), (width, height) = app.call(view_geometry)
    box = view_area(page, view).bounding_box()
    return box["x"] + x * box["width"] / width, box["y"] + (height - y) * box["height"] / height


def voxel_ras(app: RunningApp, axis: str, index: int, x: float, y: float) -> tuple[float, float, float]:
    """The RAS point of slice pixel (x, y) (x = column) of slice ``index`` normal to ``axis``."""

    def ras():
        volume = app.app.editor.editor_node.GetSourceVolumeNode()
        return pixel_to_ras(volume, view_of_index(volume, axis, index), x, y)

    return app.call(ras)


def show_slice(app: RunningApp, view: str, axis: str, index: int) -> None:
    """Scroll ``view`` to slice ``index`` of the source volume (as the page's slider would)."""

    def scroll():
        volume = app.app.editor.editor_node.GetSourceVolumeNode()
        ras = pixel_to_ras(volume, view_of_index(volume, axis, index), 0.5, 0.5)
        app.app.slicer.view_manager.get_view(view).get_view_node().JumpSliceByOffsetting(*ras)

    app.call(scroll)


def drag_box(app: RunningApp, page, view: str, axis: str, index: int, box: Sequence[float]) -> None:
    """Drag a box with the mouse between slice pixel corners (x0, y0) and (x1, y1) of the slice ``view`` shows."""
    corner, opposite = voxel_ras(app, axis, index, box[0], box[1]), voxel_ras(app, axis, index, box[2], box[3])
    drag(page, page_position(app, page, view, corner), page_position(app, page, view, opposite))


def click_pixel(app: RunningApp, page, view: str, axis: str, index: int, x: float, y: float) -> None:
    page.mouse.click(*page_position(app, page, view, voxel_ras(app, axis, index, x, y)))


def fresh_segment(app: RunningApp) -> str:
    """Nothing pending and one new, empty, selected segment (the page's own actions); returns its id."""

    def reset() -> str:
        editor = app.app.editor
        editor.cancel()
        for row in list(editor.state.segments):
            editor.remove_segment(row["id"])
        editor.add_segment()
        return editor.editor_node.GetSelectedSegmentID()

    return app.call(reset)


def drag(page, start: tuple[float, float], end: tuple[float, float], steps: int = 8) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=steps)
    page.mouse.up()


def segment_mask(app: RunningApp, segment_id: str | None = None) -> np.ndarray:
    """A segment of the shown segmentation on the volume's grid, (K, J, I) bool, exported by Slicer's logic."""

    def export() -> np.ndarray:
        import slicer
        import vtk
        from vtkmodules.util import numpy_support

        editor = app.app.editor
        scene = app.app.slicer.scene
        volume = editor.editor_node.GetSourceVolumeNode()
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segment_id or editor.editor_node.GetSelectedSegmentID())
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
        try:
            app.app.slicer.segmentations_logic.ExportSegmentsToLabelmapNode(
                editor.segmentation_node, ids, labelmap, volume, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
            size_i, size_j, size_k = labelmap.GetImageData().GetDimensions()
            scalars = numpy_support.vtk_to_numpy(labelmap.GetImageData().GetPointData().GetScalars())
            return scalars.reshape(size_k, size_j, size_i) > 0
        finally:
            scene.RemoveNode(labelmap)

    return app.call(export)


def coloured_pixels(image: np.ndarray) -> np.ndarray:
    """Pixels of an RGB screenshot that are clearly not grey (the CT is grey; segments and previews are not)."""
    channels = image[..., :3].astype(int)
    return (channels.max(axis=-1) - channels.min(axis=-1)) > 60


def screenshot_of(locator) -> np.ndarray:
    from io import BytesIO

    from PIL import Image

    return np.asarray(Image.open(BytesIO(locator.screenshot())).convert("RGB"))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)
