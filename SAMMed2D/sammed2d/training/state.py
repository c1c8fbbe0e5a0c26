"""The checkpoint files of a run: ``last.pth`` to resume from, ``best.pth`` to use.

Both are ``{"model": state_dict, ...}`` with the reference's key names (so ``load_model`` and the
reference code read them) and otherwise hold only tensors, numbers, strings and plain containers,
so ``torch.load(weights_only=True)`` reads them without running any pickled code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..checkpoints import CheckpointError, save_checkpoint
from ..models import ViTConfig

LAST = "last.pth"
BEST = "best.pth"


@dataclass
class Best:
    """The best epoch so far: by validation Dice when there is a validation set, else by training loss
    (the reference)."""

    metric: Literal["val_dice", "train_loss"]
    value: float = math.nan
    epoch: int = 0

    def improved_by(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if math.isnan(self.value):
            return True
        return value > self.value if self.metric == "val_dice" else value < self.value

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "epoch": self.epoch}


def describe_model(model: str, vit: ViTConfig | None) -> dict[str, Any]:
    """What ``load_model`` needs besides the file: the registry name and, for ViT models, their size."""
    return {"model_name": model, "vit": vit.to_dict() if vit is not None else None}


def save_best(network: nn.Module, out: Path, model: dict[str, Any], epoch: int, best: Best) -> Path:
    return save_checkpoint(network, out / BEST, **model, epoch=epoch, best=best.to_dict())


def save_last(network: nn.Module, out: Path, model: dict[str, Any], epoch: int, best: Best, **state: Any) -> Path:
    """The resumable state after ``epoch`` completed epochs (``state``: optimizer, scheduler, scaler, config …)."""
    return save_checkpoint(network, out / LAST, **model, epoch=epoch, best=best.to_dict(), **state)


def read_last(out: Path) -> dict[str, Any] | None:
    path = out / LAST
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for damaged files
        raise CheckpointError(f"{path} cannot be resumed from: {error}") from error
