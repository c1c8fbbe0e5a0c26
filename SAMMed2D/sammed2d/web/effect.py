"""The page's SAM-Med2D tool: mouse events on slice views become calls of the interaction core.

A trame-slicer segmentation effect gets one pipeline per view from the layered displayable manager. On slice
views the pipeline takes the left button: a click adds a + or − point where it lands, a drag draws a box
(rubber band while dragging), both given to the core as RAS positions on the slice plane; the core decides
which slice and voxels they mean. Each pipeline draws the core's prompt markers on its view when that view
shows the prompted slice. The core answers later through ``poll()``; nothing here waits for the model.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Literal

from slicer import vtkMRMLAbstractWidget, vtkMRMLSliceNode
from trame_slicer.segmentation import SegmentationEffect, SegmentationEffectPipeline
from vtkmodules.vtkCommonCore import vtkCommand

from ..interaction import InteractionCore, InteractionError, locate_view
from ..interaction.markers import PromptMarkers

logger = logging.getLogger(__name__)

Tool = Literal["point+", "point-", "box"]
TOOLS: tuple[Tool, ...] = ("point+", "point-", "box")
_PRESS, _MOVE, _RELEASE = (int(vtkCommand.LeftButtonPressEvent), int(vtkCommand.MouseMoveEvent),
                           int(vtkCommand.LeftButtonReleaseEvent))
_FAR = sys.float_info.max


class PromptEffect(SegmentationEffect):
    """The tool the page activates; ``bind`` gives it the core and where to report refusals."""

    def __init__(self) -> None:
        super().__init__()
        self.tool: Tool = "box"
        self.core: InteractionCore | None = None
        self.last_slice_node: vtkMRMLSliceNode | None = None  # the view last clicked: Suggest works there
        self._report: Callable[[str], None] = logger.warning

    def bind(self, core: InteractionCore, report: Callable[[str], None]) -> None:
        self.core = core
        self._report = report

    def _create_pipeline(self, view_node, _parameter) -> SegmentationEffectPipeline | None:
        return PromptPipeline() if isinstance(view_node, vtkMRMLSliceNode) else None

    def point(self, slice_node, ras: Sequence[float]) -> None:
        self.last_slice_node = slice_node
        self._run(lambda core: core.add_point(slice_node, ras, positive=self.tool == "point+"))

    def box(self, slice_node, corner: Sequence[float], opposite: Sequence[float]) -> None:
        self.last_slice_node = slice_node
        self._run(lambda core: core.set_box(slice_node, corner, opposite))

    def redraw(self) -> None:
        """Draw the current prompts on every slice view (after a prompt, an answer, a slice change)."""
        for pipeline in self.live_pipelines():
            pipeline.draw()

    def live_pipelines(self) -> list[PromptPipeline]:
        return [pipeline for pipeline in (weak() for weak in self.pipelines) if isinstance(pipeline, PromptPipeline)]

    def _run(self, action: Callable[[InteractionCore], None]) -> None:
        if self.core is None:
            return
        try:
            action(self.core)
        except InteractionError as error:
            self._report(str(error))
        self.redraw()


class PromptPipeline(SegmentationEffectPipeline[PromptEffect]):
    """One slice view's share of the tool (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.markers = PromptMarkers()
        self._pressed = False
        self._drag_start: tuple[tuple[float, float, float], tuple[int, int]] | None = None

    def SetViewNode(self, view_node) -> None:
        self.UpdateObservation(self.GetViewNode(), view_node)  # slice moves and zooms redraw the markers
        super().SetViewNode(view_node)

    def OnUpdate(self, obj, event_id: int, call_data) -> None:
        if obj == self.GetViewNode():
            self.draw()
        super().OnUpdate(obj, event_id, call_data)

    def OnRendererAdded(self, renderer) -> None:
        if renderer is not None:
            renderer.AddViewProp(self.markers.actor)
            self.draw()

    def OnRendererRemoved(self, renderer) -> None:
        renderer.RemoveViewProp(self.markers.actor)

    def _active(self) -> bool:
        return self._effect is not None and self._effect.is_active and self._effect.core is not None

    def CanProcessInteractionEvent(self, event_data) -> tuple[bool, float]:
        kind = event_data.GetType()
        if self._active() and (kind == _PRESS or (self._pressed and kind in (_MOVE, _RELEASE))):
            return True, 0.0
        return False, _FAR

    def ProcessInteractionEvent(self, event_data) -> bool:
        effect = self._effect
        assert effect is not None
        kind = event_data.GetType()
        ras = tuple(float(v) for v in event_data.GetWorldPosition())
        xy = tuple(int(v) for v in event_data.GetDisplayPosition()[:2])
        if kind == _PRESS:
            self._pressed = True
            if effect.tool == "box":
                self._drag_start = (ras, xy)  # type: ignore[assignment]
            else:
                effect.point(self.GetViewNode(), ras)
        elif kind == _MOVE and self._drag_start is not None:
            self.markers.rubber_band(self._drag_start[1], xy)
            self.RequestRender()
        elif kind == _RELEASE:
            self._pressed = False
            start, self._drag_start = self._drag_start, None
            if start is not None:
                effect.box(self.GetViewNode(), start[0], ras)
        return True

    def GetWidgetState(self) -> int:
        # while the button is down this view keeps the events, as a painting brush does
        return vtkMRMLAbstractWidget.WidgetStateUser if self._pressed else vtkMRMLAbstractWidget.WidgetStateIdle

    def LoseFocus(self, event_data) -> None:
        super().LoseFocus(event_data)
        if self._pressed:
            self._pressed = False
            self._drag_start = None
            self.draw()

    def draw(self) -> None:
        """The core's prompts, shown only if this view shows the slice they are on."""
        effect, slice_node = self._effect, self.GetViewNode()
        if effect is None or effect.core is None or slice_node is None or self._drag_start is not None:
            return
        core = effect.core
        volume = core.editor_node.GetSourceVolumeNode()
        try:
            visible = (effect.is_active and core.prompt_view is not None and volume is not None
                       and locate_view(slice_node, volume) == core.prompt_view)
        except InteractionError:
            visible = False
        self.markers.update(slice_node, core.markers(), visible)
        self.RequestRender()
