"""Reading a user's image or volume and writing masks with the same geometry (SimpleITK).

A 2D file (PNG, JPEG, 2D NRRD/NIfTI) is one slice; a 3D file, or a folder holding one DICOM series (read
by ``volumes.read_volume``, so both readers accept the same inputs), is a volume.
Arrays follow SimpleITK/Slicer order: (K, J, I) = (slice, row, column).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .volumes import read_volume, sitk_reason
from .errors import InputError


@dataclass(frozen=True)
class LoadedImage:
    array: np.ndarray  # (J, I) single slice or (K, J, I) volume; colour images reduced to grey
    reference: sitk.Image  # geometry (origin, spacing, direction) for writing results
    path: Path

    @property
    def is_volume(self) -> bool:
        return self.array.ndim == 3


def read_image(path: str | Path) -> LoadedImage:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        volume = read_volume(path)
        return LoadedImage(volume.array, volume.to_sitk(), path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise InputError(f"{path} could not be read as an image or volume: {sitk_reason(error)}") from None
    array = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() > 1:
        array = array[..., :3].mean(axis=-1)  # grey slices stored as RGB(A) PNGs
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim not in (2, 3):
        raise InputError(f"{path} has {array.ndim} dimensions; expected a 2D image or a 3D volume")
    return LoadedImage(array, image, path)


def write_mask(mask: np.ndarray, like: LoadedImage, path: str | Path) -> Path:
    """Write a label array with the geometry of ``like`` (format from the file name: .nrrd, .nii.gz, .png …)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = sitk.GetImageFromArray(np.asarray(mask, dtype=np.uint8))
    reference = like.reference
    if reference.GetNumberOfComponentsPerPixel() == 1 and reference.GetDimension() == labels.GetDimension():
        labels.CopyInformation(reference)
    else:
        labels.SetSpacing(reference.GetSpacing()[: labels.GetDimension()])
        labels.SetOrigin(reference.GetOrigin()[: labels.GetDimension()])
    sitk.WriteImage(labels, str(path), useCompression=True)
    return path
