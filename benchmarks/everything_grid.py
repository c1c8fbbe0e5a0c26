"""Everything mode's grid-size ablation (Huang et al., S1 and its Table 5): masks from an m×m grid of clicks.

On each slice every ground-truth mask is matched to its best suggested mask (highest Dice), as that paper
scores Everything mode; a mask with no suggestion scores 0. Each grid is decoded once per slice and filtered
two ways: with SAM's automatic mask generator defaults (predicted IoU > 0.88, stability ≥ 0.95, box NMS 0.7)
and with box NMS only (no threshold), which shows what the grid found before the model's own ratings decide.
The highest predicted IoU and stability among all decoded masks tell why the thresholds keep what they keep.
Each grid point is asked as SAM's generator asks it (the decoder's three answers to the bare point) and, with
``--answers click``, as a user's click there is answered (for LiteMedSAM the click search: what the Suggest tool
of the effect and the page shows).
Large grids take m² decoder calls per slice: grids above --full-grid-limit run on the first
--large-grid-slices slices only (the table says how many).

    python benchmarks/everything_grid.py [--grids 8 16 32 64] [--answers decoder click] [--large-grid-slices 1]
                                         [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from sammed2d import everything
from sammed2d.evaluation.cases import image_set_case
from sammed2d.intensity import fit_mapping
from sammed2d.metrics import dice
from sammed2d.models import load_model
from sammed2d.models.acceleration import configure_threads
from sammed2d.predictor import ImageEmbedding, Predictor
from sammed2d.volumes import read_labels, read_volume

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
#: pyradiomics cases: the axial slice where the lesion is largest, in the case's intensity preset
VOLUMES = {"lung2": "ct-lung", "brain1": "percentile"}
LOOSE = everything.EverythingSettings(pred_iou_thresh=0.0, stability_score_thresh=0.0)
FILTERS = {"SAM defaults": everything.EverythingSettings(), "NMS only": LOOSE}


@dataclass(frozen=True)
class Slice:
    name: str
    embedding: ImageEmbedding
    truths: dict[str, np.ndarray]


def demo_slices(predictor: Predictor) -> list[Slice]:
    """Every image of the demo set (its two JSON indexes together list each image's masks once)."""
    slices = []
    for index in ("label2image_test.json", "image2label_train.json"):
        case = image_set_case(SHARED / "sammed2d-demo" / index)
        images, structures = case.read(())
        for number, (entry, image) in enumerate(zip(case.entries, images)):
            truths = {f"{s.label}_{i}": s.mask for i, s in enumerate(structures) if s.index == number}
            slices.append(Slice(entry.image.stem, predictor.encode(image), truths))
    return sorted(slices, key=lambda item: -len(item.truths))  # the large grids run on the richest slices


def volume_slices(predictor: Predictor) -> list[Slice]:
    slices = []
    for case, preset in VOLUMES.items():
        image = read_volume(SHARED / "pyradiomics" / f"{case}_image.nrrd")
        labels = read_labels(SHARED / "pyradiomics" / f"{case}_label.nrrd", like=image)
        index = int(np.argmax((labels.array > 0).sum(axis=(1, 2))))
        pixels = fit_mapping(image.array, preset).apply(image.array[index])
        slices.append(Slice(f"{case} k={index}", predictor.encode(pixels), {"lesion": labels.array[index] > 0}))
    return slices


def best_dice(masks: list[everything.Suggestion], truth: np.ndarray) -> float:
    return max((dice(item.mask, truth) for item in masks), default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grids", nargs="+", type=int, default=[8, 16, 32, 64], help="points per side")
    parser.add_argument("--answers", nargs="+", choices=["decoder", "click"], default=["decoder"],
                        help="how each grid point is asked (EverythingSettings.grid_answer)")
    parser.add_argument("--full-grid-limit", type=int, default=16, help="grids up to this run on every slice")
    parser.add_argument("--large-grid-slices", type=int, default=1, help="slices that larger grids run on")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    configure_threads(args.threads)
    model = load_model("litemedsam", device="cpu")
    predictor = Predictor(model)
    slices = demo_slices(predictor) + volume_slices(predictor)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; model litemedsam on {model.device}; {len(slices)} slices, "
          f"{sum(len(s.truths) for s in slices)} ground-truth masks")
    rows = []
    for answer, grid in [(answer, grid) for answer in args.answers for grid in args.grids]:
        chosen = slices if grid <= args.full_grid_limit else slices[: args.large_grid_slices]
        scores = {name: [] for name in FILTERS}
        counts = {name: [] for name in FILTERS}
        seconds, top_score, top_stability = [], 0.0, 0.0
        for item in chosen:
            started = time.perf_counter()
            found, _, _ = everything.candidates(predictor, item.embedding,
                                                replace(LOOSE, points_per_side=grid, grid_answer=answer))
            seconds.append(time.perf_counter() - started)
            top_score = max([top_score, *(s.score for s in found)])
            top_stability = max([top_stability, *(s.stability for s in found)])
            for name, settings in FILTERS.items():
                kept = everything.select(found, settings)
                counts[name].append(len(kept))
                scores[name] += [best_dice(kept, truth) for truth in item.truths.values()]
            print(f"  {answer:7s} {grid}²  {item.name:22s} {seconds[-1]:6.1f} s  "
                  f"kept (SAM) {counts['SAM defaults'][-1]:3d}  (NMS only) {counts['NMS only'][-1]:3d}  best Dice NMS only "
                  f"{np.mean(scores['NMS only'][-len(item.truths):]):.3f}", flush=True)
        rows.append((answer, grid, len(chosen), sum(len(s.truths) for s in chosen), scores, counts,
                     float(np.mean(seconds)), top_score, top_stability))
    print()
    print("| grid point asked as | grid | slices | masks | Dice (SAM defaults) | kept/slice | Dice (NMS only) |"
          " kept/slice | s/slice | max pred. IoU | max stability |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for answer, grid, count, masks, scores, counts, secs, top_score, top_stability in rows:
        print(f"| {answer} | {grid}² | {count} | {masks} | {np.mean(scores['SAM defaults']):.3f} | "
              f"{np.mean(counts['SAM defaults']):.1f} | {np.mean(scores['NMS only']):.3f} | "
              f"{np.mean(counts['NMS only']):.1f} | {secs:.1f} | {top_score:.3f} | {top_stability:.3f} |")


if __name__ == "__main__":
    main()
