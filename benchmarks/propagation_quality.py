"""3D segmentation from ONE prompt on ../shared/data/pyradiomics, next to the oracle and a trivial baseline.

For each case, on the axial slice where the lesion is largest, one prompt (a tight box, or one click at
the lesion's innermost point) seeds propagation through the volume. Printed side by side:
- propagation from one box / one click: 3D Dice, slices segmented, false-positive voxels on slices
  without lesion, seconds (embeddings computed inside the timed run);
- oracle: the ground-truth box of every lesion slice (an upper bound a user would need N boxes for);
- baseline: the seed box repeated on every lesion slice (what "reuse the prompt" tools do).

    python benchmarks/propagation_quality.py [--model litemedsam] [--checkpoint FILE] [--cases lung2 brain1 ...]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from sammed2d.intensity import fit_mapping
from sammed2d.metrics import dice
from sammed2d.models import load_model
from sammed2d.predictor import Predictor
from sammed2d.propagation import Propagation
from sammed2d.session import EmbeddingCache, VolumeSession
from sammed2d.volumes import read_labels, read_volume

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pyradiomics"
PRESETS = {"lung1": "ct-lung", "lung2": "ct-lung", "brain1": "percentile", "brain2": "percentile",
           "breast1": "percentile"}


def tight_box(mask: np.ndarray) -> list[int]:
    rows, cols = np.nonzero(mask)
    return [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]


def innermost_point(mask: np.ndarray) -> list[float]:
    row, col = np.unravel_index(int(np.argmax(ndimage.distance_transform_edt(mask))), mask.shape)
    return [col + 0.5, row + 0.5]


def propagate_from(session: VolumeSession, index: int, **prompt) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    seed = session.segment("K", index, **prompt)
    if not seed.masks[0].any():  # the model found nothing at the seed: nothing to propagate
        return np.zeros(session.volume.shape, dtype=bool), time.perf_counter() - started
    propagation = Propagation(session, "K")
    propagation.set_key(index, seed.masks[0], seed.low_res_logits[0], float(seed.scores[0]))
    propagation.run()
    return propagation.labelmap(), time.perf_counter() - started


def per_slice(session: VolumeSession, slices: np.ndarray, boxes: list[list[int]]) -> np.ndarray:
    labels = np.zeros(session.volume.shape, dtype=bool)
    for index, box in zip(slices, boxes):
        labels[index] = session.segment("K", int(index), box=box).masks[0]
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="litemedsam")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--cases", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    args = parser.parse_args()
    predictor = Predictor(load_model(args.model, args.checkpoint, device="auto"))
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, device {predictor.model.device}; "
          f"model {predictor.model.name}; axial slices; intensity presets {PRESETS}")
    header = (f"{'case':<8} {'slices':>6} | {'1 box: Dice':>11} {'seg':>4} {'FP vox':>6} {'s':>5} | "
              f"{'1 click: Dice':>13} {'seg':>4} {'FP vox':>6} | {'oracle':>6} | {'repeat box':>10}")
    print(header)
    print("-" * len(header))
    for case in args.cases:
        volume = read_volume(DATA / f"{case}_image.nrrd")
        truth = read_labels(DATA / f"{case}_label.nrrd", like=volume).array > 0
        areas = truth.sum(axis=(1, 2))
        lesion_slices = np.flatnonzero(areas)
        outside = np.ones(len(truth), dtype=bool)
        outside[lesion_slices.min() : lesion_slices.max() + 1] = False
        seed_index = int(areas.argmax())
        session = VolumeSession(volume, predictor, fit_mapping(volume.array, PRESETS[case]), EmbeddingCache(4 << 30))
        from_box, seconds = propagate_from(session, seed_index, box=tight_box(truth[seed_index]))
        from_click, _ = propagate_from(
            session, seed_index, points=[innermost_point(truth[seed_index])], point_labels=[1]
        )
        oracle = per_slice(session, lesion_slices, [tight_box(truth[i]) for i in lesion_slices])
        repeated = per_slice(session, lesion_slices, [tight_box(truth[seed_index])] * len(lesion_slices))

        def segmented(labels: np.ndarray) -> int:
            return int(labels.any(axis=(1, 2)).sum())

        print(f"{case:<8} {len(lesion_slices):>6} | {dice(from_box, truth):>11.3f} {segmented(from_box):>4} "
              f"{int(from_box[outside].sum()):>6} {seconds:>5.1f} | {dice(from_click, truth):>13.3f} "
              f"{segmented(from_click):>4} {int(from_click[outside].sum()):>6} | {dice(oracle, truth):>6.3f} | "
              f"{dice(repeated, truth):>10.3f}")


if __name__ == "__main__":
    main()
