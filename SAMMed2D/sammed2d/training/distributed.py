"""Running under ``torchrun``: one process per device, gloo on CPU, nccl on CUDA.

Without torchrun's environment (WORLD_SIZE unset or 1) everything here is a no-op, so the same
trainer code runs in a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..devices import resolve_device


@dataclass(frozen=True)
class Processes:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Only this process writes checkpoints, logs and the progress bar."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def start(device: str | None) -> Processes:
    """Join the process group torchrun describes; each process takes the GPU of its local rank."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    resolved = resolve_device(device)
    if world_size == 1:
        return Processes(0, 1, resolved)
    if resolved.type == "cuda":
        resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(resolved)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size(), resolved)


def stop(processes: Processes) -> None:
    if processes.distributed and dist.is_initialized():
        dist.destroy_process_group()


def sum_over_processes(values: list[float], processes: Processes) -> list[float]:
    """Element-wise sum of ``values`` over all processes (identity in a single process)."""
    if not processes.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=processes.device)
    dist.all_reduce(tensor)
    return tensor.tolist()
