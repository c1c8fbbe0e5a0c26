"""Object factors of the benchmark (size, aspect ratio, contrast with the surroundings) against hand-computed
values and on a real LiteMedSAM run on brain1; ``--labels`` that name no label fail through the real CLI."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from conftest import DATA, DEMO, require
from sammed2d.cli import main
from sammed2d.errors import InputError
from sammed2d.evaluation.cases import image_set_case, resolve_labels, volume_case
from sammed2d.evaluation.command import benchmark
from sammed2d.evaluation.factors import aspect_ratio, mask_factors, ring_pixels
from sammed2d.evaluation.runner import BenchmarkModel, BenchmarkSettings
from sammed2d.intensity import fit_mapping
from sammed2d.volumes import read_volume, write_labels
from test_cli import run_cli

PYRADIOMICS = DATA / "pyradiomics"


def brain1():
    return volume_case(require(PYRADIOMICS / "brain1_image.nrrd"), PYRADIOMICS / "brain1_label.nrrd", "percentile")


# --- factors on constructed masks ------------------------------------------------------------------------------------


def test_rectangle_size_and_aspect_ratio_in_pixels_and_millimetres():
    mask = np.zeros((256, 256), dtype=bool)
    mask[50:60, 100:130] = True  # 10 rows × 30 columns
    factors = mask_factors(mask, np.zeros((256, 256)))
    assert factors.area_fraction == 300 / 65536
    assert factors.aspect_ratio == pytest.approx(3.0)
    assert aspect_ratio(mask, (2.0, 1.0)) == pytest.approx(1.5)  # rows of 2 mm: 20 mm × 30 mm


def test_a_diagonal_line_is_elongated_whatever_its_axis_aligned_box_says():
    mask = np.zeros((64, 64), dtype=bool)
    mask[np.arange(20, 30), np.arange(20, 30)] = True  # 10 pixels on the diagonal: a 10×10 axis-aligned box
    # the pixel squares' hull is 10·√2 long along the diagonal and √2 across it
    assert aspect_ratio(mask) == pytest.approx(10.0)


def test_contrast_is_cohens_d_of_the_mask_against_a_five_pixel_ring_at_256():
    image = np.full((256, 256), 250.0)
    image[95:125, 95:125] = 40.0  # every pixel within 5 of the mask (the ring) is 40; 250 lies beyond
    rows, columns = np.mgrid[100:120, 100:120]
    image[100:120, 100:120] = np.where((rows + columns) % 2, 95.0, 105.0)  # mean 100, deviation 5
    mask = np.zeros((256, 256), dtype=bool)
    mask[100:120, 100:120] = True
    # |100 − 40| / √((5² + 0²) / 2)
    assert mask_factors(mask, image).contrast == pytest.approx(60 / math.sqrt(12.5))
    flat = np.where(mask, 100.0, 40.0)
    assert mask_factors(mask, flat).contrast == pytest.approx(60.0)  # deviation floored at one grey level
    # three channels are averaged: the same grey image as RGB gives the same value
    assert mask_factors(mask, np.repeat(image[..., None], 3, axis=2)).contrast == pytest.approx(60 / math.sqrt(12.5))


def test_the_ring_scales_with_the_slice_so_it_is_five_pixels_of_the_model_input():
    assert ring_pixels((512, 512)) == 10 and ring_pixels((256, 128)) == 5
    mask = np.zeros((512, 512), dtype=bool)
    mask[200:240, 200:240] = True
    image = np.where(mask, 100.0, 250.0)
    image[~mask & (np.abs(np.mgrid[:512, :512] - 219.5).max(axis=0) <= 20 + 10)] = 40.0  # 40 up to 10 px away
    assert mask_factors(mask, image).contrast == pytest.approx(60.0)
    image[~mask & (np.abs(np.mgrid[:512, :512] - 219.5).max(axis=0) > 20 + 6)] = 250.0  # 250 from 7 px on
    assert mask_factors(mask, image).contrast < 1.0  # the 10-pixel ring now mixes 40 and 250: the contrast drops


# --- a real run ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def brain1_box(litemedsam, tmp_path_factory):
    out = tmp_path_factory.mktemp("brain1-factors")
    case = brain1()
    output = benchmark([BenchmarkModel("litemedsam", litemedsam)], [case], BenchmarkSettings(("box",), progress=False),
                       out)
    return case, output, out


def test_masks_csv_carries_the_factors_of_each_ground_truth_mask(brain1_box):
    case, _, out = brain1_box
    with (out / "masks.csv").open(encoding="utf-8") as handle:
        rows = {(int(row["slice"]), int(row["component"])): row for row in csv.DictReader(handle)}
    mapping = fit_mapping(case.image.array, "percentile")
    structures = case.structures("K", (), 100)
    assert len(rows) == len(structures) == 8
    for structure in structures:
        expected = mask_factors(structure.mask, mapping.apply(case.image.slice("K", structure.index)),
                                case.image.pixel_spacing("K"))
        row = rows[structure.index, structure.component]
        for name in ("area_fraction", "aspect_ratio", "contrast"):
            assert float(row[name]) == pytest.approx(getattr(expected, name), rel=1e-12), (structure.index, name)
    # measured on brain1 (mapped by percentiles): the lesion on slice 11 covers 378 of 256² pixels
    slice_11 = rows[11, 1]
    assert float(slice_11["area_fraction"]) == 378 / 65536
    assert float(slice_11["aspect_ratio"]) == pytest.approx(1.3067, abs=1e-4)
    assert float(slice_11["contrast"]) == pytest.approx(2.1835, abs=1e-4)
    print("brain1 lesion factors (slice, area fraction, aspect ratio, contrast, Dice):")
    for key, row in sorted(rows.items()):
        print(key, f"{float(row['area_fraction']):.5f} {float(row['aspect_ratio']):.3f} "
                   f"{float(row['contrast']):.3f} {float(row['dice']):.4f}")


def test_report_relates_dice_to_each_factor(brain1_box):
    _, output, out = brain1_box
    analyses = output.summary["litemedsam"]["box"]["factors"]
    rows = output.results.masks
    for factor, analysis in analyses.items():
        assert analysis["n"] == 8 and [part["n"] for part in analysis["bins"]] == [4, 4]  # 8 masks: two bins of 4
        ranked = sorted(rows, key=lambda row: getattr(row, factor))
        for part, chunk in zip(analysis["bins"], (ranked[:4], ranked[4:])):
            assert part["dice_mean"] == pytest.approx(np.mean([row.dice for row in chunk]), abs=1e-4)
            assert part["low"] == pytest.approx(getattr(chunk[0], factor), rel=1e-3)
            assert part["high"] == pytest.approx(getattr(chunk[-1], factor), rel=1e-3)
    print({factor: (analysis["spearman_rho"], analysis["p_value"]) for factor, analysis in analyses.items()})
    # measured: on brain1's 8 lesion masks the box Dice (0.88–0.94) rises with contrast, not with size
    assert analyses["contrast"]["spearman_rho"] == pytest.approx(0.48, abs=0.1)
    assert abs(analyses["area_fraction"]["spearman_rho"]) < 0.2
    table = (out / "results.md").read_text(encoding="utf-8")
    assert "Dice by object factor" in table and "litemedsam, box:" in table
    for name in ("area fraction", "aspect ratio", "contrast"):
        assert f"| {name} | {analyses[name.replace(' ', '_')]['spearman_rho']:.2f} |" in table
    assert (out / "dice_vs_factors.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- --labels --------------------------------------------------------------------------------------------------------


def test_an_unknown_label_fails_naming_the_labels_the_file_has(tmp_path):
    image = require(PYRADIOMICS / "brain1_image.nrrd")
    result = run_cli("benchmark", "--case", str(image), str(PYRADIOMICS / "brain1_label.nrrd"), "--labels", "2",
                     "--modes", "box", "--out", str(tmp_path / "out"), "--no-progress")
    assert result.returncode == 2, result.stderr
    assert "error: --labels 2: no case has it (labels: brain1_image has 1)" in result.stderr
    assert not (tmp_path / "out").exists()  # nothing written, no empty summary


def test_comma_separated_labels_are_several_labels_and_each_must_exist(tmp_path, capsys):
    case = brain1()
    labels = case.labels.array
    lesion_slices = np.flatnonzero(labels.any(axis=(1, 2)))
    split = np.zeros_like(labels, dtype=np.uint16)
    upper = np.arange(labels.shape[0])[:, None, None] > np.median(lesion_slices)
    split[(labels == 1) & ~upper], split[(labels == 1) & upper] = 77, 78
    path = write_labels(split, read_volume(PYRADIOMICS / "brain1_image.nrrd"), tmp_path / "split.seg.nrrd",
                        names={77: "lower", 78: "upper"})
    two = volume_case(PYRADIOMICS / "brain1_image.nrrd", path, "percentile")
    assert resolve_labels(["77,78"], [two]) == ("77", "78")
    assert resolve_labels(["upper, 77", "78"], [two]) == ("upper", "77", "78")
    code = main(["benchmark", "--case", str(PYRADIOMICS / "brain1_image.nrrd"), str(path), "--labels", "77,79",
                 "--modes", "box", "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 2
    assert "--labels 79: no case has it (labels: brain1_image has 77 (lower), 78 (upper))" in capsys.readouterr().err
    with pytest.raises(InputError, match=r"--labels 77 78: no case has them \(labels: brain1_image has 1\)"):
        resolve_labels(["77,78"], [case])


def test_labels_of_a_2d_set_are_its_structure_names():
    demo = image_set_case(require(DEMO))
    assert resolve_labels(["liver,aorta"], [demo]) == ("liver", "aorta")
    with pytest.raises(InputError, match=r"--labels livr: no case has it \(labels: sammed2d-demo has .*liver"):
        resolve_labels(["livr"], [demo])
