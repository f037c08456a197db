"""Where and how things run: the device, CPU threads, and the seeds derived from a run's seed."""

from __future__ import annotations

import numpy as np
import torch

from deformgan.errors import InputError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> ``cuda`` when available, else ``cpu``; anything else as given (checked)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(
            f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:<index>', got {device!r}"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device: {device!r} requested but CUDA is not available on this machine")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise InputError(
            f"device: {device!r} requested but this machine has {torch.cuda.device_count()} GPU(s)"
        )
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:<index>', got {device!r}")
    return resolved


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op CPU threads (None keeps torch's default)."""
    if threads is None:
        return
    if threads < 1:
        raise InputError(f"threads: expected >= 1, got {threads}")
    torch.set_num_threads(threads)


def seed_of(*values: int) -> int:
    """A 63-bit seed mixing integers (numpy SeedSequence: no correlation between nearby inputs)."""
    return int(np.random.SeedSequence([v & 0xFFFFFFFF for v in values]).generate_state(2, np.uint64)[0] >> 1)
