"""Fast inference for the image encoder: lower precision, channels-last, fused attention, compilation.

Only the image encoder changes; it does all but a fraction of a percent of the arithmetic. The prompt
encoder and the mask decoder stay fp32 and the encoder's output is handed on as float32, so caches,
the wire format and the decoder are the same on every path. ``exact`` keeps the reference arithmetic
(fp32, eager, segment-anything's attention) for parity and for training.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Literal

import torch
from torch import nn

from .fused_attention import fuse_attention
from ..errors import InputError

logger = logging.getLogger(__name__)

Precision = Literal["exact", "fp32", "bf16", "fp16"]
PRECISION_CHOICES = ("auto", "exact", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Acceleration:
    """How the encoder runs; recorded with results so a figure can be traced to its arithmetic."""

    precision: Precision = "exact"
    channels_last: bool = False
    fused_attention: bool = False
    compiled: bool = False

    @property
    def exact(self) -> bool:
        return self.precision == "exact"

    @property
    def dtype(self) -> torch.dtype:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision, torch.float32)

    def describe(self) -> str:
        if self.exact:
            return "exact fp32 (reference arithmetic)"
        parts = [self.precision]
        parts += [name for name, on in (("channels-last", self.channels_last),
                                        ("fused attention", self.fused_attention), ("compiled", self.compiled)) if on]
        return ", ".join(parts)


EXACT = Acceleration()


def has_native_bf16(device: torch.device) -> bool:
    """bf16 pays only where the hardware multiplies it natively (AVX-512 BF16 / AMX, or Ampere and newer)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def can_compile(device: torch.device) -> bool:
    """torch.compile needs a C++ compiler for CPU kernels and Triton for CUDA ones."""
    if device.type == "cpu":
        return shutil.which(os.environ.get("CXX", "g++")) is not None or shutil.which("clang++") is not None
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return False
        return True
    return False


def choose_acceleration(
    device: torch.device, precision: str = "auto", compile: bool = False, low_precision_ok: bool = True
) -> Acceleration:
    """The fastest correct path for ``device``; ``precision`` and ``compile`` override the choice.

    ``auto`` takes bf16 where the hardware has it, fp16 on older GPUs, fp32 otherwise, and fp32 for
    models whose masks do not survive lower precision (``low_precision_ok``). Compilation costs
    20–90 s once, so it is the caller's choice (the server warms up with it; one-shot commands don't).
    """
    if precision not in PRECISION_CHOICES:
        raise InputError(f"precision {precision!r}: choose one of {', '.join(PRECISION_CHOICES)}")
    if precision == "exact":
        if compile:
            raise InputError("the exact path is the eager reference arithmetic; it is never compiled")
        return EXACT
    if precision == "auto":
        if not low_precision_ok:
            precision = "fp32"
        else:
            precision = "bf16" if has_native_bf16(device) else "fp16" if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise InputError("fp16 runs on CUDA only; on a CPU use bf16 (if it has AVX-512 BF16 or AMX) or fp32")
    if precision == "bf16" and not has_native_bf16(device):
        logger.warning("bf16 requested on %s without native bf16 support: it will be emulated and slow", device)
    if compile and not can_compile(device):
        raise InputError(f"torch.compile is not available on {device}: it needs "
                         f"{'a C++ compiler (g++ or clang++)' if device.type == 'cpu' else 'Triton'}")
    return Acceleration(precision, channels_last=True, fused_attention=True, compiled=compile)  # type: ignore[arg-type]


def encoder_weights_dtype(acceleration: Acceleration, device: torch.device) -> torch.dtype:
    """CPU: weights in the compute dtype (no per-call casts, half the memory); CUDA: fp32 weights under autocast."""
    return acceleration.dtype if device.type == "cpu" else torch.float32


class EncoderRunner:
    """Calls the image encoder on the chosen path; takes and returns float32 tensors."""

    def __init__(self, encoder: nn.Module, acceleration: Acceleration, device: torch.device) -> None:
        self.acceleration = acceleration
        self.device = device
        #: slices per encoder call: a GPU wants a batch, a CPU is as fast one at a time (measured); a compiled
        #: graph has a single batch size and a click must not pay for a padded batch, so it is 1 there too
        self.batch_size = 8 if device.type == "cuda" and not acceleration.compiled else 1
        self._encoder: Callable[[torch.Tensor], torch.Tensor] = encoder
        self._weights_dtype = encoder_weights_dtype(acceleration, device)
        self._autocast_dtype = acceleration.dtype if device.type == "cuda" and not acceleration.exact else None
        if acceleration.exact:
            return
        if acceleration.fused_attention:
            fuse_attention(encoder)
        encoder.to(self._weights_dtype)
        if acceleration.channels_last:
            encoder.to(memory_format=torch.channels_last)
        if acceleration.compiled:
            self._encoder = torch.compile(encoder, dynamic=False)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` (B, 3, S, S) normalised as the network's preprocessing does."""
        if self.acceleration.exact:
            return self._encoder(images)
        if not self.acceleration.compiled:
            return self._run(images)
        # a compiled graph has one batch size: run chunks of it, the last one padded, instead of recompiling
        outputs = []
        for chunk in images.split(self.batch_size):
            padding = self.batch_size - len(chunk)
            padded = torch.cat([chunk, chunk.new_zeros(padding, *chunk.shape[1:])]) if padding else chunk
            outputs.append(self._run(padded)[: len(chunk)])
        return torch.cat(outputs)

    def _run(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self._weights_dtype)
        if self.acceleration.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        context = torch.autocast(self.device.type, self._autocast_dtype) if self._autocast_dtype else nullcontext()
        with context, _compile_settings(self.acceleration.compiled):
            features = self._encoder(images)
        return features.float().contiguous()

    def warm_up(self, image_size: int) -> float:
        """Run once on a blank input so the first user's slice does not pay for compilation and kernel set-up."""
        started = time.perf_counter()
        self(torch.zeros(self.batch_size, 3, image_size, image_size, device=self.device))
        seconds = time.perf_counter() - started
        logger.info("encoder warmed up on %s (%s) in %.1f s", self.device, self.acceleration.describe(), seconds)
        return seconds


def configure_threads(threads: int | None = None) -> int:
    """Use as many intra-op threads as CPUs this process may really use (affinity and cgroup quota).

    PyTorch counts the machine's cores; in a container limited to 2 of 64 that oversubscribes badly.
    """
    if threads is None:
        threads = _usable_cpus()
    if threads < 1:
        raise InputError(f"threads must be at least 1; got {threads}")
    torch.set_num_threads(threads)
    return threads


def _usable_cpus() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text(encoding="utf-8").split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit readable: affinity is all we know
    return cpus


def _compile_settings(compiled: bool) -> ContextManager[object]:
    """Inductor's settings for our graph, in force only while it runs (compilation happens on the first call).

    Freezing folds the inference-only weights into the graph and pre-packs them for oneDNN (set in inductor's
    config, as compile(options=...) left SAM-Med2D 20 % slower here, 242 vs 204 ms); the frozen graph holds its
    own weights, so the module's copies are dropped (~0.5 GB for SAM-Med2D). Patched, not assigned, so other
    compiled code in the same process (Slicer, a user's script) keeps inductor's defaults.
    """
    if not compiled:
        return nullcontext()
    from torch._inductor import config as inductor

    return inductor.patch(freezing=True, freezing_discard_parameters=True)
