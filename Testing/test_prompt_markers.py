"""The prompt markers both front-ends draw land where the prompts are on the view (pure VTK, checked headless)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import DATA, require
from slicer_scene import new_scene

from sammed2d.interaction import Markers, ras_to_xy


@pytest.fixture()
def markers_class():
    from sammed2d.interaction.markers import PromptMarkers

    return PromptMarkers


def test_points_and_box_are_drawn_at_their_view_positions(markers_class):
    scene = new_scene()
    volume = scene.load_volume(require(DATA / "pyradiomics" / "brain1_image.nrrd"), "brain1")
    node, _ = scene.slice_view(volume, "Coronal")
    points = ((10.0, 5.0, -20.0), (30.0, 5.0, 0.0))
    box = ((0.0, 5.0, 0.0), (40.0, 5.0, -40.0))
    actors = markers_class()
    actors.update(node, Markers(points, (1, 0), box), visible=True)
    drawn = np.array([actors.points.GetPoint(i)[:2] for i in range(actors.points.GetNumberOfPoints())])
    assert actors.lines.GetNumberOfCells() == 2 * 2 + 4  # a cross per point, four box sides
    for ras in points:
        centre = np.array(ras_to_xy(node, ras))
        assert np.any(np.all(np.isclose(drawn, centre + [6.0, 0.0]), axis=1)), "cross arm missing"
    corners = [np.array(ras_to_xy(node, corner)) for corner in box]
    assert np.any(np.all(np.isclose(drawn, corners[0]), axis=1)) and np.any(np.all(np.isclose(drawn, corners[1]),
                                                                                   axis=1))
    colours = [actors.colors.GetTuple3(i) for i in range(actors.colors.GetNumberOfTuples())]
    assert colours[0] != colours[2], "+ and − points must look different"
    actors.update(node, Markers(points, (1, 0), box), visible=False)
    assert not actors.actor.GetVisibility() and actors.points.GetNumberOfPoints() == 0
