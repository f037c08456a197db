"""Training Re-ID networks (IDE or the Discriminative Embedding) on T or T + extra image folders.

``train_reid(data, out, extra=[...], config=ReIDTrainConfig(...))`` trains on the training split of a
Market-1501 or deformgan-synthetic root (:mod:`deformgan.reid.data`) plus any extra folders (e.g. generated
people: the augmented set A = T + generated of the Deformable GANs supplementary material, §4). The label
space is the union of the positive identities of all training images; Market junk (-1) and distractor (0)
training boxes, if any, are left out and counted.

The run folder ``out`` receives ``model.safetensors`` (the network's state dict) and ``state.json``
(configuration, identity list, how the backbone was initialised, the training set, loss history),
both written atomically, every ``checkpoint_every`` iterations and at the end.

Everything random (batch order, flips, dropout, DE pairs) is seeded from ``config.seed``; on the same
device and thread count, the same seed gives the same weights.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from deformgan.atomic import atomic_write_bytes, atomic_write_text
from deformgan.errors import InputError
from deformgan.reid.data import (
    ReIDImage,
    ReIDImageDataset,
    eval_transform,
    identity_labels,
    load_reid_dataset,
    read_extra_folder,
    train_transform,
)
from deformgan.reid.embedding import PairSampler, SiameseReIDNet, discriminative_embedding_loss
from deformgan.reid.models import BACKBONES, IDENet, build_backbone
from deformgan.runtime import resolve_device

OBJECTIVES = ("ide", "de")
STATE_FORMAT = "deformgan.reid"
STATE_VERSION = 1
MODEL_FILE, STATE_FILE = "model.safetensors", "state.json"


@dataclass
class ReIDTrainConfig:
    """Training hyper-parameters (defaults: IDE / DE on Market-1501 with an ImageNet ResNet-50).

    objective: "ide" (identity classifier) or "de" (siamese identification + verification).
    backbone: "resnet50" or "small" (the CPU CNN; ``feature_dim`` sets its descriptor size).
    input_size: (H, W) pixels every image is resized to. iterations: optimiser steps of ``batch_size``
    images (DE: ``batch_size`` pairs). lr: learning rate of the new layers (and of a backbone trained from
    scratch); a pretrained backbone gets ``lr * backbone_lr_mult``. The learning rate is multiplied by
    0.1 at each fraction of ``iterations`` in ``lr_steps``. dropout: before the classifiers (None: 0.5
    for IDE, 0.9 for DE as in the DE authors' code). positive_fraction, identification_weight,
    verification_weight: DE only (:mod:`deformgan.reid.embedding`). cache_images: keep the decoded
    training images in memory (:class:`deformgan.reid.data.ReIDImageDataset`; no effect on the result).
    """

    objective: str = "ide"
    backbone: str = "resnet50"
    input_size: tuple[int, int] = (256, 128)
    feature_dim: int = 128
    iterations: int = 20_000
    batch_size: int = 32
    lr: float = 0.01
    backbone_lr_mult: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_steps: tuple[float, ...] = (0.75,)
    dropout: float | None = None
    flip: bool = True
    positive_fraction: float = 0.2
    identification_weight: float = 0.5
    verification_weight: float = 1.0
    seed: int = 0
    workers: int = 0
    log_every: int = 50
    checkpoint_every: int = 0
    random_init: bool = False
    query_seed: int = 0
    cache_images: bool = False

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise InputError(f"objective: expected one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.backbone not in BACKBONES:
            raise InputError(f"backbone: expected one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        size = tuple(int(v) for v in self.input_size)
        if len(size) != 2 or min(size) < 16:
            raise InputError(f"input_size: expected (H, W) of at least 16 pixels, got {self.input_size!r}")
        self.input_size = size
        self.lr_steps = tuple(float(v) for v in self.lr_steps)
        for name in ("iterations", "batch_size", "feature_dim", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name}: expected a positive integer, got {value!r}")
        if self.batch_size < 2:
            raise InputError(f"batch_size: expected at least 2 (BatchNorm), got {self.batch_size}")
        if not self.lr > 0:
            raise InputError(f"lr: expected a positive number, got {self.lr!r}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise InputError(f"dropout: expected a number in [0, 1), got {self.dropout!r}")

    @property
    def resolved_dropout(self) -> float:
        if self.dropout is not None:
            return float(self.dropout)
        return 0.9 if self.objective == "de" else 0.5

    def to_dict(self) -> dict:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["input_size"] = list(values["input_size"])
        values["lr_steps"] = list(values["lr_steps"])
        values["dropout"] = self.resolved_dropout
        return values

    @classmethod
    def from_dict(cls, values: dict) -> ReIDTrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"reid config: unknown keys {', '.join(unknown)}")
        values = dict(values)
        if "input_size" in values:
            values["input_size"] = tuple(values["input_size"])
        if "lr_steps" in values:
            values["lr_steps"] = tuple(values["lr_steps"])
        return cls(**values)


def build_model(
    config: ReIDTrainConfig,
    num_classes: int,
    weights: str | os.PathLike | None = None,
    pretrained: bool = True,
) -> tuple[torch.nn.Module, dict]:
    """The network for ``config`` -> (IDENet or SiameseReIDNet, backbone init record)."""
    backbone, init = build_backbone(
        config.backbone,
        weights=weights,
        random_init=config.random_init,
        feature_dim=config.feature_dim,
        pretrained=pretrained,
    )
    net_class = SiameseReIDNet if config.objective == "de" else IDENet
    return net_class(backbone, num_classes, dropout=config.resolved_dropout), init


class _BatchStream(torch.utils.data.Sampler):
    """``iterations`` batches of indices drawn epoch by epoch from seeded permutations (no short batch)."""

    def __init__(self, size: int, batch_size: int, iterations: int, seed: int, pairs: PairSampler | None):
        self.size, self.batch_size, self.iterations = size, batch_size, iterations
        self.generator = torch.Generator().manual_seed(seed)
        self.pairs = pairs

    def __len__(self) -> int:
        return self.iterations

    def __iter__(self) -> Iterator[list]:
        pool: list[int] = []
        for _ in range(self.iterations):
            while len(pool) < self.batch_size:
                pool.extend(torch.randperm(self.size, generator=self.generator).tolist())
            batch, pool = pool[: self.batch_size], pool[self.batch_size :]
            if self.pairs is None:
                yield batch
            else:
                yield list(zip(batch, self.pairs.partners(batch), strict=True))


class _PairView(torch.utils.data.Dataset):
    """Item (i, j) of a :class:`ReIDImageDataset` pair: both images and both labels."""

    def __init__(self, dataset: ReIDImageDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, pair: tuple[int, int]) -> dict:
        first, second = self.dataset[pair[0]], self.dataset[pair[1]]
        return {
            "image": first["image"],
            "label": first["label"],
            "image2": second["image"],
            "label2": second["label"],
        }


def collect_training_images(
    data: str | os.PathLike, extra: Sequence[str | os.PathLike] = (), query_seed: int = 0
) -> tuple[list[ReIDImage], dict]:
    """Training images of ``data`` plus every extra folder -> (images, description for the state file)."""
    splits = load_reid_dataset(data, query_seed=query_seed)
    real = [im for im in splits.train if im.identity > 0]
    excluded = {
        "junk": sum(im.identity == -1 for im in splits.train),
        "distractor": sum(im.identity == 0 for im in splits.train),
    }
    real_ids = set(identity_labels(real))
    images = list(real)
    extras = []
    for folder in extra:
        folder_images = read_extra_folder(folder)
        ids = set(identity_labels(folder_images))
        extras.append(
            {
                "folder": str(Path(folder).resolve()),
                "images": len(folder_images),
                "identities": len(ids),
                "identities_not_in_train": len(ids - real_ids),
                "labelled_by": "manifest" if (Path(folder) / "manifest.csv").is_file() else "names",
            }
        )
        images.extend(folder_images)
    description = {
        "data": str(Path(data).resolve()),
        "layout": splits.layout,
        "train_images": len(real),
        "train_identities": len(real_ids),
        "excluded_train_boxes": excluded,
        "extra": extras,
        "column": "A" if extras else "T",
        "images": len(images),
    }
    return images, description


def save_checkpoint(out: Path, model: torch.nn.Module, state: dict) -> None:
    """Write ``out/model.safetensors`` and ``out/state.json`` atomically (weights first)."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(out / MODEL_FILE, save(tensors), fsync=True)
    atomic_write_text(out / STATE_FILE, json.dumps(state, indent=1) + "\n", fsync=True)


def load_state(run: str | os.PathLike) -> dict:
    """``run/state.json`` of a training run (InputError when absent or not a deformgan Re-ID state)."""
    path = Path(run) / STATE_FILE
    if not path.is_file():
        raise InputError(f"{run}: not a Re-ID run folder (missing {STATE_FILE})")
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
    if state.get("format") != STATE_FORMAT:
        raise InputError(f"{path}: not a deformgan Re-ID state (format {state.get('format')!r})")
    return state


def load_model(run: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild a trained network from its run folder -> (model in eval mode on ``device``, state)."""
    from safetensors.torch import load_file

    state = load_state(run)
    config = ReIDTrainConfig.from_dict({**state["config"], "random_init": False})
    model, _ = build_model(config, len(state["identities"]), pretrained=False)
    weights = Path(run) / MODEL_FILE
    if not weights.is_file():
        raise InputError(f"{run}: missing {MODEL_FILE}")
    try:
        model.load_state_dict(load_file(str(weights)), strict=True)
    except RuntimeError as error:
        raise InputError(
            f"{weights}: does not match {state['config']['backbone']} ({str(error).splitlines()[0]})"
        ) from None
    return model.to(resolve_device(device)).eval(), state


def _learning_rate_factor(config: ReIDTrainConfig, iteration: int) -> float:
    steps = sum(iteration >= round(f * config.iterations) for f in config.lr_steps)
    return 0.1**steps


def train_reid(
    data: str | os.PathLike,
    out: str | os.PathLike,
    extra: Sequence[str | os.PathLike] = (),
    config: ReIDTrainConfig | None = None,
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> Path:
    """Train a Re-ID network on ``data``'s training split (+ ``extra`` folders); returns the run folder.

    data: a Market-1501 or deformgan-synthetic root. extra: folders of extra labelled images (manifest or
    Market names). weights: ResNet-50 ImageNet weights file or folder (default: the standard places;
    never downloaded). Raises InputError / MissingWeightsError before any training on bad input.
    """
    config = config or ReIDTrainConfig()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output path exists and is not a folder")
    images, training_set = collect_training_images(data, extra, query_seed=config.query_seed)
    identities = identity_labels(images)
    if len(identities) < 2:
        raise InputError(
            f"{data}: expected training images of at least two identities, got {len(identities)}"
        )
    device = resolve_device(device)
    torch.manual_seed(config.seed)
    model, init = build_model(config, len(identities), weights=weights)
    model.to(device).train()

    dataset = ReIDImageDataset(
        images, train_transform(config.input_size, flip=config.flip), identities, cache=config.cache_images
    )
    labels = [dataset.label(i) for i in range(len(dataset))]
    pairs = (
        PairSampler(labels, config.positive_fraction, seed=config.seed) if config.objective == "de" else None
    )
    stream = _BatchStream(len(dataset), config.batch_size, config.iterations, config.seed, pairs)
    loader = torch.utils.data.DataLoader(
        _PairView(dataset) if pairs is not None else dataset,
        batch_sampler=stream,
        num_workers=config.workers,
        generator=torch.Generator().manual_seed(config.seed),
        pin_memory=device.type == "cuda",
    )

    pretrained = init["init"] == "imagenet"
    new = {id(p) for p in model.new_parameters()}
    backbone_params = [p for p in model.parameters() if id(p) not in new]
    base_lrs = [config.lr * (config.backbone_lr_mult if pretrained else 1.0), config.lr]
    optimizer = torch.optim.SGD(
        [
            {"params": backbone_params, "lr": base_lrs[0]},
            {"params": model.new_parameters(), "lr": base_lrs[1]},
        ],
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    state = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "objective": config.objective,
        "config": config.to_dict(),
        "identities": identities,
        "init": init,
        "training_set": training_set,
        "device": str(device),
        "torch": torch.__version__,
        "iteration": 0,
        "history": [],
    }
    out.mkdir(parents=True, exist_ok=True)

    from tqdm.auto import tqdm

    start = time.perf_counter()
    running: dict[str, list[float]] = {}
    bar = tqdm(total=config.iterations, desc=f"reid {config.objective}", unit="it", disable=not progress)
    for iteration, batch in enumerate(loader, start=1):
        factor = _learning_rate_factor(config, iteration - 1)
        for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base * factor
        x = batch["image"].to(device, non_blocking=True)
        y = torch.as_tensor(batch["label"]).to(device)
        if pairs is None:
            _, logits = model(x)
            loss = F.cross_entropy(logits, y)
            parts = {"accuracy": float((logits.argmax(1) == y).float().mean())}
        else:
            x2 = batch["image2"].to(device, non_blocking=True)
            y2 = torch.as_tensor(batch["label2"]).to(device)
            outputs = model(x, x2)
            loss, parts = discriminative_embedding_loss(
                outputs, y, y2, config.identification_weight, config.verification_weight
            )
        if not torch.isfinite(loss):
            raise RuntimeError(
                f"reid training diverged at iteration {iteration} (loss {float(loss)}); lower lr"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for key, value in {"loss": float(loss.detach()), **parts}.items():
            running.setdefault(key, []).append(value)
        bar.update(1)
        if iteration % config.log_every == 0 or iteration == config.iterations:
            record = {"iteration": iteration, **{k: float(np.mean(v)) for k, v in running.items()}}
            state["history"].append(record)
            bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['accuracy']:.2f}")
            running = {}
        if (
            config.checkpoint_every
            and iteration % config.checkpoint_every == 0
            and iteration < config.iterations
        ):
            state.update(iteration=iteration, seconds=time.perf_counter() - start)
            save_checkpoint(out, model, state)
    bar.close()
    state.update(iteration=config.iterations, seconds=time.perf_counter() - start)
    save_checkpoint(out, model, state)
    return out


@torch.no_grad()
def extract_features(
    model: torch.nn.Module,
    images: Sequence[ReIDImage],
    input_size: tuple[int, int],
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    workers: int = 0,
    progress: bool = False,
    desc: str = "features",
) -> np.ndarray:
    """Descriptors of ``images`` with ``model.embed`` (eval mode, no flip) -> float32 (N, D)."""
    from tqdm.auto import tqdm

    device = resolve_device(device)
    was_training = model.training
    model.eval()
    dataset = ReIDImageDataset(images, eval_transform(input_size), identities=[])
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    chunks = []
    for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress):
        chunks.append(model.embed(batch["image"].to(device)).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(chunks).astype(np.float32)


__all__ = [
    "ReIDTrainConfig",
    "build_model",
    "collect_training_images",
    "extract_features",
    "load_model",
    "load_state",
    "save_checkpoint",
    "train_reid",
]
