"""What the benchmark measures on, and the masks the 2D metrics are computed per.

Volume cases are label maps on an image's grid, from files or from arrays (the Slicer module hands
over MRML nodes as arrays). They are cut into one binary mask per slice, label value and connected
component, with the paper's filters (``paper_data``, shared with training). 2D cases are the released SAM-Med2D
JSON sets, one mask per listed file as the reference evaluates them.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..paper_data import JsonEntry, entry_masks, paper_slice_entries, read_json_entry, read_json_index
from ..volumes import Axis, Volume, read_labels, read_volume

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Structure:
    """One mask of the per-mask (2D) metrics."""

    index: int  # slice index along the case's axis, or image number in a 2D set
    label: str  # label value or structure name, as reported
    component: int  # connected component number (0: the mask as released, or all of a label on a slice)
    mask: np.ndarray  # (H, W) bool


@dataclass(frozen=True)
class VolumeCase:
    """A benchmark case in memory: the volume and its label map as arrays (training's ``VolumeFiles`` are paths)."""

    name: str
    image: Volume
    labels: Volume
    preset: str

    def label_key(self, value: int) -> str:
        """How a label value is reported: its segment name when the label map carries one."""
        return self.labels.label_names.get(value, str(value))

    def label_names(self) -> list[str]:
        """How ``--labels`` may name each label: its value, and its segment name when it has one."""
        return [str(value) if self.label_key(value) == str(value) else f"{value} ({self.label_key(value)})"
                for value in self.label_values(None)]

    def has_label(self, chosen: str) -> bool:
        return any(chosen in (str(value), self.label_key(value)) for value in self.label_values(None))

    def label_values(self, chosen: Sequence[str] | None) -> list[int]:
        present = [int(v) for v in np.unique(self.labels.array) if v != 0]
        if not chosen:
            return present
        return [value for value in present if str(value) in chosen or self.label_key(value) in chosen]

    def structures(self, axis: Axis, labels: Sequence[str] | None, min_mask_pixels: int) -> list[Structure]:
        values = set(self.label_values(labels))
        return [Structure(entry.index, self.label_key(value), number, mask)
                for entry in paper_slice_entries(0, self.labels, axis, min_mask_pixels)
                for value, number, mask in entry_masks(self.labels, entry, values)]


@dataclass(frozen=True)
class ImageSetCase:
    """A SAM-Med2D JSON set: images (read as the reference did) and one mask per listed file."""

    name: str
    entries: tuple[JsonEntry, ...]

    def label_names(self) -> list[str]:
        """The structure names its masks are reported under (what ``--labels`` chooses from)."""
        return sorted({structure_name(path, entry.image) for entry in self.entries for path in entry.masks})

    def has_label(self, chosen: str) -> bool:
        return chosen in self.label_names()

    def read(self, labels: Sequence[str] | None) -> tuple[list[np.ndarray], list[Structure]]:
        """The images, and the masks of the chosen structures (all when ``labels`` is empty)."""
        images, found = [], []
        for number, entry in enumerate(self.entries):
            image, masks = read_json_entry(entry)
            images.append(image)
            for path, mask in zip(entry.masks, masks):
                label = structure_name(path, entry.image)
                if not labels or label in labels:
                    found.append(Structure(number, label, 0, mask))
        return images, found


Case = VolumeCase | ImageSetCase


def resolve_labels(chosen: Sequence[str], cases: Sequence[Case]) -> tuple[str, ...]:
    """The labels to evaluate, each present in at least one case; raises an InputError naming what the cases have.

    ``77,78`` means labels 77 and 78, unless a case has a label named exactly ``77,78``.
    """
    resolved: list[str] = []
    for text in chosen:
        if "," in text and not any(case.has_label(text) for case in cases):
            resolved += [part.strip() for part in text.split(",") if part.strip()]
        else:
            resolved.append(text)
    unknown = [label for label in dict.fromkeys(resolved) if not any(case.has_label(label) for case in cases)]
    if unknown:
        have = "; ".join(f"{case.name} has {', '.join(case.label_names())}" for case in cases)
        raise InputError(f"--labels {' '.join(unknown)}: no case has {'it' if len(unknown) == 1 else 'them'} "
                         f"(labels: {have})")
    return tuple(dict.fromkeys(resolved))


def structure_name(mask: Path, image: Path) -> str:
    """``<image>_<organ>_<instance>.png`` → organ (the released naming); otherwise the mask's file stem."""
    match = re.fullmatch(re.escape(image.stem) + r"_(.+)_\d+", mask.stem)
    return match.group(1) if match else mask.stem


def volume_case(image: str | Path, labels: str | Path, preset: str, name: str | None = None) -> VolumeCase:
    volume = read_volume(image)
    label_map = read_labels(labels, like=volume)
    if not np.any(label_map.array):
        raise InputError(f"{labels} is empty: it labels no voxel")
    return VolumeCase(name or case_name(Path(image)), volume, label_map, preset)


def case_name(image: Path) -> str:
    name = image.name
    for suffix in (".nii.gz", ".seg.nrrd", ".nrrd", ".nii", ".mha", ".mhd"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def image_set_case(path: str | Path) -> ImageSetCase:
    """A SAM-Med2D set folder (its ``label2image_test.json``) or one of its JSON indexes."""
    path = Path(path)
    index = path / "label2image_test.json" if path.is_dir() else path
    return ImageSetCase(index.parent.name, tuple(read_json_index(index)))


def read_manifest(path: str | Path, preset: str) -> list[VolumeCase]:
    """Cases listed in a CSV (columns image, labels and optionally name, preset) or a JSON list of such objects.

    Relative paths are relative to the manifest's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"the manifest {path} does not exist")
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise InputError(f"{path} is not valid JSON: {error}") from None
    else:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    if not isinstance(rows, list) or not rows:
        raise InputError(f"{path} lists no case (expected rows with 'image' and 'labels')")
    cases = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not row.get("image") or not row.get("labels"):
            raise InputError(f"{path}: case {number} needs 'image' and 'labels'")
        cases.append(volume_case(path.parent / row["image"], path.parent / row["labels"],
                                 row.get("preset") or preset, row.get("name") or None))
    return cases
