"""Training sees what inference sees: a volume's training sample is the session's model image, masks on its grid."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from conftest import DATA, require
from sammed2d.intensity import fit_mapping
from sammed2d.paper_prompts import EIGHT_CONNECTED
from sammed2d.predictor import Predictor
from sammed2d.session import VolumeSession
from sammed2d.training.datasets import VolumeFiles, VolumeSliceDataset
from sammed2d.volumes import read_volume

PYRADIOMICS = DATA / "pyradiomics"


@pytest.mark.parametrize("axis", ["I", "J"])
def test_anisotropic_training_samples_are_the_inference_model_images(litemedsam, axis):
    """brain1 is 0.78 × 0.78 × 6.5 mm: its I and J slices are 25 rows of 6.5 mm, 208 square-pixel rows to a model."""
    case = VolumeFiles(require(PYRADIOMICS / "brain1_image.nrrd"), PYRADIOMICS / "brain1_label.nrrd")
    dataset = VolumeSliceDataset([case], axes=(axis,), preset="minmax", min_mask_pixels=100)
    volume = read_volume(case.image)
    session = VolumeSession(volume, Predictor(litemedsam), fit_mapping(volume.array, "minmax"))
    labels = read_volume(case.labels).array > 0
    resampling = session.resampling(axis)
    assert (resampling.rows, resampling.model_rows) == (25, 208)
    # on the 25-row slices (short side under half the long one) the paper's filter kept nothing; on 208 rows it keeps
    assert len(dataset) >= 10
    for index in range(len(dataset)):
        item, entry = dataset[index], dataset.entries[index]
        model_image = session.model_image(axis, entry.index)
        np.testing.assert_array_equal(item.image, model_image)
        assert item.image.shape == (208, 256) and item.image.dtype == np.float32
        label_slice = labels[:, :, entry.index] if axis == "I" else labels[:, entry.index, :]
        for mask in item.masks:
            assert mask.shape == item.image.shape and mask.any()
            # back on the slice's own pixels the mask is one whole lesion component, exactly as labelled
            on_slice = resampling.mask_to_slice(mask)
            components, _ = ndimage.label(label_slice, structure=EIGHT_CONNECTED)
            assert np.unique(components[on_slice]).size == 1
            np.testing.assert_array_equal(on_slice, components == components[on_slice][0])
