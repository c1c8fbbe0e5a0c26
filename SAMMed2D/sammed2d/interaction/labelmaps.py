"""2D masks of slices as ``vtkOrientedImageData`` on the source volume's grid, as Slicer's editor writes them.

The labelmap's extent covers only the slices given, so a write through the segment editor logic touches
nothing outside them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .slice_mapping import SliceView, volume_dimensions

_DIMENSION_OF_AXIS = {"I": 0, "J": 1, "K": 2}


def slab_extent(volume_node, axis: str, first: int, last: int) -> list[int]:
    """VTK extent (i0, i1, j0, j1, k0, k1) of slices ``first..last`` (inclusive) normal to ``axis``."""
    dimensions = volume_dimensions(volume_node)
    extent = [0, dimensions[0] - 1, 0, dimensions[1] - 1, 0, dimensions[2] - 1]
    dimension = _DIMENSION_OF_AXIS[axis]
    extent[2 * dimension], extent[2 * dimension + 1] = int(first), int(last)
    return extent


def _kji_block(axis: str, masks: Mapping[int, np.ndarray], first: int, last: int,
               dimensions: tuple[int, int, int]) -> np.ndarray:
    """The slab as a (K, J, I) uint8 array, in the order VTK stores scalars (I fastest)."""
    size_i, size_j, size_k = dimensions
    count = last - first + 1
    shape = {"K": (count, size_j, size_i), "J": (size_k, count, size_i), "I": (size_k, size_j, count)}[axis]
    block = np.zeros(shape, dtype=np.uint8)
    for index, mask in masks.items():
        offset = index - first
        if axis == "K":
            block[offset] = mask
        elif axis == "J":
            block[:, offset] = mask
        else:
            block[:, :, offset] = mask
    return block


def slab_labelmap(volume_node, axis: str, masks: Mapping[int, np.ndarray]):
    """A binary labelmap holding ``masks`` (slice index → 2D bool mask) and nothing else.

    Its extent spans the given slices (and those between them, left empty) on the volume's grid.
    """
    import vtk
    from vtkmodules.util import numpy_support

    import slicer

    if not masks:
        raise ValueError("no slices to write")
    first, last = min(masks), max(masks)
    dimensions = volume_dimensions(volume_node)
    block = _kji_block(axis, masks, first, last, dimensions)
    labelmap = slicer.vtkOrientedImageData()
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    labelmap.SetImageToWorldMatrix(matrix)
    labelmap.SetExtent(*slab_extent(volume_node, axis, first, last))
    scalars = numpy_support.numpy_to_vtk(block.ravel(), deep=True, array_type=vtk.VTK_UNSIGNED_CHAR)
    labelmap.GetPointData().SetScalars(scalars)
    return labelmap


def slice_labelmap(volume_node, view: SliceView, mask: np.ndarray):
    """One slice's mask as a labelmap whose extent is that slice."""
    if tuple(mask.shape) != view.shape:
        raise ValueError(f"a mask of shape {mask.shape} does not fit slice {view.index} ({view.shape})")
    return slab_labelmap(volume_node, view.axis, {view.index: mask})


def read_segment_slice(segmentation_node, segment_id: str, volume_node, view: SliceView) -> np.ndarray:
    """What the segment holds on ``view``'s slice, on the volume's grid, as a 2D bool mask.

    The segment is resampled (nearest neighbour) onto a one-slice image of the volume's geometry, so it
    reads right whatever geometry the segmentation keeps internally.
    """
    import vtk
    from vtkmodules.util import numpy_support

    import slicer

    segment = slicer.vtkOrientedImageData()
    if not slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
            segmentation_node, segment_id, segment, False):
        raise ValueError(f"segment {segment_id!r} has no binary labelmap")
    reference = slicer.vtkOrientedImageData()
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    reference.SetImageToWorldMatrix(matrix)
    reference.SetExtent(*slab_extent(volume_node, view.axis, view.index, view.index))
    reference.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    if segment.IsEmpty():
        return np.zeros(view.shape, dtype=bool)
    resampled = slicer.vtkOrientedImageData()
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(segment, reference, resampled)
    dimensions = [resampled.GetDimensions()[i] for i in range(3)]
    if dimensions[_DIMENSION_OF_AXIS[view.axis]] != 1 or resampled.GetPointData().GetScalars() is None:
        return np.zeros(view.shape, dtype=bool)
    values = numpy_support.vtk_to_numpy(resampled.GetPointData().GetScalars()).reshape(dimensions[::-1])
    return np.squeeze(values, axis=2 - _DIMENSION_OF_AXIS[view.axis]).astype(bool).reshape(view.shape)
