"""Propagation judged on structures its settings were not decided on: leave one case out, old engine vs new.

Cases: every labelled structure available here. The five pyradiomics lesions (../shared/data/pyradiomics) and
three structures of the sample chest CT that ships inside the slicerio package (right lung, left lung, the
vertebral column: real CT, a real segmentation, and nothing the engine was ever tuned on).

Figures are 3D Dice over the whole volume, axial slices, LiteMedSAM unless --model says otherwise:
- oracle: a tight ground-truth box on every slice of the structure (what a user reaches with one box per slice);
- old: the propagation engine at --baseline (a git revision), on the same embeddings and prompts;
- new: this engine with its defaults;
- held-out: each setting in SEARCH chosen on the *other* cases (best mean Dice there), this case reported: what the
  rules give a structure nobody tuned them on. The settings chosen for each case are printed too.
Modes, as the benchmark names them: propagate-box (a tight box on the largest slice), propagate-box2 (boxes on
the first and last slice, filled between them), propagate-box3 (first, middle and last slice), propagate-click
(one click at the largest slice's innermost point).

    python benchmarks/propagation_heldout.py [--cases lung2 brain1 ...] [--baseline REV] [--modes propagate-box]
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import slicerio
import torch
from scipy import ndimage

import sammed2d
from sammed2d.evaluation.modes import PROPAGATION_MODES, propagation_key_slices
from sammed2d.intensity import fit_mapping
from sammed2d.masks import bounding_box
from sammed2d.metrics import dice
from sammed2d.models import load_model
from sammed2d.predictor import Predictor
from sammed2d.propagation import Propagation, PropagationSettings
from sammed2d.session import EmbeddingCache, VolumeSession
from sammed2d.volumes import read_labels, read_volume

REPOSITORY = Path(__file__).resolve().parents[1]
PYRADIOMICS = REPOSITORY.parent / "shared" / "data" / "pyradiomics"
SLICERIO_DATA = Path(slicerio.__file__).parent / "data"
#: the engine before the rules were redone on these cases (its 17 settings were tuned on the pyradiomics lesions)
BASELINE = "e03d990"
#: settings searched in the leave-one-case-out runs, each around its default with the others at theirs
SEARCH: dict[str, tuple] = {
    "box_margin": (1.0, 3.0, 6.0),
    "min_appearance": (0.0, 0.3, 0.5),
    "discover_radius": (0.0, 1.0),
    "use_mask_prompt": (None, True),  # None: as the model was trained (LiteMedSAM: boxes only, so False)
    "min_agreement": (0.0, 0.1, 0.2, 0.3),
    "trim_unlike_outline": (True, False),
}


@dataclass(frozen=True)
class Case:
    name: str
    image: Path
    labels: Path
    segments: tuple[str, ...]  # segment names making the structure; empty: every non-zero label
    preset: str


def all_cases() -> list[Case]:
    chest, chest_labels = SLICERIO_DATA / "CTChest4.nrrd", SLICERIO_DATA / "Segmentation.seg.nrrd"
    lesions = [Case(name, PYRADIOMICS / f"{name}_image.nrrd", PYRADIOMICS / f"{name}_label.nrrd", (), preset)
               for name, preset in (("lung1", "ct-lung"), ("lung2", "ct-lung"), ("brain1", "percentile"),
                                    ("brain2", "percentile"), ("breast1", "percentile"))]
    chest_cases = [
        Case("chest-right-lung", chest, chest_labels, ("right lung",), "ct-lung"),
        Case("chest-left-lung", chest, chest_labels, ("left lung",), "ct-lung"),
        Case("chest-spine", chest, chest_labels,
             ("cervical vertebral column", "thoracic vertebral column", "lumbar vertebral column"), "ct-bone"),
    ]
    return [case for case in lesions + chest_cases if case.image.exists()]


@dataclass
class Prepared:
    case: Case
    session: VolumeSession
    truth: np.ndarray  # (K, J, I) bool
    oracle: float
    joined: float  # the share of the structure joined in 3D to its largest slice


def joined_to_largest_slice(truth: np.ndarray) -> float:
    """The share of the structure's voxels joined in 3D to its largest slice: all that a chain followed slice by
    slice from one box there can reach (a lesion in two pieces that never touch has the rest elsewhere)."""
    pieces, _ = ndimage.label(truth, structure=np.ones((3, 3, 3)))
    on_largest = np.unique(pieces[int(truth.sum(axis=(1, 2)).argmax())])
    return float(np.isin(pieces, on_largest[on_largest > 0]).sum() / truth.sum())


def prepare(case: Case, predictor: Predictor, volumes: dict) -> Prepared:
    """The case's session (embeddings shared between cases on the same image) and the oracle's Dice."""
    if case.image not in volumes:
        volume = read_volume(case.image)
        volumes[case.image] = VolumeSession(volume, predictor, fit_mapping(volume.array, case.preset),
                                            EmbeddingCache(4 << 30))
    session = volumes[case.image]
    if session.mapping.preset != case.preset:  # same image, another window: its own embeddings
        session = VolumeSession(session.volume, predictor, fit_mapping(session.volume.array, case.preset),
                                session.cache)
    labels = read_labels(case.labels, like=session.volume)
    if case.segments:
        values = [value for value, name in labels.label_names.items() if name in case.segments]
        truth = np.isin(labels.array, values)
    else:
        truth = labels.array > 0
    oracle = np.zeros_like(truth)
    for index in np.flatnonzero(truth.any(axis=(1, 2))):
        oracle[index] = session.segment("K", int(index), box=tight_box(truth[index])).masks[0]
    return Prepared(case, session, truth, dice(oracle, truth), joined_to_largest_slice(truth))


def tight_box(mask: np.ndarray) -> list[float]:
    return [float(v) for v in bounding_box(mask)]


def innermost_point(mask: np.ndarray) -> list[float]:
    row, col = np.unravel_index(int(np.argmax(ndimage.distance_transform_edt(mask))), mask.shape)
    return [col + 0.5, row + 0.5]


def propagate(prepared: Prepared, mode: str, engine: ModuleType, settings: dict) -> np.ndarray:
    """The structure from the mode's prompts, with ``engine``'s Propagation and these settings."""
    session, truth = prepared.session, prepared.truth
    keys = propagation_key_slices(truth.sum(axis=(1, 2)), mode)
    seeds = {}
    for index in keys:
        if mode == "propagate-click":
            seed = session.segment("K", index, points=[innermost_point(truth[index])], point_labels=[1])
        else:
            seed = session.segment("K", index, box=tight_box(truth[index]))
        if seed.masks[0].any():
            seeds[index] = seed
    if not seeds:
        return np.zeros_like(truth)
    if len(keys) > 1:  # boxes on the ends bound the structure: fill between them
        settings = {**settings, "slice_range": (min(keys), max(keys))}
    propagation = engine.Propagation(session, "K", engine.PropagationSettings(**settings))
    for index, seed in seeds.items():
        propagation.set_key(index, seed.masks[0], seed.low_res_logits[0], float(seed.scores[0]))
    propagation.run()
    return propagation.labelmap()


def baseline_engine(revision: str) -> ModuleType:
    """The propagation module as it was at ``revision``, loaded beside today's engine (it imports the same
    session, masks and volume modules)."""
    source = subprocess.run(["git", "-C", str(REPOSITORY), "show", f"{revision}:SAMMed2D/sammed2d/propagation.py"],
                            check=True, capture_output=True, text=True, encoding="utf-8").stdout
    spec = importlib.util.spec_from_loader("sammed2d.baseline_propagation", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "sammed2d"
    sys.modules[spec.name] = module
    exec(compile(source, f"{revision}:propagation.py", "exec"), module.__dict__)
    return module


def current_engine() -> ModuleType:
    return sys.modules[Propagation.__module__]


def processor_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def held_out_choice(scores: dict[tuple[str, object], dict[str, float]], held_out: str) -> dict[str, object]:
    """For each searched setting, the value with the best mean Dice over every case but ``held_out``."""
    choice: dict[str, object] = {}
    for name, values in SEARCH.items():
        def mean_elsewhere(value) -> float:
            per_case = scores[(name, value)]
            return float(np.mean([score for case, score in per_case.items() if case != held_out]))
        choice[name] = max(values, key=mean_elsewhere)
    return choice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="litemedsam")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--cases", nargs="+")
    parser.add_argument("--modes", nargs="+", default=list(PROPAGATION_MODES), choices=PROPAGATION_MODES)
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the old propagation engine")
    args = parser.parse_args()
    cases = [case for case in all_cases() if not args.cases or case.name in args.cases]
    predictor = Predictor(load_model(args.model, args.checkpoint, device="auto"))
    print(f"machine: {processor_name()}, {torch.get_num_threads()} threads, device "
          f"{predictor.model.device}; model {predictor.model.name}; sammed2d {sammed2d.__version__}; old engine "
          f"{args.baseline}; axial slices")
    started = time.perf_counter()
    volumes: dict = {}
    prepared = [prepare(case, predictor, volumes) for case in cases]
    old, new = baseline_engine(args.baseline), current_engine()
    defaults = PropagationSettings()
    print(f"encoded and ran the oracle in {time.perf_counter() - started:.0f} s")
    for mode in args.modes:
        # the search runs on the one-box mode, the one without bounds, where stopping decides the result
        searched = mode == "propagate-box"
        scores: dict[tuple[str, object], dict[str, float]] = {}
        for name, values in SEARCH.items() if searched else ():
            for value in values:
                scores[(name, value)] = {
                    p.case.name: dice(propagate(p, mode, new, {name: value}), p.truth) for p in prepared}
        print(f"\n## {mode}\n")
        print("| case | slices | joined to the largest slice | oracle | old | new | held-out | held-out settings |"
              if searched else "| case | slices | joined to the largest slice | oracle | old | new |")
        print("|---|---|---|---|---|---|---|---|" if searched else "|---|---|---|---|---|---|")
        rows = []
        for p in prepared:
            row = [p.oracle, dice(propagate(p, mode, old, {}), p.truth), dice(propagate(p, mode, new, {}), p.truth)]
            line = (f"| {p.case.name} | {int(p.truth.any(axis=(1, 2)).sum())} | {p.joined:.0%} | "
                    + " | ".join(f"{v:.3f}" for v in row))
            if searched:
                choice = held_out_choice(scores, p.case.name)
                row.append(dice(propagate(p, mode, new, choice), p.truth))
                differs = {name: value for name, value in choice.items() if getattr(defaults, name) != value}
                line += f" | {row[-1]:.3f} | {differs or 'the defaults'}"
            rows.append(row)
            print(line + " |")
        means = np.mean(rows, axis=0)
        print("| mean | | | " + " | ".join(f"{v:.3f}" for v in means) + (" | |" if searched else " |"))
        if searched:
            print("\nmean Dice over all cases, one setting changed at a time: "
                  + "; ".join(f"{name}={value}: {np.mean(list(scores[(name, value)].values())):.3f}"
                              for name, values in SEARCH.items() for value in values))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
