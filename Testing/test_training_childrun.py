"""The training module's long work as child processes: real ``sammed2d benchmark`` and ``sammed2d train`` runs,
watched through ChildRun as the panel's timer watches them (progress, log, state, cancel), on files and on nodes
of a slicer-core scene.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import SimpleITK as sitk

from conftest import DATA, REPO, put_slicer_modules_on_path, require

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install -e '.[test]')")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not slicer-core", allow_module_level=True)

put_slicer_modules_on_path()

from SAMMed2DTrainingLib.childrun import ChildRun, Progress, parseProgress  # noqa: E402
from SAMMed2DTrainingLib.launch import startBenchmark, startTraining, trainingArguments  # noqa: E402
from slicer_scene import new_scene, set_segment_array  # noqa: E402

from sammed2d.progress import JsonProgress, json_lines, progress_bar  # noqa: E402

PYRADIOMICS = DATA / "pyradiomics"
TINY_VIT = {"embed_dim": 96, "depth": 4, "num_heads": 4, "global_attn_indexes": [1, 3]}
#: a small random network and one short epoch: brain2 gives 2 masks of 100 pixels or more, so 2 steps
TINY_TRAINING = dict(model="sam-med2d", vit=TINY_VIT, random_weights=True, epochs=1, batch_size=1, masks_per_image=2,
                     interaction_steps=1, device="cpu")


def follow(run: ChildRun, timeout: float = 300.0) -> list[Progress]:
    """Poll as the panel's timer does, checking that no read blocks; the distinct progress values seen, in order."""
    seen = [run.progress]
    deadline = time.monotonic() + timeout
    while not run.wait(0.05):
        assert time.monotonic() < deadline, "\n".join(run.log_lines())
        started = time.perf_counter()
        progress, _, _ = run.progress, run.state, run.log_lines()
        assert time.perf_counter() - started < 0.05
        if progress != seen[-1]:
            seen.append(progress)
    if run.progress != seen[-1]:
        seen.append(run.progress)
    return seen


def case_files(run: ChildRun) -> list[Path]:
    """The files a child run was given with --case."""
    return [Path(run.command[index + offset]) for index, word in enumerate(run.command) if word == "--case"
            for offset in (1, 2)]


def test_progress_option_writes_one_json_line_per_step():
    stream = io.StringIO()
    with json_lines(stream):
        items = list(progress_bar(["a", "b"], desc="masks", unit="mask"))
        bar = progress_bar(total=4, initial=2, desc="training", unit="batch")
        bar.update(2)
        bar.set_postfix(loss="0.5", refresh=False)
        bar.close()
        assert list(progress_bar(["c"], desc="quiet", disable=True)) == ["c"]  # --no-progress silences both
    assert items == ["a", "b"] and not isinstance(progress_bar([1], desc="outside", disable=True), JsonProgress)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines == [{"done": 0, "total": 2, "stage": "masks"}, {"done": 1, "total": 2, "stage": "masks"},
                     {"done": 2, "total": 2, "stage": "masks"}, {"done": 2, "total": 4, "stage": "training"},
                     {"done": 4, "total": 4, "stage": "training"}]
    assert parseProgress(stream.getvalue().splitlines()[-1]) == Progress(4, 4, "training")
    assert parseProgress("litemedsam box: Dice 0.96") is None and parseProgress('{"epoch": 1}') is None


def test_launching_imports_neither_torch_nor_qt():
    code = ("import sys; sys.path[:0] = sys.argv[1:]; import SAMMed2DTrainingLib.launch; "
            "loaded = {'torch', 'qt', 'ctk', 'slicer.ScriptedLoadableModule'} & set(sys.modules); "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code, str(REPO / "SAMMed2DTraining"), str(REPO / "SAMMed2D")], check=True)


def test_benchmark_child_on_files(tmp_path):
    image, labels = require(PYRADIOMICS / "lung2_image.nrrd"), PYRADIOMICS / "lung2_label.nrrd"
    run = startBenchmark([(image, labels)], tmp_path / "out", modes=["box"], preset="ct-lung", slices=(19, 21),
                         device="cpu")
    assert run.state == "running" and run.returncode is None
    assert case_files(run) == [image, labels]  # files go to the child as they are
    seen = follow(run)
    assert (run.state, run.returncode, run.error) == ("finished", 0, None), "\n".join(run.log_lines())
    assert seen[-1] == Progress(3, 3, "litemedsam lung2_image")
    assert any(0 < progress.done < progress.total for progress in seen)  # steps arrive while the child works
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["litemedsam"]["box"]["n"] == 3 and summary["litemedsam"]["box"]["dice_mean"] > 0.9
    log = run.log_lines()
    assert any(line.startswith("litemedsam box: Dice") for line in log)
    assert not any(parseProgress(line) for line in log)  # progress lines are not log lines


