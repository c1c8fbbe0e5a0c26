"""Predictor behaviour that needs no real weights: prompt handling, shapes and clear errors."""

from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np
import pytest

from sammed2d.models import ViTConfig, load_model
from sammed2d.predictor import Prediction, Predictor

HEIGHT, WIDTH = 120, 160


@pytest.fixture()
def predict(random_tiny_model) -> Callable[..., Prediction]:
    """``Predictor.predict`` on one random slice."""
    predictor = Predictor(random_tiny_model)
    embedding = predictor.encode(np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8))
    return partial(predictor.predict, embedding)


def test_outputs_are_at_slice_resolution(predict):
    result = predict(points=[[40, 30], [100, 90]], point_labels=[1, 0], box=[10, 10, 150, 110])
    assert result.masks.shape == (1, HEIGHT, WIDTH) and result.masks.dtype == bool
    assert result.scores.shape == (1,)
    assert result.low_res_logits.shape == (1, 64, 64)


def test_several_boxes_give_one_mask_each_equal_to_single_calls(predict):
    boxes = [[10, 10, 80, 60], [70, 50, 150, 110], [0, 0, 160, 120]]
    together = predict(box=boxes, points=[[75, 55]], point_labels=[1])
    assert together.masks.shape == (3, HEIGHT, WIDTH)
    for index, box in enumerate(boxes):
        alone = predict(box=box, points=[[75, 55]], point_labels=[1])
        np.testing.assert_allclose(together.low_res_logits[index], alone.low_res_logits[0], atol=1e-5)
        np.testing.assert_allclose(together.scores[index], alone.scores[0], atol=1e-6)


def test_refinement_with_previous_logits_changes_the_result(predict):
    first = predict(points=[[80, 60]], point_labels=[1])
    refined = predict(points=[[80, 60], [20, 20]], point_labels=[1, 0], mask_logits=first.low_res_logits)
    assert not np.allclose(refined.low_res_logits, first.low_res_logits)
    mask_only = predict(mask_logits=first.low_res_logits[0])  # a mask alone is a valid prompt
    assert mask_only.masks.shape == (1, HEIGHT, WIDTH)


def test_grey_and_colour_inputs_of_any_numeric_dtype_agree(random_tiny_model):
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (50, 70)).astype(np.uint8)
    predictor = Predictor(random_tiny_model)
    grey_features = predictor.encode(grey).features
    for image in (np.repeat(grey[:, :, None], 3, axis=2), grey.astype(np.float64), grey.astype(np.int16)):
        assert np.allclose(predictor.encode(image).features, grey_features)


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ({}, "empty prompt"),
        ({"points": [[10, 10]]}, "together"),
        ({"points": [[10, 10]], "point_labels": [1, 0]}, r"shape \(1,\)"),
        ({"points": [10, 10], "point_labels": [1]}, r"shape \(N, 2\)"),
        ({"points": [[WIDTH + 5, 10]], "point_labels": [1]}, "outside the 160×120 slice"),
        ({"points": [[-1, 10]], "point_labels": [1]}, "outside"),
        ({"points": [[np.nan, 10]], "point_labels": [1]}, "NaN"),
        ({"points": [[10, 10]], "point_labels": [2]}, "1 \\(include\\) or 0"),
        ({"box": [10, 10, 5, 50]}, "x1 > x0"),
        ({"box": [10, 10, 50, HEIGHT + 1]}, "outside"),
        ({"box": [10, 10, 50]}, r"\(x0, y0, x1, y1\)"),
        ({"box": [[0, 0, np.inf, 10]]}, "infinite"),
        ({"box": "left half"}, "must be numbers"),
        ({"mask_logits": np.zeros((32, 32))}, r"\(64, 64\)"),
    ],
)
def test_bad_prompts_raise_clear_value_errors(predict, prompt, message):
    with pytest.raises(ValueError, match=message):
        predict(**prompt)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((10, 10, 4)), "H×W or H×W×3"),
        (np.zeros((5, 5, 5, 3)), "H×W or H×W×3"),
        (np.zeros((1, 30)), "too small"),
        (np.full((20, 20), np.nan), "NaN"),
        (np.full((20, 20), 1000.0), "0..255.*sammed2d.intensity"),
        (np.array([["a", "b"], ["c", "d"]]), "numeric"),
    ],
)
def test_bad_images_raise_clear_value_errors(random_tiny_model, image, message):
    with pytest.raises(ValueError, match=message):
        Predictor(random_tiny_model).encode(image)


def test_original_sam_family_runs_at_1024_with_longest_side_padding():
    tiny_sam = load_model("sam-vit-b", vit=ViTConfig(64, 2, 2, (1,)), random_weights=True, device="cpu")
    predictor = Predictor(tiny_sam)
    embedding = predictor.encode(np.random.default_rng(2).integers(0, 256, (300, 200)))
    assert embedding.resized_size == (1024, 683)
    result = predictor.predict(embedding, points=[[100, 150]], point_labels=[1])
    assert result.masks.shape == (1, 300, 200) and result.low_res_logits.shape == (1, 256, 256)


def test_unknown_model_and_missing_weights_are_explained():
    with pytest.raises(ValueError, match="unknown model 'sam-med3d'.*litemedsam"):
        load_model("sam-med3d")
    with pytest.raises(ValueError, match="no embedded weights: pass the checkpoint"):
        load_model("sam-med2d")
