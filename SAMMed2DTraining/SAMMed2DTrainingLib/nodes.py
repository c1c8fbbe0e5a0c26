"""MRML nodes → the engine's volumes (arrays in K, J, I order with LPS geometry).

Slicer keeps geometry as an IJK→RAS matrix; the engine (like SimpleITK and NRRD files) uses LPS,
so the first two patient axes change sign. A segmentation node becomes a label map on the
reference volume's grid through Slicer's own export, so overlaps and cropped extents are resolved
the way Slicer resolves them, and segment names come along. A process that cannot see the scene
(the engine run as a child) gets such a pair as files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import SimpleITK as sitk
import slicer
import slicer.util
import vtk
from sammed2d.volumes import Geometry, Volume, write_labels

Source = Union[str, Path, object]  # a file path or an MRML node

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def geometryFromNode(node) -> Geometry:
    """LPS geometry of a volume node (spacing along I, J, K; direction columns are the IJK axes)."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ijkToLps = _RAS_TO_LPS @ slicer.util.arrayFromVTKMatrix(matrix)
    spacing = np.linalg.norm(ijkToLps[:3, :3], axis=0)
    return Geometry(
        tuple(float(v) for v in spacing),
        tuple(float(v) for v in ijkToLps[:3, 3]),
        tuple(float(v) for v in (ijkToLps[:3, :3] / spacing).ravel()),
    )


def volumeFromNode(node) -> Volume:
    """A scalar or label map volume node as an engine volume (a copy: later edits of the node do not leak in)."""
    if node is None or not node.IsA("vtkMRMLScalarVolumeNode"):
        raise ValueError(f"expected a scalar or label map volume node; got {_describe(node)}")
    if node.GetImageData() is None:
        raise ValueError(f"the volume node '{node.GetName()}' holds no image data")
    array = np.array(slicer.util.arrayFromVolume(node), copy=True)
    if array.ndim != 3:
        raise ValueError(f"the volume node '{node.GetName()}' is not a 3D scalar volume (array shape {array.shape})")
    return Volume(array, geometryFromNode(node), f"node '{node.GetName()}'")


def labelsFromNode(node, reference, segmentationsLogic=None) -> Volume:
    """A segmentation node (exported on ``reference``'s grid, with segment names) or a label map volume node.

    ``segmentationsLogic`` defaults to the application's; tests pass the one they set up.
    """
    image = volumeFromNode(reference)
    if node is not None and node.IsA("vtkMRMLSegmentationNode"):
        labels = _exportSegmentation(node, reference, segmentationsLogic)
    elif node is not None and node.IsA("vtkMRMLLabelMapVolumeNode"):
        labels = volumeFromNode(node)
    else:
        raise ValueError(f"expected a segmentation or label map volume node; got {_describe(node)}")
    if labels.shape != image.shape or not labels.geometry.matches(image.geometry):
        raise ValueError(
            f"the labels {labels.source} ({labels.shape[::-1]} voxels, {labels.geometry.describe()}) do not lie on the "
            f"grid of the volume {image.source} ({image.shape[::-1]} voxels, {image.geometry.describe()})"
        )
    if not np.any(labels.array):
        raise ValueError(f"the labels {labels.source} are empty: they label no voxel")
    return labels


def volumesFromNodes(image, labels, segmentationsLogic=None) -> tuple[Volume, Volume]:
    """A volume node and its segmentation or label map node, as the engine's (image, labels) pair."""
    return volumeFromNode(image), labelsFromNode(labels, image, segmentationsLogic)


def isFileCase(image: Source, labels: Source) -> bool:
    """True for a pair of file paths, False for a pair of nodes; a mix is refused."""
    files = [isinstance(source, (str, Path)) for source in (image, labels)]
    if files[0] != files[1]:
        raise ValueError("give a case as two nodes or as two files, not a mix")
    return files[0]


def writeCaseFiles(image, labels, folder: Path, stem: str, segmentationsLogic=None) -> tuple[Path, Path]:
    """A volume node and its labels as ``STEM_image.nrrd`` and ``STEM_labels.seg.nrrd`` (segment names kept).

    A copy in LPS geometry, as the engine reads files: later edits of the nodes do not reach a run.
    """
    volume, labelMap = volumesFromNodes(image, labels, segmentationsLogic)
    imagePath = Path(folder) / f"{stem}_image.nrrd"
    sitk.WriteImage(volume.to_sitk(), str(imagePath), useCompression=True)
    labelPath = write_labels(labelMap.array, volume, Path(folder) / f"{stem}_labels.seg.nrrd", labelMap.label_names)
    return imagePath, labelPath


def _exportSegmentation(node, reference, segmentationsLogic) -> Volume:
    logic = segmentationsLogic or slicer.modules.segmentations.logic()
    scene = node.GetScene()
    before = _nodeIds(scene)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", f"{node.GetName()} labels")
    try:
        ids = vtk.vtkStringArray()
        node.GetSegmentation().GetSegmentIDs(ids)
        if ids.GetNumberOfValues() == 0:
            raise ValueError(f"the segmentation '{node.GetName()}' has no segment")
        if not logic.ExportSegmentsToLabelmapNode(node, ids, labelmap, reference):
            raise ValueError(f"Slicer could not export the segmentation '{node.GetName()}' on the grid of "
                             f"'{reference.GetName()}'")
        exported = volumeFromNode(labelmap)
        # the export writes a colour table whose entry at each label value is that segment's name
        colors = labelmap.GetDisplayNode().GetColorNode() if labelmap.GetDisplayNode() else None
        values = [int(value) for value in np.unique(exported.array) if value != 0]
        names = {value: colors.GetColorName(value) for value in values} if colors else {}
        return Volume(exported.array, exported.geometry, f"segmentation '{node.GetName()}'", names)
    finally:
        for nodeId in _nodeIds(scene) - before:  # the temporary label map and the colour table made for it
            scene.RemoveNode(scene.GetNodeByID(nodeId))


def _nodeIds(scene) -> set[str]:
    return {scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())}


def _describe(node) -> str:
    return "nothing" if node is None else f"{node.GetClassName()} '{node.GetName()}'"
