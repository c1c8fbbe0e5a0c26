"""Volume and label I/O keeps geometry; mismatched pairs and bad files get errors naming the files."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from conftest import DATA, require
from sammed2d.volumes import Geometry, Volume, read_labels, read_volume, stack_slices, write_labels


@pytest.fixture(scope="module")
def lung2():
    volume = read_volume(require(DATA / "pyradiomics" / "lung2_image.nrrd"))
    return volume, read_labels(DATA / "pyradiomics" / "lung2_label.nrrd", like=volume)


def test_geometry_and_order_follow_the_file(lung2):
    volume, labels = lung2
    image = sitk.ReadImage(str(DATA / "pyradiomics" / "lung2_image.nrrd"))
    assert volume.shape == image.GetSize()[::-1] == (61, 512, 512)
    assert volume.geometry == Geometry.of(image)
    assert labels.geometry.matches(volume.geometry) and set(np.unique(labels.array)) == {0, 1}


def test_slices_along_each_axis_have_the_documented_orientation():
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    volume = Volume(array, Geometry((0.5, 1.0, 3.0), (0, 0, 0), (1, 0, 0, 0, 1, 0, 0, 0, 1)))
    np.testing.assert_array_equal(volume.slice("K", 1), array[1])
    np.testing.assert_array_equal(volume.slice("J", 2), array[:, 2, :])
    np.testing.assert_array_equal(volume.slice("I", 3), array[:, :, 3])
    assert [volume.slice_shape(axis) for axis in ("K", "J", "I")] == [(3, 4), (2, 4), (2, 3)]
    assert volume.pixel_spacing("K") == (1.0, 0.5) and volume.pixel_spacing("I") == (3.0, 1.0)
    with pytest.raises(ValueError, match="outside the volume"):
        volume.slice("J", 3)
    with pytest.raises(ValueError, match="axis must be one of"):
        volume.slice("Z", 0)
    stacked = stack_slices({1: np.ones((2, 4))}, "J", (2, 3, 4))
    assert stacked[:, 1].all() and stacked.sum() == 8


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".seg.nrrd"])
def test_labels_round_trip_with_geometry(lung2, tmp_path, suffix):
    volume, labels = lung2
    values = labels.array.astype(np.uint8) * 3
    path = write_labels(values, volume, tmp_path / f"out{suffix}", names={3: "tumour"})
    back = read_labels(path, like=volume)
    np.testing.assert_array_equal(back.array, values)
    assert back.geometry.matches(volume.geometry)
    if suffix == ".seg.nrrd":
        assert back.label_names == {3: "tumour"}
        independent = slicerio.read_segmentation(str(path))  # a second opinion, in I, J, K order
        assert [segment["name"] for segment in independent["segments"]] == ["tumour"]
        np.testing.assert_array_equal(np.transpose(independent["voxels"], (2, 1, 0)), values)


def test_seg_nrrd_cropped_to_its_extent_is_placed_back_on_the_image_grid(lung2, tmp_path):
    volume, labels = lung2
    k, j, i = (np.flatnonzero(labels.array.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1)))
    crop = labels.array[k[0] : k[-1] + 1, j[0] : j[-1] + 1, i[0] : i[-1] + 1].astype(np.uint8)
    ijk_to_lps = volume.geometry.ijk_to_lps()
    ijk_to_lps[:3, 3] = (ijk_to_lps @ [i[0], j[0], k[0], 1])[:3]
    segmentation = slicerio.create_segmentation(crop.shape[::-1], ijk_to_lps)
    slicerio.add_segment(segmentation, np.transpose(crop, (2, 1, 0)) > 0, {"name": "lesion"})
    slicerio.write_segmentation(str(tmp_path / "cropped.seg.nrrd"), segmentation)
    placed = read_labels(tmp_path / "cropped.seg.nrrd", like=volume)
    np.testing.assert_array_equal(placed.array > 0, labels.array > 0)
    assert placed.label_names == {1: "lesion"}


def test_image_and_labels_of_different_grids_are_refused_naming_both(lung2):
    volume, _ = lung2
    other = require(DATA / "pyradiomics" / "brain1_label.nrrd")
    with pytest.raises(ValueError) as caught:
        read_labels(other, like=volume)
    assert "brain1_label.nrrd" in str(caught.value) and "lung2_image.nrrd" in str(caught.value)


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_volume(tmp_path / "missing.nrrd")
    broken = tmp_path / "broken.nrrd"
    broken.write_bytes(b"NRRD0004\ntype: float\ndimension: 3\nsizes: 10 10 10\nencoding: raw\n\n" + b"\0" * 17)
    with pytest.raises(ValueError, match="broken.nrrd could not be read"):
        read_volume(broken)
    empty_folder = tmp_path / "dicom"
    empty_folder.mkdir()
    with pytest.raises(ValueError, match="no DICOM series"):
        read_volume(empty_folder)
    floats = tmp_path / "soft.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((3, 4, 5), 0.5, np.float32)), str(floats))
    with pytest.raises(ValueError, match="not a label map"):
        read_labels(floats)


def test_dicom_series_folder_reads_with_geometry(tmp_path):
    array = (np.arange(4 * 6 * 5).reshape(4, 6, 5) % 200).astype(np.int16)
    spacing, origin = (0.7, 0.8, 2.5), (-10.0, 20.0, 30.0)
    for k in range(array.shape[0]):
        image = sitk.GetImageFromArray(array[k : k + 1])
        image.SetSpacing(spacing)
        position = (origin[0], origin[1], origin[2] + k * spacing[2])
        image.SetOrigin(position)
        tags = {
            "0008|0060": "CT", "0020|000d": "1.2.3.4", "0020|000e": "1.2.3.4.5", "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:g}" for v in position), "0020|0037": "1\\0\\0\\0\\1\\0",
            "0028|0030": f"{spacing[1]:g}\\{spacing[0]:g}", "0018|0050": f"{spacing[2]:g}",
        }
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        for key, value in tags.items():
            image.SetMetaData(key, value)
        writer.SetFileName(str(tmp_path / f"slice{k}.dcm"))
        writer.Execute(image)
    volume = read_volume(tmp_path)
    np.testing.assert_array_equal(volume.array, array)
    np.testing.assert_allclose(volume.geometry.spacing, spacing, atol=1e-4)
    np.testing.assert_allclose(volume.geometry.origin, origin, atol=1e-4)
