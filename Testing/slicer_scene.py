"""A headless Slicer scene as the application sets it up at start-up (slicer-core, no Qt), for the tests of
the interaction core and the Slicer modules' logic."""

from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install -e '.[test]')")
import vtk  # noqa: E402  (slicer-core brings vtk)
from vtkmodules.util import numpy_support  # noqa: E402


@dataclass
class Scene:
    scene: object
    segmentations_logic: object
    volumes_logic: object
    application_logic: object  # kept alive with the scene

    def load_volume(self, path: Path, name: str):
        node = self.volumes_logic.AddArchetypeVolume(str(path), name, 0)
        assert node is not None, f"{path} did not load"
        return node

    def add_volume(self, array: np.ndarray, ijk_to_ras: np.ndarray, name: str):
        """A scalar volume from a (K, J, I) array with the given IJK → RAS matrix."""
        image = vtk.vtkImageData()
        image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
        image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=True))
        node = self.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        node.SetAndObserveImageData(image)
        matrix = vtk.vtkMatrix4x4()
        for row in range(4):
            for column in range(4):
                matrix.SetElement(row, column, float(ijk_to_ras[row, column]))
        node.SetIJKToRASMatrix(matrix)
        node.CreateDefaultDisplayNodes()
        return node

    def segmentation_for(self, volume, *names: str):
        node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{volume.GetName()} segmentation")
        node.CreateDefaultDisplayNodes()
        node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        ids = [node.GetSegmentation().AddEmptySegment(name, name) for name in names]
        return node, ids

    def editor(self, segmentation, volume, segment_id: str):
        editor_node = self.scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode")
        editor_node.SetAndObserveSegmentationNode(segmentation)
        editor_node.SetAndObserveSourceVolumeNode(volume)
        editor_node.SetSelectedSegmentID(segment_id)
        from sammed2d.interaction import editor_logic

        return editor_node, editor_logic(self.scene, editor_node)

    def slice_view(self, volume, orientation: str, name: str = "Red", size: tuple[int, int] = (500, 400)):
        """A slice node + logic showing ``volume`` in ``orientation``, fitted as Slicer does."""
        node = self.scene.AddNewNodeByClass("vtkMRMLSliceNode")
        node.SetName(name)
        node.SetLayoutName(name)
        node.SetDimensions(size[0], size[1], 1)
        node.SetOrientation(orientation)
        logic = slicer.vtkMRMLSliceLogic()
        logic.SetMRMLScene(self.scene)
        logic.SetSliceNode(node)
        logic.GetSliceCompositeNode().SetBackgroundVolumeID(volume.GetID())
        logic.FitSliceToAll()
        return node, logic


def new_scene() -> Scene:
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    colors = app_logic.GetColorLogic()
    colors.SetMRMLScene(scene)
    colors.AddDefaultColorNodes()
    app_logic.SetModuleLogic("Colors", colors)
    segmentations = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentations.SetMRMLScene(scene)
    segmentations.SetMRMLApplicationLogic(app_logic)
    app_logic.SetModuleLogic("Segmentations", segmentations)
    volumes = slicer.vtkSlicerVolumesLogic()
    volumes.SetMRMLScene(scene)
    volumes.SetMRMLApplicationLogic(app_logic)
    app_logic.SetModuleLogic("Volumes", volumes)
    # slicer.util's array helpers look these up, as in the application
    slicer.mrmlScene = scene
    slicer.modules = types.SimpleNamespace(
        segmentations=types.SimpleNamespace(logic=lambda: segmentations),
        volumes=types.SimpleNamespace(logic=lambda: volumes))
    return Scene(scene, segmentations, volumes, app_logic)


def segment_array(segmentation, segment_id: str, volume) -> np.ndarray:
    """The segment on the volume's grid as a (K, J, I) uint8 array (Slicer's own export)."""
    import slicer.util

    return np.array(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, volume), dtype=np.uint8)


def set_segment_array(segmentation, segment_id: str, volume, array: np.ndarray) -> None:
    import slicer.util

    slicer.util.updateSegmentBinaryLabelmapFromArray(np.asarray(array, dtype=np.uint8), segmentation, segment_id,
                                                     volume)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)
