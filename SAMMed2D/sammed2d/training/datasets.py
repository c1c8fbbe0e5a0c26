"""Training data: SAM-Med2D 2D JSON datasets as released, and 3D volumes with label maps sliced as the paper does.

Both yield ``TrainingItem``s: one image and the binary masks of the structures on it. A volume's slice is
the model image inference segments (``model_images``: mapped intensities, square pixels), its masks on the
same grid. Bad data fails early or on first read with a ``DatasetError`` that names the file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, TypeVar

import numpy as np
from torch.utils.data import Dataset

from ..errors import InputError
from ..intensity import IntensityMapping, fit_mapping
from ..model_images import mask_to_model, model_image
from ..paper_data import DatasetError, JsonEntry, SliceEntry, entry_masks, paper_slice_entries, read_json_entry
from ..volumes import AXES, Volume, read_labels, read_volume

logger = logging.getLogger(__name__)

Group = TypeVar("Group")


@dataclass(frozen=True)
class TrainingItem:
    """One slice and its structures."""

    #: (H, W) float32 0..255 model image of a volume's slice; of a PNG, (H, W) uint8 grey or (H, W, 3) uint8 in
    #: BGR order for colour (as the reference read them with OpenCV)
    image: np.ndarray
    masks: tuple[np.ndarray, ...]  # (H, W) bool each, one per structure or connected part
    source: str


def split_by_group(groups: Sequence[Group], val_fraction: float, seed: int) -> tuple[list[Group], list[Group]]:
    """Hold out whole volumes (or whole 2D images): slices of one volume are too alike to validate each other.

    At least one group is held out when ``val_fraction > 0`` and at least one is kept for training.
    """
    if not 0 <= val_fraction < 1:
        raise InputError(f"the validation fraction must be in [0, 1); got {val_fraction}")
    held_out = round(len(groups) * val_fraction)
    if val_fraction > 0:
        held_out = min(max(held_out, 1), len(groups) - 1)
    chosen = set(np.random.default_rng(seed).permutation(len(groups))[:held_out].tolist())
    return (
        [group for index, group in enumerate(groups) if index not in chosen],
        [group for index, group in enumerate(groups) if index in chosen],
    )


class JsonDataset(Dataset[TrainingItem]):
    """Images and masks listed by a SAM-Med2D JSON index; files are read (and checked) when an item is used."""

    def __init__(self, entries: Sequence[JsonEntry]) -> None:
        self.entries = list(entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> TrainingItem:
        entry = self.entries[index]
        image, masks = read_json_entry(entry)
        return TrainingItem(image, masks, str(entry.image))


# --- 3D: volumes with label maps ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VolumeFiles:
    """The files of a volume and its label map (NRRD, NIfTI … or a Slicer .seg.nrrd) on the same voxel grid."""

    image: Path
    labels: Path


class VolumeSliceDataset(Dataset[TrainingItem]):
    """2D slices of volumes along chosen axes, with the paper's preprocessing.

    Intensities are mapped to 0..255 with a mapping fitted once per volume (``preset``, default the paper's
    min–max) and slices are resampled to square pixels, exactly as inference does; slices whose short side
    is under half the long side are skipped; each label value and each of
    its connected components is one mask; masks under ``min_mask_pixels`` at 256×256 are dropped.
    ``slices`` (first, last, inclusive) keeps only those slice indices along every axis, so the other
    slices of the same volumes can be held out for the benchmark's ``--slices``.
    Volumes stay in memory; masks are rebuilt from the label slice when an item is read.
    """

    def __init__(
        self,
        cases: Sequence[VolumeFiles],
        axes: Sequence[str] = ("K",),
        preset: str = "minmax",
        min_mask_pixels: int = 100,
        slices: tuple[int, int] | None = None,
    ) -> None:
        unknown = [axis for axis in axes if axis not in AXES]
        if unknown or not axes:
            raise InputError(f"axes must be some of {', '.join(AXES)}; got {list(axes)}")
        if slices is not None and not 0 <= slices[0] <= slices[1]:
            raise InputError(f"slices must be FIRST <= LAST, both 0 or more; got {slices}")
        self.cases = list(cases)
        self._volumes: list[tuple[Volume, IntensityMapping, Volume]] = [
            _load_case(case, preset) for case in self.cases
        ]
        self.entries: list[SliceEntry] = []
        for number, (_, _, labels) in enumerate(self._volumes):
            for axis in dict.fromkeys(axes):
                found = paper_slice_entries(number, labels, axis, min_mask_pixels)  # type: ignore[arg-type]
                self.entries.extend(entry for entry in found if slices is None or slices[0] <= entry.index <= slices[1])
            if not any(entry.case == number for entry in self.entries):
                logger.warning("%s gives no training slice along %s (masks too small or slices too elongated)",
                               self.cases[number].labels, ", ".join(axes))

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> TrainingItem:
        entry = self.entries[index]
        volume, mapping, labels = self._volumes[entry.case]
        image = model_image(volume, mapping, entry.axis, entry.index)
        masks = tuple(mask_to_model(mask, image.shape[0]) for _, _, mask in entry_masks(labels, entry))
        source = f"{self.cases[entry.case].image} {entry.axis}={entry.index}"
        return TrainingItem(image, masks, source)


def _load_case(case: VolumeFiles, preset: str) -> tuple[Volume, IntensityMapping, Volume]:
    for path in (case.image, case.labels):
        if not Path(path).exists():
            raise DatasetError(f"{path} does not exist")
    try:
        volume = read_volume(case.image)
        labels = read_labels(case.labels, like=volume)
    except ValueError as error:
        raise DatasetError(str(error)) from error
    if not np.any(labels.array):
        raise DatasetError(f"{case.labels} is empty: it labels no voxel")
    if not np.isfinite(volume.array).all():
        raise DatasetError(f"{case.image} contains NaN or infinite values")
    try:
        mapping = fit_mapping(volume.array, preset)
    except ValueError as error:
        raise DatasetError(f"{case.image}: {error}") from error
    return volume, mapping, labels
