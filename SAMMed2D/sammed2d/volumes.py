"""Volumes and label maps with their geometry, and 2D slices of them along any IJK axis.

Arrays are in Slicer/SimpleITK order (K, J, I). Geometry is kept as SimpleITK expresses it
(LPS origin, spacing along I, J, K and a direction matrix), so results written back line up with
the source in Slicer and any other viewer.

Slice orientation (what the Slicer side maps its views to): a slice normal to
- ``K`` is ``array[k]``: rows follow J, columns follow I;
- ``J`` is ``array[:, j]``: rows follow K, columns follow I;
- ``I`` is ``array[:, :, i]``: rows follow K, columns follow J.
Row and column indices increase with the IJK index; nothing is flipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import SimpleITK as sitk

from .errors import InputError

Axis = Literal["K", "J", "I"]
AXES: tuple[Axis, ...] = ("K", "J", "I")
_ARRAY_DIMENSION = {"K": 0, "J": 1, "I": 2}
_GEOMETRY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Geometry:
    """Where voxels lie in patient space (LPS, mm), as SimpleITK defines it."""

    spacing: tuple[float, float, float]  # along I, J, K
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # 3×3 row-major

    @classmethod
    def of(cls, image: sitk.Image) -> "Geometry":
        return cls(tuple(image.GetSpacing()), tuple(image.GetOrigin()), tuple(image.GetDirection()))

    def ijk_to_lps(self) -> np.ndarray:
        matrix = np.eye(4)
        matrix[:3, :3] = np.asarray(self.direction).reshape(3, 3) * np.asarray(self.spacing)
        matrix[:3, 3] = self.origin
        return matrix

    def matches(self, other: "Geometry") -> bool:
        return all(
            np.allclose(a, b, atol=_GEOMETRY_TOLERANCE, rtol=1e-6)
            for a, b in ((self.spacing, other.spacing), (self.origin, other.origin), (self.direction, other.direction))
        )

    def describe(self) -> str:
        spacing = " × ".join(f"{v:.4g}" for v in self.spacing)
        origin = ", ".join(f"{v:.4g}" for v in self.origin)
        return f"spacing {spacing} mm, origin ({origin})"


@dataclass(frozen=True)
class Volume:
    array: np.ndarray  # (K, J, I)
    geometry: Geometry
    source: str = "array"
    #: label value → segment name, for label maps that carry names (.seg.nrrd, or a table)
    label_names: dict[int, str] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    def slice(self, axis: Axis, index: int) -> np.ndarray:
        """The 2D slice normal to ``axis`` at ``index`` (orientation as in the module docstring)."""
        self.check_slice(axis, index)
        return np.take(self.array, index, axis=_axis_dimension(axis))

    def slice_shape(self, axis: Axis) -> tuple[int, int]:
        """(rows, columns) of every slice normal to ``axis``, without taking one."""
        shape = list(self.array.shape)
        del shape[_axis_dimension(axis)]
        return shape[0], shape[1]

    def check_slice(self, axis: Axis, index: int) -> None:
        """Refuse a slice index outside the volume, naming the valid range."""
        size = self.slice_count(axis)
        if not 0 <= index < size:
            raise InputError(f"slice {index} along {axis} is outside the volume (0..{size - 1})")

    def slice_count(self, axis: Axis) -> int:
        return self.array.shape[_axis_dimension(axis)]

    def pixel_spacing(self, axis: Axis) -> tuple[float, float]:
        """(row, column) spacing in mm of slices normal to ``axis``."""
        spacing_i, spacing_j, spacing_k = self.geometry.spacing
        return {"K": (spacing_j, spacing_i), "J": (spacing_k, spacing_i), "I": (spacing_k, spacing_j)}[axis]

    def to_sitk(self) -> sitk.Image:
        image = sitk.GetImageFromArray(self.array)
        image.SetSpacing(self.geometry.spacing)
        image.SetOrigin(self.geometry.origin)
        image.SetDirection(self.geometry.direction)
        return image


def _axis_dimension(axis: str) -> int:
    try:
        return _ARRAY_DIMENSION[axis]
    except KeyError:
        raise InputError(f"axis must be one of K, J, I; got {axis!r}") from None


def stack_slices(slices: dict[int, np.ndarray], axis: Axis, shape: tuple[int, int, int], dtype=np.uint8) -> np.ndarray:
    """Place 2D masks back into a (K, J, I) array at their indices along ``axis``."""
    volume = np.zeros(shape, dtype=dtype)
    dimension = _axis_dimension(axis)
    for index, mask in slices.items():
        target = [slice(None)] * 3
        target[dimension] = index
        volume[tuple(target)] = mask
    return volume


def read_volume(path: str | Path) -> Volume:
    """Read an image volume: NRRD, NIfTI, MHA … or a folder holding one DICOM series."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        return _read_dicom_series(path)
    if path.name.endswith(".seg.nrrd"):
        raise InputError(f"{path} is a segmentation; read it with read_labels")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise InputError(f"{path} could not be read as a volume: {sitk_reason(error)}") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path} has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                         "expected a scalar volume")
    if image.GetDimension() != 3:
        raise InputError(f"{path} is {image.GetDimension()}D; expected a 3D volume")
    return Volume(sitk.GetArrayFromImage(image), Geometry.of(image), str(path))


