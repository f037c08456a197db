"""Generate the test images of a trained checkpoint, one PNG per pair (the authors' ``test.py``).

Output naming follows the authors' code: ``<from>_<to>.png`` (e.g.
``0007_c2s3_070952_01.jpg_0007_c3s3_077419_03.jpg.png``); with ``strips=True`` each file is their
horizontal strip [source | target | generated]
instead of the generated image alone. The generator runs in eval mode (dropout off, the authors'
``--use_dropout_test 0``). Every file is written atomically, and pairs whose file already exists are
skipped, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from deformgan.checkpoint import load_checkpoint
from deformgan.conditioning import conditioning_for
from deformgan.config import Config, config_from_dict
from deformgan.data import PairDataset
from deformgan.errors import InputError
from deformgan.images import to_uint8, write_image
from deformgan.models import Generator, build_generator
from deformgan.runtime import resolve_device


def load_generator(
    checkpoint: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[Generator, Config]:
    """The generator of a checkpoint (a ``ckpt-*`` folder or a run folder -> its latest), in eval mode."""
    loaded = load_checkpoint(checkpoint, weights_only=True)
    config = config_from_dict(loaded.config)
    generator = build_generator(config)
    try:
        generator.load_state_dict(loaded.generator)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise InputError(f"{loaded.path}: generator weights do not match its config ({first})") from None
    return generator.to(resolve_device(device)).eval(), config


def output_name(source_name: str, target_name: str) -> str:
    """The reference's output file name of a pair: ``<from>_<to>.png``."""
    return f"{source_name}_{target_name}.png"


@torch.no_grad()
def generate_batch(generator: Generator, config: Config, batch: dict, device: torch.device) -> torch.Tensor:
    """Generated targets (B, 3, H, W) in [-1, 1] for a collated PairDataset batch (poses on ``device``)."""
    cond = conditioning_for(config, batch["source_kp"].to(device), batch["target_kp"].to(device))
    return generator(batch["source_image"].to(device), cond)


def generate(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike | None,
    pairs: str | os.PathLike | Sequence[tuple[str, str]] | None,
    out: str | os.PathLike,
    batch_size: int = 16,
    strips: bool = False,
    device: str = "auto",
    progress: bool = True,
) -> Path:
    """Generate one PNG per (source, target) pair into ``out``; return ``out``.

    checkpoint: ``ckpt-*`` folder or run folder. data: dataset root in the reference layout (None = the
    data path stored in the checkpoint). pairs: pairs CSV or list of names (None = the test pairs CSV).
    strips: write [source | target | generated] strips (reference ``test.py`` output) instead of the
    generated image alone. Pairs whose output file already exists are skipped.
    """
    if batch_size < 1:
        raise InputError(f"batch_size: expected >= 1, got {batch_size}")
    torch_device = resolve_device(device)
    generator, config = load_generator(checkpoint, torch_device)
    if data is None:
        data = load_checkpoint(checkpoint, weights_only=True).data_dir
        if data is None:
            raise InputError(f"{checkpoint}: no data path stored in the checkpoint; pass the dataset folder")
    dataset = PairDataset(
        data, split="test", preset=config.data.preset, pairs=pairs, prefix=config.data.prefix
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [
        i
        for i, (source, target) in enumerate(dataset.pairs)
        if not (out / output_name(source, target)).exists()
    ]
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, todo), batch_size=batch_size, shuffle=False
    )
    bar = tqdm(total=len(todo), desc="generate", unit="img", disable=not progress)
    for batch in loader:
        generated = to_uint8(generate_batch(generator, config, batch, torch_device))
        if strips:
            sources = to_uint8(batch["source_image"])
            targets = to_uint8(batch["target_image"])
            generated = np.concatenate([sources, targets, generated], axis=2)  # along W
        for pixels, source, target in zip(generated, batch["source_name"], batch["target_name"], strict=True):
            write_image(pixels, out / output_name(source, target))
        bar.update(len(generated))
    bar.close()
    return out
