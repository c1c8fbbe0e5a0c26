"""The paper's data rules: SAM-Med2D 2D JSON sets as released, and label maps cut into one mask per slice,
label value and connected component with the paper's filters.

Training learns from these masks and the benchmark scores them, so both import this one module (torch-free).
Bad data fails with a ``DatasetError`` that names the file, never deep inside a run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .errors import InputError
from .model_images import model_rows, rows_under_centres
from .paper_prompts import EIGHT_CONNECTED
from .volumes import Axis, Volume

logger = logging.getLogger(__name__)

#: the paper filters masks by their area once resized to this square size
MASK_AREA_SIZE = 256


class DatasetError(InputError):
    """Unusable training or benchmark data; the message names the file and what is wrong with it."""


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


def read_json_entry(entry: JsonEntry) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The image (as the reference read it with OpenCV) and its masks, each checked against the image."""
    image = _read_png_image(entry.image)
    return image, tuple(_read_png_mask(path, image.shape[:2], entry.image) for path in entry.masks)


def _read_png(path: Path) -> np.ndarray:
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError:
        raise DatasetError(f"{path} could not be read as an image") from None
    if image.GetDimension() != 2:
        raise DatasetError(f"{path} is {image.GetDimension()}D; expected a 2D image")
    return sitk.GetArrayFromImage(image)


def _read_png_image(path: Path) -> np.ndarray:
    """(H, W) uint8 grey, or (H, W, 3) uint8 in BGR order for colour PNGs."""
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


# --- 3D: label maps cut into slices ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SliceEntry:
    case: int
    axis: Axis
    index: int
    #: (label value, connected component number) of each kept mask
    components: tuple[tuple[int, int], ...]


def paper_slice_entries(case: int, labels: Volume, axis: Axis, min_mask_pixels: int) -> list[SliceEntry]:
    """The slices along ``axis`` with a mask the paper keeps: none when the slices are too elongated (short side
    under half the long one), else every component of ``min_mask_pixels`` or more at 256×256.

    Both rules measure the model image (square pixels, ``model_images``), as the model sees the slice.
    """
    height, width = labels.slice_shape(axis)
    square_rows = model_rows(labels, axis)
    if min(square_rows, width) * 2 < max(square_rows, width):
        logger.info("%s: slices along %s are %d×%d (square pixels), too elongated for training; skipped",
                    labels.source, axis, width, square_rows)
        return []
    # nearest-neighbour resize of the model image, as the model input
    rows = rows_under_centres(height, square_rows)[np.arange(MASK_AREA_SIZE) * square_rows // MASK_AREA_SIZE]
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


def entry_masks(labels: Volume, entry: SliceEntry, values: set[int] | None = None) -> list[tuple[int, int, np.ndarray]]:
    """(label value, component number, (H, W) bool mask) of the entry's masks, of ``values`` only when given."""
    label_slice = labels.slice(entry.axis, entry.index)
    chosen = [(value, number) for value, number in entry.components if values is None or value in values]
    labelled = {value: ndimage.label(label_slice == value, structure=EIGHT_CONNECTED)[0]
                for value in {value for value, _ in chosen}}
    return [(value, number, labelled[value] == number) for value, number in chosen]
