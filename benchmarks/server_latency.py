"""What the HTTP server costs on top of the engine, measured on this machine in one run.

    python benchmarks/server_latency.py [--model litemedsam] [--checkpoint PATH] [--threads 1] [--clicks 40]

Prints, for the same volume, slice and prompt:
- a click with the slice's embedding cached: through HTTP (real server child process, real client)
  next to the in-process ``VolumeSession.segment`` (p50 / p95), and their difference;
- a click on a new slice (encoder + decoder), both ways;
- propagation from the same key slice: slices per second through the server (streamed) next to the
  in-process ``Propagation.run``, each starting with an empty embedding cache.
The two sides use the same number of torch threads and never compute at once; clicks alternate
between them so that both see the same load on a shared machine. Uses the
tumour of ../shared/data/pyradiomics/lung2 when present, else a generated cylinder.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from sammed2d.client import LocalServer
from timing import timed_ms
from sammed2d.intensity import fit_mapping
from sammed2d.models import DEFAULT_MODEL, load_model
from sammed2d.predictor import Predictor
from sammed2d.propagation import Propagation
from sammed2d.session import VolumeSession
from sammed2d.volumes import Geometry, Volume, read_volume

LUNG2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "pyradiomics"


def load_case() -> tuple[Volume, np.ndarray, str, str]:
    """(volume, key-slice truth mask per slice, preset, description)."""
    if (LUNG2 / "lung2_image.nrrd").exists():
        volume = read_volume(LUNG2 / "lung2_image.nrrd")
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(LUNG2 / "lung2_label.nrrd"))) > 0
        return volume, truth, "ct-lung", "pyradiomics lung2 CT (512×512×61, int16), its tumour"
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256]
    disk = (yy - 128) ** 2 + (xx - 128) ** 2 < 40 ** 2
    array = (rng.normal(40, 8, (24, 256, 256)) + 160 * disk[None]).astype(np.int16)
    truth = np.repeat(disk[None], 24, axis=0)
    return Volume(array, Geometry((1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))), truth, "minmax", \
        "generated cylinder (256×256×24)"


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--threads", type=int, default=1, help="torch threads on both sides (default: %(default)s)")
    parser.add_argument("--clicks", type=int, default=40, help="repeated clicks per timing (default: %(default)s)")
    parser.add_argument("--new-slices", type=int, default=4, help="uncached slices timed (default: %(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    volume, truth, preset, description = load_case()
    k = int(np.argmax(truth.sum(axis=(1, 2))))
    rows, cols = np.nonzero(truth[k])
    box = [cols.min() - 3.0, rows.min() - 3.0, cols.max() + 4.0, rows.max() + 4.0]
    point = [[float(cols.mean()), float(rows.mean())]]
    count = volume.slice_count("K")
    new_slices = [i for i in range(count) if abs(i - k) >= 6][: args.new_slices]
    geometry = volume.geometry
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at start; torch {torch.__version__}, {args.threads} thread(s)")
    print(f"data: {description}; key slice K={k}, box {[round(v) for v in box]}, one point; model {args.model}")

    model = load_model(args.model, args.checkpoint, device="cpu")
    mapping = fit_mapping(volume.array, preset)
    session = VolumeSession(volume, Predictor(model), mapping)
    # eager on both sides: the difference is then HTTP alone, not compiled vs eager kernels
    serve = ["--model", args.model, "--threads", str(args.threads), "--device", "cpu", "--log-level", "INFO",
             "--no-compile"]
    if args.checkpoint:
        serve += ["--checkpoint", str(args.checkpoint)]
    with LocalServer(serve) as server:
        client = server.client
        remote = client.upload(volume.array, geometry.spacing, geometry.origin, geometry.direction, preset=preset)
        key = session.segment("K", k, points=point, point_labels=[1], box=box)
        client.segment(remote, "K", k, points=point, box=box, prefetch=False)
        # clicks alternate between the two sides, so both see the same load on a shared machine
        local_click, http_click, local_new, http_new = [], [], [], []
        for _ in range(args.clicks):
            local_click.append(timed_ms(lambda: session.segment("K", k, points=point, point_labels=[1], box=box)))
            http_click.append(timed_ms(lambda: client.segment(remote, "K", k, points=point, box=box, prefetch=False)))
        time.sleep(0.2)  # let the log reader catch up
        inside = [float(match.group(1)) for line in server.log if "/segment 200" in line
                  for match in [re.search(r"([\d.]+) ms$", line)] if match][-args.clicks:]
        for i in new_slices:
            local_new.append(timed_ms(lambda: session.segment("K", i, box=box)))
            http_new.append(timed_ms(lambda: client.segment(remote, "K", i, box=box, prefetch=False)))

        # propagation from the same key, each side starting with an empty embedding cache
        cold = VolumeSession(volume, Predictor(model), mapping)
        propagation = Propagation(cold, "K")
        propagation.set_key(k, key.masks[0], key.low_res_logits[0], float(key.scores[0]))
        started = time.perf_counter()
        report = propagation.run()
        local_seconds = time.perf_counter() - started
        local_slices = len(report.computed)
        # the same voxels at another origin: another id, so an empty cache, and identical model images
        moved = client.upload(volume.array, geometry.spacing, tuple(v + 0.001 for v in geometry.origin),
                              geometry.direction, preset=preset)
        remote_key = client.segment(moved, "K", k, points=point, box=box, prefetch=False)
        started = time.perf_counter()
        stream = client.propagate(moved, "K", {k: remote_key})
        streamed = sum(1 for _ in stream)
        server_seconds = time.perf_counter() - started

    local_p50, local_p95 = percentiles(local_click)
    http_p50, http_p95 = percentiles(http_click)
    print()
    print(f"{'':<44}{'in-process':>14}{'HTTP':>14}{'difference':>14}")
    print(f"{'click, cached embedding: p50 (ms)':<44}{local_p50:>14.1f}{http_p50:>14.1f}{http_p50 - local_p50:>+14.1f}")
    print(f"{'click, cached embedding: p95 (ms)':<44}{local_p95:>14.1f}{http_p95:>14.1f}{http_p95 - local_p95:>+14.1f}")
    print(f"{'  of which inside the server process: p50':<44}{'':>14}{statistics.median(inside):>14.1f}")
    local_new_p50, http_new_p50 = statistics.median(local_new), statistics.median(http_new)
    print(f"{f'click on a new slice: median of {len(new_slices)} (ms)':<44}{local_new_p50:>14.1f}{http_new_p50:>14.1f}"
          f"{http_new_p50 - local_new_p50:>+14.1f}")
    local_rate, server_rate = local_slices / local_seconds, streamed / server_seconds
    print(f"{'propagation (slices/s)':<44}{local_rate:>14.2f}{server_rate:>14.2f}"
          f"{100 * (server_rate / local_rate - 1):>+13.1f}%")
    print(f"propagation: {local_slices} slices in-process in {local_seconds:.1f} s, {streamed} streamed through the "
          f"server in {server_seconds:.1f} s (stops: {[s.reason for s in report.stops]})")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
