"""``sammed2d`` command line: the demo, segmenting a user's slice, training, the model server, listing models."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np

from . import __version__
from .errors import InputError
from .intensity import PRESETS, fit_mapping
from .masks import bounding_box
from .progress import json_lines

logger = logging.getLogger("sammed2d")


def _add_model_arguments(parser: argparse.ArgumentParser, inference: bool = True) -> None:
    from .models import DEFAULT_MODEL, MODELS

    parser.add_argument("--model", default=DEFAULT_MODEL, choices=list(MODELS),
                        help="registry entry (default: %(default)s)")
    parser.add_argument("--checkpoint", type=Path, help="weights file (required for every model but litemedsam)")
    parser.add_argument("--device", default="auto", help="cuda, cuda:1, cpu or auto (default: %(default)s)")
    if inference:  # training has its own --precision (autocast) and always trains the exact network
        _add_speed_arguments(parser)


def _add_speed_arguments(parser: argparse.ArgumentParser) -> None:
    """--precision and --threads: the same words for every command that runs a model."""
    from .models.acceleration import PRECISION_CHOICES

    parser.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                        help="encoder arithmetic: auto (bf16 where the CPU/GPU has it, else fp16 on CUDA, else fp32), "
                             "exact (the reference fp32 arithmetic), fp32, bf16, fp16 (default: %(default)s)")
    parser.add_argument("--threads", type=int,
                        help="CPU threads for the model (default: the CPUs this process may use)")


def _load(args: argparse.Namespace):
    from .models import load_model
    from .models.acceleration import configure_threads
    from .predictor import Predictor

    started = time.perf_counter()
    configure_threads(args.threads)
    model = load_model(args.model, args.checkpoint, device=args.device, precision=args.precision)
    source = model.checkpoint or "random weights"
    print(f"model {model.name} on {model.device} ({model.acceleration.describe()}) from {source} "
          f"({time.perf_counter() - started:.1f} s)")
    return Predictor(model)


def run_demo(args: argparse.Namespace) -> int:
    """Segment the organs of a generated CT slice from one box each; write NRRDs and an overlay."""
    from .example import make_example_slice
    from .files import read_image, write_mask
    from .metrics import dice
    from .overlay import save_overlay

    import SimpleITK as sitk

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    example = make_example_slice()
    image_path = out / "example_ct.nrrd"
    ct = sitk.GetImageFromArray(example.hounsfield)
    ct.SetSpacing(example.spacing_mm)
    sitk.WriteImage(ct, str(image_path), useCompression=True)
    print(f"wrote a synthetic abdominal CT slice ({example.hounsfield.shape[1]}×{example.hounsfield.shape[0]}, HU) "
          f"to {image_path}")

    predictor = _load(args)
    mapping = fit_mapping(example.hounsfield, "ct-soft-tissue")
    slice_u8 = mapping.apply(example.hounsfield)
    started = time.perf_counter()
    embedding = predictor.encode(slice_u8)
    encode_seconds = time.perf_counter() - started
    names = list(example.organs)
    boxes = np.array([_box_around(example.organs[name], margin=3) for name in names], dtype=float)
    started = time.perf_counter()
    prediction = predictor.predict(embedding, box=boxes)
    decode_seconds = time.perf_counter() - started
    print(f"intensity: {mapping.preset} window [{mapping.low:g}, {mapping.high:g}] HU → 0..255")
    print(f"encoder {encode_seconds * 1000:.0f} ms; decoder {decode_seconds * 1000:.0f} ms for {len(boxes)} boxes")

    labels = np.zeros(example.hounsfield.shape, dtype=np.uint8)
    print(f"{'label':>5}  {'structure':<13} {'box (x0 y0 x1 y1)':<22} {'score':>6} {'Dice vs truth':>13}")
    for label, (name, box, mask, score) in enumerate(zip(names, boxes, prediction.masks, prediction.scores), start=1):
        labels[mask & (labels == 0)] = label
        box_text = " ".join(f"{v:.0f}" for v in box)
        print(f"{label:>5}  {name:<13} {box_text:<22} {score:6.2f} {dice(mask, example.organs[name]):13.3f}")
    seg_path = write_mask(labels, read_image(image_path), out / "example_ct_segmentation.nrrd")
    labels_json = json.dumps({str(i): n for i, n in enumerate(names, start=1)}, indent=1)
    (out / "example_ct_labels.json").write_text(labels_json, encoding="utf-8")
    overlay_path = save_overlay(
        slice_u8.astype(np.uint8), dict(zip(names, prediction.masks)), out / "example_ct_overlay.png",
        boxes=boxes.tolist(), title=f"{predictor.model.name}: one box per organ",
    )
    print(f"wrote the label map {seg_path} (names in example_ct_labels.json) and the overlay {overlay_path}")
    return 0


def _box_around(mask: np.ndarray, margin: int) -> list[float]:
    x0, y0, x1, y1 = bounding_box(mask)
    height, width = mask.shape
    return [max(x0 - margin, 0), max(y0 - margin, 0), min(x1 + margin, width), min(y1 + margin, height)]


def run_segment(args: argparse.Namespace) -> int:
    """Segment one slice of the user's image or volume with the given prompts, optionally through the volume."""
    from .files import read_image, write_mask
    from .overlay import save_overlay

    image = read_image(args.image)
    points = [(x, y, 1) for x, y in args.point] + [(x, y, 0) for x, y in args.negative]
    if not points and not args.box:
        raise InputError("give at least one --box or --point")
    if args.propagate and not image.is_volume:
        raise InputError("--propagate needs a 3D volume")
    if image.is_volume and args.slice is None:
        raise InputError(f"{image.path} is a volume: choose the slice to prompt on with --slice")
    prompt = {
        "points": [(x, y) for x, y, _ in points] if points else None,
        "point_labels": [label for _, _, label in points] if points else None,
        "box": args.box or None,
    }
    mapping = fit_mapping(image.array, args.preset)  # fitted on the whole volume, not the slice
    predictor = _load(args)
    if image.is_volume:
        return _segment_volume(args, image, mapping, predictor, prompt, points)
    if args.slice not in (None, 0):
        raise InputError(f"{image.path} is a single 2D image; there is no slice {args.slice}")
    slice_u8 = mapping.apply(image.array)
    prediction = predictor.predict(predictor.encode(slice_u8), **prompt)
    mask = np.any(prediction.masks, axis=0)
    out = write_mask(mask.astype(np.uint8) * args.label, image, args.out)
    print(f"segmented {image.path} with {mapping.preset} [{mapping.low:g}, {mapping.high:g}]: "
          f"{int(mask.sum())} pixels, score {float(prediction.scores.max()):.2f}; wrote {out}")
    if args.overlay:
        save_overlay(slice_u8.astype(np.uint8), {args.name: mask}, args.overlay,
                     boxes=args.box or (), points=points, title=f"{predictor.model.name} on {image.path.name}")
        print(f"wrote the overlay {args.overlay}")
    return 0


