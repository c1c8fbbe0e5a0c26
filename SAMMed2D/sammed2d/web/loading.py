"""Volumes and label maps into the scene, read by the engine's own readers.

One reader for every source (NRRD, NIfTI, a DICOM series, an upload) means the page holds exactly the
voxels and geometry the engine and its files use: IJK→RAS is the engine's LPS geometry with the first two
axes negated, and arrays stay in (K, J, I) order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..interaction.labelmaps import slab_labelmap
from ..volumes import Volume, read_labels, read_volume
from .paths import is_volume_file
from .segments import PALETTE, new_id

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def add_volume_node(scene, volume: Volume, name: str):
    """A scalar volume node holding ``volume``'s voxels at its place in RAS."""
    import vtk
    from vtkmodules.util import numpy_support

    array = np.ascontiguousarray(volume.array)
    image = vtk.vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(array.ravel(), deep=True))
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    node.SetAndObserveImageData(image)
    node.SetIJKToRASMatrix(_vtk_matrix(_LPS_TO_RAS @ volume.geometry.ijk_to_lps()))
    node.CreateDefaultDisplayNodes()
    return node


def volume_of_node(volume_node) -> Volume:
    """The engine's view of a volume node (voxels shared, geometry in LPS): what a saved file is checked against."""
    from ..interaction.slice_mapping import lps_geometry
    from ..volumes import Geometry
    from vtkmodules.util import numpy_support

    image = volume_node.GetImageData()
    size_i, size_j, size_k = image.GetDimensions()
    array = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(size_k, size_j, size_i)
    return Volume(array, Geometry(*lps_geometry(volume_node)), volume_node.GetName())


def import_labels(segmentation_node, volume_node, path: Path) -> list[str]:
    """Each label of a label map or .seg.nrrd on the volume's grid becomes a segment; returns their ids."""
    import slicer

    labels = read_labels(path, like=volume_of_node(volume_node))
    segmentation = segmentation_node.GetSegmentation()
    ids = []
    for position, value in enumerate(int(v) for v in np.unique(labels.array) if v != 0):
        mask = labels.array == value
        slices = np.flatnonzero(mask.any(axis=(1, 2)))
        name = labels.label_names.get(value, f"Label {value}")
        segment_id = segmentation.AddEmptySegment(new_id(), name, list(PALETTE[position % len(PALETTE)]))
        labelmap = slab_labelmap(volume_node, "K", {int(k): mask[k] for k in range(slices[0], slices[-1] + 1)})
        slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            labelmap, segmentation_node, segment_id, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
        ids.append(segment_id)
    return ids


def read_uploaded(folder: Path) -> Volume:
    """The volume in an upload folder: one volume file, or the files of one DICOM series."""
    files = sorted(path for path in folder.iterdir() if path.is_file())
    volume_files = [path for path in files if is_volume_file(path.name)]
    if len(volume_files) == 1 and len(files) == 1:
        return read_volume(volume_files[0])
    if volume_files:
        raise InputError("send one volume file (NRRD, NIfTI, MHA) at a time, or the files of one DICOM series")
    return read_volume(folder)  # a DICOM series, or a clear "holds no DICOM series"


def _vtk_matrix(matrix: np.ndarray):
    import vtk

    result = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            result.SetElement(row, column, float(matrix[row, column]))
    return result
