"""Generate the test images of a trained checkpoint, one PNG per pair (the authors' ``test.py``).

Output naming follows the authors' code: ``<from>_<to>.png`` (e.g.
``0007_c2s3_070952_01.jpg_0007_c3s3_077419_03.jpg.png``); with ``strips=True`` each file is their
horizontal strip [source | target | generated]
instead of the generated image alone. The generator runs in eval mode (dropout off, the authors'
``--use_dropout_test 0``). Every file is written atomically, and pairs whose file already exists are
skipped, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from deformgan.atomic import atomic_write_text
from deformgan.checkpoint import Checkpoint, load_checkpoint
from deformgan.conditioning import conditioning_for
from deformgan.config import Config, config_from_dict
from deformgan.data import PairDataset
from deformgan.errors import InputError
from deformgan.images import QUANTISATIONS, list_images, to_uint8, write_image
from deformgan.models import Generator, build_generator, load_weights
from deformgan.runtime import resolve_device

#: The record of which checkpoint and settings made an output folder.
MANIFEST_FILE = "generated.json"


def generator_from_checkpoint(
    loaded: Checkpoint, device: str | torch.device = "cpu"
) -> tuple[Generator, Config]:
    """The generator of a loaded checkpoint, on ``device``, in eval mode (dropout off), and its config."""
    config = config_from_dict(loaded.config)
    generator = build_generator(config)
    load_weights(generator, loaded.generator, f"{loaded.path}: generator")
    return generator.to(resolve_device(device)).eval(), config


def load_generator(
    checkpoint: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[Generator, Config]:
    """The generator of a checkpoint (a ``ckpt-*`` folder or a run folder -> its latest), in eval mode."""
    return generator_from_checkpoint(load_checkpoint(checkpoint, weights_only=True), device)


def output_name(source_name: str, target_name: str) -> str:
    """The reference's output file name of a pair: ``<from>_<to>.png``."""
    return f"{source_name}_{target_name}.png"


@torch.no_grad()
def generate_batch(generator: Generator, config: Config, batch: dict, device: torch.device) -> torch.Tensor:
    """Generated targets (B, 3, H, W) in [-1, 1] for a collated PairDataset batch (poses on ``device``)."""
    cond = conditioning_for(config, batch["source_kp"].to(device), batch["target_kp"].to(device))
    return generator(batch["source_image"].to(device), cond)


@dataclass(frozen=True)
class Generated:
    """What :func:`generate` did: the folder, how many images it wrote and how many were already there."""

    out: Path
    written: int
    skipped: int


def _manifest(loaded: Checkpoint, strips: bool, quantisation: str) -> dict:
    return {
        "checkpoint": str(loaded.path.resolve()),
        "step": loaded.step,
        "config": loaded.config.get("name"),
        "strips": strips,
        "quantisation": quantisation,
    }


def _claim_folder(out: Path, manifest: dict, overwrite: bool) -> None:
    """Refuse to mix images of different checkpoints (or strip/quantisation settings) in one folder."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file, expected an output folder")
    record = out / MANIFEST_FILE
    images = list_images(out) if out.is_dir() else []
    if record.is_file():
        try:
            previous = json.loads(record.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            previous = None
        if previous != manifest and not overwrite:
            made_by = (
                f"{previous.get('checkpoint')} (step {previous.get('step')})"
                if isinstance(previous, dict)
                else "?"
            )
            raise InputError(
                f"{out}: holds images made by {made_by} with other settings; use another folder, or "
                "--overwrite to replace them"
            )
    elif images and not overwrite:
        raise InputError(
            f"{out}: holds {len(images)} images of unknown origin (no {MANIFEST_FILE}); use another folder, "
            "or --overwrite to replace them"
        )
    if overwrite:
        for image in images:
            image.unlink()
    atomic_write_text(record, json.dumps(manifest, indent=1) + "\n")


def generate(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike | None,
    pairs: str | os.PathLike | Sequence[tuple[str, str]] | None,
    out: str | os.PathLike,
    batch_size: int = 16,
    strips: bool = False,
    device: str = "auto",
    progress: bool = True,
    quantisation: str = "round",
    overwrite: bool = False,
) -> Generated:
    """Generate one PNG per (source, target) pair into ``out``.

    checkpoint: ``ckpt-*`` folder or run folder. data: dataset root in the field's layout (None = the
    data path stored in the checkpoint). pairs: pairs CSV or list of names (None = the test pairs CSV).
    strips: write [source | target | generated] strips (the authors' ``test.py`` output) instead of the
    generated image alone. quantisation: "round" or the authors' "truncate" (see
    :func:`deformgan.images.to_uint8`).
    The folder records which checkpoint and settings made it (``generated.json``): images of one run are
    never mixed with another's; pairs whose image exists are skipped (an interrupted run resumes).
    """
    if batch_size < 1:
        raise InputError(f"batch_size: expected >= 1, got {batch_size}")
    if quantisation not in QUANTISATIONS:
        raise InputError(f"quantisation: expected one of {', '.join(QUANTISATIONS)}, got {quantisation!r}")
    torch_device = resolve_device(device)
    loaded = load_checkpoint(checkpoint, weights_only=True)
    generator, config = generator_from_checkpoint(loaded, torch_device)
    if data is None:
        data = loaded.data_dir
        if data is None:
            raise InputError(f"{checkpoint}: no data path stored in the checkpoint; pass the dataset folder")
    dataset = PairDataset(
        data, split="test", preset=config.data.preset, pairs=pairs, prefix=config.data.prefix
    )
    out = Path(out)
    _claim_folder(out, _manifest(loaded, strips, quantisation), overwrite)
    todo = [
        i
        for i, (source, target) in enumerate(dataset.pairs)
        if not (out / output_name(source, target)).exists()
    ]
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, todo), batch_size=batch_size, shuffle=False
    )
    with tqdm(total=len(todo), desc="generate", unit="img", disable=not progress) as bar:
        for batch in loader:
            generated = to_uint8(generate_batch(generator, config, batch, torch_device), quantisation)
            if strips:
                sources = to_uint8(batch["source_image"], quantisation)
                targets = to_uint8(batch["target_image"], quantisation)
                generated = np.concatenate([sources, targets, generated], axis=2)  # along W
            names = zip(generated, batch["source_name"], batch["target_name"], strict=True)
            for pixels, source, target in names:
                write_image(pixels, out / output_name(source, target))
            bar.update(len(generated))
    return Generated(out, written=len(todo), skipped=len(dataset.pairs) - len(todo))
