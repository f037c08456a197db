"""Locating and loading pretrained weights (VGG-19, Inception, AlexNet, detectors) without ever guessing.

deformgan never downloads weights at run time and never substitutes random weights. A weights file is
looked up, in order, at:

1. an explicit path given by the user (a file, or a folder holding the file);
2. ``$DEFORMGAN_WEIGHTS/<file>`` when that variable is set;
3. ``torch.hub.get_dir()/checkpoints/<file>`` — where torchvision's own downloads land
   (``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``).

When none exists, :class:`MissingWeightsError` names the file, where it was looked for, and where it can be
downloaded from, so a user on an offline machine knows exactly what to copy where.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from deformgan.errors import InputError


class MissingWeightsError(InputError):
    """A pretrained weights file is not present; the message names the file and where to put it."""

    def __init__(self, filename: str, searched: list[Path], url: str | None = None):
        self.filename = filename
        self.searched = searched
        where = ", ".join(str(p) for p in searched)
        source = f" (download: {url})" if url else ""
        super().__init__(
            f"weights missing: {filename}{source}; put it in {hub_checkpoint_dir()} "
            f"or pass its path explicitly (looked in: {where})"
        )


def hub_checkpoint_dir() -> Path:
    """The folder torchvision downloads weights into: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_weights(filename: str, explicit: str | os.PathLike | None = None, url: str | None = None) -> Path:
    """Return the path of weights file ``filename`` or raise :class:`MissingWeightsError`.

    ``explicit`` may be the file itself (any name) or a folder containing ``filename``.
    """
    searched: list[Path] = []
    if explicit is not None:
        explicit = Path(explicit)
        candidate = explicit / filename if explicit.is_dir() else explicit
        if candidate.is_file():
            return candidate
        searched.append(candidate)
        # An explicit path that does not exist is an error of its own: never look elsewhere silently.
        raise MissingWeightsError(filename, searched, url)
    env = os.environ.get("DEFORMGAN_WEIGHTS")
    if env:
        searched.append(Path(env) / filename)
    searched.append(hub_checkpoint_dir() / filename)
    for candidate in searched:
        if candidate.is_file():
            return candidate
    raise MissingWeightsError(filename, searched, url)


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state dict without executing code: safetensors, or a torch file with ``weights_only=True``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise InputError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return state
