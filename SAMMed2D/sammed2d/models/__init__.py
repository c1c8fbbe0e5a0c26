"""The model registry and the networks behind it."""

from .architecture import VIT_B, VIT_EXAMPLE, VIT_H, VIT_L, ViTConfig
from .registry import DEFAULT_MODEL, MODELS, LoadedModel, ModelSpec, get_spec, load_model

__all__ = ["DEFAULT_MODEL", "MODELS", "VIT_B", "VIT_EXAMPLE", "VIT_H", "VIT_L", "LoadedModel", "ModelSpec", "ViTConfig",
           "get_spec", "load_model"]
