"""Fast paths against the exact fp32 eager path, per model, in one run on this machine.

For each model and path: encoder ms/slice, decoder ms/prompt, propagation-step slices/s (a slice
encoded and prompted with a box, as propagation does), peak memory, the speed-up over the exact path,
the fraction of this machine's measured matmul peak, and agreement with the exact path (embedding
error on real slices; for LiteMedSAM, whose weights are real, mask Dice too). Each measurement runs in
its own process so peak memory is that path's alone. Models without weights here run with random
weights (same arithmetic). Finally a real `sammed2d serve` with SAM-Med2D is started and its peak RSS read.

    python benchmarks/fast_inference.py [--models litemedsam sam-med2d] [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from sammed2d.example import make_example_slice
from sammed2d.intensity import fit_mapping
from sammed2d.masks import bounding_box
from sammed2d.metrics import dice
from sammed2d.models import MODELS, load_model
from sammed2d.models.acceleration import configure_threads, has_native_bf16
from sammed2d.predictor import Predictor

DEMO = Path(__file__).resolve().parents[2] / "shared" / "data" / "sammed2d-demo"
PROPAGATION_SLICES = 8


@dataclass(frozen=True)
class PathSpec:
    label: str
    precision: str
    compile: bool


PATHS = {
    "exact": PathSpec("exact fp32 eager", "exact", False),
    "auto": PathSpec("auto, eager", "auto", False),
    "auto-compiled": PathSpec("auto, compiled", "auto", True),
    "bf16-compiled": PathSpec("bf16, compiled", "bf16", True),
}


def real_slices() -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """Demo CT/MR slices with their masks (../shared), else the generated CT slice and its organs."""
    index = DEMO / "label2image_test.json"
    if not index.exists():
        example = make_example_slice(512)
        image = fit_mapping(example.hounsfield, "ct-soft-tissue").apply(example.hounsfield)
        return [(image, list(example.organs.values()))]
    by_image: dict[str, list[str]] = {}
    for mask, image in json.loads(index.read_text(encoding="utf-8")).items():
        by_image.setdefault(Path(image).name, []).append(Path(mask).name)
    return [(np.asarray(Image.open(DEMO / "images" / image).convert("RGB")),
             [np.asarray(Image.open(DEMO / "masks" / mask)) > 0 for mask in masks])
            for image, masks in sorted(by_image.items())]


def median_ms(function, repeats: int) -> float:
    function()  # first calls allocate and pick kernels
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def memory_mb(field: str, pid: int | str = "self") -> float:
    """A /proc status figure: VmHWM is a process image's own peak (getrusage's maxrss carries the parent's
    peak across exec), VmRSS what it holds now."""
    status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith(f"{field}:")) / 1024


def measure(model_name: str, path: PathSpec, repeats: int) -> dict:
    """One model on one path, in this (child) process."""
    random = MODELS[model_name].embedded_weights is None
    torch.manual_seed(0)
    started = time.perf_counter()
    model = load_model(model_name, device="auto", random_weights=random, precision=path.precision, compile=path.compile)
    warm_up_s = model.encoder.warm_up(model.spec.image_size)
    load_s = time.perf_counter() - started
    predictor = Predictor(model)
    slices = real_slices()
    image = slices[0][0]
    height, width = image.shape[:2]
    box = [width * 0.3, height * 0.35, width * 0.6, height * 0.7]
    encoder_ms = median_ms(lambda: predictor.encode(image), repeats)
    embedding = predictor.encode(image)
    decoder_ms = median_ms(lambda: predictor.predict(embedding, box=box), repeats * 4)
    started = time.perf_counter()
    for step in range(PROPAGATION_SLICES):
        slice_image, masks = slices[step % len(slices)]
        predictor.predict(predictor.encode(slice_image), box=bounding_box(masks[0]))
    slices_per_s = PROPAGATION_SLICES / (time.perf_counter() - started)
    result = {"model": model_name, "path": path.label, "acceleration": model.acceleration.describe(),
              "dtype": str(model.acceleration.dtype).removeprefix("torch."), "load_s": load_s, "warm_up_s": warm_up_s,
              "encoder_ms": encoder_ms, "decoder_ms": decoder_ms, "slices_per_s": slices_per_s,
              "peak_rss_mb": memory_mb("VmHWM"), "random_weights": random}
    if model.device.type == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if not model.acceleration.exact:
        result.update(agreement(model_name, predictor, slices, random))
    return result


def agreement(model_name: str, fast: Predictor, slices, random: bool) -> dict:
    """Embedding relative error and (real weights only) mask Dice against the exact path, box prompts."""
    torch.manual_seed(0)
    exact = Predictor(load_model(model_name, device=fast.model.device, random_weights=random, precision="exact"))
    errors, dices = [], []
    for image, masks in slices:
        reference, ours = exact.encode(image).features, fast.encode(image).features
        errors.append(float((reference - ours).norm() / reference.norm()))
        if not random:
            boxes = np.array([bounding_box(mask) for mask in masks], dtype=float)
            exact_masks = exact.predict(exact.encode(image), box=boxes).masks
            dices += [dice(a, b) for a, b in zip(exact_masks, fast.predict(fast.encode(image), box=boxes).masks)]
    result = {"embedding_rel_error": max(errors)}
    if dices:
        result.update(mask_dice_min=min(dices), mask_dice_mean=float(np.mean(dices)), masks=len(dices))
    return result


def matmul_peak_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    milliseconds = median_ms(lambda: a @ b, repeats)
    return 2 * size**3 / milliseconds / 1e6


def encoder_gflops(model_name: str) -> float:
    model = load_model(model_name, device="cpu", random_weights=True if MODELS[model_name].embedded_weights is None
                       else False, precision="exact")
    size = model.spec.image_size
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.network.image_encoder(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def server_memory_mb(threads: int) -> tuple[float, float, str]:
    """A real `sammed2d serve` with a full-size SAM-Med2D checkpoint file (random weights, default path):
    (peak RSS, RSS after start-up and 10 clicks, its encoder path)."""
    from sammed2d.checkpoints import save_checkpoint
    from sammed2d.client import LocalServer

    volume = np.random.default_rng(0).normal(0, 300, (10, 256, 256)).astype(np.int16)
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        network = load_model("sam-med2d", device="cpu", random_weights=True, precision="exact").network
        checkpoint = save_checkpoint(network, Path(folder) / "sam-med2d-sized.pth")
        del network
        arguments = ["--model", "sam-med2d", "--checkpoint", str(checkpoint), "--threads", str(threads)]
        with LocalServer(arguments, startup_timeout=900) as server:
            remote = server.client.upload(volume, (0.8, 0.8, 2.0), (0.0, 0.0, 0.0), preset="ct-soft-tissue")
            for index in range(10):
                server.client.segment(remote, "K", index, box=[60, 60, 180, 180], prefetch=False)
            pid = server.process.pid
            return memory_mb("VmHWM", pid), memory_mb("VmRSS", pid), server.client.info["model"]["acceleration"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["sam-med2d", "litemedsam"], choices=list(MODELS))
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--no-server", action="store_true", help="skip the server memory check")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    threads = configure_threads(args.threads)
    if args.child:
        print(json.dumps(measure(args.child[0], PATHS[args.child[1]], args.repeats)))
        return

    bf16 = has_native_bf16(torch.device("cpu"))
    peaks = {"float32": matmul_peak_gflops(torch.float32)}
    if bf16:
        peaks["bfloat16"] = matmul_peak_gflops(torch.bfloat16)
    print(f"machine: {platform.processor() or platform.machine()}, {threads} threads, torch {torch.__version__}, "
          f"cuda {'yes' if torch.cuda.is_available() else 'no'}, native bf16 {'yes' if bf16 else 'no'}; "
          "2048² matmul peak " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()))
    print(f"median of {args.repeats}; propagation step = encode + box on {PROPAGATION_SLICES} slices; "
          "agreement vs the exact path on real slices (../shared demo set when present)")
    header = (f"{'model':<11} {'path':<17} {'encoder path':<42} {'enc ms':>7} {'×':>5} {'% peak':>6} {'dec ms':>6} "
              f"{'slices/s':>8} {'RSS MB':>6} {'start s':>7} {'emb err':>8} {'mask Dice min/mean':>18}")
    print(header)
    print("-" * len(header))
    for model_name in args.models:
        gflops = encoder_gflops(model_name)
        exact_ms = None
        for key in args.paths:
            if key == "bf16-compiled" and (model_name != "litemedsam" or not bf16):
                continue  # shown only where auto declines bf16, to say why
            command = [sys.executable, __file__, "--child", model_name, key, "--repeats", str(args.repeats),
                       "--threads", str(threads)]
            child = subprocess.run(command, stdout=subprocess.PIPE, encoding="utf-8", check=True)
            row = json.loads(child.stdout.splitlines()[-1])
            exact_ms = row["encoder_ms"] if key == "exact" else exact_ms
            speedup = f"{exact_ms / row['encoder_ms']:.1f}" if exact_ms else ""
            peak = peaks.get(row["dtype"], peaks["float32"])
            fraction = 100 * gflops / row["encoder_ms"] * 1000 / peak
            error = f"{row['embedding_rel_error']:.4f}" if "embedding_rel_error" in row else ""
            masks = f"{row['mask_dice_min']:.3f}/{row['mask_dice_mean']:.3f}" if "mask_dice_min" in row else ""
            name = model_name + ("*" if row["random_weights"] else "")
            print(f"{name:<11} {PATHS[key].label:<17} {row['acceleration']:<42} {row['encoder_ms']:>7.0f} {speedup:>5} "
                  f"{fraction:>6.0f} {row['decoder_ms']:>6.1f} {row['slices_per_s']:>8.2f} {row['peak_rss_mb']:>6.0f} "
                  f"{row['load_s']:>7.1f} {error:>8} {masks:>18}", flush=True)
        print(f"{'':<11} encoder {gflops:.1f} GFLOP per slice")
    print("* random weights (no weights file here): same arithmetic, masks not meaningful")
    if not args.no_server:
        peak, resident, acceleration = server_memory_mb(threads)
        print(f"sammed2d serve --model sam-med2d, 1 GB checkpoint ({acceleration}): RSS {resident:.0f} MB after "
              f"start-up and 10 clicks, peak {peak:.0f} MB (the peak counts the checkpoint's memory-mapped pages)")


if __name__ == "__main__":
    main()
