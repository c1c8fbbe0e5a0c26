"""The interaction core shared by the Segment Editor effect and the web page (MRML + client, no Qt, no torch).

A front-end makes one ``InteractionCore`` per editing session with the Segment Editor's parameter node, a
writer (``EditorLogicWriter`` over ``vtkSlicerSegmentEditorLogic``, or the desktop effect's own) and a
function that returns the model server's client; it forwards clicks and drags as RAS positions and calls
``poll()`` from its GUI timer.
"""

from .core import Direction, InteractionCore, Markers, Prompts, Status, Target
from .errors import InteractionError, ObliqueView
from .slice_mapping import SliceView, locate_view, ras_to_xy, xy_to_ras
from .writers import EditorLogicWriter, SegmentWriter, WriteMode, editor_logic, sync_editor_logic

__all__ = [
    "Direction", "EditorLogicWriter", "InteractionCore", "InteractionError", "Markers", "ObliqueView", "Prompts",
    "SegmentWriter", "SliceView", "Status", "Target", "WriteMode", "editor_logic", "locate_view", "ras_to_xy",
    "sync_editor_logic", "xy_to_ras",
]
