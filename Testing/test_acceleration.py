"""The fast encoder paths give the answers of the exact path: fixture logits, real masks, the fused attention.

Speed is measured in benchmarks/fast_inference.py, not here.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
from PIL import Image
from segment_anything.modeling.image_encoder import Block

from conftest import DEMO, REFERENCE, demo_masks, read_demo_slice, replay_reference_cases, require
from sammed2d.masks import bounding_box
from sammed2d.metrics import dice
from sammed2d.models import ViTConfig, load_model
from sammed2d.models.acceleration import EXACT, choose_acceleration, configure_threads, has_native_bf16
from sammed2d.models.fused_attention import FusedRelPosAttention, fuse_attention
from sammed2d.predictor import Predictor

CPU = torch.device("cpu")
#: the tolerances the README states for the fixture model: fp32 fast path and bf16, relative to max |logit|
FP32_LOGIT_TOLERANCE = 1e-5
BF16_LOGIT_TOLERANCE = 0.03
SCORE_TOLERANCE = 1e-4


@pytest.mark.parametrize("window_size", [0, 14])
def test_fused_attention_equals_segment_anything_blocks(window_size):
    """Global and windowed blocks on a 16×16 grid (windows padded to 28×28, as SAM-Med2D at 256)."""
    torch.manual_seed(0)
    size = window_size or 16
    reference = Block(dim=64, num_heads=4, use_rel_pos=True, window_size=window_size, input_size=(16, 16)).eval()
    with torch.no_grad():  # zero-initialised position tables would leave the bias untested
        reference.attn.rel_pos_h.normal_()
        reference.attn.rel_pos_w.normal_()
    assert reference.attn.rel_pos_h.shape[0] == 2 * size - 1
    fused = copy.deepcopy(reference)
    fuse_attention(fused)
    assert isinstance(fused.attn, FusedRelPosAttention) and fused.window_size == 0
    assert set(fused.state_dict()) == set(reference.state_dict())
    tokens = torch.randn(2, 16, 16, 64)
    with torch.no_grad():
        np.testing.assert_allclose(fused(tokens).numpy(), reference(tokens).numpy(), rtol=0, atol=1e-5)


def test_choice_follows_device_model_and_override():
    bf16 = has_native_bf16(CPU)
    assert choose_acceleration(CPU).precision == ("bf16" if bf16 else "fp32")
    assert choose_acceleration(CPU, low_precision_ok=False).precision == "fp32"
    assert choose_acceleration(CPU, "exact") == EXACT and EXACT.exact
    fast = choose_acceleration(CPU, "fp32")
    assert fast.channels_last and fast.fused_attention and not fast.compiled and not fast.exact
    with pytest.raises(ValueError, match="fp16 runs on CUDA only"):
        choose_acceleration(CPU, "fp16")
    with pytest.raises(ValueError, match="never compiled"):
        choose_acceleration(CPU, "exact", compile=True)
    with pytest.raises(ValueError, match="choose one of"):
        choose_acceleration(CPU, "int8")


def test_registry_applies_the_choice(litemedsam, random_tiny_model):
    assert litemedsam.acceleration.precision == "fp32"  # LiteMedSAM does not survive bf16 (see the benchmark)
    expected = "bf16" if has_native_bf16(CPU) else "fp32"
    assert random_tiny_model.acceleration.precision == expected
    encoder_dtypes = {parameter.dtype for parameter in random_tiny_model.network.image_encoder.parameters()}
    decoder_dtypes = {parameter.dtype for parameter in random_tiny_model.network.mask_decoder.parameters()}
    assert encoder_dtypes == {random_tiny_model.acceleration.dtype} and decoder_dtypes == {torch.float32}
    assert litemedsam.identity != load_model("litemedsam", device="cpu", precision="exact").identity


def test_threads_follow_the_request_and_reject_nonsense():
    before = torch.get_num_threads()
    try:
        assert configure_threads(1) == 1 and torch.get_num_threads() == 1
        assert 1 <= configure_threads() <= (os.cpu_count() or 1)
        with pytest.raises(ValueError, match="at least 1"):
            configure_threads(0)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("precision, tolerance", [("fp32", FP32_LOGIT_TOLERANCE), ("bf16", BF16_LOGIT_TOLERANCE)])
def test_fixture_model_logits_within_the_stated_tolerance(tiny_vit, precision, tolerance):
    if precision == "bf16" and not has_native_bf16(CPU):
        pytest.skip("this CPU has no native bf16")
    outputs = np.load(require(REFERENCE / "tiny_outputs.npz"))
    model = load_model("sam-med2d", REFERENCE / "tiny_sammed2d.pth", vit=tiny_vit, device="cpu", precision=precision)
    results, _ = replay_reference_cases(Predictor(model))
    assert results
    for key, result in results.items():
        expected = outputs[f"{key}/low_res_logits"]
        assert np.abs(result.low_res_logits - expected).max() <= tolerance * np.abs(expected).max(), key
        np.testing.assert_allclose(result.scores, outputs[f"{key}/iou"], rtol=0, atol=SCORE_TOLERANCE)


def test_litemedsam_fast_path_masks_agree_with_exact_on_real_slices(litemedsam):
    """Every demo mask (real CT and MR), prompted by its box and by box + an inside point."""
    exact = Predictor(load_model("litemedsam", device="cpu", precision="exact"))
    fast = Predictor(litemedsam)
    by_image: dict[str, list[str]] = {}
    for mask_name, image_name in demo_masks().items():
        by_image.setdefault(image_name, []).append(mask_name)
    scores = []
    for image_name, mask_names in by_image.items():
        pixels = read_demo_slice(image_name)
        embeddings = {exact: exact.encode(pixels), fast: fast.encode(pixels)}
        truths = [np.asarray(Image.open(DEMO / "masks" / name)) > 0 for name in mask_names]
        boxes = np.array([bounding_box(truth) for truth in truths], dtype=float)
        pair = [p.predict(embeddings[p], box=boxes).masks for p in (exact, fast)]
        scores += [dice(a, b) for a, b in zip(*pair)]
        for truth, box in zip(truths, boxes):
            rows, columns = np.nonzero(truth)
            inside = [[float(columns[len(columns) // 2]), float(rows[len(rows) // 2])]]
            pair = [p.predict(embeddings[p], points=inside, point_labels=[1], box=box).masks[0] for p in (exact, fast)]
            scores.append(dice(*pair))
    assert len(scores) == 2 * len(demo_masks())
    assert min(scores) >= 0.99 and np.mean(scores) >= 0.995, sorted(scores)[:5]


def test_a_batch_of_slices_equals_one_at_a_time():
    torch.manual_seed(0)
    predictor = Predictor(load_model("sam-med2d", vit=ViTConfig(96, 4, 4, (1, 3)), random_weights=True, device="cpu",
                                     precision="exact"))
    rng = np.random.default_rng(0)
    images = [rng.uniform(0, 255, size) for size in [(64, 80), (96, 96), (50, 120)]]
    for image, embedding in zip(images, predictor.encode_batch(images)):
        single = predictor.encode(image)
        assert embedding.original_size == single.original_size and embedding.resized_size == single.resized_size
        torch.testing.assert_close(embedding.features, single.features, rtol=0, atol=1e-5)
    assert predictor.encode_batch([]) == []


def test_compiled_encoder_serves_every_batch_size_with_its_one_graph():
    """Compiled for batches of 2: three slices run as 2 + (1 padded), one slice as (1 padded); no recompiles."""
    def tiny(**speed):
        torch.manual_seed(0)
        return load_model("sam-med2d", vit=ViTConfig(96, 4, 4, (1, 3)), random_weights=True, device="cpu", **speed)

    compiled, eager = tiny(precision="fp32", compile=True), tiny(precision="exact")
    compiled.encoder.batch_size = 2
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    inputs = torch.randn(3, 3, 256, 256)
    for batch in (inputs, inputs[:1]):
        expected = eager.encoder(batch)
        torch.testing.assert_close(compiled.encoder(batch), expected, rtol=0, atol=1e-4 * float(expected.abs().max()))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def test_compiling_leaves_inductor_settings_of_the_process_alone():
    """Freezing is in force while our graph compiles and runs, never for other compiled code in the process."""
    from torch._inductor import config as inductor

    before = (inductor.freezing, inductor.freezing_discard_parameters)
    torch.manual_seed(0)
    model = load_model("sam-med2d", vit=ViTConfig(96, 4, 4, (1, 3)), random_weights=True, device="cpu",
                       precision="fp32", compile=True)
    model.encoder(torch.randn(1, 3, 256, 256))
    assert (inductor.freezing, inductor.freezing_discard_parameters) == before == (False, False)
