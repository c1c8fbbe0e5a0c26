"""The module self-test's scenario, Qt-free so that it also runs under slicer-core in the pytest suite.

A generated CT phantom (``sammed2d.example``, known anatomy, no patient data needed) is loaded as a 3-slice
volume; a box around its liver on the middle slice is segmented and applied, then undone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sammed2d.example import make_example_slice

PHANTOM_SLICE = 1


@dataclass(frozen=True)
class LiverCheck:
    dice: float  # of the applied slice against the phantom's liver
    written_elsewhere: int  # voxels written outside the prompted slice (must be 0)
    left_after_undo: int  # voxels left after one undo (must be 0)


def phantomScene(scene):
    """Add the phantom volume and an empty "liver" segment; returns (volume, segmentation, segment id, liver)."""
    import slicer.util

    example = make_example_slice()
    voxels = np.repeat(example.hounsfield[None], 3, axis=0).astype(np.int16)
    volume = slicer.util.addVolumeFromArray(voxels, name="SAM-Med2D phantom")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "SAM-Med2D phantom segmentation")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    segmentId = segmentation.GetSegmentation().AddEmptySegment("liver")
    return volume, segmentation, segmentId, example.organs["liver"]


def checkLiver(scripted, volume, segmentation, segmentId: str, liver: np.ndarray) -> LiverCheck:
    """Box the liver through ``scripted`` (a ``ScriptedSegmentation``), apply, measure, undo, measure."""
    import slicer.util

    rows, columns = np.nonzero(liver)
    box = [columns.min(), rows.min(), PHANTOM_SLICE, columns.max(), rows.max(), PHANTOM_SLICE]
    scripted.segment(box=box, coordinates="IJK")
    written = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume).astype(bool)
    dice = 2 * (written[PHANTOM_SLICE] & liver).sum() / (written[PHANTOM_SLICE].sum() + liver.sum())
    elsewhere = int(written.sum() - written[PHANTOM_SLICE].sum())
    scripted.undo()
    left = int(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, volume).sum())
    return LiverCheck(float(dice), elsewhere, left)
