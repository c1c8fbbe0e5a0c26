"""Training data: SAM-Med2D 2D JSON datasets as released, and 3D volumes with label maps sliced as the paper does.

Both yield ``TrainingItem``s: one 8-bit slice and the binary masks of the structures on it. Bad data
fails early or on first read with a ``DatasetError`` that names the file, never deep inside training.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, TypeVar

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from torch.utils.data import Dataset

from ..intensity import fit_mapping
from ..volumes import AXES, Axis, Volume, read_labels, read_volume
from .prompts import EIGHT_CONNECTED
from ..errors import InputError

logger = logging.getLogger(__name__)

#: the paper filters masks by their area once resized to this square size
MASK_AREA_SIZE = 256
Group = TypeVar("Group")


class DatasetError(InputError):
    """Unusable training data; the message names the file and what is wrong with it."""


@dataclass(frozen=True)
class TrainingItem:
    """One slice and its structures."""

    #: (H, W) uint8 grey, or (H, W, 3) uint8 in BGR order for colour PNGs (as the reference read them with OpenCV)
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


# --- 2D: the SAM-Med2D JSON format -------------------------------------------------------------------------------


@dataclass(frozen=True)
class JsonEntry:
    image: Path
    masks: tuple[Path, ...]


def read_json_index(path: str | Path) -> list[JsonEntry]:
    """Read ``image2label_train.json`` (image → [masks]) or ``label2image_test.json`` (mask → image).

    Paths inside are relative to the parent of the JSON's folder and start with that folder's
    released name (``data_demo/…``); when the folder was renamed they are also looked up inside it.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path} does not exist")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(index, dict) or not index:
        raise DatasetError(f"{path} must map images to masks (or masks to images) and must not be empty")
    grouped: dict[str, list[str]] = {}
    for key, value in index.items():
        if isinstance(value, list) and all(isinstance(v, str) for v in value) and value:
            grouped.setdefault(key, []).extend(value)
        elif isinstance(value, str):
            grouped.setdefault(value, []).append(key)
        else:
            raise DatasetError(f"{path}: entry {key!r} must be a mask path or a non-empty list of mask paths")
    return [
        JsonEntry(_resolve(image, path), tuple(_resolve(mask, path) for mask in masks))
        for image, masks in grouped.items()
    ]


def _resolve(entry: str, index: Path) -> Path:
    relative = Path(entry)
    candidates = [relative] if relative.is_absolute() else [index.parent.parent / relative]
    if not relative.is_absolute() and len(relative.parts) > 1:
        candidates.append(index.parent / Path(*relative.parts[1:]))
    candidates = list(dict.fromkeys(candidates))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{entry} listed in {index} does not exist (looked for {', '.join(map(str, candidates))})")


