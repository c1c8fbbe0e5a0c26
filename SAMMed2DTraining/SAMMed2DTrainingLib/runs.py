"""Benchmark and training runs on MRML nodes or files, through the engine's own code paths.

A case is a pair (volume, labels): a scalar volume node with a segmentation or label map node, or
two file paths. Nodes are turned into engine volumes here (see ``nodes``); everything else is the
engine's benchmark and trainer, so a run from Slicer measures exactly what ``sammed2d`` measures.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

from sammed2d.evaluation.cases import VolumeCase, volume_case
from sammed2d.evaluation.command import BenchmarkOutput, benchmark, load_models
from sammed2d.evaluation.modes import PAPER_MODES, expand_modes
from sammed2d.evaluation.runner import BenchmarkModel, BenchmarkSettings
from sammed2d.training import datasets
from sammed2d.training.trainer import TrainingConfig, TrainingResult, train

from .nodes import Source, isFileCase, volumesFromNodes, writeCaseFiles

CaseInput = tuple[Source, Source]


def benchmarkCase(image: Source, labels: Source, preset: str, segmentationsLogic=None) -> VolumeCase:
    """One benchmark case; a node pair is named after the volume node."""
    if isFileCase(image, labels):
        return volume_case(image, labels, preset)
    return VolumeCase(image.GetName(), *volumesFromNodes(image, labels, segmentationsLogic), preset)


def benchmarkCases(
    cases: Sequence[CaseInput],
    out: str | Path,
    models: Sequence[str | BenchmarkModel] = ("litemedsam",),
    modes: Sequence[str] = PAPER_MODES,
    preset: str = "minmax",
    axis: str = "K",
    labels: Sequence[str] = (),
    minMaskPixels: int = 100,
    seed: int = 0,
    slices: tuple[int, int] | None = None,
    device: str = "auto",
    progress: bool = False,
    segmentationsLogic=None,
) -> BenchmarkOutput:
    """``sammed2d benchmark`` on nodes or files; models are registry names ``NAME[:CHECKPOINT]`` or loaded ones."""
    built = [benchmarkCase(image, labelSource, preset, segmentationsLogic) for image, labelSource in cases]
    if not built:
        raise ValueError("the benchmark needs at least one case (volume and labels)")
    loaded = [model for model in models if isinstance(model, BenchmarkModel)]
    loaded += load_models([model for model in models if not isinstance(model, BenchmarkModel)], device)
    settings = BenchmarkSettings(expand_modes(list(modes)), axis,  # type: ignore[arg-type]
                                 tuple(str(label) for label in labels), minMaskPixels, seed, progress,
                                 tuple(slices) if slices else None)
    return benchmark(loaded, built, settings, Path(out))


def trainCases(
    cases: Sequence[CaseInput],
    config: TrainingConfig,
    valFraction: float = 0.2,
    axes: Sequence[str] = ("K",),
    preset: str = "minmax",
    minMaskPixels: int = 100,
    segmentationsLogic=None,
) -> TrainingResult:
    """``sammed2d train`` on volumes given as nodes or files, split into training and validation by volume.

    Nodes are written to temporary NRRD files (with their LPS geometry) only while the training data
    is read: the trainer's datasets read files, and a node copy keeps the run independent of later edits.
    """
    with tempfile.TemporaryDirectory(prefix="sammed2d-train-") as folder:
        files = [_caseFiles(image, labels, Path(folder), number, segmentationsLogic)
                 for number, (image, labels) in enumerate(cases)]
        if not files:
            raise ValueError("training needs at least one case (volume and labels)")
        trainFiles, valFiles = datasets.split_by_group(files, valFraction, config.seed)
        options = (tuple(axes), preset, minMaskPixels)
        trainSet = datasets.VolumeSliceDataset(trainFiles, *options)
        valSet = datasets.VolumeSliceDataset(valFiles, *options) if valFiles else None
    return train(config, trainSet, valSet)


def _caseFiles(image: Source, labels: Source, folder: Path, number: int, segmentationsLogic) -> datasets.VolumeFiles:
    if isFileCase(image, labels):
        return datasets.VolumeFiles(Path(image), Path(labels))
    return datasets.VolumeFiles(*writeCaseFiles(image, labels, folder, f"case{number}", segmentationsLogic))
