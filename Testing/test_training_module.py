"""SAMMed2DTraining logic under real slicer-core: MRML nodes in, the engine's benchmark and training out.

Volumes are read by Slicer's own volume logic and the label map becomes a segmentation through Slicer's
segmentations logic, exactly as in the application; the headless entry point is called directly
(slicer.util.exit, which ends a headless Slicer, cannot be exercised without the application).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import DATA, DEMO, REPO, put_slicer_modules_on_path, require

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install -e '.[test]')")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not slicer-core", allow_module_level=True)

put_slicer_modules_on_path()

from SAMMed2DTrainingLib.commandline import runCommandLine, scriptArguments  # noqa: E402
from SAMMed2DTrainingLib.nodes import volumesFromNodes  # noqa: E402
from SAMMed2DTrainingLib.runs import benchmarkCases, trainCases  # noqa: E402
from sammed2d.evaluation.runner import BenchmarkModel  # noqa: E402
from sammed2d.models import ViTConfig  # noqa: E402
from sammed2d.training.trainer import TrainingConfig  # noqa: E402
from sammed2d.volumes import read_labels, read_volume  # noqa: E402

PYRADIOMICS = DATA / "pyradiomics"


class Scene:
    """The headless set-up Slicer does at start-up: scene, application logic, colours, segmentations, volumes."""

    def __init__(self) -> None:
        self.scene = slicer.vtkMRMLScene()
        self.app = slicer.vtkSlicerApplicationLogic()
        self.app.SetMRMLScene(self.scene)
        colors = self.app.GetColorLogic()
        colors.SetMRMLScene(self.scene)
        colors.AddDefaultColorNodes()
        self.app.SetModuleLogic("Colors", colors)
        self.segmentations = slicer.vtkSlicerSegmentationsModuleLogic()
        self.segmentations.SetMRMLScene(self.scene)
        self.segmentations.SetMRMLApplicationLogic(self.app)
        self.app.SetModuleLogic("Segmentations", self.segmentations)
        self.volumes = slicer.vtkSlicerVolumesLogic()
        self.volumes.SetMRMLScene(self.scene)
        self.volumes.SetMRMLApplicationLogic(self.app)
        self.app.SetModuleLogic("Volumes", self.volumes)

    def load(self, name: str):
        """A case as Slicer users have it: a scalar volume node and a segmentation node made from the label file."""
        image = self.volumes.AddArchetypeVolume(str(require(PYRADIOMICS / f"{name}_image.nrrd")), name)
        labelmap = self.volumes.AddArchetypeVolume(str(PYRADIOMICS / f"{name}_label.nrrd"), f"{name} lesion", 1)
        segmentation = self.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{name} segmentation")
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(image)
        assert self.segmentations.ImportLabelmapToSegmentationNode(labelmap, segmentation)
        self.scene.RemoveNode(labelmap)
        return image, segmentation


@pytest.fixture()
def scene() -> Scene:
    return Scene()


def test_nodes_become_the_same_volumes_as_the_files(scene):
    image, segmentation = scene.load("lung2")
    volume, labels = volumesFromNodes(image, segmentation, scene.segmentations)
    from_file = read_volume(PYRADIOMICS / "lung2_image.nrrd")
    labels_file = read_labels(PYRADIOMICS / "lung2_label.nrrd", like=from_file)
    np.testing.assert_array_equal(volume.array, from_file.array)
    np.testing.assert_array_equal(labels.array > 0, labels_file.array > 0)
    assert volume.geometry.matches(from_file.geometry) and labels.geometry.matches(from_file.geometry)
    assert labels.label_names == {1: "lung2 lesion"}  # the segment's name
    # the temporary label map and colour table of the export are gone again
    assert scene.scene.GetNodesByClass("vtkMRMLLabelMapVolumeNode").GetNumberOfItems() == 0


def test_labels_on_another_grid_or_empty_are_refused(scene):
    image, segmentation = scene.load("brain1")
    other = scene.volumes.AddArchetypeVolume(str(PYRADIOMICS / "brain2_label.nrrd"), "brain2 lesion", 1)
    with pytest.raises(ValueError, match="do not lie on the grid of the volume node 'brain1'"):
        volumesFromNodes(image, other, scene.segmentations)
    empty = scene.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "nothing")
    with pytest.raises(ValueError, match="the segmentation 'nothing' has no segment"):
        volumesFromNodes(image, empty, scene.segmentations)
    with pytest.raises(ValueError,
                       match="expected a segmentation or label map volume node; got vtkMRMLScalarVolumeNode"):
        volumesFromNodes(image, image, scene.segmentations)


def test_benchmark_on_nodes_matches_the_engine_on_files(scene, litemedsam, tmp_path):
    image, segmentation = scene.load("lung2")
    model = BenchmarkModel("litemedsam", litemedsam)  # one embedding cache for both runs
    options = dict(models=[model], modes=["box"], preset="ct-lung", slices=(19, 23),
                   segmentationsLogic=scene.segmentations)
    files = benchmarkCases([(PYRADIOMICS / "lung2_image.nrrd", PYRADIOMICS / "lung2_label.nrrd")], tmp_path / "files",
                           **options)
    nodes = benchmarkCases([(image, segmentation)], tmp_path / "nodes", **options)
    # the node run needed no encoder pass: its slices were byte-identical to the files' (content-hashed cache keys)
    assert files.results.encoder["litemedsam"][1] == 5 and nodes.results.encoder["litemedsam"][1] == 0

    def rows(output):
        return [(row.mode, row.slice, row.component, row.dice, row.iou, row.hd95_mm) for row in output.results.masks]

    assert rows(nodes) == rows(files) and len(rows(files)) == 5
    assert {row.label for row in nodes.results.masks} == {"lung2 lesion"}  # reported by segment name
    assert {row.case for row in nodes.results.masks} == {"lung2"}
    measured = ("dice_mean", "iou_mean", "hd95_mean_mm", "n", "dice_3d_mean", "n_volumes")
    node_box, file_box = nodes.summary["litemedsam"]["box"], files.summary["litemedsam"]["box"]
    assert {key: node_box[key] for key in measured} == {key: file_box[key] for key in measured}
    print(f"lung2 slices 19-23, box: Dice {node_box['dice_mean']:.4f}, "
          f"3D Dice over the slab {node_box['dice_3d_mean']:.4f}")
    assert node_box["dice_3d_mean"] > 0.9
    assert json.loads((tmp_path / "nodes" / "summary.json").read_text(encoding="utf-8")) == nodes.summary


def test_training_on_nodes(scene, tmp_path):
    image, segmentation = scene.load("brain2")
    config = TrainingConfig(out=tmp_path / "run", model="sam-med2d", vit=ViTConfig(96, 4, 4, (1, 3)),
                            random_weights=True, epochs=1, batch_size=1, masks_per_image=2, interaction_steps=1,
                            device="cpu", progress=False)
    result = trainCases([(image, segmentation)], config, valFraction=0, preset="percentile",
                        segmentationsLogic=scene.segmentations)
    assert result.last == tmp_path / "run" / "last.pth" and result.last.is_file()
    steps = [json.loads(line) for line in (tmp_path / "run" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [record["epoch"] for record in steps if record["event"] == "epoch"] == [1]
    assert sum(record["images"] for record in steps if record["event"] == "step") == 2  # brain2's 2 masks ≥ 100 px


def test_headless_command_line(tmp_path, capsys):
    assert scriptArguments(
        ["Slicer", "--no-main-window", "--python-script", "x.py", "--", "benchmark", "--out", "o"]
    ) == ["benchmark", "--out", "o"]
    assert runCommandLine(["version"]) == 0
    assert capsys.readouterr().out.startswith("sammed2d ")
    assert runCommandLine(["no-such-command"]) == 1
    assert runCommandLine(["benchmark", "--help"]) == 0
    assert "--json-dataset" in capsys.readouterr().out
    assert runCommandLine(["benchmark", "--out", str(tmp_path / "x")]) == 1  # no case given
    assert "give cases with --case" in capsys.readouterr().err
    assert runCommandLine(["train", "--case", str(tmp_path / "missing.nrrd"), str(tmp_path / "missing_label.nrrd"),
                           "--out", str(tmp_path / "run")]) == 1
    out = tmp_path / "demo"
    status = runCommandLine(["benchmark", "--json-dataset", str(require(DEMO)), "--labels", "liver", "--modes", "box",
                             "--device", "cpu", "--no-progress", "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["litemedsam"]["box"]["n"] == 1 and summary["litemedsam"]["box"]["dice_mean"] > 0.7
