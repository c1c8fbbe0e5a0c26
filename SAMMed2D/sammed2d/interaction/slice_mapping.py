"""Which slice of a volume a slice view shows, and where a view position falls on that slice.

Works on MRML nodes only (no Qt), from the geometry alone: the view's plane normal is taken into the
volume's IJK space; if it lies along one IJK axis the view shows slices normal to that axis, otherwise
the view is oblique and refused (a rotated plane crosses many slices, so no index would be right).
Slice pixels follow the engine's convention (``sammed2d.volumes``): normal to K rows are J and columns
I, normal to J rows are K and columns I, normal to I rows are K and columns J; pixel ``(x, y)`` of voxel
centre ``(column c, row r)`` is ``(c + 0.5, r + 0.5)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..volumes import Axis
from .errors import InteractionError, ObliqueView

#: the view normal, taken into IJK and normalised, must lie this close to one axis
_ALIGNMENT_TOLERANCE = 1e-3
_AXIS_OF_COLUMN = ("I", "J", "K")
#: (row, column) IJK components of slice pixels for slices normal to each axis
_PIXEL_AXES: dict[str, tuple[int, int]] = {"K": (1, 0), "J": (2, 0), "I": (2, 1)}


@dataclass(frozen=True)
class SliceView:
    """One slice of one volume: normal to ``axis`` at ``index``, ``shape`` = (rows, columns)."""

    volume_id: str
    axis: Axis
    index: int
    shape: tuple[int, int]

    def contains(self, x: float, y: float) -> bool:
        return 0.0 <= x <= self.shape[1] and 0.0 <= y <= self.shape[0]


def _matrix(vtk_matrix) -> np.ndarray:
    return np.array([[vtk_matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _check_untransformed(node, what: str) -> None:
    if node is not None and node.GetParentTransformNode() is not None:
        raise InteractionError(
            f"the {what} '{node.GetName()}' is under a transform: harden the transform (Transforms module) or "
            "remove it, so that clicks map to the right voxels")


def ras_to_ijk(volume_node) -> np.ndarray:
    """The volume's RAS → IJK matrix (4×4); volumes under a transform are refused."""
    import vtk

    _check_untransformed(volume_node, "volume")
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetRASToIJKMatrix(matrix)
    return _matrix(matrix)


def volume_dimensions(volume_node) -> tuple[int, int, int]:
    """(I, J, K) voxel counts."""
    image = volume_node.GetImageData() if volume_node is not None else None
    if image is None:
        raise InteractionError("the source volume has no image data: load a volume and select it as source volume")
    return tuple(int(v) for v in image.GetDimensions())  # type: ignore[return-value]


def slice_shape(dimensions: Sequence[int], axis: Axis) -> tuple[int, int]:
    row, column = _PIXEL_AXES[axis]
    return int(dimensions[row]), int(dimensions[column])


def view_of_index(volume_node, axis: Axis, index: int) -> SliceView:
    """The slice normal to ``axis`` at ``index``, checked against the volume's size."""
    if axis not in _PIXEL_AXES:
        raise InteractionError(f"axis must be one of K, J, I; got {axis!r}")
    dimensions = volume_dimensions(volume_node)
    count = dimensions[_AXIS_OF_COLUMN.index(axis)]
    if not 0 <= index < count:
        raise InteractionError(f"slice {index} along {axis} is outside the volume (0..{count - 1})")
    return SliceView(volume_node.GetID(), axis, int(index), slice_shape(dimensions, axis))


def locate_view(slice_node, volume_node) -> SliceView:
    """The slice of ``volume_node`` that ``slice_node`` shows; oblique or off-volume views are refused."""
    to_ijk = ras_to_ijk(volume_node)
    slice_to_ras = _matrix(slice_node.GetSliceToRAS())
    normal = to_ijk[:3, :3] @ slice_to_ras[:3, 2]
    normal /= np.linalg.norm(normal)
    dominant = int(np.argmax(np.abs(normal)))
    if 1.0 - abs(normal[dominant]) > _ALIGNMENT_TOLERANCE:
        raise ObliqueView(
            f"the {slice_node.GetName()} view is oblique to the volume '{volume_node.GetName()}' (its plane cuts "
            "across voxel slices): reset the view's orientation to the volume's (slice view menu → Reset field of "
            "view / 'Rotate to volume plane') and click again")
    axis: Axis = _AXIS_OF_COLUMN[dominant]  # type: ignore[assignment]
    centre = to_ijk @ slice_to_ras[:, 3]
    index = int(np.floor(centre[dominant] + 0.5))
    count = volume_dimensions(volume_node)[dominant]
    if not 0 <= index < count:
        raise InteractionError(
            f"the {slice_node.GetName()} view shows no slice of '{volume_node.GetName()}' here (slice {index} of "
            f"0..{count - 1} along {axis}): scroll into the volume")
    return view_of_index(volume_node, axis, index)


def ras_to_pixel(volume_node, view: SliceView, ras: Sequence[float]) -> tuple[float, float]:
    """Slice pixel coordinates (x = column, y = row) of a RAS point on ``view``'s slice."""
    ijk = ras_to_ijk(volume_node) @ np.array([*map(float, ras[:3]), 1.0])
    return ijk_to_pixel(view, ijk[:3])


def ijk_to_pixel(view: SliceView, ijk: Sequence[float]) -> tuple[float, float]:
    row, column = _PIXEL_AXES[view.axis]
    return float(ijk[column]) + 0.5, float(ijk[row]) + 0.5


def pixel_to_ras(volume_node, view: SliceView, x: float, y: float) -> tuple[float, float, float]:
    """The RAS point of slice pixel position (x, y): where a shell draws a prompt marker."""
    row, column = _PIXEL_AXES[view.axis]
    ijk = np.ones(4)
    ijk[column], ijk[row] = x - 0.5, y - 0.5
    ijk[_AXIS_OF_COLUMN.index(view.axis)] = view.index
    ras = np.linalg.inv(ras_to_ijk(volume_node)) @ ijk
    return float(ras[0]), float(ras[1]), float(ras[2])


def xy_to_ras(slice_node, xy: Sequence[float]) -> tuple[float, float, float]:
    """The RAS point under view position ``xy`` (pixels from the view's bottom-left corner)."""
    ras = _matrix(slice_node.GetXYToRAS()) @ np.array([float(xy[0]), float(xy[1]), 0.0, 1.0])
    return float(ras[0]), float(ras[1]), float(ras[2])


def ras_to_xy(slice_node, ras: Sequence[float]) -> tuple[float, float]:
    """The view position of a RAS point (the inverse of ``xy_to_ras`` on the view's plane)."""
    xy = np.linalg.inv(_matrix(slice_node.GetXYToRAS())) @ np.array([*map(float, ras[:3]), 1.0])
    return float(xy[0]), float(xy[1])


def lps_geometry(volume_node) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """(spacing, origin, row-major direction) in LPS, as SimpleITK and the model server expect them."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    ijk_to_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ _matrix(matrix)
    spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    direction = ijk_to_lps[:3, :3] / spacing
    return tuple(map(float, spacing)), tuple(map(float, ijk_to_lps[:3, 3])), tuple(map(float, direction.ravel()))
