"""Loading and saving weights without ever running pickled code from a user's file.

The released ``sam-med2d_b.pth`` is ``{"model": state_dict, "optimizer": <pickled torch.optim.Adam>}``,
which ``torch.load(weights_only=True)`` refuses. We unpickle with an allow-list that rebuilds tensors
and plain containers only; any other object (the optimizer) becomes an inert placeholder, so its
code is never imported or called.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import types
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError

logger = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]

#: decoder parts the reference ``load_from`` deliberately leaves at their fresh init when converting SAM
SAM_CONVERSION_SKIPPED = ("mask_tokens", "output_hypernetworks_mlps", "iou_prediction_head")

_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): __import__("collections").OrderedDict,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "set"): set,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
}


class CheckpointError(InputError):
    """A file that cannot be used as weights for the requested model; the message says why."""


class _Inert:
    """Stands in for any non-tensor object in a checkpoint (e.g. a pickled optimizer); does nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Iterable[Any]) -> None:
        pass


class _TensorsOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is not None:
            return allowed
        logger.debug("checkpoint object %s.%s replaced by an inert placeholder", module, name)
        return _Inert


#: passed to ``torch.load`` as its pickle module: torch keeps its own storage handling, we own ``find_class``
_tensors_only_pickle = types.SimpleNamespace(
    Unpickler=_TensorsOnlyUnpickler, load=pickle.load, __name__="sammed2d_tensors_only"
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checkpoint(path: str | Path) -> Any:
    """Read a ``.pth`` file, keeping tensors and plain containers only."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (expected a torch.save zip archive; "
            "the file may be truncated, or another format)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_tensors_only_pickle, mmap=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, KeyError, OSError) as error:
        raise CheckpointError(f"{path} could not be read as a checkpoint (truncated or damaged?): {error}") from error


def extract_state_dict(content: Any, source: str | Path) -> StateDict:
    """Unwrap ``{"model": ...}`` (reference trainer format) or take a plain state dict."""
    state = content.get("model", content) if isinstance(content, Mapping) else content
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"{source} holds no state dict (neither a 'model' entry nor tensors at the top level)")
    not_tensors = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{source} is not a state dict: entries {not_tensors[:5]} are not tensors")
    return dict(state)


def load_state_dict_file(path: str | Path) -> StateDict:
    return extract_state_dict(read_checkpoint(path), path)


@dataclass
class KeyReport:
    """How a state dict differs from a model's, by key name."""

    missing: list[str]
    unexpected: list[str]
    wrong_shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shape)

    def describe(self, limit: int = 8) -> str:
        parts = []
        for title, items in (("missing", self.missing), ("unexpected", self.unexpected)):
            if items:
                shown = ", ".join(items[:limit]) + (f", … ({len(items) - limit} more)" if len(items) > limit else "")
                parts.append(f"{len(items)} {title} keys: {shown}")
        if self.wrong_shape:
            shown = ", ".join(f"{k} (file {tuple(a)} vs model {tuple(b)})" for k, a, b in self.wrong_shape[:limit])
            parts.append(f"{len(self.wrong_shape)} keys with another shape: {shown}")
        return "; ".join(parts)


def compare_keys(model_state: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> KeyReport:
    return KeyReport(
        missing=sorted(set(model_state) - set(state)),
        unexpected=sorted(set(state) - set(model_state)),
        wrong_shape=sorted(
            (key, tuple(state[key].shape), tuple(model_state[key].shape))
            for key in set(state) & set(model_state)
            if state[key].shape != model_state[key].shape
        ),
    )


def guess_checkpoint_kind(state: Mapping[str, torch.Tensor]) -> str | None:
    """Name the model family a state dict looks like, to make mismatch errors actionable."""
    if any(key.startswith("image_encoder.layers.") for key in state):
        return "LiteMedSAM (TinyViT encoder): use model 'litemedsam'"
    pos_embed = state.get("image_encoder.pos_embed")
    if pos_embed is None:
        return None
    grid, width = pos_embed.shape[1], pos_embed.shape[-1]
    size = {768: "vit-b", 1024: "vit-l", 1280: "vit-h"}.get(width, f"ViT width {width}")
    has_adapters = any(".Adapter." in key for key in state)
    if grid == 64 and not has_adapters:
        return f"original SAM {size} at 1024: use model 'sam-{size}', or convert it with init_from_sam for fine-tuning"
    if has_adapters:
        return f"SAM-Med2D ({size}, image size {grid * 16}, adapters): use model 'sam-med2d'"
    return f"SAM-style {size} at image size {grid * 16} without adapters"


def apply_state_dict(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str | Path, ignore_prefix_part: str | None = None
) -> None:
    """Load strictly; any missing, unexpected or reshaped key is an error naming the keys.

    ``ignore_prefix_part`` drops file keys containing that part first (the documented adapter-less mode).
    """
    if ignore_prefix_part is not None:
        state = {key: value for key, value in state.items() if ignore_prefix_part not in key}
    report = compare_keys(model.state_dict(), state)
    if not report.ok:
        kind = guess_checkpoint_kind(state)
        hint = f" The file looks like {kind}." if kind else ""
        raise CheckpointError(f"{source} does not fit this model: {report.describe()}.{hint}")
    model.load_state_dict(state, strict=True)


def convert_sam_state_dict(sam_state: Mapping[str, torch.Tensor], model: nn.Module) -> tuple[StateDict, list[str]]:
    """Original SAM weights → a smaller-input model, as the reference ``load_from`` does.

    Keeps every key the model has except the decoder output heads (left at their fresh init),
    bilinearly resizes ``pos_embed`` to the model's token grid and any ``rel_pos`` table whose
    length differs (global blocks). Returns the full state dict to load and the skipped keys.
    """
    target = model.state_dict()
    converted: StateDict = {}
    skipped = []
    for key, value in sam_state.items():
        if key not in target:
            continue
        if any(part in key for part in SAM_CONVERSION_SKIPPED):
            skipped.append(key)
            continue
        converted[key] = _resize_like(key, value, target[key])
    missing_from_sam = sorted(set(target) - set(converted) - set(skipped))
    if not all(".Adapter." in key for key in missing_from_sam):
        others = [key for key in missing_from_sam if ".Adapter." not in key]
        raise CheckpointError(f"SAM weights lack keys the model needs: {others[:8]}")
    merged = {**target, **converted}
    return merged, sorted(skipped)


def _resize_like(key: str, value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if value.shape == like.shape:
        return value
    if key.endswith("pos_embed"):
        grid = like.shape[1:3]
        resized = F.interpolate(value.permute(0, 3, 1, 2).float(), size=grid, mode="bilinear", align_corners=False)
        return resized.permute(0, 2, 3, 1)
    if "rel_pos" in key:
        return F.interpolate(
            value[None, None].float(), size=tuple(like.shape), mode="bilinear", align_corners=False
        )[0, 0]
    raise CheckpointError(f"cannot convert {key}: file shape {tuple(value.shape)}, model shape {tuple(like.shape)}")


def save_checkpoint(model: nn.Module, path: str | Path, **metadata: Any) -> Path:
    """Write ``{"model": state_dict, **metadata}``: the reference layout, loadable with ``weights_only=True``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial_path = path.with_name(path.name + ".partial")
    torch.save({"model": model.state_dict(), **metadata}, partial_path)
    partial_path.replace(path)  # atomic: a killed run never leaves a half-written checkpoint under the real name
    return path
