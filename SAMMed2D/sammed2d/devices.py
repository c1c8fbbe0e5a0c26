"""Device choice: CUDA when present, CPU otherwise, overridable by the caller."""

from __future__ import annotations

import torch

from .errors import InputError


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available on this machine; use 'cpu'")
    return resolved
