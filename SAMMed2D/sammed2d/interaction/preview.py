"""The not-yet-applied result, shown on the views as a segmentation node of its own.

A separate node, hidden from the node selectors and never saved with the scene, is the one preview that
desktop Slicer and trame-slicer both render without extra code; the user's segmentation is not touched
until Apply.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .labelmaps import slab_labelmap

PREVIEW_NAME = "SAM-Med2D preview"
_SEGMENT_ID = "preview"


class PreviewLayer:
    def __init__(self, scene) -> None:
        self.scene = scene
        self._node = None
        self.masks: dict[int, np.ndarray] = {}
        self.axis: str | None = None

    @property
    def node(self):
        return self._node

    def show(self, volume_node, axis: str, masks: Mapping[int, np.ndarray], color=(1.0, 1.0, 0.0)) -> None:
        """Show exactly ``masks`` (slice index → mask) normal to ``axis``; earlier preview slices go away."""
        import slicer

        node = self._ensure_node(volume_node, color)
        self.masks = {index: np.asarray(mask, dtype=bool) for index, mask in masks.items()}
        self.axis = axis
        segmentation = node.GetSegmentation()
        if not self.masks or not any(mask.any() for mask in self.masks.values()):
            segmentation.RemoveAllSegments()
            segmentation.AddEmptySegment(_SEGMENT_ID, PREVIEW_NAME, list(color))
            return
        labelmap = slab_labelmap(volume_node, axis, self.masks)
        segmentation.RemoveAllSegments()
        segmentation.AddEmptySegment(_SEGMENT_ID, PREVIEW_NAME, list(color))
        slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            labelmap, node, _SEGMENT_ID, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)

    def clear(self) -> None:
        self.masks = {}
        self.axis = None
        if self._node is not None:
            self._node.GetSegmentation().RemoveAllSegments()

    def remove(self) -> None:
        """Take the preview node out of the scene (the effect was deactivated or closed)."""
        self.masks = {}
        if self._node is not None and self.scene.IsNodePresent(self._node):
            self.scene.RemoveNode(self._node)
        self._node = None

    def _ensure_node(self, volume_node, color):
        if self._node is None or not self.scene.IsNodePresent(self._node):
            node = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", PREVIEW_NAME)
            node.SetHideFromEditors(True)
            node.SetSaveWithScene(False)
            node.SetSelectable(False)
            node.CreateDefaultDisplayNodes()
            display = node.GetDisplayNode()
            display.SetOpacity2DFill(0.45)
            display.SetOpacity2DOutline(1.0)
            display.SetVisibility3D(False)
            self._node = node
        self._node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        return self._node
