"""Data-parallel training under ``torchrun``: who am I, which device, who writes.

``torchrun --nproc-per-node N -m mobanet train ...`` sets RANK, WORLD_SIZE
and LOCAL_RANK; every process then trains on its own share of the windows
(the sampler is seeded per rank) and DDP averages gradients. Only rank 0
validates, logs and writes files; the others wait for it at a barrier (with a
timeout long enough for a large validation). gloo is used on CPU, nccl on
CUDA. A one-process torchrun runs the same DDP path, so it can be checked on
one GPU. Without those variables this is a no-op single-process context.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from mobanet.raster.predict import resolve_device as raster_device

# Ranks other than 0 wait in a collective while rank 0 validates and writes checkpoints; nccl's default
# (10 minutes) is shorter than validating a large scene set with ViT-L.
COLLECTIVE_TIMEOUT = timedelta(hours=2)


def resolve_device(option: str, local_rank: int = 0) -> torch.device:
    """The device of this process: as `segment` resolves it, with "auto"/"cuda" meaning this rank's GPU."""
    device = raster_device(option)
    if device.type == "cuda" and (option.strip().lower() in ("auto", "cuda")):
        device = torch.device(f"cuda:{local_rank}")
    return device


@dataclass
class DistributedContext:
    """This process's place in the job: rank 0 of 1 unless started by torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # "nccl" or "gloo" under torchrun, None in a plain process

    @property
    def enabled(self) -> bool:
        """Started by torchrun (even as its only process): DDP and collectives are on."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that validates, logs and writes files."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (a small picklable object in memory) on every rank."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.enabled:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def mean(self, value: float) -> float:
        """The mean of a float over all ranks (for logging the training loss)."""
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor) / self.world_size

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def setup_distributed(device_option: str = "auto") -> DistributedContext:
    """Join the torchrun process group when the environment names one; pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_option, local_rank)
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:  # not started by torchrun
        return DistributedContext(device=device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, timeout=COLLECTIVE_TIMEOUT)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device,
                              backend=backend)
