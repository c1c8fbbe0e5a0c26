"""Encoder ms/slice and decoder ms/prompt for each registry model, side by side, on this machine.

Timing needs no trained weights: entries whose checkpoint is not given run with random weights
(same architecture, same arithmetic). Reads a real CT slice from ../shared when present.

    python benchmarks/model_speed.py [--models litemedsam sam-med2d ...] [--repeats 5] [--threads 2]
                                     [--reference-repo PATH/TO/SAM-Med2D]

With ``--reference-repo`` (a checkout of the public SAM-Med2D code) the reference encoder is timed
in the same run, in a child process (its package is also called ``segment_anything``), called the
way its ``SammedPredictor.set_image`` calls it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from sammed2d.example import make_example_slice
from sammed2d.intensity import fit_mapping
from sammed2d.models import MODELS, load_model
from sammed2d.predictor import Predictor

DEMO_SLICE = Path(__file__).resolve().parents[2] / "shared" / "data" / "sammed2d-demo" / "images" / "amos_0004_75.png"


def test_slice() -> tuple[np.ndarray, str]:
    if DEMO_SLICE.exists():
        from PIL import Image

        return np.asarray(Image.open(DEMO_SLICE).convert("L")), f"CT slice {DEMO_SLICE.name} (512×512)"
    example = make_example_slice(512)
    return fit_mapping(example.hounsfield, "ct-soft-tissue").apply(example.hounsfield), "generated CT slice (512×512)"


def timed(function, repeats: int) -> list[float]:
    function()  # warm-up: first calls allocate and pick kernels
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


REFERENCE_TIMING = """
import statistics, sys, time
from argparse import Namespace
import torch
from segment_anything import sam_model_registry
torch.set_num_threads({threads})
model = sam_model_registry["vit_b"](Namespace(image_size=256, encoder_adapter=True, sam_checkpoint=None)).eval()
x = torch.randn(1, 3, 256, 256)
samples = []
for i in range({repeats} + 1):  # the first call is warm-up, as for ours
    started = time.perf_counter()
    model.image_encoder(x)  # set_image runs it with autograd on, exactly like this
    samples.append((time.perf_counter() - started) * 1000)
print(statistics.median(samples[1:]))
"""


def reference_encoder_ms(repo: Path, repeats: int) -> float:
    code = REFERENCE_TIMING.format(threads=torch.get_num_threads(), repeats=repeats)
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(repo)},
                            capture_output=True, encoding="utf-8", check=True)
    return float(result.stdout.strip().splitlines()[-1])


def encoder_gflops(predictor: Predictor, image: np.ndarray) -> float:
    with FlopCounterMode(display=False) as counter:
        predictor.encode(image)
    return counter.get_total_flops() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["litemedsam", "sam-med2d", "sam-med2d-no-adapter", "sam-vit-b"],
                        choices=list(MODELS))
    parser.add_argument("--checkpoint", nargs=2, action="append", default=[], metavar=("MODEL", "FILE"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--reference-repo", type=Path, help="checkout of the public SAM-Med2D code to time beside ours")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    checkpoints = dict(args.checkpoint)
    image, image_name = test_slice()
    height, width = image.shape
    box = [width * 0.3, height * 0.35, width * 0.6, height * 0.7]

    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, device cpu, exact fp32 eager path (fast paths: fast_inference.py); "
          f"input: {image_name}; median of {args.repeats}")
    header = (f"{'model':<22} {'weights':<9} {'input':>5} {'params M':>8} {'enc GFLOP':>9} {'encoder ms':>10} "
              f"{'GFLOP/s':>8} {'box ms':>7} {'click ms':>8}")
    print(header)
    print("-" * len(header))
    for name in args.models:
        checkpoint = checkpoints.get(name)
        random = checkpoint is None and MODELS[name].embedded_weights is None
        model = load_model(name, checkpoint, device="cpu", random_weights=random, precision="exact")
        predictor = Predictor(model)
        params = sum(p.numel() for p in model.network.parameters()) / 1e6
        gflops = encoder_gflops(predictor, image)
        encoder_ms = statistics.median(timed(lambda: predictor.encode(image), args.repeats))
        embedding = predictor.encode(image)
        box_ms = statistics.median(timed(lambda: predictor.predict(embedding, box=box), args.repeats * 4))
        click_ms = statistics.median(timed(
            lambda: predictor.predict(embedding, points=[[width / 2, height / 2]], point_labels=[1]), args.repeats * 4
        ))
        print(f"{name:<22} {'random' if random else 'real':<9} {model.spec.image_size:>5} {params:>8.1f} "
              f"{gflops:>9.1f} {encoder_ms:>10.0f} {gflops / encoder_ms * 1000:>8.1f} {box_ms:>7.1f} {click_ms:>8.1f}")
        del model, predictor
    if args.reference_repo:
        reference_ms = reference_encoder_ms(args.reference_repo, args.repeats)
        print(f"{'reference SAM-Med2D':<22} {'random':<9} {256:>5} {'':>8} {'':>9} {reference_ms:>10.0f}   "
              "(public code, ViT-B + adapters, as its predictor runs it)")


if __name__ == "__main__":
    main()
