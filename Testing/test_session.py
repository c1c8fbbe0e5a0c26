"""Volume sessions: slices with non-square pixels, the embedding cache and its budget."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import DATA, require
from sammed2d.intensity import fit_mapping
from sammed2d.metrics import dice
from sammed2d.model_images import mask_to_model, rows_under_centres
from sammed2d.predictor import Predictor
from sammed2d.session import EmbeddingCache, SliceResampling, VolumeSession
from sammed2d.slice_prompts import SlicePrompt
from sammed2d.volumes import Geometry, Volume, read_labels, read_volume


def test_resampling_maps_prompts_and_masks_exactly():
    resampling = SliceResampling(rows=3, model_rows=12)
    model = resampling.prompt_to_model(SlicePrompt(points=np.array([[5.0, 1.5]]), labels=np.array([1]),
                                                   boxes=np.array([[1.0, 0.0, 2.0, 3.0]])))
    np.testing.assert_allclose(model.points, [[5.0, 6.0]])
    np.testing.assert_allclose(model.boxes, [[1.0, 0.0, 2.0, 12.0]])
    model_mask = np.zeros((12, 2), dtype=bool)
    model_mask[4:8] = True  # exactly the middle slice row in model pixels
    np.testing.assert_array_equal(resampling.mask_to_slice(model_mask)[:, 0], [False, True, False])


def test_a_mask_taken_to_the_model_image_and_back_is_unchanged_for_every_size():
    """One integer rule in both directions. A centre exactly on a row boundary takes the row after it (2 rows
    onto 1: the centre is at 1.0); the float forms it replaced rounded some of those boundaries down."""
    np.testing.assert_array_equal(rows_under_centres(2, 1), [1])
    np.testing.assert_array_equal(rows_under_centres(3, 2), [0, 2])  # centres at 0.75 and 2.25
    np.testing.assert_array_equal(rows_under_centres(2, 4), [0, 0, 1, 1])
    pattern = np.random.default_rng(0).random((300, 1)) > 0.5
    for rows in range(1, 120):
        for model_rows in range(rows, 6 * rows + 1):
            mask = pattern[:rows]
            there = mask_to_model(mask, model_rows)
            assert there.shape == (model_rows, 1)
            np.testing.assert_array_equal(SliceResampling(rows, model_rows).mask_to_slice(there), mask)


def test_sagittal_slice_of_thick_ct_is_segmented_on_square_pixels(litemedsam):
    volume = read_volume(require(DATA / "pyradiomics" / "lung2_image.nrrd"))
    truth = read_labels(DATA / "pyradiomics" / "lung2_label.nrrd", like=volume).array > 0
    session = VolumeSession(volume, Predictor(litemedsam), fit_mapping(volume.array, "ct-lung"))
    column = int(truth.sum(axis=(0, 1)).argmax())
    assert session.model_image("I", column).shape == (round(61 * 5.0 / 0.6269531), 512)
    target = truth[:, :, column]  # rows follow K (5 mm), columns follow J (0.63 mm)
    rows, cols = np.nonzero(target)
    result = session.segment("I", column, box=[cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
    assert result.masks.shape == (1, 61, 512)
    assert dice(result.masks[0], target) > 0.8
    with pytest.raises(ValueError, match="outside the 512×61 slice"):  # in the user's pixels, not resampled ones
        session.segment("I", column, box=[10, 10, 50, 70])


def test_cache_evicts_least_recently_used_under_its_budget(random_tiny_model):
    volume = Volume(np.random.default_rng(0).integers(0, 255, (4, 40, 40)).astype(np.float32),
                    Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)))
    one_embedding = 256 * 16 * 16 * 4
    cache = EmbeddingCache(budget_bytes=2 * one_embedding)
    session = VolumeSession(volume, Predictor(random_tiny_model), fit_mapping(volume.array, "identity"), cache)
    for index in (0, 1, 0, 2):
        session.embedding("K", index)
    assert session.is_cached("K", 0) and session.is_cached("K", 2) and not session.is_cached("K", 1)
    assert cache.used == 2 * one_embedding and cache.hits == 1 and cache.misses == 3


def test_cache_keys_separate_intensity_mappings_and_content(random_tiny_model):
    array = np.zeros((2, 8, 8), dtype=np.float32)
    volume = Volume(array, Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)))
    predictor = Predictor(random_tiny_model)
    lung = VolumeSession(volume, predictor, fit_mapping(array, "ct-lung"))
    bone = VolumeSession(volume, predictor, fit_mapping(array, "ct-bone"))
    assert lung.cache_key("K", 0) != bone.cache_key("K", 0)
    thick = VolumeSession(Volume(array, Geometry((1.0, 1.0, 3.0), (0.0, 0.0, 0.0), volume.geometry.direction)),
                          predictor, lung.mapping)
    assert thick.cache_key("K", 0) != lung.cache_key("K", 0)  # same voxels, other spacing: other embeddings
    assert VolumeSession(Volume(array.copy(), volume.geometry), predictor, lung.mapping).volume_id == lung.volume_id
    with pytest.raises(ValueError, match="outside the volume"):
        lung.segment("K", 5, box=[0, 0, 4, 4])


def test_resampled_slices_stay_in_the_models_range():
    """Bilinear resampling of values up to 255 rounds to 255.00002 on some of lung2's coronal slices: the model
    image is clipped, so the predictor never refuses the user's slice."""
    from sammed2d.model_images import model_image

    volume = read_volume(require(DATA / "pyradiomics" / "lung2_image.nrrd"))
    image = model_image(volume, fit_mapping(volume.array, "ct-lung"), "J", 368)
    assert image.shape[0] > volume.slice("J", 368).shape[0]  # resampled to square pixels
    assert image.min() >= 0.0 and image.max() == 255.0
