"""What the web page costs on top of the engine, measured on this machine in one run.

    python benchmarks/web_latency.py [--cached-clicks 3] [--screenshot Resources/Screenshots/web-lung2.png]

Drives ``sammed2d web`` (on a thread of this process) in headless Chromium on lung2 with LiteMedSAM in a
``sammed2d serve`` child (2 threads, no prefetch, so a new slice is really new), and prints side by side:
- a box dragged on a slice → the first frame in the browser that shows the answer (the view's pixels
  inside the box turn the segment's colour), p50 / p95, on a new slice and with its embedding cached,
  next to the engine's own ``VolumeSession.segment`` (same model, threads, slices, boxes; clicks
  alternate between the two, so both see the same load on a shared machine);
- propagation from the same key slice, slices per second through the page (Propagate → "finished" on
  the page) next to the engine's ``Propagation.run``, each starting with an empty embedding cache;
- the memory (RSS) of this process holding the page, of the model server, and of the engine.
The engine runs in a worker process of its own (torch beside the page's VTK and Mesa in one process is
not safe).
Needs ../shared/data/pyradiomics/lung2, Chromium at /usr/bin/chromium, playwright and trame-slicer.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from playwright.sync_api import sync_playwright

from sammed2d.client import LocalServer
from sammed2d.volumes import Geometry, Volume, read_volume
from timing import timed_ms

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "pyradiomics"
THREADS = 2
KEY_SLICE = 22
CLICK_SLICES = range(16, 25)  # the tumour's slices with room for a box
#: the share of a box's inner pixels that must be drawn in colour for a frame to count as the answer
COLOURED_SHARE = 0.15

FRAME_WATCH = """
([left, top, right, bottom, share]) => {
  const image = document.querySelector("#view-Red").parentElement.querySelector(".remote-controlled-area img");
  const canvas = document.createElement("canvas");
  const watch = window.sammed2dWatch = { released: null, answered: null };
  window.addEventListener("mouseup", () => { if (watch.released === null) watch.released = performance.now(); },
                          { capture: true, once: true });
  const observer = new MutationObserver(async () => {
    const arrived = performance.now();
    if (watch.released === null || watch.answered !== null) return;
    await image.decode().catch(() => null);
    const scaleX = image.naturalWidth / image.clientWidth, scaleY = image.naturalHeight / image.clientHeight;
    const x = Math.round(left * scaleX), y = Math.round(top * scaleY);
    const width = Math.max(1, Math.round((right - left) * scaleX));
    const height = Math.max(1, Math.round((bottom - top) * scaleY));
    canvas.width = width; canvas.height = height;
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(image, x, y, width, height, 0, 0, width, height);
    const pixels = context.getImageData(0, 0, width, height).data;
    let coloured = 0;
    for (let i = 0; i < pixels.length; i += 4) {
      const r = pixels[i], g = pixels[i + 1], b = pixels[i + 2];
      if (Math.max(r, g, b) - Math.min(r, g, b) > 60) coloured += 1;
    }
    if (coloured / (width * height) >= share && watch.answered === null) {
      watch.answered = arrived;
      observer.disconnect();
    }
  });
  observer.observe(image, { attributes: true, attributeFilter: ["src"] });
}
"""


def rss_mib(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def tight_box(mask: np.ndarray) -> list[float]:
    rows, columns = np.nonzero(mask)
    return [float(columns.min()), float(rows.min()), float(columns.max() + 1), float(rows.max() + 1)]


def click_to_frame_ms(web, page, index: int, box: list[float]) -> float:
    """Drag ``box`` on axial slice ``index`` and time mouse release → the first frame showing the answer."""
    from web_harness import drag, page_position, view_area, voxel_ras

    corner, opposite = voxel_ras(web, "K", index, box[0], box[1]), voxel_ras(web, "K", index, box[2], box[3])
    start, end = page_position(web, page, "Red", corner), page_position(web, page, "Red", opposite)
    area = view_area(page, "Red").bounding_box()
    inset = 4  # the box's outline is drawn in colour too: look inside it
    region = [min(start[0], end[0]) - area["x"] + inset, min(start[1], end[1]) - area["y"] + inset,
              max(start[0], end[0]) - area["x"] - inset, max(start[1], end[1]) - area["y"] - inset]
    page.evaluate(FRAME_WATCH, [*region, COLOURED_SHARE])
    drag(page, start, end, steps=4)
    page.wait_for_function("window.sammed2dWatch.answered !== null", timeout=120_000)
    elapsed = page.evaluate("window.sammed2dWatch.answered - window.sammed2dWatch.released")
    web.call(web.app.editor.cancel)
    page.wait_for_timeout(300)  # the cleared frame
    return elapsed


def measure(args, volume: Volume, truth: np.ndarray, server: LocalServer, engine) -> dict:
    """Page and engine figures, alternating click by click so that both see the same load."""
    sys.path.insert(0, str(REPO / "Testing"))  # the web tests' page helpers
    from web_harness import RunningApp, drag_box, launch_chromium, open_page, show_slice

    from sammed2d.web.options import WebOptions

    figures: dict = {"page": {"new": [], "cached": []}, "engine": {"new": [], "cached": []}}
    page_side, engine_side = figures["page"], figures["engine"]
    options = WebOptions(volumes=(DATA / "lung2_image.nrrd",), server_url=server.url, token=server.token, port=0,
                         preset="ct-lung")
    with RunningApp(options) as web, sync_playwright() as playwright:
        assert web.app.model.wait(60), web.app.model.describe()
        browser = launch_chromium(playwright)
        page = open_page(browser, web)
        for index in CLICK_SLICES:
            show_slice(web, "Red", "K", index)
            page.wait_for_timeout(300)
            box = tight_box(truth[index])
            for kind in ["new"] + ["cached"] * args.cached_clicks:
                page_side[kind].append(click_to_frame_ms(web, page, index, box))
                engine_side[kind].append(engine.apply(_engine_click, (index, box)))
        if args.screenshot:
            take_screenshot(web, page, truth, args.screenshot)

        # propagation on a copy at another origin: another volume id on the server, so nothing cached
        moved = Volume(volume.array, Geometry(volume.geometry.spacing, tuple(v + 0.001 for v in volume.geometry.origin),
                                              volume.geometry.direction))
        web.call(lambda: web.app.editor.add_volume(moved, "lung2 copy"))
        show_slice(web, "Red", "K", KEY_SLICE)
        page.wait_for_timeout(500)
        web.settle(lambda: drag_box(web, page, "Red", "K", KEY_SLICE, tight_box(truth[KEY_SLICE])))
        started = time.perf_counter()
        page.click("#propagate")
        page.wait_for_function("document.querySelector('#status').innerText.includes('Propagation finished')",
                               timeout=600_000)
        page_side["propagation_seconds"] = time.perf_counter() - started
        page_side["propagation_slices"] = len(web.call(lambda: web.app.editor.core.preview.masks)) - 1
        page_side["rss"] = rss_mib()
        browser.close()
    engine_side["propagation_slices"], engine_side["propagation_seconds"] = engine.apply(_engine_propagate)
    engine_side["rss"] = engine.apply(rss_mib)
    return figures


def take_screenshot(web, page, truth: np.ndarray, path: Path) -> None:
    """The tumour segmented from one box and propagated, every view through it, as a modest PNG."""
    from io import BytesIO

    from PIL import Image
    from web_harness import drag_box, show_slice

    show_slice(web, "Red", "K", KEY_SLICE)
    web.settle(lambda: drag_box(web, page, "Red", "K", KEY_SLICE, tight_box(truth[KEY_SLICE])))
    web.settle(lambda: page.click("#apply"), what="Apply")
    page.click("#propagate")
    page.wait_for_function("document.querySelector('#status').innerText.includes('Propagation finished')",
                           timeout=600_000)
    web.settle(lambda: page.click("#apply"), what="Apply")
    k, j, i = np.mean(np.nonzero(truth), axis=1)
    show_slice(web, "Yellow", "I", round(i))
    show_slice(web, "Green", "J", round(j))
    page.wait_for_timeout(2000)
    image = Image.open(BytesIO(page.screenshot())).convert("RGB")
    image.thumbnail((1200, 1200))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)


# The engine lives in a worker process of its own: torch imported next to the page's VTK and Mesa in one
# process can crash. These run in that worker.
_ENGINE: dict = {}


def _engine_start() -> None:
    import torch

    from sammed2d.intensity import fit_mapping
    from sammed2d.models import load_model
    from sammed2d.predictor import Predictor
    from sammed2d.session import VolumeSession

    torch.set_num_threads(THREADS)
    volume = read_volume(DATA / "lung2_image.nrrd")
    model = load_model("litemedsam", device="cpu")
    mapping = fit_mapping(volume.array, "ct-lung")
    _ENGINE.update(volume=volume, model=model, mapping=mapping,
                   session=VolumeSession(volume, Predictor(model), mapping))


def _engine_click(index: int, box: list[float]) -> float:
    return timed_ms(functools.partial(_ENGINE["session"].segment, "K", index, box=box))


def _engine_propagate() -> tuple[int, float]:
    """From the key slice's box, each slice encoded afresh; (slices found, seconds)."""
    from sammed2d.predictor import Predictor
    from sammed2d.propagation import Propagation
    from sammed2d.session import VolumeSession

    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / "lung2_label.nrrd"))) > 0
    cold = VolumeSession(_ENGINE["volume"], Predictor(_ENGINE["model"]), _ENGINE["mapping"])
    key = cold.segment("K", KEY_SLICE, box=tight_box(truth[KEY_SLICE]))
    propagation = Propagation(cold, "K")
    propagation.set_key(KEY_SLICE, key.masks[0], key.low_res_logits[0], float(key.scores[0]))
    started = time.perf_counter()
    propagation.run()
    return len(propagation.masks()) - 1, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cached-clicks", type=int, default=3, help="clicks per slice after the first "
                        "(default: %(default)s)")
    parser.add_argument("--screenshot", type=Path, help="also save a screenshot of the page here (PNG)")
    args = parser.parse_args()
    baseline = rss_mib()  # Python, numpy, SimpleITK and the browser driver's client, before the page
    volume = read_volume(DATA / "lung2_image.nrrd")
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / "lung2_label.nrrd"))) > 0
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f} at start; Python {platform.python_version()}; model litemedsam, {THREADS} "
          "torch threads on both sides; Chromium headless, EGL (Mesa llvmpipe)")
    print(f"data: pyradiomics lung2 (512×512×61 CT), ct-lung window; boxes: the tumour's tight box on axial "
          f"slices {CLICK_SLICES.start}..{CLICK_SLICES.stop - 1}; propagation key slice {KEY_SLICE}")
    serve = ["--threads", str(THREADS), "--no-compile", "--prefetch", "0", "--device", "cpu"]
    with multiprocessing.get_context("spawn").Pool(1, initializer=_engine_start) as engine, \
            LocalServer(serve) as server:
        figures = measure(args, volume, truth, server, engine)
        server_rss = rss_mib(server.process.pid)
    page, engine_side = figures["page"], figures["engine"]
    print()
    print(f"{'':<46}{'page (browser)':>16}{'engine':>12}{'page − engine':>16}")
    for label, key in (("box → frame, new slice", "new"), ("box → frame, cached embedding", "cached")):
        (page_p50, page_p95), (engine_p50, engine_p95) = percentiles(page[key]), percentiles(engine_side[key])
        count = len(page[key])
        print(f"{f'{label}: p50 (ms, n={count})':<46}{page_p50:>16.0f}{engine_p50:>12.0f}"
              f"{page_p50 - engine_p50:>+16.0f}")
        print(f"{f'{label}: p95 (ms)':<46}{page_p95:>16.0f}{engine_p95:>12.0f}{page_p95 - engine_p95:>+16.0f}")
    page_rate = page["propagation_slices"] / page["propagation_seconds"]
    engine_rate = engine_side["propagation_slices"] / engine_side["propagation_seconds"]
    print(f"{'propagation (slices/s)':<46}{page_rate:>16.2f}{engine_rate:>12.2f}"
          f"{100 * (page_rate / engine_rate - 1):>+15.1f}%")
    print(f"propagation: {page['propagation_slices']} slices through the page in {page['propagation_seconds']:.1f} "
          f"s, {engine_side['propagation_slices']} in the engine in {engine_side['propagation_seconds']:.1f} s")
    print(f"memory (RSS): this process holding the page {page['rss']:.0f} MiB, of which {baseline:.0f} MiB were "
          f"there before (Python, numpy, SimpleITK, the browser driver's client): the page "
          f"{page['rss'] - baseline:.0f} MiB; the model server {server_rss:.0f} MiB; the engine in its own "
          f"process {engine_side['rss']:.0f} MiB")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
