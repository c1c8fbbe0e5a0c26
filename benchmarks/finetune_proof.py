"""Does fine-tuning help on data it never saw? Before/after on ../shared/data, end to end, in CPU minutes.

Two experiments, each trained with ``sammed2d train`` and measured with ``sammed2d benchmark`` in every
mode it has (propagation modes on volumes only), old and new model in one benchmark run so both see
the same seeded prompts:

- ``lite``: LiteMedSAM's mask decoder only, at a low learning rate, on the two CT slices of the
  SAM-Med2D demo's training index (abdominal and thoracic organs). Measured on what training never
  saw: the pyradiomics volumes lung2 (CT tumour), brain1 and brain2 (MR lesions), and the demo's test
  images (other organs, other patients).
- ``adapters``: a small SAM-Med2D-shaped model (ViT 96-d, 4 blocks, an adapter in each). No SAM-Med2D
  weights exist here, so it is first trained whole (stage 1) on the MR lesions of brain1 and brain2;
  then only its adapters train (stage 2, everything else frozen) on the CT tumour of lung2, axial
  slices 0–20 (the tumour's slices 15–20); both are measured on lung2's held-out slices 21–60 (the
  tumour's slices 21–25), and the run checks that stage 2 changed adapter weights only. What that
  costs on brain1 (stage 1's own training data) is measured too.

    python benchmarks/finetune_proof.py --out /tmp/finetune-proof [--experiments lite adapters]

Each step's exact command is logged; ``proof.md`` in ``--out`` gets the side-by-side tables.
Set OMP_NUM_THREADS (e.g. 1) to choose the threads; the figures in the README were measured with 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from sammed2d.checkpoints import save_checkpoint
from sammed2d.models import ViTConfig, load_model

logger = logging.getLogger("finetune_proof")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEMO = DATA / "sammed2d-demo"
PYRADIOMICS = DATA / "pyradiomics"
#: intensity windows as the README's LiteMedSAM benchmark (lung window for CT, percentiles for MR)
HELD_OUT_VOLUMES = (("lung2", "ct-lung"), ("brain1", "percentile"), ("brain2", "percentile"))
SMALL_VIT = ViTConfig(96, 4, 4, (1, 3))
SMALL_VIT_JSON = json.dumps({"embed_dim": 96, "depth": 4, "num_heads": 4, "global_attn_indexes": [1, 3]})

LITE_TRAINING = ("--model", "litemedsam", "--json-dataset", str(DEMO), "--val-fraction", "0", "--trainable", "decoder",
                 "--lr", "1e-5", "--lr-milestones", "--epochs", "4", "--seed", "0")
STAGE1_TRAINING = ("--model", "sam-med2d", "--vit", SMALL_VIT_JSON, "--trainable", "all",
                   "--case", str(PYRADIOMICS / "brain1_image.nrrd"), str(PYRADIOMICS / "brain1_label.nrrd"),
                   "--case", str(PYRADIOMICS / "brain2_image.nrrd"), str(PYRADIOMICS / "brain2_label.nrrd"),
                   "--val-fraction", "0", "--epochs", "40", "--lr", "3e-4", "--lr-milestones", "30",
                   "--interaction-steps", "2", "--seed", "0")
LUNG2 = ("--case", str(PYRADIOMICS / "lung2_image.nrrd"), str(PYRADIOMICS / "lung2_label.nrrd"))
STAGE2_TRAINING = ("--model", "sam-med2d", "--vit", SMALL_VIT_JSON, "--trainable", "adapters", *LUNG2,
                   "--slices", "0", "20", "--val-fraction", "0", "--interaction-steps", "0", "--epochs", "30",
                   "--batch-size", "1", "--lr", "5e-4", "--lr-milestones", "--seed", "0")
HELD_OUT_SLICES = ("--slices", "21", "60")


def sammed2d(arguments: Sequence[str]) -> float:
    """Run one ``sammed2d`` command in a child process (as a user would); returns its wall-clock seconds."""
    command = [sys.executable, "-m", "sammed2d", *arguments]
    logger.info("$ %s", " ".join(f"'{part}'" if " " in part or not part else part for part in command))
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def benchmark(arguments: Sequence[str]) -> float:
    """``sammed2d benchmark`` on the exact path: the figures compare weights, not arithmetic."""
    return sammed2d(["benchmark", "--precision", "exact", *arguments])


def small_start_checkpoint(path: Path) -> Path:
    """A random small SAM-Med2D whose prompt encoder and mask decoder are LiteMedSAM's.

    Why: with a random decoder the small model stayed at empty masks (validation Dice 0 after 150
    epochs at lr 1e-3 on the demo slices). LiteMedSAM's prompt encoder and decoder have exactly the
    shapes of any SAM-Med2D at 256 (256-d prompts, 4× upscaling), and already turn boxes into masks,
    so stage 1 only has to teach the encoder features that decoder can read.
    """
    torch.manual_seed(0)
    network = load_model("sam-med2d", vit=SMALL_VIT, random_weights=True, device="cpu", precision="exact").network
    donor = load_model("litemedsam", device="cpu", precision="exact").network.state_dict()
    state = network.state_dict()
    state.update({key: donor[key] for key in state if key.startswith(("prompt_encoder.", "mask_decoder."))})
    network.load_state_dict(state)
    return save_checkpoint(network, path)


def held_out_manifest(out: Path) -> Path:
    lines = ["image,labels,name,preset"] + [
        f"{PYRADIOMICS / f'{name}_image.nrrd'},{PYRADIOMICS / f'{name}_label.nrrd'},{name},{preset}"
        for name, preset in HELD_OUT_VOLUMES
    ]
    path = out / "held_out.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def side_by_side(summary_file: Path, title: str, labels: Sequence[str]) -> str:
    """Markdown: Dice per mask (and 3D Dice on volumes) per mode, the run's models under ``labels``, and n."""
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    models = list(summary)
    modes = list(summary[models[0]])
    header = f"| mode | {' | '.join(labels)} | n |"
    rows = [f"**{title}**", "", header, "|---|" + "---:|" * (len(models) + 1)]
    for mode in modes:
        entries = [summary[model][mode] for model in models]
        cells = []
        for entry in entries:
            cell = f"{entry['dice_mean']:.3f}"
            if entry.get("dice_3d_mean") is not None:
                cell += f" ({entry['dice_3d_mean']:.3f})"
            cells.append(cell)
        rows.append(f"| {mode} | {' | '.join(cells)} | {entries[0]['n']} |")
    return "\n".join(rows)


