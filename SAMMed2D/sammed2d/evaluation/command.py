"""``sammed2d benchmark``: its options, turning them into models, cases and settings, and writing the results.

Kept beside the runner so the command line and the Slicer module build runs the same way;
``sammed2d.cli`` only registers the subcommand and reports.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

from .. import __version__
from ..intensity import PRESETS
from ..models import DEFAULT_MODEL, MODELS, VIT_EXAMPLE, ViTConfig, get_spec, load_model
from ..models.acceleration import configure_threads
from ..volumes import AXES
from .cases import Case, image_set_case, read_manifest, resolve_labels, volume_case
from .modes import ALL_MODES, GROUPS, PAPER_MODES, expand_modes
from .plots import write_plots
from .report import Summary, markdown, summarize, write_csv, write_summary
from .runner import BenchmarkModel, BenchmarkResults, BenchmarkSettings, MaskRow, VolumeRow, run_benchmark
from ..errors import InputError

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", dest="models", action="append", metavar="NAME[:CHECKPOINT]",
                        help=f"a registry model ({', '.join(MODELS)}), with its weights file unless embedded; "
                             f"repeat to compare models on the same prompts (default: {DEFAULT_MODEL})")
    parser.add_argument("--device", default="auto", help="cuda, cuda:1, cpu or auto (default: %(default)s)")
    parser.add_argument("--vit", metavar="JSON",
                        help="ViT size of non-standard ViT models among --model (e.g. small ones trained with "
                             f"sammed2d train --vit), such as {VIT_EXAMPLE}; LiteMedSAM ignores it")
    parser.add_argument("--case", dest="cases", type=Path, nargs=2, action="append", default=[],
                        metavar=("IMAGE", "LABELS"), help="a volume and its label map or .seg.nrrd (repeatable)")
    parser.add_argument("--manifest", type=Path, action="append", default=[],
                        help="CSV (columns image, labels, optional name, preset) or JSON list of such objects")
    parser.add_argument("--json-dataset", type=Path, action="append", default=[], metavar="DIR_OR_JSON",
                        help="a SAM-Med2D 2D set: its folder (label2image_test.json) or an index file")
    parser.add_argument("--labels", nargs="+", default=[],
                        help="label values or names to evaluate, space- or comma-separated; each must be in "
                             "some case (default: all)")
    parser.add_argument("--axis", default="K", choices=AXES, help="slice axis of volumes (default: K, axial)")
    parser.add_argument("--preset", default="minmax", choices=PRESETS,
                        help="intensity mapping per volume, unless the manifest says "
                             "(default: %(default)s, the paper's)")
    parser.add_argument("--modes", nargs="+", default=list(PAPER_MODES), metavar="MODE",
                        help=f"modes or groups ({', '.join(GROUPS)}); modes: {', '.join(ALL_MODES)} "
                             "(default: the paper's)")
    parser.add_argument("--min-mask-pixels", type=int, default=100,
                        help="skip masks smaller than this at 256×256, as the paper (default: %(default)s)")
    parser.add_argument("--slices", type=int, nargs=2, metavar=("FIRST", "LAST"),
                        help="only these slices along --axis (inclusive); 3D metrics then cover this slab")
    parser.add_argument("--seed", type=int, default=0, help="prompt sampling seed (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--progress-json", action="store_true",
                        help='progress as JSON lines on stdout, {"done": n, "total": m, "stage": "..."} '
                             "per step, for a program running this command")


def parse_model(text: str) -> tuple[str, Path | None]:
    """``NAME`` or ``NAME:CHECKPOINT`` (the checkpoint may itself contain ':')."""
    name, _, checkpoint = text.partition(":")
    return name, Path(checkpoint).expanduser() if checkpoint else None


def load_models(
    texts: Sequence[str], device: str, vit: ViTConfig | None = None, precision: str = "auto"
) -> list[BenchmarkModel]:
    """``vit`` sizes the ViT models (those whose registry entry has a ViT encoder) and leaves the others alone."""
    models, keys = [], set()
    for text in texts:
        name, checkpoint = parse_model(text)
        key = name if checkpoint is None else f"{name}:{checkpoint.name}"
        if key in keys:
            key = text
        if key in keys:
            raise InputError(f"--model {text} is given twice")
        keys.add(key)
        sized = vit if get_spec(name).vit is not None else None
        models.append(BenchmarkModel(key, load_model(name, checkpoint, device=device, vit=sized, precision=precision)))
    return models


def cases_from_arguments(args: argparse.Namespace) -> list[Case]:
    cases: list[Case] = [volume_case(image, labels, args.preset) for image, labels in args.cases]
    for manifest in args.manifest:
        cases += read_manifest(manifest, args.preset)
    cases += [image_set_case(path) for path in args.json_dataset]
    if not cases:
        raise InputError("give cases with --case IMAGE LABELS, --manifest FILE or --json-dataset DIR")
    names = [case.name for case in cases]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InputError(f"case names must be unique; {', '.join(duplicates)} appear twice (name them in a manifest)")
    return cases


def settings_from_arguments(args: argparse.Namespace) -> BenchmarkSettings:
    return BenchmarkSettings(expand_modes(args.modes), args.axis, tuple(args.labels), args.min_mask_pixels, args.seed,
                             not args.no_progress, tuple(args.slices) if args.slices else None)


@dataclass(frozen=True)
class BenchmarkOutput:
    summary: Summary
    results: BenchmarkResults
    files: list[Path]


def write_outputs(
    results: BenchmarkResults, settings: BenchmarkSettings, cases: Sequence[Case], out: Path
) -> BenchmarkOutput:
    """summary.json, masks.csv, volumes.csv (per case and label), results.md, run.json and the PNG plots."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    run = {"engine": __version__, "settings": asdict(settings), "cases": [case.name for case in cases],
           "encoder": {model: {"seconds": seconds, "slices": count}
                       for model, (seconds, count) in results.encoder.items()}}
    (out / "run.json").write_text(json.dumps(run, indent=1), encoding="utf-8")
    files = [
        write_summary(summary, out / "summary.json"),
        write_csv(results.masks, MaskRow, out / "masks.csv"),
        write_csv(results.volumes, VolumeRow, out / "volumes.csv"),
        out / "run.json",
    ]
    (out / "results.md").write_text(markdown(summary), encoding="utf-8")
    files.append(out / "results.md")
    files += write_plots(summary, out, results.masks)
    logger.info("benchmark results written to %s", out)
    return BenchmarkOutput(summary, results, files)


def benchmark(
    models: Sequence[BenchmarkModel], cases: Sequence[Case], settings: BenchmarkSettings, out: Path
) -> BenchmarkOutput:
    """Raises an InputError, before any model runs, when ``settings.labels`` names a label no case has."""
    settings = replace(settings, labels=resolve_labels(settings.labels, cases))
    return write_outputs(run_benchmark(models, cases, settings), settings, cases, out)


def benchmark_from_arguments(args: argparse.Namespace) -> BenchmarkOutput:
    settings = settings_from_arguments(args)
    cases = cases_from_arguments(args)
    resolve_labels(settings.labels, cases)  # a wrong label fails before the models load
    configure_threads(args.threads)
    vit = ViTConfig.from_json(args.vit) if args.vit else None
    models = load_models(args.models or [DEFAULT_MODEL], args.device, vit, args.precision)
    return benchmark(models, cases, settings, args.out)