def _segment_volume(args, image, mapping, predictor, prompt: dict, points: list) -> int:
    from tqdm import tqdm

    from .overlay import save_overlay
    from .propagation import Propagation
    from .session import VolumeSession
    from .volumes import Geometry, Volume, stack_slices, write_labels

    volume = Volume(image.array, Geometry.of(image.reference), str(image.path))
    session = VolumeSession(volume, predictor, mapping)
    prediction = session.segment(args.axis, args.slice, **prompt)
    mask = np.any(prediction.masks, axis=0)
    labels = stack_slices({args.slice: mask}, args.axis, volume.shape, dtype=bool)
    summary = f"{int(mask.sum())} pixels on slice {args.slice} along {args.axis}"
    if args.propagate:
        if not mask.any():
            raise InputError(f"the prompt found nothing on slice {args.slice}: nothing to propagate")
        propagation = Propagation(session, args.axis)
        propagation.set_key(args.slice, mask, prediction.low_res_logits[0], float(prediction.scores[0]))
        with tqdm(desc="propagating", unit="slice") as bar:

            def show(done: int, planned: int, index: int) -> None:
                bar.total, bar.n = planned, done
                bar.set_postfix(slice=index)

            report = propagation.run(progress=show)
        labels = propagation.labelmap()
        ends = "; ".join(f"slice {stop.index}: {stop.reason}" for stop in report.stops) or "the volume's ends"
        summary = f"{int(labels.sum())} voxels on {len(propagation.masks())} slices (stopped at {ends})"
    out = write_labels(labels.astype(np.uint16) * args.label, volume, args.out, names={args.label: args.name})
    print(f"segmented {image.path} with {mapping.preset} [{mapping.low:g}, {mapping.high:g}]: {summary}; "
          f"score {float(prediction.scores.max()):.2f}; wrote {out}")
    if args.overlay:
        save_overlay(mapping.apply(volume.slice(args.axis, args.slice)).astype(np.uint8), {args.name: mask},
                     args.overlay, boxes=args.box or (), points=points,
                     title=f"{predictor.model.name} on {image.path.name}, slice {args.slice}")
        print(f"wrote the overlay {args.overlay}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    """Fine-tune on volumes with label maps or on a SAM-Med2D JSON dataset, with the paper's recipe."""
    from .training.command import train_from_arguments

    with json_lines(sys.stdout if args.progress_json else None):
        result = train_from_arguments(args)
    if result.last is not None:  # the main process reports; the others (under torchrun) stay quiet
        for record in result.epochs:
            dice = "n/a" if record["val_dice"] is None else f"{record['val_dice']:.4f}"
            print(f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, validation Dice {dice}"
                  f"{' (best)' if record['best'] else ''}")
        print(f"wrote {result.last}" + (f" and {result.best}" if result.best else "")
              + f"; log in {args.out / 'train.jsonl'}")
    return 0


def run_benchmark(args: argparse.Namespace) -> int:
    """Models side by side on the same cases and seeded prompts; writes summary, tables and plots."""
    from .evaluation.command import benchmark_from_arguments

    with json_lines(sys.stdout if args.progress_json else None):
        output = benchmark_from_arguments(args)
    for model, modes in output.summary.items():
        for mode, entry in modes.items():
            dice_3d = "" if entry["dice_3d_mean"] is None else f", 3D Dice {entry['dice_3d_mean']:.4f}"
            dice = "n/a" if entry["dice_mean"] is None else f"{entry['dice_mean']:.4f}"
            print(f"{model} {mode}: Dice {dice} over {entry['n']} masks{dice_3d}")
    print(f"wrote {', '.join(path.name for path in output.files)} to {args.out}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """Serve the model over HTTP for Slicer and other clients until interrupted."""
    try:
        from .server.main import ServeOptions, serve
    except ImportError as error:
        if error.name not in ("fastapi", "uvicorn", "starlette", "pydantic"):
            raise
        raise InputError(f"{error.name} is missing: install the server extra, pip install 'sammed2d[server]'") from None
    from .server.security import TOKEN_ENV

    logging.getLogger().setLevel(args.serve_log_level)
    options = ServeOptions(
        model=args.model, checkpoint=args.checkpoint, device=args.device, host=args.host, port=args.port,
        token=args.token or os.environ.get(TOKEN_ENV), ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile,
        memory_budget=args.memory_budget, embedding_budget=args.embedding_budget, max_upload=args.max_upload,
        max_request=args.max_request, threads=args.threads, prefetch=args.prefetch, max_jobs=args.max_jobs,
        precision=args.precision, compile=args.compile,
        random_weights=args.random_weights, vit=args.vit, seed=args.seed,
    )
    return serve(options, announce=lambda line: print(line, flush=True))


def _add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    _add_model_arguments(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine "
                       "only); any other address needs --token")
    serve.add_argument("--port", type=int, default=8765, help="TCP port (default: %(default)s; 0 picks a free one)")
    serve.add_argument("--token", help="bearer token clients must send (default: $SAMMED2D_TOKEN, else generated and "
                       "printed); prefer the variable, other users of the machine can read command lines")
    serve.add_argument("--ssl-certfile", type=Path, help="TLS certificate (PEM), for direct use across a network")
    serve.add_argument("--ssl-keyfile", type=Path, help="TLS private key (PEM)")
    serve.add_argument("--memory-budget", default="2G", help="memory for uploaded volumes, least recently used "
                       "evicted first (default: %(default)s)")
    serve.add_argument("--embedding-budget", default="1G", help="memory for cached slice embeddings (default: "
                       "%(default)s)")
    serve.add_argument("--max-upload", default="1G", help="largest compressed volume upload (default: %(default)s)")
    serve.add_argument("--max-request", default="64M", help="largest JSON request (default: %(default)s)")
    serve.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                       help="torch.compile the encoder at start (20-90 s once, then faster slices); default: on where "
                            "a compiler is available and the path is not exact")
    serve.add_argument("--prefetch", type=int, default=2, help="neighbour slices encoded ahead on each side of a "
                       "click (default: %(default)s; 0 turns it off)")
    serve.add_argument("--max-jobs", type=int, default=4, help="propagations running at once (default: %(default)s)")
    serve.add_argument("--log-level", dest="serve_log_level", default="INFO",
                       choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="INFO logs one line per request")
    # tests and benchmarks only: serve a small random network (no weights file), reproducibly
    serve.add_argument("--random-weights", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--vit", help=argparse.SUPPRESS)
    serve.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)


def run_web(args: argparse.Namespace) -> int:
    """Serve the browser page that segments with a model server until interrupted."""
    import importlib.util

    from .web.options import options_from_arguments

    options = options_from_arguments(args)
    if importlib.util.find_spec("trame_slicer") is None:
        raise InputError("trame-slicer is missing: install the web extra, pip install 'sammed2d[web]'")
    from .web.app import run

    return run(options)


def run_models(args: argparse.Namespace) -> int:
    from .models import DEFAULT_MODEL, MODELS

    for name, spec in MODELS.items():
        marker = "*" if name == DEFAULT_MODEL else " "
        print(f"{marker} {name:<22} {spec.description}")
    return 0


def _demo_options(demo: argparse.ArgumentParser) -> None:
    demo.add_argument("--out", type=Path, default=Path("sammed2d-demo-output"),
                      help="output folder (default: %(default)s)")
    _add_model_arguments(demo)


def _segment_options(segment: argparse.ArgumentParser) -> None:
    segment.add_argument("image", type=Path, help="PNG/JPEG, NRRD, NIfTI, MHA … (2D image or 3D volume)")
    segment.add_argument("--slice", type=int, help="slice index to prompt on (volumes only)")
    segment.add_argument("--axis", default="K", choices=["K", "J", "I"],
                         help="slice normal, as IJK axis (default: %(default)s)")
    segment.add_argument("--propagate", action="store_true",
                         help="continue slice by slice through the volume until the structure ends")
    segment.add_argument("--box", type=float, nargs=4, action="append", default=[], metavar=("X0", "Y0", "X1", "Y1"))
    segment.add_argument("--point", type=float, nargs=2, action="append", default=[], metavar=("X", "Y"),
                         help="include")
    segment.add_argument("--negative", type=float, nargs=2, action="append", default=[], metavar=("X", "Y"),
                         help="exclude")
    segment.add_argument("--preset", default="minmax", choices=PRESETS, help="intensity mapping (default: %(default)s)")
    segment.add_argument("--label", type=int, default=1, help="label value written for the mask")
    segment.add_argument("--name", default="segment", help="segment name (kept in .seg.nrrd output)")
    segment.add_argument("--out", type=Path, required=True, help="mask file (.nrrd, .seg.nrrd, .nii.gz, .png …)")
    segment.add_argument("--overlay", type=Path, help="also write a PNG overlay here")
    _add_model_arguments(segment)


def _train_options(training: argparse.ArgumentParser) -> None:
    from .training.command import add_arguments

    add_arguments(training)
    _add_model_arguments(training, inference=False)


def _benchmark_options(bench: argparse.ArgumentParser) -> None:
    from .evaluation.command import add_arguments

    add_arguments(bench)
    _add_speed_arguments(bench)


def _web_options(web: argparse.ArgumentParser) -> None:
    from .web.options import add_arguments

    add_arguments(web)


#: name, help, options, run; a subcommand's options are built only when it is the one run (several import torch)
SUBCOMMANDS: tuple[tuple[str, str, Callable[[argparse.ArgumentParser], None] | None,
                         Callable[[argparse.Namespace], int]], ...] = (
    ("demo", "segment a generated CT slice with the embedded model", _demo_options, run_demo),
    ("segment", "segment one slice of your image or volume", _segment_options, run_segment),
    ("train", "fine-tune on your volumes or a SAM-Med2D JSON dataset (the paper's recipe)", _train_options, run_train),
    ("benchmark", "Dice, IoU, HD95 and speed of models in the papers' prompting modes", _benchmark_options,
     run_benchmark),
    ("serve", "run the model process Slicer connects to (HTTP API, token required)", _add_serve_arguments,
     run_serve),
    ("web", "segment in the browser: a Slicer-like page (trame-slicer) driving a model server", _web_options,
     run_web),
    ("models", "list the registry", None, run_models),
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Every subcommand; with ``only``, the options of that one alone (so ``--version`` loads no torch)."""
    parser = argparse.ArgumentParser(prog="sammed2d", description="SAM-Med2D interactive medical image segmentation")
    parser.add_argument("--version", action="version", version=f"sammed2d {__version__}")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, summary, options, run in SUBCOMMANDS:
        command = commands.add_parser(name, help=summary)
        if options is not None and only in (None, name):
            options(command)
        command.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    names = {name for name, *_ in SUBCOMMANDS}
    args = build_parser(only=next((word for word in words if word in names), "")).parse_args(words)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    from .checkpoints import CheckpointError

    try:
        return args.run(args)
    except (InputError, FileNotFoundError, CheckpointError) as error:  # the user's to fix: one line, exit 2
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # ours: the whole traceback for a bug report, then what happened in one line
        traceback.print_exc()
        print(f"error: internal failure, {type(error).__name__}: {error} (a bug; the traceback is above)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
