"""The effect's operations for the Python console and scripts: the same interaction core, masking and undo.

Prompts are given in RAS (mm, as Slicer shows them) or IJK (voxel indices, as numpy arrays of the volume
are indexed in reverse: ``array[k, j, i]``); each call waits for the model and raises with the user-facing
message when something failed, leaving the segmentation as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sammed2d.client import Client
from sammed2d.interaction import EditorLogicWriter, InteractionCore, InteractionError, editor_logic
from sammed2d.interaction.slice_mapping import ijk_to_pixel, ras_to_ijk, view_of_index
from sammed2d.volumes import Axis

_AXIS_COLUMN = {"I": 0, "J": 1, "K": 2}
#: points further than this from the slice's plane (in voxels) are not on it
_ON_SLICE_TOLERANCE = 0.5


class ScriptedSegmentation:
    """``ScriptedSegmentation(volume, segmentation, segmentId).segment(box_ras=[...])`` and friends."""

    def __init__(self, volumeNode, segmentationNode, segmentId: str, client: Callable[[], Client | None],
                 preset: str = "percentile", writeMode: str = "replace", timeout: float = 600.0) -> None:
        scene = volumeNode.GetScene()
        self.editorNode = scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode", "SAM-Med2D script editor")
        self.editorNode.SetHideFromEditors(True)
        self.editorNode.SetSaveWithScene(False)
        self.editorNode.SetAndObserveSegmentationNode(segmentationNode)
        self.editorNode.SetAndObserveSourceVolumeNode(volumeNode)
        self.editorNode.SetSelectedSegmentID(segmentId)
        self.logic = editor_logic(scene, self.editorNode)
        self.writer = EditorLogicWriter(self.logic)
        self.core = InteractionCore(scene, self.editorNode, self.writer, client, preset=preset,
                                    write_mode=writeMode)  # type: ignore[arg-type]
        self.timeout = timeout
        self.volumeNode = volumeNode

    @property
    def editorLogic(self):
        """The ``vtkSlicerSegmentEditorLogic`` writing the results: set masking on ``editorNode`` before Apply."""
        return self.logic

    def segment(self, points: Sequence[Sequence[float]] = (), labels: Sequence[int] | None = None,
                box: Sequence[float] | None = None, *, coordinates: str = "RAS", axis: Axis = "K",
                refine: bool = False, apply: bool = True) -> np.ndarray:
        """Segment one slice of the volume from points and/or a box; returns the mask (slice pixels).

        ``coordinates`` is "RAS" (points as (R, A, S), box as two opposite corners (R, A, S, R, A, S)) or
        "IJK" (the same with voxel indices); all must lie on one slice normal to ``axis``. With ``refine``
        the prompts are added to those of the previous call on the same slice. With ``apply`` the result is
        written into the segment (one undo step), else it stays a preview until ``apply()``.
        """
        to_ijk = self._toIjk(coordinates)
        pointIjk = [to_ijk(point) for point in points]
        cornerIjk = [] if box is None else [to_ijk(box[:3]), to_ijk(box[3:6])]
        column = _AXIS_COLUMN[axis]
        positions = pointIjk + cornerIjk
        if not positions:
            raise InteractionError("give at least one point or a box")
        index = int(np.floor(positions[0][column] + 0.5))
        for ijk in positions:
            if abs(ijk[column] - index) > _ON_SLICE_TOLERANCE:
                raise InteractionError(f"the prompts lie on different slices along {axis} ({positions[0][column]:.1f} "
                                       f"and {ijk[column]:.1f}): give prompts of one slice")
        view = view_of_index(self.volumeNode, axis, index)
        pixelPoints = [ijk_to_pixel(view, ijk) for ijk in pointIjk]
        pixelBox = None
        if cornerIjk:
            (xa, ya), (xb, yb) = (ijk_to_pixel(view, corner) for corner in cornerIjk)
            # box corners are voxel centres: the box covers both corner voxels whole
            pixelBox = [min(xa, xb) - 0.5, min(ya, yb) - 0.5, max(xa, xb) + 0.5, max(ya, yb) + 0.5]
        self.core.prompt_slice(axis, index, pixelPoints, labels, pixelBox, refine=refine)
        self._wait()
        mask = self.core.preview.masks.get(index)
        if mask is None:
            raise InteractionError("the model returned no mask")
        if apply:
            self.core.apply()
        return mask

    def apply(self) -> list[int]:
        return self.core.apply()

    def suggest(self, index: int, axis: Axis = "K", pointsPerSide: int = 8) -> tuple[np.ndarray, ...]:
        """The masks the model finds with no prompt on slice ``index`` (the effect's Suggest), best rated first;
        ``applySuggestion(n)`` writes the n-th."""
        self.core.suggest_slice(axis, index, {"points_per_side": pointsPerSide})
        self._wait()
        return self.core.suggested_masks

    def applySuggestion(self, number: int) -> list[int]:
        self.core.show_suggestion(number)
        return self.core.apply()

    def propagate(self, direction: str = "both", sliceRange: tuple[int, int] | None = None, axis: Axis | None = None,
                  apply: bool = True) -> list[int]:
        """Carry the segment through the volume from the slices segmented so far; returns the slices found."""
        self.core.propagate(direction, sliceRange, axis)  # type: ignore[arg-type]
        self._wait()
        slices = sorted(self.core.preview.masks)
        if apply:
            return self.core.apply()
        return slices

    def undo(self) -> None:
        self.writer.undo()

    def redo(self) -> None:
        self.writer.redo()

    def close(self) -> None:
        self.core.close()
        scene = self.editorNode.GetScene()
        if scene is not None:
            scene.RemoveNode(self.editorNode)

    def _wait(self) -> None:
        status = self.core.wait(self.timeout)
        if status.error:
            raise InteractionError(f"{status.message} {status.error}")

    def _toIjk(self, coordinates: str) -> Callable[[Sequence[float]], np.ndarray]:
        if coordinates == "IJK":
            return lambda position: np.asarray(position[:3], dtype=float)
        if coordinates != "RAS":
            raise InteractionError(f"coordinates are 'RAS' or 'IJK', not {coordinates!r}")
        matrix = ras_to_ijk(self.volumeNode)
        return lambda position: (matrix @ np.array([*map(float, position[:3]), 1.0]))[:3]