def _read_dicom_series(folder: Path) -> Volume:
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(f"{folder} holds no DICOM series")
    if len(series) > 1:
        raise InputError(f"{folder} holds {len(series)} DICOM series ({', '.join(series)}); point to a folder with one")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series[0]))
    image = reader.Execute()
    return Volume(sitk.GetArrayFromImage(image), Geometry.of(image), str(folder))


def read_labels(path: str | Path, like: Volume | None = None) -> Volume:
    """Read a label map (NRRD, NIfTI …) or a Slicer ``.seg.nrrd`` (with segment names).

    With ``like``, the labels must lie on the image's voxel grid (a ``.seg.nrrd`` cropped to its
    segments' extent is placed back into it); otherwise the error names both files.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    labels = _read_seg_nrrd(path) if path.name.endswith(".seg.nrrd") else _read_label_image(path)
    if like is None:
        return labels
    if labels.shape == like.shape and labels.geometry.matches(like.geometry):
        return labels
    return _place_on_grid(labels, like)


def _read_label_image(path: Path) -> Volume:
    volume = read_volume(path)
    if not np.issubdtype(volume.array.dtype, np.integer):
        values = volume.array
        if not np.array_equal(values, np.round(values)):
            raise InputError(f"{path} is not a label map: it holds non-integer values")
        volume = Volume(values.astype(np.int32), volume.geometry, volume.source)
    return volume


def _read_seg_nrrd(path: Path) -> Volume:
    import slicerio

    segmentation = slicerio.read_segmentation(str(path))
    segments = segmentation["segments"]
    voxels = segmentation["voxels"]
    if voxels.ndim == 4:  # overlapping segments in layers: collapse, later segments on top
        names_to_values = [(segment["name"], index + 1) for index, segment in enumerate(segments)]
        voxels, _ = slicerio.extract_segments(segmentation, names_to_values)
        names = {value: name for name, value in names_to_values}
    else:
        names = {int(segment["labelValue"]): segment["name"] for segment in segments}
    matrix = np.asarray(segmentation["ijkToLPS"], dtype=float)
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)
    geometry = Geometry(
        tuple(float(v) for v in spacing),
        tuple(float(v) for v in matrix[:3, 3]),
        tuple(float(v) for v in (matrix[:3, :3] / spacing).ravel()),
    )
    return Volume(np.ascontiguousarray(np.transpose(voxels, (2, 1, 0))), geometry, str(path), names)


def _place_on_grid(labels: Volume, like: Volume) -> Volume:
    """Paste labels stored on a sub-box of the image grid (same spacing and axes) into the full grid."""
    same_axes = np.allclose(labels.geometry.spacing, like.geometry.spacing, atol=_GEOMETRY_TOLERANCE) and np.allclose(
        labels.geometry.direction, like.geometry.direction, atol=_GEOMETRY_TOLERANCE
    )
    if same_axes:
        offset_ijk = np.linalg.solve(like.geometry.ijk_to_lps(), [*labels.geometry.origin, 1.0])[:3]
        offset = np.round(offset_ijk).astype(int)
        end = offset + np.array(labels.shape[::-1])
        on_grid = np.allclose(offset_ijk, offset, atol=1e-3)
        if on_grid and (offset >= 0).all() and (end <= np.array(like.shape[::-1])).all():
            full = np.zeros(like.shape, dtype=labels.array.dtype)
            full[offset[2] : end[2], offset[1] : end[1], offset[0] : end[0]] = labels.array
            return Volume(full, like.geometry, labels.source, labels.label_names)
    raise InputError(
        f"the labels {labels.source} ({labels.shape[::-1]} voxels, {labels.geometry.describe()}) do not lie on the "
        f"grid of the image {like.source} ({like.shape[::-1]} voxels, {like.geometry.describe()})"
    )


def write_labels(labels: np.ndarray, like: Volume, path: str | Path, names: dict[int, str] | None = None) -> Path:
    """Write a (K, J, I) label array with the geometry of ``like``; ``.seg.nrrd`` keeps segment names."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(labels)
    if labels.shape != like.shape:
        raise InputError(f"labels of shape {labels.shape} do not match the volume {like.shape}")
    if path.name.endswith(".seg.nrrd"):
        import slicerio

        voxels = np.ascontiguousarray(
            np.transpose(labels, (2, 1, 0)).astype(np.uint8 if labels.max(initial=0) < 256 else np.uint16)
        )
        segments = []
        for value in sorted(int(v) for v in np.unique(labels) if v != 0):
            where = np.nonzero(voxels == value)
            segments.append({
                "id": f"Segment_{value}", "name": (names or {}).get(value, f"Segment_{value}"), "labelValue": value,
                "layer": 0, "extent": [int(v) for axis in where for v in (axis.min(), axis.max())],
            })
        segmentation = {"voxels": voxels, "ijkToLPS": like.geometry.ijk_to_lps(), "segments": segments}
        slicerio.write_segmentation(str(path), segmentation)
    else:
        image = Volume(labels.astype(np.uint16 if labels.max(initial=0) > 255 else np.uint8), like.geometry).to_sitk()
        sitk.WriteImage(image, str(path), useCompression=True)
    return path


def sitk_reason(error: Exception) -> str:
    """The line of a SimpleITK error that says why: ITK puts it last, after the file and line it came from."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
