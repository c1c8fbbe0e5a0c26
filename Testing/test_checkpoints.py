"""Checkpoint loading: tensors only, strict keys, clear errors for anything else."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import REFERENCE, require
from sammed2d.checkpoints import CheckpointError, load_state_dict_file, read_checkpoint, save_checkpoint
from sammed2d.models import MODELS, load_model


class _RunsCodeWhenUnpickled:
    """A payload like a malicious checkpoint would carry: unpickling it calls os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_reference_checkpoint_loads_without_running_its_pickled_optimizer(tiny_vit):
    path = require(REFERENCE / "tiny_sammed2d.pth")
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # what plain safe loading says about the released format
    content = read_checkpoint(path)
    assert set(content) == {"model", "optimizer"}
    assert not isinstance(content["optimizer"], torch.optim.Optimizer)  # never rebuilt as a real object
    state = load_state_dict_file(path)
    assert sum(".Adapter." in key for key in state) == 6 * tiny_vit.depth  # norm ×2, channel ×2, spatial ×2


def test_malicious_object_in_checkpoint_is_never_executed(tmp_path, random_tiny_model):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": random_tiny_model.network.state_dict(), "optimizer": _RunsCodeWhenUnpickled(marker)}, path)
    state = load_state_dict_file(path)
    assert not marker.exists()
    assert set(state) == set(random_tiny_model.network.state_dict())


def test_state_dict_with_code_instead_of_tensors_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil_state.pth"
    torch.save({"image_encoder.pos_embed": _RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(CheckpointError, match="not tensors"):
        load_state_dict_file(path)
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights", encoding="utf-8")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_model("sam-med2d", path)


def test_truncated_checkpoint(tmp_path):
    source = require(REFERENCE / "tiny_sammed2d.pth")
    path = tmp_path / "truncated.pth"
    path.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated|not a PyTorch checkpoint"):
        load_state_dict_file(path)


def test_damaged_member_inside_archive(tmp_path):
    source = require(REFERENCE / "tiny_sam1024_converted_posrel.pth")
    path = tmp_path / "damaged.pth"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w") as damaged:
        for item in original.infolist():
            data = original.read(item)
            damaged.writestr(item, data[: len(data) // 3] if item.filename.endswith("data.pkl") else data)
    with pytest.raises(CheckpointError):
        load_state_dict_file(path)


def test_missing_file():
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model("sam-med2d", "/nonexistent/sam-med2d_b.pth")


def test_checkpoint_of_another_model_names_keys_and_family(tiny_vit):
    litemedsam_weights = MODELS["litemedsam"].embedded_weights()
    with pytest.raises(CheckpointError) as caught:
        load_model("sam-med2d", litemedsam_weights, vit=tiny_vit)
    message = str(caught.value)
    assert "missing keys" in message and "image_encoder.blocks.0.Adapter.norm.weight" in message
    assert "unexpected keys" in message and "LiteMedSAM" in message


def test_checkpoint_for_another_encoder_size_reports_shapes(tiny_vit):
    from sammed2d.models import ViTConfig

    other = ViTConfig(tiny_vit.embed_dim, tiny_vit.depth, tiny_vit.num_heads, (1, 4))  # other global blocks
    with pytest.raises(CheckpointError, match="another shape.*rel_pos"):
        load_model("sam-med2d", require(REFERENCE / "tiny_sammed2d.pth"), vit=other)


def test_plain_sam_weights_into_sammed2d_need_explicit_conversion(tiny_vit):
    with pytest.raises(CheckpointError, match="original SAM .* at 1024"):
        load_model("sam-med2d", require(REFERENCE / "tiny_sam1024_plain.pth"), vit=tiny_vit)


def test_adapter_less_mode_drops_adapters_and_keeps_the_rest(tiny_vit, tiny_reference_model):
    without = load_model("sam-med2d-no-adapter", REFERENCE / "tiny_sammed2d.pth", vit=tiny_vit, precision="exact")
    assert not any(".Adapter." in key for key in without.network.state_dict())
    full = tiny_reference_model.network.state_dict()
    for key, value in without.network.state_dict().items():
        assert torch.equal(value, full[key]), key


def test_saved_checkpoint_uses_reference_layout_and_loads_weights_only(tmp_path, tiny_vit, tiny_reference_model):
    path = save_checkpoint(tiny_reference_model.network, tmp_path / "ours.pth", epoch=3)
    content = torch.load(path, weights_only=True)  # loadable by anyone, including the reference code
    assert content["epoch"] == 3
    assert list(content["model"]) == list(tiny_reference_model.network.state_dict())
    reloaded = load_model("sam-med2d", path, vit=tiny_vit, precision="exact")
    assert reloaded.checkpoint_sha256 and reloaded.checkpoint_sha256 != tiny_reference_model.checkpoint_sha256
    for key, value in reloaded.network.state_dict().items():
        assert torch.equal(value, tiny_reference_model.network.state_dict()[key])
    assert not list(tmp_path.glob("*.partial"))
