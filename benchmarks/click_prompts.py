"""Clicks with a box-trained model: plain point prompts against the click search, on the same prompts.

LiteMedSAM (trained with boxes only) answers clicks through boxes around them (``sammed2d.click_search``).
This runs the benchmark's click modes twice in one process on the same seeded prompts and cached
embeddings: once with plain point prompts (what the model did before), once with the search; the tight
ground-truth box is the reference. No setting of the search was fitted to these cases (its sizes are
octaves of the slice, its margin the one a user leaves around a box), so every case reports.

    python benchmarks/click_prompts.py [--cases lung1 lung2 brain1 brain2 breast1] [--demo] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from sammed2d.evaluation.cases import image_set_case, volume_case
from sammed2d.evaluation.runner import BenchmarkModel, BenchmarkSettings, run_benchmark
from sammed2d.models import load_model
from sammed2d.models.acceleration import configure_threads

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PRESETS = {"lung1": "ct-lung", "lung2": "ct-lung", "brain1": "percentile", "brain2": "percentile",
           "breast1": "percentile"}
MODES = ("box", "point1", "clicks3", "clicks5", "points3", "huang-1pt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--demo", action="store_true", help="also the 2D CT slices of the SAM-Med2D demo set")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    configure_threads(args.threads)
    search = load_model("litemedsam", device="cpu")
    plain = replace(search, spec=replace(search.spec, clicks_as_boxes=False))
    folder = SHARED / "pyradiomics"
    cases = [volume_case(folder / f"{name}_image.nrrd", folder / f"{name}_label.nrrd", PRESETS[name])
             for name in args.cases]
    if args.demo:
        cases.append(image_set_case(SHARED / "sammed2d-demo"))
    shared_cache = BenchmarkModel("plain points", plain).cache
    models = [BenchmarkModel("plain points", plain, shared_cache), BenchmarkModel("click search", search, shared_cache)]
    started = time.perf_counter()
    results = run_benchmark(models, cases, BenchmarkSettings(MODES, progress=False))
    elapsed = time.perf_counter() - started

    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; {elapsed:.0f} s for both runs")
    names = [case.name for case in cases]
    print("| case | masks | mode | plain points: Dice per mask | click search | decoder ms per prompt (search) |")
    print("|---|---:|---|---:|---:|---:|")
    for name in [*names, "all"]:
        for mode in MODES:
            rows = {model.key: [row for row in results.masks if row.model == model.key and row.mode == mode
                                and name in ("all", row.case)] for model in models}
            if not rows["click search"]:
                continue
            old, new = (np.mean([row.dice for row in rows[key]]) for key in ("plain points", "click search"))
            times = [row.decoder_seconds for row in rows["click search"] if row.decoder_seconds is not None]
            label = f"**{name}**" if name == "all" else name
            print(f"| {label} | {len(rows['click search'])} | {mode} | {old:.3f} | {new:.3f} | "
                  f"{1000 * np.mean(times):.0f} |")


if __name__ == "__main__":
    main()
