"""Our SAM-Med2D reproduces the golden outputs of the public reference code, case by case.

Everything is read from the fixture folder (config, cases, outputs, checkpoints); nothing is hard-coded.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import REFERENCE, reference_cases, reference_output_key, replay_reference_cases, require
from sammed2d.checkpoints import convert_sam_state_dict, load_state_dict_file
from sammed2d.models import VIT_B, load_model
from sammed2d.models.architecture import build_sam_vit
from sammed2d.predictor import Predictor

LOGIT_TOLERANCE = 1e-4


def _case_id(case: dict) -> str:
    suffix = (case["kind"] if case["kind"].startswith("iter")
              else f"{case['prompt_index']}-{case['kind']}-mm{int(case['multimask_output'])}")
    return f"{case['image']}-{suffix}"


@pytest.fixture(scope="module")
def outputs():
    return np.load(require(REFERENCE / "tiny_outputs.npz"))


@pytest.fixture(scope="module")
def replay(tiny_reference_model, outputs):
    predictor = Predictor(tiny_reference_model)
    results, embeddings = replay_reference_cases(predictor)
    return predictor, results, embeddings


def test_fixture_has_cases():
    assert len(reference_cases()) > 0 or not REFERENCE.exists()


@pytest.mark.parametrize("image", sorted({case["image"] for case in reference_cases()}))
def test_image_embedding_matches(replay, outputs, image):
    _, _, embeddings = replay
    ours = embeddings[image].features.numpy()
    expected = outputs[f"{image}/features"]
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).max() <= LOGIT_TOLERANCE


@pytest.mark.parametrize("case", reference_cases(), ids=_case_id)
def test_prediction_matches(replay, outputs, case):
    predictor, results, _ = replay
    key = reference_output_key(case)
    ours = results[key]
    expected_logits = outputs[f"{key}/low_res_logits"]
    assert ours.low_res_logits.shape == expected_logits.shape
    assert np.abs(ours.low_res_logits - expected_logits).max() <= LOGIT_TOLERANCE
    np.testing.assert_allclose(ours.scores, outputs[f"{key}/iou"], rtol=0, atol=1e-6)
    # masks: identical except where the full-resolution logit is within float noise of the threshold
    expected_masks = outputs[f"{key}/masks"].astype(bool)
    assert ours.masks.shape == expected_masks.shape
    full = predictor.model.spec.transform.logits_to_original(
        torch.from_numpy(ours.low_res_logits)[:, None], (256, 256), tuple(case["image_size"])
    )[:, 0].numpy()
    disagree = ours.masks != expected_masks
    assert np.all(np.abs(full[disagree]) < 1e-5)


def test_full_vit_b_has_reference_keys_and_shapes():
    expected = json.loads(require(REFERENCE / "vitb_sammed2d_keys.json").read_text(encoding="utf-8"))
    ours = {key: list(value.shape) for key, value in build_sam_vit(VIT_B, 256, adapters=True).state_dict().items()}
    assert ours == {key: list(shape) for key, shape in expected.items()}


def test_sam_to_256_conversion_matches_reference_load_from(tiny_vit):
    expected = load_state_dict_file(require(REFERENCE / "tiny_sam1024_converted_posrel.pth"))
    skipped = set(json.loads((REFERENCE / "tiny_conversion_reinit_keys.json").read_text(encoding="utf-8")))
    plain = load_state_dict_file(REFERENCE / "tiny_sam1024_plain.pth")
    converted = load_model("sam-med2d", REFERENCE / "tiny_sam1024_plain.pth", vit=tiny_vit, init_from_sam=True,
                           precision="exact")
    state = converted.network.state_dict()
    for key, tensor in expected.items():
        assert state[key].shape == tensor.shape, key
        assert torch.allclose(state[key], tensor, atol=1e-6), key
    for key in skipped:  # the decoder heads keep their fresh init, not SAM's values
        assert key in state and not torch.equal(state[key], plain[key]), key
    copied = [key for key in plain if key in state and key not in skipped and key not in expected]
    assert copied and all(torch.equal(state[key], plain[key]) for key in copied)


def test_conversion_skips_exactly_the_reference_reinit_keys(tiny_vit):
    expected = json.loads(require(REFERENCE / "tiny_conversion_reinit_keys.json").read_text(encoding="utf-8"))
    plain = load_state_dict_file(REFERENCE / "tiny_sam1024_plain.pth")
    _, skipped = convert_sam_state_dict(plain, build_sam_vit(tiny_vit, 256, adapters=True))
    assert skipped == sorted(expected)
