"""What a propagation step costs, this engine next to an earlier one (a git revision), in one run.

    python benchmarks/propagation_cost.py [--baseline REV] [--repeats 3] [--threads 2]

From a tight box on lung2's largest slice (../shared/data/pyradiomics), each engine propagates with its
defaults: once with an empty embedding cache (encoder + decoder, what a first propagation costs) and then
``--repeats`` times on cached embeddings (decoder only, what a re-run after a correction costs). The two
engines alternate, so both see the same load on a shared machine. Prints milliseconds per computed slice.
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import ModuleType

import torch

from propagation_heldout import PYRADIOMICS, baseline_engine, current_engine, processor_name, tight_box
from sammed2d.intensity import fit_mapping
from sammed2d.models import load_model
from sammed2d.predictor import Predictor
from sammed2d.session import EmbeddingCache, VolumeSession
from sammed2d.volumes import read_labels, read_volume

#: the engine before the box-alone answers and the agreement check
BASELINE = "020604c"


def milliseconds_per_slice(
    engine: ModuleType, session: VolumeSession, key: int, box: list[float]
) -> tuple[float, int]:
    """One propagation from the model's answer to ``box`` on slice ``key``: ms per computed slice, and how many."""
    seed = session.segment("K", key, box=box)
    propagation = engine.Propagation(session, "K", engine.PropagationSettings())
    propagation.set_key(key, seed.masks[0], seed.low_res_logits[0], float(seed.scores[0]))
    started = time.perf_counter()
    report = propagation.run()
    return 1000 * (time.perf_counter() - started) / len(report.computed), len(report.computed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the earlier propagation engine")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    volume = read_volume(PYRADIOMICS / "lung2_image.nrrd")
    truth = read_labels(PYRADIOMICS / "lung2_label.nrrd", like=volume).array > 0
    key = int(truth.sum(axis=(1, 2)).argmax())
    box = tight_box(truth[key])
    predictor = Predictor(load_model("litemedsam", None, device="auto"))
    mapping = fit_mapping(volume.array, "ct-lung")
    engines = {"this engine": current_engine(), f"engine at {args.baseline}": baseline_engine(args.baseline)}
    print(f"machine: {processor_name()}, {args.threads} torch threads, device {predictor.model.device}; "
          f"LiteMedSAM; lung2 from a box on slice {key}")
    first, cached = {}, {name: [] for name in engines}
    for name, engine in engines.items():  # each with its own empty cache: the encoder counts
        session = VolumeSession(volume, predictor, mapping, EmbeddingCache(2 << 30))
        first[name] = milliseconds_per_slice(engine, session, key, box)
    shared = VolumeSession(volume, predictor, mapping, EmbeddingCache(2 << 30))
    milliseconds_per_slice(current_engine(), shared, key, box)  # fills the shared cache
    for _ in range(args.repeats):
        for name, engine in engines.items():
            cached[name].append(milliseconds_per_slice(engine, shared, key, box)[0])
    print("\n| engine | slices | ms/slice, empty cache | ms/slice, cached embeddings (median) |")
    print("|---|---:|---:|---:|")
    for name in engines:
        milliseconds, slices = first[name]
        print(f"| {name} | {slices} | {milliseconds:.0f} | {statistics.median(cached[name]):.0f} |")
    ours, theirs = (statistics.median(values) for values in cached.values())
    print(f"\ncached embeddings: this engine takes {ours / theirs:.2f}× the baseline's time per slice")


if __name__ == "__main__":
    main()
