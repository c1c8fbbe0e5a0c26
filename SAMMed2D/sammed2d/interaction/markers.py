"""The prompts drawn on a slice view: green crosses for + points, red for − points, a yellow box.

Pure VTK (no Qt), shared by both front-ends and checked headless: the desktop effect adds ``actor`` to each
slice widget's renderer, the web page to each slice view's; both call ``update`` with the view's slice node
whenever prompts or the view change. Not imported by the package's ``__init__`` (it needs VTK).
"""

from __future__ import annotations

from collections.abc import Sequence

import vtk

from .core import Markers
from .slice_mapping import ras_to_xy

_POSITIVE = (0.2, 1.0, 0.2)
_NEGATIVE = (1.0, 0.25, 0.25)
_BOX = (1.0, 0.9, 0.1)
_CROSS_HALF_SIZE = 6.0  # pixels


class PromptMarkers:
    """2D actors for one slice view."""

    def __init__(self) -> None:
        self.points = vtk.vtkPoints()
        self.lines = vtk.vtkCellArray()
        self.colors = vtk.vtkUnsignedCharArray()
        self.colors.SetNumberOfComponents(3)
        self.polydata = vtk.vtkPolyData()
        self.polydata.SetPoints(self.points)
        self.polydata.SetLines(self.lines)
        self.polydata.GetCellData().SetScalars(self.colors)
        mapper = vtk.vtkPolyDataMapper2D()
        mapper.SetInputData(self.polydata)
        self.actor = vtk.vtkActor2D()
        self.actor.SetMapper(mapper)
        self.actor.GetProperty().SetLineWidth(2)

    def update(self, slice_node, markers: Markers, visible: bool) -> None:
        """Draw ``markers`` in view coordinates of ``slice_node``; ``visible`` is False off the prompted slice."""
        self.points.Reset()
        self.lines.Reset()
        self.colors.Reset()
        if visible:
            for ras, label in zip(markers.points, markers.labels):
                x, y = ras_to_xy(slice_node, ras)
                self._cross(x, y, _POSITIVE if label else _NEGATIVE)
            if markers.box is not None:
                corners = [ras_to_xy(slice_node, corner) for corner in markers.box]
                self._rectangle(corners)
        self.points.Modified()
        self.lines.Modified()
        self.colors.Modified()
        self.polydata.Modified()
        self.actor.SetVisibility(visible and self.points.GetNumberOfPoints() > 0)

    def rubber_band(self, corner: Sequence[float], opposite: Sequence[float]) -> None:
        """The box being dragged, in view coordinates."""
        self.points.Reset()
        self.lines.Reset()
        self.colors.Reset()
        self._rectangle([corner, opposite])
        self.polydata.Modified()
        self.actor.SetVisibility(True)

    def _segment(self, a: Sequence[float], b: Sequence[float], color: Sequence[float]) -> None:
        first = self.points.InsertNextPoint(a[0], a[1], 0.0)
        second = self.points.InsertNextPoint(b[0], b[1], 0.0)
        self.lines.InsertNextCell(2)
        self.lines.InsertCellPoint(first)
        self.lines.InsertCellPoint(second)
        self.colors.InsertNextTuple3(*(int(255 * c) for c in color))

    def _cross(self, x: float, y: float, color: Sequence[float]) -> None:
        size = _CROSS_HALF_SIZE
        self._segment((x - size, y), (x + size, y), color)
        self._segment((x, y - size), (x, y + size), color)

    def _rectangle(self, corners: Sequence[Sequence[float]]) -> None:
        (xa, ya), (xb, yb) = corners[0][:2], corners[1][:2]
        path = [(xa, ya), (xb, ya), (xb, yb), (xa, yb), (xa, ya)]
        for start, end in zip(path, path[1:]):
            self._segment(start, end, _BOX)
