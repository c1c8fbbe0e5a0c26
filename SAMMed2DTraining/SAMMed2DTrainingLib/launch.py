"""Benchmark and fine-tuning as child runs of the engine's command line, on nodes or files.

A case is a pair (volume, labels): a scalar volume node with a segmentation or label map node, or two file paths.
The child cannot see Slicer's scene, so node pairs are written to a temporary folder first (a quick copy of the
arrays, on the calling thread) that is removed when the child ends; files are passed through as they are. The
options are those of ``runs.benchmarkCases`` and ``runs.trainCases`` (the same work in this process), spelled as
``sammed2d benchmark`` and ``sammed2d train`` options. Torch-free: the child imports torch, this process never does.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

from .childrun import ChildRun
from .nodes import Source, isFileCase, writeCaseFiles

CaseInput = tuple[Source, Source]

#: ``sammed2d.training.trainer.TrainingConfig`` fields with a ``sammed2d train`` option that takes a value
TRAINING_OPTIONS = {
    "model": "--model", "checkpoint": "--checkpoint", "vit": "--vit", "trainable": "--trainable", "epochs": "--epochs",
    "batch_size": "--batch-size", "accumulate": "--accumulate", "masks_per_image": "--masks-per-image",
    "interaction_steps": "--interaction-steps", "lr": "--lr", "lr_milestones": "--lr-milestones", "lr_gamma": "--lr-gamma",
    "precision": "--precision", "seed": "--seed", "device": "--device", "workers": "--workers",
}
#: TrainingConfig fields that are ``sammed2d train`` switches
TRAINING_FLAGS = {"init_from_sam": "--init-from-sam", "random_weights": "--random-weights", "resume": "--resume"}


def startBenchmark(
    cases: Sequence[CaseInput],
    out: Union[str, Path],
    models: Sequence[str] = ("litemedsam",),
    modes: Sequence[str] = ("paper",),
    preset: str = "minmax",
    axis: str = "K",
    labels: Sequence[str] = (),
    minMaskPixels: int = 100,
    seed: int = 0,
    slices: Optional[tuple[int, int]] = None,
    device: str = "auto",
    segmentationsLogic=None,
) -> ChildRun:
    """``sammed2d benchmark`` on nodes or files in a child process; models are registry names ``NAME[:CHECKPOINT]``.

    A node pair is reported under the volume node's name, as in ``runs.benchmarkCases``.
    """
    if not cases:
        raise ValueError("the benchmark needs at least one case (volume and labels)")
    if not modes:
        raise ValueError("choose at least one benchmark mode")
    if any(not isinstance(model, str) for model in models):
        raise TypeError("a child run loads its models itself: give registry names NAME[:CHECKPOINT]")
    arguments = ["--out", str(out), "--preset", preset, "--axis", axis, "--min-mask-pixels", str(minMaskPixels),
                 "--seed", str(seed), "--device", device, "--modes", *modes]
    for model in models:
        arguments += ["--model", model]
    if labels:
        arguments += ["--labels", *map(str, labels)]
    if slices:
        arguments += ["--slices", str(slices[0]), str(slices[1])]

    def caseArguments(folder: Path) -> list[str]:
        files, manifest = [], []
        for number, (image, labelSource) in enumerate(cases):
            if isFileCase(image, labelSource):
                files += ["--case", str(image), str(labelSource)]
                continue
            imagePath, labelPath = writeCaseFiles(image, labelSource, folder, f"case{number}", segmentationsLogic)
            name = _unique(image.GetName(), {entry["name"] for entry in manifest})
            manifest.append({"name": name, "image": str(imagePath), "labels": str(labelPath)})
        if manifest:
            (folder / "cases.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
            files += ["--manifest", str(folder / "cases.json")]
        return files

    return _start("benchmark", arguments, caseArguments)


def startTraining(
    cases: Sequence[CaseInput],
    out: Union[str, Path],
    valFraction: float = 0.2,
    axes: Sequence[str] = ("K",),
    preset: str = "minmax",
    minMaskPixels: int = 100,
    segmentationsLogic=None,
    **config: Any,
) -> ChildRun:
    """``sammed2d train`` on nodes or files in a child process, split into training and validation by volume.

    ``config`` holds ``sammed2d.training.trainer.TrainingConfig`` fields (model, checkpoint, trainable, epochs …);
    the model defaults to TrainingConfig's, sam-med2d.
    """
    if not cases:
        raise ValueError("training needs at least one case (volume and labels)")
    arguments = ["--out", str(out), "--val-fraction", str(valFraction), "--axes", *axes, "--preset", preset,
                 "--min-mask-pixels", str(minMaskPixels), *trainingArguments(config)]

    def caseArguments(folder: Path) -> list[str]:
        files = []
        for number, (image, labelSource) in enumerate(cases):
            if not isFileCase(image, labelSource):
                image, labelSource = writeCaseFiles(image, labelSource, folder, f"case{number}", segmentationsLogic)
            files += ["--case", str(image), str(labelSource)]
        return files

    return _start("train", arguments, caseArguments)


def trainingArguments(config: Mapping[str, Any]) -> list[str]:
    """TrainingConfig fields as ``sammed2d train`` options, from which the child builds the same TrainingConfig."""
    unknown = set(config) - set(TRAINING_OPTIONS) - set(TRAINING_FLAGS)
    if unknown:
        raise TypeError(f"training options a child run cannot pass on: {', '.join(sorted(unknown))}")
    arguments = []
    for field, option in TRAINING_OPTIONS.items():
        value = config.get(field)
        if value is None:
            continue
        if field == "vit":
            arguments += [option, json.dumps(dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value)]
        elif field == "lr_milestones":
            arguments += [option, *map(str, value)]
        else:
            arguments += [option, str(value)]
    return arguments + [flag for field, flag in TRAINING_FLAGS.items() if config.get(field)]


def _start(command: str, arguments: list[str], caseArguments: Callable[[Path], list[str]]) -> ChildRun:
    """Write the node cases to a folder that lives as long as the child, then start it."""
    folder = tempfile.TemporaryDirectory(prefix=f"sammed2d-{command}-")
    try:
        arguments = arguments + caseArguments(Path(folder.name))
    except BaseException:
        folder.cleanup()
        raise
    return ChildRun(command, arguments, on_end=folder.cleanup)


def _unique(name: str, taken: set[str]) -> str:
    """Case names must differ; two volume nodes may share one."""
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name} {number}", number + 1
    return candidate