def test_training_child_on_nodes(tmp_path):
    scene = new_scene()
    image = scene.load_volume(require(PYRADIOMICS / "brain2_image.nrrd"), "brain2")
    segmentation, (segment,) = scene.segmentation_for(image, "lesion")
    lesion = sitk.GetArrayFromImage(sitk.ReadImage(str(PYRADIOMICS / "brain2_label.nrrd"))) > 0
    set_segment_array(segmentation, segment, image, lesion)
    run = startTraining([(image, segmentation)], tmp_path / "run", valFraction=0, preset="percentile",
                        segmentationsLogic=scene.segmentations_logic, **TINY_TRAINING)
    written = case_files(run)
    assert [path.name for path in written] == ["case0_image.nrrd", "case0_labels.seg.nrrd"]
    assert all(path.is_file() for path in written)  # the nodes, written for the child
    seen = follow(run)
    assert run.state == "finished", "\n".join(run.log_lines())
    assert seen[-1] == Progress(2, 2, "training")
    assert (tmp_path / "run" / "last.pth").is_file()
    records = [json.loads(line) for line in (tmp_path / "run" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [record["epoch"] for record in records if record["event"] == "epoch"] == [1]
    assert sum(record["images"] for record in records if record["event"] == "step") == 2
    assert any(line.startswith("epoch 1: train loss") for line in run.log_lines())
    assert not written[0].parent.exists()  # removed once the child ended


def test_cancelled_training_ends_cancelled_and_its_process_is_gone(tmp_path):
    image = require(PYRADIOMICS / "brain2_image.nrrd")
    run = startTraining([(image, PYRADIOMICS / "brain2_label.nrrd")], tmp_path / "run", valFraction=0,
                        preset="percentile", **{**TINY_TRAINING, "epochs": 50})
    deadline = time.monotonic() + 300
    while run.progress.total == 0 and run.state == "running":  # until the child is in its training loop
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert run.state == "running" and run.progress.total == 100, "\n".join(run.log_lines())
    started = time.monotonic()
    run.cancel()
    assert time.monotonic() - started < 0.5  # cancel returns at once
    assert run.wait(30)
    assert (run.state, run.returncode, run.error) == ("cancelled", -signal.SIGTERM, None)
    with pytest.raises(ProcessLookupError):
        os.kill(run.pid, 0)
    assert not (tmp_path / "run" / "last.pth").exists()  # stopped inside the first epoch


def test_a_child_that_ignores_terminate_is_killed(tmp_path):
    marker = tmp_path / "ignoring"
    (tmp_path / "sitecustomize.py").write_text(
        f"import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nopen({str(marker)!r}, 'w').close()\n",
        encoding="utf-8")
    run = ChildRun("benchmark", ["--out", str(tmp_path / "out")], kill_after=1.0,
                   environment={"PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO / "SAMMed2D")])})
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline and run.state == "running"
        time.sleep(0.02)
    started = time.monotonic()
    run.cancel()
    assert run.wait(30)
    assert time.monotonic() - started >= 1.0
    assert (run.state, run.returncode) == ("cancelled", -signal.SIGKILL)


def test_a_missing_file_fails_with_the_engine_error_line(tmp_path):
    from sammed2d.cli import build_parser
    from sammed2d.evaluation.command import settings_from_arguments
    from sammed2d.evaluation.runner import BenchmarkSettings

    missing = tmp_path / "missing.nrrd"
    options = dict(models=["litemedsam", "sam-med2d:/weights/sam-med2d_b.pth"], modes=["box", "propagation"],
                   preset="ct-lung", axis="J", labels=["liver", 2], minMaskPixels=50, seed=3, slices=(4, 9),
                   device="cpu")
    run = startBenchmark([(missing, tmp_path / "missing_label.nrrd")], tmp_path / "out", **options)
    assert run.wait(300)
    assert (run.state, run.returncode) == ("failed", 2)
    assert run.error == f"{missing} does not exist"
    assert f"error: {missing} does not exist" in run.log_lines()
    # the options reached the engine as runs.benchmarkCases would have passed them
    args = build_parser().parse_args(run.command[3:])
    assert settings_from_arguments(args) == BenchmarkSettings(
        ("box", "propagate-box", "propagate-box2", "propagate-box3", "propagate-click"), "J", ("liver", "2"), 50, 3,
        True, (4, 9))
    assert (args.models, args.preset, args.device) == (options["models"], "ct-lung", "cpu")


def test_training_options_reach_the_engine_unchanged(tmp_path):
    from sammed2d.cli import build_parser
    from sammed2d.models import ViTConfig
    from sammed2d.training.command import config_from_arguments
    from sammed2d.training.trainer import TrainingConfig

    def parsed(config: dict) -> TrainingConfig:
        words = ["train", "--case", "a.nrrd", "b.nrrd", "--out", str(tmp_path), *trainingArguments(config)]
        return config_from_arguments(build_parser().parse_args(words))

    config = dict(model="sam-vit-b", checkpoint=tmp_path / "sam.pth", vit=ViTConfig(96, 4, 4, (1, 3)),
                  init_from_sam=True, random_weights=True, trainable="decoder", epochs=3, batch_size=4, accumulate=2,
                  masks_per_image=3, interaction_steps=0, lr=3e-5, lr_milestones=(), lr_gamma=0.1, precision="fp32",
                  seed=7, device="cpu", workers=1, resume=True)
    assert parsed(config) == TrainingConfig(out=tmp_path, **config)
    assert parsed({}) == TrainingConfig(out=tmp_path)  # the defaults are TrainingConfig's, model included
    with pytest.raises(TypeError, match="point_choices"):
        trainingArguments({"point_choices": (1, 3)})


def test_a_python_that_cannot_run_fails_at_once(tmp_path):
    ended = []
    run = ChildRun("train", ["--out", str(tmp_path)], python=str(tmp_path / "no-python"),
                   on_end=lambda: ended.append(True))
    assert run.wait(0) and run.state == "failed" and ended == [True]
    assert run.error.startswith(f"cannot run {tmp_path / 'no-python'}") and run.returncode is None