def run_lite(out: Path) -> list[str]:
    run = out / "lite"
    seconds = sammed2d(["train", *LITE_TRAINING, "--no-progress", "--out", str(run)])
    tuned = f"litemedsam:{run / 'last.pth'}"
    volumes, images = out / "lite-bench-volumes", out / "lite-bench-demo-test"
    benchmark(["--model", "litemedsam", "--model", tuned, "--manifest", str(held_out_manifest(out)),
              "--modes", "all", "--no-progress", "--out", str(volumes)])
    benchmark(["--model", "litemedsam", "--model", tuned, "--json-dataset",
              str(DEMO / "label2image_test.json"), "--modes", "all", "--no-progress", "--out", str(images)])
    return [f"LiteMedSAM decoder fine-tuning: {seconds / 60:.1f} min of training",
            side_by_side(volumes / "summary.json", "held-out volumes lung2, brain1, brain2: Dice per mask (3D Dice)",
                         ("LiteMedSAM", "fine-tuned")),
            side_by_side(images / "summary.json", "held-out demo test images (label2image_test.json)",
                         ("LiteMedSAM", "fine-tuned"))]


def changed_keys(before: Path, after: Path) -> list[str]:
    """Names of the weights that differ between two checkpoints of the same model."""
    first = torch.load(before, map_location="cpu", weights_only=True)["model"]
    second = torch.load(after, map_location="cpu", weights_only=True)["model"]
    return sorted(key for key in first if not torch.equal(first[key], second[key]))


def run_adapters(out: Path) -> list[str]:
    start = small_start_checkpoint(out / "small-start.pth")
    stage1, stage2 = out / "small-stage1", out / "small-stage2-adapters"
    first = sammed2d(["train", *STAGE1_TRAINING, "--checkpoint", str(start), "--no-progress", "--out", str(stage1)])
    second = sammed2d(["train", *STAGE2_TRAINING, "--checkpoint", str(stage1 / "last.pth"), "--no-progress",
                       "--out", str(stage2)])
    changed = changed_keys(stage1 / "last.pth", stage2 / "last.pth")
    if not changed or any(".Adapter." not in key for key in changed):
        raise RuntimeError(f"stage 2 should change adapter weights only; it changed {changed}")
    bench = out / "small-bench-lung2-held-out-slices"
    benchmark(["--vit", SMALL_VIT_JSON, "--model", f"sam-med2d:{stage1 / 'last.pth'}",
              "--model", f"sam-med2d:{stage2 / 'last.pth'}", *LUNG2, *HELD_OUT_SLICES, "--modes", "all",
              "--no-progress", "--out", str(bench)])
    # what adapting to CT costs where stage 1 was trained (brain1: training data of stage 1, not held out)
    old_domain = out / "small-bench-brain1-stage1-data"
    benchmark(["--vit", SMALL_VIT_JSON, "--model", f"sam-med2d:{stage1 / 'last.pth'}",
              "--model", f"sam-med2d:{stage2 / 'last.pth'}", "--case", str(PYRADIOMICS / "brain1_image.nrrd"),
              str(PYRADIOMICS / "brain1_label.nrrd"), "--modes", "box", "point1", "clicks3", "--no-progress",
              "--out", str(old_domain)])
    return [f"small model: stage 1 (all parts, brain1 + brain2) {first / 60:.1f} min, stage 2 (adapters only, lung2 "
            f"slices 0-20) {second / 60:.1f} min; stage 2 changed {len(changed)} weight tensors, all adapter ones",
            side_by_side(bench / "summary.json", "lung2 held-out slices 21-60: Dice per mask (3D Dice)",
                         ("stage 1", "stage 2: adapters only")),
            side_by_side(old_domain / "summary.json", "brain1, stage 1's own training data: the cost of adapting",
                         ("stage 1", "stage 2: adapters only"))]


EXPERIMENTS = {"lite": run_lite, "adapters": run_adapters}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="new folder for runs, benchmarks and proof.md")
    parser.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS), choices=list(EXPERIMENTS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not DATA.is_dir():
        parser.error(f"{DATA} is missing: this proof runs on the shared data next to the repository")
    args.out.mkdir(parents=True, exist_ok=True)
    threads = os.environ.get("OMP_NUM_THREADS", "torch default")
    sections = [f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                f"OMP_NUM_THREADS={threads}"]
    for name in args.experiments:
        sections += EXPERIMENTS[name](args.out)
    report = "\n\n".join(sections) + "\n"
    (args.out / "proof.md").write_text(report, encoding="utf-8")
    logger.info("%s", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
