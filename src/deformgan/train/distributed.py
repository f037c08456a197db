"""This process's place in a ``torchrun`` job; no-ops for a single process.

``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK; the models are wrapped in DistributedDataParallel (nccl
on CUDA, gloo on CPU), each rank draws its own batches, gradients are averaged, and only rank 0 writes logs,
samples and checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from deformgan.errors import InputError
from deformgan.runtime import resolve_device


@dataclass(frozen=True)
class Distributed:
    """This process's place in a ``torchrun`` job (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise InputError(f"environment variable {name}: expected an integer, got {value!r}") from None


def setup_distributed(device: torch.device) -> tuple[Distributed, bool]:
    """Read RANK / WORLD_SIZE / LOCAL_RANK; join the process group when WORLD_SIZE > 1.

    Returns (context, whether this call initialised the group and must destroy it).
    """
    context = Distributed(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))
    if not context.enabled or (dist.is_available() and dist.is_initialized()):
        return context, False
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return context, True


def training_device(name: str, context: Distributed) -> torch.device:
    """The config's device; on CUDA with several ranks, the rank's local GPU."""
    device = resolve_device(name)
    if device.type == "cuda" and context.enabled and device.index is None:
        device = torch.device("cuda", context.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def all_agree(flag: bool, context: Distributed) -> bool:
    """True when rank 0's flag is True (broadcast so that every rank leaves the loop together)."""
    if not context.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        value = value.cuda()
    dist.broadcast(value, src=0)
    return bool(value.item())
