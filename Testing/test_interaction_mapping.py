"""View → volume mapping of the interaction core on real slice nodes and real volumes (slicer-core).

A click is given as a view position (XY) on a slice node fitted to the volume as Slicer fits it; it must
land on the slice and pixel of the voxel under it, in each orientation and on a volume whose IJK → RAS
matrix is not the identity. Slicer's own ``XyToIjk`` is the second opinion, and the volume's own array
(and the engine's slice of it) the check that the pixel is the voxel.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import DATA, require
from slicer_scene import new_scene

from sammed2d.interaction import ObliqueView, locate_view, ras_to_xy, xy_to_ras
from sammed2d.interaction.errors import InteractionError
from sammed2d.interaction.slice_mapping import ijk_to_pixel, ras_to_ijk, ras_to_pixel
from sammed2d.volumes import Geometry, Volume

import slicer
import slicer.util

PYRADIOMICS = DATA / "pyradiomics"


@pytest.fixture(scope="module")
def scene():
    return new_scene()


@pytest.fixture(scope="module")
def brain1(scene):
    return scene.load_volume(require(PYRADIOMICS / "brain1_image.nrrd"), "brain1")


@pytest.fixture(scope="module")
def rotated(scene, brain1):
    """brain1's voxels under a matrix that permutes and flips the axes and has anisotropic spacing:
    I runs inferior, J runs left, K runs anterior."""
    array = slicer.util.arrayFromVolume(brain1).copy()
    matrix = np.array([[0.0, -0.9, 0.0, 40.0], [0.0, 0.0, 2.5, -30.0], [-0.8, 0.0, 0.0, 60.0], [0, 0, 0, 1]])
    return scene.add_volume(array, matrix, "brain1 rotated")


def _ras_of_ijk(volume, ijk) -> np.ndarray:
    return np.linalg.inv(ras_to_ijk(volume)) @ np.array([*ijk, 1.0])


def _show_voxel(scene, volume, orientation, ijk):
    """A slice view in ``orientation`` scrolled to the voxel ``ijk``; returns (node, view XY of the voxel)."""
    node, logic = scene.slice_view(volume, orientation, name=f"{orientation}-{volume.GetName()}")
    ras = _ras_of_ijk(volume, ijk)
    logic.SetSliceOffset(float(np.dot(np.array([node.GetSliceToRAS().GetElement(r, 2) for r in range(3)]), ras[:3])))
    return node, ras_to_xy(node, ras[:3])


CASES = [(orientation, ijk) for orientation in ("Axial", "Sagittal", "Coronal")
         for ijk in ((128, 100, 12), (40, 200, 3), (250, 7, 24))]


@pytest.mark.parametrize("volume_name", ["brain1", "rotated"])
@pytest.mark.parametrize("orientation, ijk", CASES)
def test_click_lands_on_the_voxel_under_it(scene, brain1, rotated, volume_name, orientation, ijk):
    volume = {"brain1": brain1, "rotated": rotated}[volume_name]
    node, xy = _show_voxel(scene, volume, orientation, ijk)
    view = locate_view(node, volume)
    # the same voxel by Slicer's own conversion
    slicer_ijk = [0, 0, 0]
    oriented = slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(volume)
    slicer.vtkSlicerSegmentEditorLogic.XyToIjk(list(xy), slicer_ijk, node, oriented)
    assert tuple(slicer_ijk) == ijk
    axis_dimension = {"I": 0, "J": 1, "K": 2}[view.axis]
    assert view.index == ijk[axis_dimension]
    x, y = ras_to_pixel(volume, view, xy_to_ras(node, xy))
    assert (x, y) == pytest.approx(ijk_to_pixel(view, ijk), abs=1e-6)
    # the pixel is the voxel: the engine's slice of the volume's own array holds its value there
    array = slicer.util.arrayFromVolume(volume)
    engine_volume = Volume(array, Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)))
    assert engine_volume.slice(view.axis, view.index)[int(y), int(x)] == array[ijk[2], ijk[1], ijk[0]]


def test_the_views_of_a_permuted_volume_show_other_axes(scene, rotated):
    """On the rotated volume I runs inferior (axial views are normal to I), J left (sagittal normal to J)."""
    axes = {orientation: locate_view(scene.slice_view(rotated, orientation, name=f"axes-{orientation}")[0],
                                     rotated).axis for orientation in ("Axial", "Sagittal", "Coronal")}
    assert axes == {"Axial": "I", "Sagittal": "J", "Coronal": "K"}


def test_an_oblique_view_is_refused(scene, brain1):
    node, _ = scene.slice_view(brain1, "Axial", name="oblique")
    import vtk

    rotation = node.GetSliceToRAS()
    tilt = vtk.vtkTransform()
    tilt.RotateX(20)
    matrix = vtk.vtkMatrix4x4()
    vtk.vtkMatrix4x4.Multiply4x4(tilt.GetMatrix(), rotation, matrix)
    node.GetSliceToRAS().DeepCopy(matrix)
    node.UpdateMatrices()
    with pytest.raises(ObliqueView, match="oblique"):
        locate_view(node, brain1)


def test_a_view_scrolled_off_the_volume_is_refused(scene, brain1):
    node, logic = scene.slice_view(brain1, "Axial", name="far")
    logic.SetSliceOffset(5000.0)
    with pytest.raises(InteractionError, match="scroll into the volume"):
        locate_view(node, brain1)
