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

import contextlib
import os
import tempfile
from collections.abc import Iterator
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
    """Load a state dict without executing code: safetensors, or a torch file with ``weights_only=True``.

    A file that is not a plain state dict of tensors (random bytes, a pickle with code, a truncated
    download) is one :class:`InputError` line naming it.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling, zip and safetensors errors have no common base class
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
        raise InputError(f"{path}: not a readable weights file ({reason})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return state


def _default_hub_dir() -> str:
    """torch.hub's folder when nobody called ``torch.hub.set_dir``: ``$TORCH_HOME/hub`` (or the XDG cache)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch"
    )
    return os.path.join(os.path.expanduser(torch_home), "hub")


@contextlib.contextmanager
def hub_checkpoints_holding(files: dict[str, Path]) -> Iterator[Path]:
    """Temporarily point torch.hub at a private folder whose ``checkpoints/`` holds ``files``
    ({file name: path}, linked), for libraries that load torchvision weights through torch.hub.

    Where torch.hub follows ``$TORCH_HOME``, that variable is switched for the duration; where the
    program chose a folder with ``torch.hub.set_dir``, that folder is switched and then restored. Either
    way the library finds exactly the given files and never downloads anything that is not among them.
    """
    explicit = torch.hub.get_dir() != _default_hub_dir()
    previous_dir, previous_home = torch.hub.get_dir(), os.environ.get("TORCH_HOME")
    with tempfile.TemporaryDirectory(prefix="deformgan-hub-") as home:
        checkpoints = Path(home) / "hub" / "checkpoints"
        checkpoints.mkdir(parents=True)
        for name, path in files.items():
            (checkpoints / name).symlink_to(Path(path).resolve())
        if explicit:
            torch.hub.set_dir(str(Path(home) / "hub"))
        else:
            os.environ["TORCH_HOME"] = home
        try:
            yield checkpoints
        finally:
            if explicit:
                torch.hub.set_dir(previous_dir)
            elif previous_home is None:
                os.environ.pop("TORCH_HOME", None)
            else:
                os.environ["TORCH_HOME"] = previous_home