class JsonDataset(Dataset[TrainingItem]):
    """Images and masks listed by a SAM-Med2D JSON index; files are read (and checked) when an item is used."""

    def __init__(self, entries: Sequence[JsonEntry]) -> None:
        self.entries = list(entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> TrainingItem:
        entry = self.entries[index]
        image = _read_png_image(entry.image)
        masks = tuple(_read_png_mask(path, image.shape[:2], entry.image) for path in entry.masks)
        return TrainingItem(image, masks, str(entry.image))


def _read_png(path: Path) -> np.ndarray:
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError:
        raise DatasetError(f"{path} could not be read as an image") from None
    if image.GetDimension() != 2:
        raise DatasetError(f"{path} is {image.GetDimension()}D; expected a 2D image")
    return sitk.GetArrayFromImage(image)


def _read_png_image(path: Path) -> np.ndarray:
    pixels = _read_png(path)
    if pixels.dtype != np.uint8:
        raise DatasetError(f"{path} holds {pixels.dtype} pixels; expected an 8-bit image")
    if pixels.ndim == 3:
        colour = pixels[..., :3]
        grey = np.all(colour == colour[..., :1], axis=2).all()
        pixels = colour[..., 0] if grey else np.ascontiguousarray(colour[..., ::-1])
    return pixels


def _read_png_mask(path: Path, shape: tuple[int, ...], image: Path) -> np.ndarray:
    values = _read_png(path)
    if values.ndim == 3:
        if not np.all(values == values[..., :1]):
            raise DatasetError(f"{path} has {values.shape[2]} different channels; a mask must be single-channel")
        values = values[..., 0]
    if values.shape != shape:
        raise DatasetError(f"the mask {path} is {values.shape[1]}×{values.shape[0]} but its image {image} is "
                           f"{shape[1]}×{shape[0]}")
    found = set(np.unique(values).tolist())
    if not (found <= {0, 1} or found <= {0, 255}):
        shown = ", ".join(str(v) for v in sorted(found)[:8])
        raise DatasetError(f"{path} is not a binary mask (0/1 or 0/255); it holds the values {shown}")
    if found <= {0}:
        raise DatasetError(f"{path} is empty: it marks no pixel")
    return values > 0


# --- 3D: volumes with label maps ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VolumeCase:
    """A volume and its label map (NRRD, NIfTI … or a Slicer .seg.nrrd) on the same voxel grid."""

    image: Path
    labels: Path


@dataclass(frozen=True)
class SliceEntry:
    case: int
    axis: Axis
    index: int
    #: (label value, connected component number) of each kept mask
    components: tuple[tuple[int, int], ...]


class VolumeSliceDataset(Dataset[TrainingItem]):
    """2D slices of volumes along chosen axes, with the paper's preprocessing.

    Intensities are mapped to 0..255 once per volume (``preset``, default the paper's min–max);
    slices whose short side is under half the long side are skipped; each label value and each of
    its connected components is one mask; masks under ``min_mask_pixels`` at 256×256 are dropped.
    ``slices`` (first, last, inclusive) keeps only those slice indices along every axis, so the other
    slices of the same volumes can be held out for the benchmark's ``--slices``.
    Volumes stay in memory; masks are rebuilt from the label slice when an item is read.
    """

    def __init__(
        self,
        cases: Sequence[VolumeCase],
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
        self._volumes: list[tuple[Volume, Volume]] = [_load_case(case, preset) for case in self.cases]
        self.entries: list[SliceEntry] = []
        for number, (_, labels) in enumerate(self._volumes):
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
        image, labels = self._volumes[entry.case]
        label_slice = labels.slice(entry.axis, entry.index)
        labelled = {value: ndimage.label(label_slice == value, structure=EIGHT_CONNECTED)[0]
                    for value in {value for value, _ in entry.components}}
        masks = tuple(labelled[value] == component for value, component in entry.components)
        source = f"{self.cases[entry.case].image} {entry.axis}={entry.index}"
        return TrainingItem(image.slice(entry.axis, entry.index), masks, source)


def _load_case(case: VolumeCase, preset: str) -> tuple[Volume, Volume]:
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
    try:
        mapped = fit_mapping(volume.array, preset).apply(volume.array)
    except ValueError as error:
        raise DatasetError(f"{case.image}: {error}") from error
    image = Volume(np.rint(mapped).astype(np.uint8), volume.geometry, volume.source)
    return image, labels


def paper_slice_entries(case: int, labels: Volume, axis: Axis, min_mask_pixels: int) -> list[SliceEntry]:
    height, width = labels.slice(axis, 0).shape
    if min(height, width) * 2 < max(height, width):
        logger.info("%s: slices along %s are %d×%d, too elongated for training; skipped", labels.source, axis,
                    width, height)
        return []
    rows = np.arange(MASK_AREA_SIZE) * height // MASK_AREA_SIZE  # nearest-neighbour resize, as the model input
    cols = np.arange(MASK_AREA_SIZE) * width // MASK_AREA_SIZE
    entries = []
    for index in range(labels.slice_count(axis)):
        label_slice = labels.slice(axis, index)
        kept = []
        for value in np.unique(label_slice[label_slice != 0]).tolist():
            components, count = ndimage.label(label_slice == value, structure=EIGHT_CONNECTED)
            areas = np.bincount(components[np.ix_(rows, cols)].ravel(), minlength=count + 1)
            kept.extend((int(value), number) for number in range(1, count + 1) if areas[number] >= min_mask_pixels)
        if kept:
            entries.append(SliceEntry(case, axis, index, tuple(kept)))
    return entries
