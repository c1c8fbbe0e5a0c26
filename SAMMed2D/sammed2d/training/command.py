"""``sammed2d train``: its options, and turning them into datasets and a ``TrainingConfig``.

Kept beside the trainer so the command line and other front ends (the Slicer module) build runs
the same way; ``sammed2d.cli`` only registers the subcommand and reports the result.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..intensity import PRESETS
from ..models import VIT_EXAMPLE, ViTConfig
from ..paper_data import read_json_index
from ..volumes import AXES
from . import datasets
from .trainer import PRECISIONS, TRAINABLE, TrainingConfig, TrainingResult, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Data, run and recipe options (the model options are the CLI's shared ones)."""
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--case", type=Path, nargs=2, action="append", metavar=("IMAGE", "LABELS"),
                      help="a volume and its label map or .seg.nrrd "
                           "(repeatable; split into training/validation by volume)")
    data.add_argument("--json-dataset", type=Path, metavar="DIR_OR_JSON",
                      help="a SAM-Med2D dataset folder (its image2label_train.json) or such a JSON file")
    parser.add_argument("--json-val", type=Path, metavar="DIR_OR_JSON",
                        help="validation index for --json-dataset (a folder's label2image_test.json); "
                             "default: hold out --val-fraction of the images")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="share of volumes (or images) held out for validation (default: %(default)s)")
    parser.add_argument("--axes", nargs="+", default=["K"], choices=AXES, help="slice axes of volumes (default: K)")
    parser.add_argument("--slices", type=int, nargs=2, metavar=("FIRST", "LAST"),
                        help="only these slices of volumes (inclusive, along each axis): hold out the rest for "
                             "sammed2d benchmark --slices")
    parser.add_argument("--preset", default="minmax", choices=PRESETS,
                        help="intensity mapping fitted per volume (default: %(default)s, the paper's)")
    parser.add_argument("--min-mask-pixels", type=int, default=100,
                        help="drop smaller masks, area counted at 256×256 (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="run folder: last.pth, best.pth, train.jsonl")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    parser.add_argument("--trainable", default="auto", choices=TRAINABLE,
                        help="parts to train (default: adapters+decoder when the model has adapters, else "
                             "all-but-encoder; 'adapters' needs --interaction-steps 0; 'all' includes the encoder)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=2, help="images per batch and process (default: %(default)s)")
    parser.add_argument("--accumulate", type=int, default=1, help="batches per optimizer step (default: %(default)s)")
    parser.add_argument("--masks-per-image", type=int, default=5)
    parser.add_argument("--interaction-steps", "--iterations", dest="interaction_steps", type=int, default=8,
                        help="interaction steps after the first, per batch (default: %(default)s; --iterations is "
                             "its deprecated old name)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--lr-milestones", type=int, nargs="*", default=[5, 10],
                        help="epochs after which the learning rate is multiplied by --lr-gamma (default: 5 10)")
    parser.add_argument("--lr-gamma", type=float, default=0.5)
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="autocast (default: bf16, else fp16, on CUDA; fp32 on CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="data loading processes (default: %(default)s)")
    parser.add_argument("--init-from-sam", action="store_true",
                        help="--checkpoint holds original SAM weights: convert them")
    parser.add_argument("--vit", metavar="JSON", help=f"ViT size of a non-standard model, e.g. {VIT_EXAMPLE}")
    parser.add_argument("--random-weights", action="store_true",
                        help="start from random weights (tests and timing only)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--progress-json", action="store_true",
                        help='progress as JSON lines on stdout, {"done": n, "total": m, "stage": "..."} '
                             "per step, for a program running this command")


def datasets_from_arguments(
    args: argparse.Namespace,
) -> tuple[
    datasets.JsonDataset | datasets.VolumeSliceDataset, datasets.JsonDataset | datasets.VolumeSliceDataset | None
]:
    """Training and validation sets; volumes are split whole, by ``--val-fraction`` and ``--seed``."""
    if args.json_dataset:
        entries = read_json_index(_index_file(args.json_dataset, "image2label_train.json"))
        if args.json_val:
            held_out = read_json_index(_index_file(args.json_val, "label2image_test.json"))
            return datasets.JsonDataset(entries), datasets.JsonDataset(held_out)
        train_entries, val_entries = datasets.split_by_group(entries, args.val_fraction, args.seed)
        return datasets.JsonDataset(train_entries), datasets.JsonDataset(val_entries) if val_entries else None
    cases = [datasets.VolumeFiles(image, labels) for image, labels in args.case]
    train_cases, val_cases = datasets.split_by_group(cases, args.val_fraction, args.seed)
    options = (args.axes, args.preset, args.min_mask_pixels, tuple(args.slices) if args.slices else None)
    validation = datasets.VolumeSliceDataset(val_cases, *options) if val_cases else None
    return datasets.VolumeSliceDataset(train_cases, *options), validation


def config_from_arguments(args: argparse.Namespace) -> TrainingConfig:
    vit = ViTConfig.from_json(args.vit) if args.vit else None
    return TrainingConfig(
        out=args.out, model=args.model, checkpoint=args.checkpoint, vit=vit, init_from_sam=args.init_from_sam,
        random_weights=args.random_weights, trainable=args.trainable, epochs=args.epochs, batch_size=args.batch_size,
        accumulate=args.accumulate, masks_per_image=args.masks_per_image, interaction_steps=args.interaction_steps,
        lr=args.lr, lr_milestones=tuple(args.lr_milestones), lr_gamma=args.lr_gamma, precision=args.precision,
        seed=args.seed, device=args.device, workers=args.workers, resume=args.resume, progress=not args.no_progress,
    )


def train_from_arguments(args: argparse.Namespace) -> TrainingResult:
    config = config_from_arguments(args)
    train_set, val_set = datasets_from_arguments(args)
    return train(config, train_set, val_set)


def _index_file(path: Path, default_name: str) -> Path:
    return path / default_name if path.is_dir() else path
