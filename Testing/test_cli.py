"""The ``sammed2d`` command line, run as a user would, in a separate process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from conftest import DATA, DEMO, require


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The CLI prints ×, … and – : both sides speak UTF-8 whatever the machine's locale says."""
    return subprocess.run([sys.executable, "-m", "sammed2d", *args], capture_output=True, encoding="utf-8",
                          errors="replace", timeout=600, env={**os.environ, "PYTHONIOENCODING": "utf-8"})


def test_demo_segments_the_generated_slice_and_writes_files(tmp_path):
    result = run_cli("demo", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    names = json.loads((tmp_path / "example_ct_labels.json").read_text(encoding="utf-8"))
    labels = sitk.ReadImage(str(tmp_path / "example_ct_segmentation.nrrd"))
    ct = sitk.ReadImage(str(tmp_path / "example_ct.nrrd"))
    assert labels.GetSize() == ct.GetSize() and labels.GetSpacing() == ct.GetSpacing()
    assert set(np.unique(sitk.GetArrayFromImage(labels))) == {0, *map(int, names)}
    assert (tmp_path / "example_ct_overlay.png").stat().st_size > 10_000
    dices = {name: float(value)
             for name, value in re.findall(r"\d+\s+(\w[\w ]*?)\s+\d+ \d+ \d+ \d+\s+[\d.]+\s+([\d.]+)", result.stdout)}
    assert set(dices) == set(names.values())
    assert min(dices.values()) > 0.85, result.stdout


def test_segment_a_png_slice_with_a_box_and_points(tmp_path):
    image = require(DEMO / "images" / "amos_0004_75.png")
    out = tmp_path / "liver.png"
    result = run_cli(
        "segment", str(image), "--preset", "identity", "--box", "150", "170", "330", "360",
        "--point", "240", "260", "--negative", "100", "100", "--out", str(out), "--overlay", str(tmp_path / "o.png"),
    )
    assert result.returncode == 0, result.stderr
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert mask.shape == (512, 512) and 1000 < (mask == 1).sum() < 512 * 512 / 2
    assert (tmp_path / "o.png").exists()


def lung2_tumour_prompt() -> tuple:
    """lung2's image path, its tumour mask, the slice where the tumour is largest and its tight box as CLI words."""
    volume_path = require(DATA / "pyradiomics" / "lung2_image.nrrd")
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / "pyradiomics" / "lung2_label.nrrd"))) > 0
    k = int(np.argmax(truth.sum(axis=(1, 2))))
    rows, cols = np.nonzero(truth[k])
    return volume_path, truth, k, [str(v) for v in (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)]


def test_segment_one_slice_of_a_volume_keeps_its_geometry(tmp_path):
    volume_path, truth, k, box = lung2_tumour_prompt()
    out = tmp_path / "lung2_tumour.nrrd"
    result = run_cli("segment", str(volume_path), "--slice", str(k), "--preset", "ct-lung", "--box", *box,
                     "--label", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    written, source = sitk.ReadImage(str(out)), sitk.ReadImage(str(volume_path))
    assert written.GetSize() == source.GetSize()
    assert written.GetDirection() == source.GetDirection() and written.GetOrigin() == source.GetOrigin()
    mask = sitk.GetArrayFromImage(written)
    assert set(np.unique(mask)) == {0, 3} and mask[np.arange(len(mask)) != k].max() == 0
    overlap = (mask[k] > 0) & truth[k]
    assert 2 * overlap.sum() / ((mask[k] > 0).sum() + truth[k].sum()) > 0.85


def test_segment_reads_a_dicom_folder_as_the_volume_reader_does(tmp_path):
    """lung2 written as a DICOM series (real CT voxels and geometry) segments as the NRRD does."""
    volume_path, truth, k, box = lung2_tumour_prompt()
    source = sitk.ReadImage(str(volume_path))
    folder = tmp_path / "dicom"
    folder.mkdir()
    for index in range(source.GetSize()[2]):
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        plane = source[:, :, index]
        plane.SetMetaData("0020|0013", str(index + 1))
        plane.SetMetaData("0020|0032", "\\".join(map(str, source.TransformIndexToPhysicalPoint((0, 0, index)))))
        plane.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.1")
        plane.SetMetaData("0008|0060", "CT")
        writer.SetFileName(str(folder / f"{index:03d}.dcm"))
        writer.Execute(plane)
    out = tmp_path / "from_dicom.nrrd"
    result = run_cli("segment", str(folder), "--slice", str(k), "--preset", "ct-lung", "--box", *box,
                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out))) > 0
    assert mask.shape == truth.shape
    assert 2 * (mask[k] & truth[k]).sum() / (mask[k].sum() + truth[k].sum()) > 0.85


def test_segment_and_propagate_through_a_volume_to_a_seg_nrrd(tmp_path):
    volume_path, truth, k, box = lung2_tumour_prompt()
    out = tmp_path / "tumour.seg.nrrd"
    result = run_cli("segment", str(volume_path), "--slice", str(k), "--preset", "ct-lung", "--box", *box,
                     "--propagate", "--name", "tumour", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "stopped at slice" in result.stdout
    segmentation = slicerio.read_segmentation(str(out))
    assert [segment["name"] for segment in segmentation["segments"]] == ["tumour"]
    labels = np.transpose(segmentation["voxels"], (2, 1, 0)) > 0
    assert 2 * (labels & truth).sum() / (labels.sum() + truth.sum()) > 0.85


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--box", "0", "0", "9000", "10"], "outside"),
        ([], "at least one --box or --point"),
    ],
)
def test_segment_errors_are_one_clear_line(tmp_path, extra, message):
    image = require(DEMO / "images" / "amos_0004_75.png")
    result = run_cli("segment", str(image), "--out", str(tmp_path / "m.png"), *extra)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "m.png").exists()


def test_volume_without_slice_and_missing_checkpoint(tmp_path):
    volume = require(DATA / "pyradiomics" / "brain1_image.nrrd")
    result = run_cli("segment", str(volume), "--box", "1", "1", "20", "20", "--out", str(tmp_path / "m.nrrd"))
    assert result.returncode == 2 and "choose the slice to prompt on with --slice" in result.stderr
    result = run_cli("demo", "--model", "sam-med2d", "--out", str(tmp_path))
    assert result.returncode == 2 and "pass the checkpoint" in result.stderr


def test_models_lists_the_registry():
    result = run_cli("models")
    assert result.returncode == 0
    for name in ("litemedsam", "sam-med2d", "sam-med2d-no-adapter", "sam-vit-b", "sam-vit-l", "sam-vit-h"):
        assert name in result.stdout


@pytest.mark.parametrize("code", [
    "import sammed2d.client",
    "from sammed2d import cli\ntry:\n    cli.main(['--version'])\nexcept SystemExit:\n    pass",
    "from sammed2d import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass",
])
def test_the_client_and_the_version_load_no_torch(code):
    """Slicer's Python imports the client; `sammed2d --version` must answer at once: neither may load torch."""
    check = f"{code}\nimport sys\nassert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", check], check=True)


def test_every_subcommand_still_parses_its_own_options():
    from sammed2d.cli import SUBCOMMANDS, build_parser

    for name, *_ in SUBCOMMANDS:
        build_parser(only=name)  # each option builder runs
    args = build_parser(only="segment").parse_args(["segment", "x.nrrd", "--out", "y.nrrd", "--slice", "3"])
    assert args.slice == 3 and args.run.__name__ == "run_segment"
