"""Sample grids written during training: a fixed batch of pairs rendered by the current generator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from deformgan.conditioning import conditioning_for
from deformgan.config import Config
from deformgan.data import PairDataset
from deformgan.errors import InputError
from deformgan.images import to_uint8, write_image
from deformgan.keypoints import draw_skeleton

SAMPLES_DIR = "samples"
NUM_SAMPLES = 8


def sample_grid(batch: dict[str, Any], generated: torch.Tensor) -> np.ndarray:
    """uint8 (N*H, 4*W, 3): one row per pair, [source | target skeleton | target | generated]."""
    sources = to_uint8(batch["source_image"])
    targets = to_uint8(batch["target_image"])
    fakes = to_uint8(generated)
    height, width = sources.shape[1:3]
    skeletons = np.stack([draw_skeleton(kp.cpu().numpy(), (height, width)) for kp in batch["target_kp"]])
    rows = np.concatenate([sources, skeletons, targets, fakes], axis=2)  # (N, H, 4W, 3)
    return rows.reshape(-1, 4 * width, 3)


def sample_batch(data_path: Path, config: Config, train_set: PairDataset) -> dict:
    """A fixed batch for sample grids: pairs spread over the test split when it has pairs, else train."""
    try:
        dataset = PairDataset(data_path, split="test", preset=config.data.preset, prefix=config.data.prefix)
    except InputError:
        dataset = train_set
    if len(dataset) == 0:
        dataset = train_set
    count = min(NUM_SAMPLES, len(dataset))
    step = max(len(dataset) // count, 1)  # spread over the split (consecutive pairs share a person)
    items = [dataset[i * step] for i in range(count)]
    return torch.utils.data.default_collate(items)


@torch.no_grad()
def write_samples(
    generator: torch.nn.Module, batch: dict, config: Config, device: torch.device, run_dir: Path, step: int
) -> np.ndarray:
    """Render ``batch`` with the generator in eval mode (dropout off, as at test time), write
    ``run_dir/samples/step-<step>.png``, return the grid."""
    was_training = generator.training
    generator.eval()
    cond = conditioning_for(config, batch["source_kp"].to(device), batch["target_kp"].to(device))
    generated = generator(batch["source_image"].to(device), cond)
    generator.train(was_training)
    grid = sample_grid(batch, generated)
    write_image(grid, run_dir / SAMPLES_DIR / f"step-{step:08d}.png")
    return grid
