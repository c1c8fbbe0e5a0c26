"""Where an applied result goes: the selected segment, through Slicer's segment editor logic.

Writing through ``ModifySegmentByLabelmap`` is what makes a result behave like any Segment Editor effect:
the user's editable area, editable intensity range and overwrite mode are honoured and each write is one
undo step. Desktop Slicer reaches that logic through its scripted effect (the effect passes a writer
with the same three methods); scripts, tests and the web page hold a ``vtkSlicerSegmentEditorLogic``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

#: how Apply combines a result with the segment on that slice: replace what the segment had there, or add to it
WriteMode = Literal["replace", "add"]
#: the two primitive edits a writer performs (the editor's own "set" replaces the whole segment, every slice)
Edit = Literal["add", "remove"]


class SegmentWriter(Protocol):
    def save_state_for_undo(self) -> None:
        """Record the segmentation as it is now, so one undo returns to it."""

    def modify(self, labelmap, edit: Edit, extent: Sequence[int]) -> None:
        """Add ``labelmap`` to the selected segment, or remove it from it, within ``extent``."""


class EditorLogicWriter:
    """A writer over ``vtkSlicerSegmentEditorLogic`` (slicer-core, desktop Slicer ≥ 5.10, trame-slicer)."""

    def __init__(self, logic) -> None:
        self.logic = logic

    def save_state_for_undo(self) -> None:
        self.logic.SaveStateForUndo()

    def modify(self, labelmap, edit: Edit, extent: Sequence[int]) -> None:
        editor_node = self.logic.GetSegmentEditorNode()
        segmentation = editor_node.GetSegmentationNode()
        segment_id = editor_node.GetSelectedSegmentID()
        modes = {"add": self.logic.ModificationModeAdd, "remove": self.logic.ModificationModeRemove}
        self.logic.ModifySegmentByLabelmap(segmentation, segment_id, labelmap, modes[edit], list(extent), False, False)

    def undo(self) -> None:
        self.logic.Undo()

    def redo(self) -> None:
        self.logic.Redo()


def editor_logic(scene, editor_node):
    """A ``vtkSlicerSegmentEditorLogic`` bound to ``editor_node`` (its segmentation and source volume).

    ``SetSegmentationNode``/``SetSourceVolumeNode`` are re-applied by ``sync_editor_logic`` whenever the
    user picks other nodes on the editor node.
    """
    import slicer

    logic = slicer.vtkSlicerSegmentEditorLogic()
    logic.SetMRMLScene(scene)
    logic.SetSegmentEditorNode(editor_node)
    sync_editor_logic(logic)
    return logic


def sync_editor_logic(logic) -> None:
    """Point the logic at the nodes the editor node names now (segmentation, source volume, segment)."""
    editor_node = logic.GetSegmentEditorNode()
    if logic.GetSegmentationNode() is not editor_node.GetSegmentationNode():
        logic.SetSegmentationNode(editor_node.GetSegmentationNode())
    if logic.GetSourceVolumeNode() is not editor_node.GetSourceVolumeNode():
        logic.SetSourceVolumeNode(editor_node.GetSourceVolumeNode())
    segment_id = editor_node.GetSelectedSegmentID()
    if segment_id and logic.GetCurrentSegmentID() != segment_id:
        logic.SetCurrentSegmentID(segment_id)
    logic.UpdateReferenceGeometryImage()
