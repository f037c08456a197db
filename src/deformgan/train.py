"""The training loop: one plain, step-based function (style anchor 9; reference doc §5.1, §6).

Per iteration (reference ``--training_ratio 1``): one discriminator update on a real batch and a fake batch
drawn from **different** pairs (the fake side is generated from its own batch), then one generator update
on a third batch: ``L_G = gan_weight * L_adv + weight * L_rec``. Adam 2e-4 (0.5, 0.999) for both, no
schedule. Maintenance (log, sample grid, checkpoint) happens every N iterations after the update.

Determinism: the pairs of every batch are a pure function of (seed, iteration, role, rank) (a seeded
permutation per pass over the pairs, like the reference's reshuffle at every pass) and the global torch
RNG (dropout) is re-seeded from (seed, iteration, rank) at the start of every iteration. A run stopped at
iteration k and resumed therefore ends bit-identical to an uninterrupted one, on any number of ranks,
without any sampler state in the checkpoint.

Distribution only at the edges (style anchor 11): ``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK, the
models are wrapped in DistributedDataParallel (nccl on CUDA, gloo on CPU), each rank draws its own batches,
and only rank 0 writes logs, samples and checkpoints.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from deformgan.atomic import atomic_write_text
from deformgan.checkpoint import (
    find_checkpoint,
    load_checkpoint,
    restore_checkpoint_rng,
    save_checkpoint,
)
from deformgan.conditioning import pose_conditioning
from deformgan.config import Config, config_from_dict, load_config, save_config
from deformgan.data import PairDataset, find_layout
from deformgan.errors import InputError
from deformgan.generate import images_to_uint8, resolve_device, save_png
from deformgan.keypoints import draw_skeleton
from deformgan.losses import ReconstructionLoss, d_loss, g_adversarial_loss
from deformgan.models import Discriminator, Generator

#: Batches consumed per iteration, in this order (reference doc §6: "2 batches consumed by D + 1 by G").
ROLES = ("d_real", "d_fake", "g")
LOG_FILE = "log.csv"
CONFIG_FILE = "config.yaml"
SAMPLES_DIR = "samples"
LOG_KEYS = ("loss/G/total", "loss/G/adv", "loss/G/rec", "loss/D/real", "loss/D/fake", "time/step")
NUM_SAMPLES = 8


# ----------------------------------------------------------------------------------------------
# Distribution (no-ops for a single process)


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


# ----------------------------------------------------------------------------------------------
# Deterministic batches


def _seed_of(*values: int) -> int:
    """A 63-bit seed mixing integers (numpy SeedSequence: no correlation between nearby inputs)."""
    return int(np.random.SeedSequence([v & 0xFFFFFFFF for v in values]).generate_state(2, np.uint64)[0] >> 1)


class PairBatchSampler(torch.utils.data.Sampler):
    """Index batches for iterations ``start_step .. end_step - 1``, in the order (D real, D fake, G).

    Batch ``counter = (step * 3 + role) * world_size + rank`` takes positions ``counter * B ...
    counter * B + B - 1`` of an endless stream made of one seeded random permutation of the pairs per pass
    (the reference reshuffles its pairs at every pass). Everything is a function of (seed, step): a resumed
    run continues the stream exactly, and ranks never draw the same batch.
    """

    def __init__(
        self,
        num_pairs: int,
        batch_size: int,
        seed: int,
        start_step: int,
        end_step: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        if num_pairs < 1:
            raise InputError("training data: no pairs to train on")
        self.num_pairs, self.batch_size, self.seed = num_pairs, batch_size, seed
        self.start_step, self.end_step = start_step, end_step
        self.rank, self.world_size = rank, world_size
        self._permutations: dict[int, torch.Tensor] = {}

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._permutations:
            if len(self._permutations) > 2:
                self._permutations.pop(min(self._permutations))
            generator = torch.Generator().manual_seed(_seed_of(self.seed, epoch, 0xDA7A))
            self._permutations[epoch] = torch.randperm(self.num_pairs, generator=generator)
        return self._permutations[epoch]

    def batch(self, step: int, role: int) -> list[int]:
        """The pair indices of batch ``role`` (0 D real, 1 D fake, 2 G) of iteration ``step``."""
        counter = (step * len(ROLES) + role) * self.world_size + self.rank
        positions = range(counter * self.batch_size, (counter + 1) * self.batch_size)
        return [int(self._permutation(p // self.num_pairs)[p % self.num_pairs]) for p in positions]

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.end_step):
            for role in range(len(ROLES)):
                yield self.batch(step, role)

    def __len__(self) -> int:
        return max(self.end_step - self.start_step, 0) * len(ROLES)


# ----------------------------------------------------------------------------------------------
# Logging sinks (rank 0 only)


class RunLog:
    """CSV (append; rows after the resumed step dropped) + TensorBoard, fed a ``{name: value}`` dict."""

    def __init__(self, run_dir: Path, start_step: int, tensorboard: bool = True):
        self.path = run_dir / LOG_FILE
        self._truncate_after(start_step)
        new = not self.path.is_file()
        self._file = self.path.open("a", newline="")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(["step", *LOG_KEYS])
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops TensorBoard events after the resumed step, as the CSV truncation does.
            self._tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step or None)

    def _truncate_after(self, step: int) -> None:
        if not self.path.is_file():
            return
        with self.path.open(newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
        if len(kept) == len(rows):
            return
        text = io.StringIO(newline="")
        csv.writer(text).writerows(kept)
        atomic_write_text(self.path, text.getvalue())

    def write(self, step: int, values: dict[str, float]) -> None:
        self._csv.writerow([step, *(f"{values[k]:.6g}" for k in LOG_KEYS)])
        self._file.flush()
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(key, value, step)

    def add_image(self, tag: str, pixels: np.ndarray, step: int) -> None:
        if self._tb is not None:
            self._tb.add_image(tag, pixels, step, dataformats="HWC")

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_log(run_dir: str | os.PathLike) -> dict[str, list[float]]:
    """The run's ``log.csv`` as columns: ``{"step": [...], "loss/G/adv": [...], ...}``."""
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        raise InputError(f"{path}: training log not found")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return {key: [float(r[key]) for r in rows] for key in (rows[0] if rows else {"step": 0})}


# ----------------------------------------------------------------------------------------------
# Sample grids


def sample_grid(batch: dict[str, Any], generated: torch.Tensor) -> np.ndarray:
    """uint8 (N*H, 4*W, 3): one row per pair, [source | target skeleton | target | generated]."""
    sources = images_to_uint8(batch["source_image"])
    targets = images_to_uint8(batch["target_image"])
    fakes = images_to_uint8(generated)
    height, width = sources.shape[1:3]
    skeletons = np.stack([draw_skeleton(kp.cpu().numpy(), (height, width)) for kp in batch["target_kp"]])
    rows = np.concatenate([sources, skeletons, targets, fakes], axis=2)  # (N, H, 4W, 3)
    return rows.reshape(-1, 4 * width, 3)


@torch.no_grad()
def _write_samples(
    generator: torch.nn.Module, batch: dict, config: Config, device, run_dir: Path, step: int, log
):
    was_training = generator.training
    generator.eval()  # dropout off, as at test time
    cond = pose_conditioning(
        batch["source_kp"].to(device),
        batch["target_kp"].to(device),
        config.model.image_size,
        config.model.warp_skip,
    )
    generated = generator(batch["source_image"].to(device), cond)
    generator.train(was_training)
    grid = sample_grid(batch, generated)
    save_png(grid, run_dir / SAMPLES_DIR / f"step-{step:08d}.png")
    log.add_image("samples", grid, step)


# ----------------------------------------------------------------------------------------------
# The loop


def _autocast(device: torch.device, amp: str):
    if device.type != "cuda" or amp == "off":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    moved = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if channels_last and value.dim() == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        moved[key] = value
    return moved


def _prepare(
    config: Config | str | os.PathLike | None,
    data_dir: str | os.PathLike | None,
    out_dir: str | os.PathLike | None,
    resume: str | os.PathLike | None,
):
    """Resolve (config, data path, run folder, checkpoint to resume or None) from the arguments."""
    checkpoint = None
    if resume is not None:
        checkpoint = load_checkpoint(find_checkpoint(resume))
        saved = config_from_dict(checkpoint.config)
        if config is not None:
            given = config if isinstance(config, Config) else load_config(config)
            # Only the iteration count may differ (it is the TOTAL the resumed run goes to).
            same_iterations = dataclasses.replace(given.train, iterations=saved.train.iterations)
            if dataclasses.replace(given, train=same_iterations) != saved:
                raise InputError(
                    f"resume: {resume} was trained with another config; resuming restores the saved config "
                    "(omit the config, or use iterations= to extend the run)"
                )
        config = saved
        data_dir = data_dir if data_dir is not None else checkpoint.data_dir
        out_dir = out_dir if out_dir is not None else Path(resume)
    elif config is None:
        raise InputError("train: pass a config (or resume= a run folder)")
    elif not isinstance(config, Config):
        config = load_config(config)
    if data_dir is None:
        data_dir = config.data.root
    if data_dir is None:
        raise InputError("train: no dataset folder (pass data_dir or set data.root in the config)")
    find_layout(data_dir, config.data.prefix)  # wrong data path -> InputError before anything is built
    if out_dir is None:
        raise InputError("train: pass out_dir (the run folder)")
    return config, Path(data_dir), Path(out_dir), checkpoint


def train(
    config: Config | str | os.PathLike | None,
    data_dir: str | os.PathLike | None,
    out_dir: str | os.PathLike | None,
    iterations: int | None = None,
    resume: str | os.PathLike | None = None,
    *,
    progress: bool = True,
    time_budget_s: float | None = None,
    tensorboard: bool = True,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
) -> Path:
    """Train a Deformable GAN; return the run folder (checkpoints, ``log.csv``, samples, config.yaml).

    config: a Config or a YAML path (ignored-equal when resuming). data_dir: dataset root in the reference
    layout (default: ``data.root``, or the path saved in the resumed checkpoint). out_dir: run folder
    (default with resume: the resumed folder). iterations: the TOTAL number of iterations (default
    ``train.iterations``); a resumed run continues to it. resume: a run folder or ``ckpt-*`` folder; the
    saved config, data path, weights, optimiser and RNG states are restored. time_budget_s: stop early
    (checkpointing) once the loop has run this long. on_log: called with (step, logged values) on rank 0.
    """
    config, data_path, run_dir, checkpoint = _prepare(config, data_dir, out_dir, resume)
    total = config.train.iterations if iterations is None else int(iterations)
    if total < 0:
        raise InputError(f"iterations: expected >= 0, got {total}")
    start_step = checkpoint.step if checkpoint is not None else 0
    if total < start_step:
        raise InputError(
            f"iterations: {total} is below the resumed checkpoint's step {start_step} (it counts the total)"
        )
    tc = config.train

    device = resolve_device(tc.device)
    context, owns_group = setup_distributed(device)
    device = training_device(tc.device, context)
    cuda = device.type == "cuda"
    channels_last = tc.channels_last and cuda
    if cuda:
        torch.backends.cudnn.benchmark = True

    torch.manual_seed(_seed_of(tc.seed, 0xB17D))  # initial weights: identical on every rank
    generator = Generator(**config.model.generator_kwargs()).to(device)
    discriminator = Discriminator(**config.model.discriminator_kwargs()).to(device)
    reconstruction = ReconstructionLoss(
        kind=config.loss.kind,
        features=config.loss.features,
        neighborhood=config.loss.neighborhood,
        vgg_weights=config.loss.vgg_weights,
    ).to(device)
    if channels_last:
        generator.to(memory_format=torch.channels_last)
        discriminator.to(memory_format=torch.channels_last)
    opt_g = torch.optim.Adam(generator.parameters(), lr=tc.lr, betas=tc.betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=tc.lr, betas=tc.betas)
    scalers = {
        name: torch.amp.GradScaler("cuda", enabled=cuda and tc.amp == "fp16")
        for name in ("generator", "discriminator")
    }
    if checkpoint is not None:
        generator.load_state_dict(checkpoint.generator)
        discriminator.load_state_dict(checkpoint.discriminator)
        opt_g.load_state_dict(checkpoint.optimizers["generator"])
        opt_d.load_state_dict(checkpoint.optimizers["discriminator"])
        for name, scaler in scalers.items():
            if scaler.is_enabled() and f"scaler/{name}" in checkpoint.extra:
                scaler.load_state_dict(checkpoint.extra[f"scaler/{name}"])
        restore_checkpoint_rng(checkpoint)

    g_model, d_model = generator, discriminator
    if context.enabled:
        device_ids = [device.index] if cuda else None
        g_model = DistributedDataParallel(generator, device_ids=device_ids)
        d_model = DistributedDataParallel(discriminator, device_ids=device_ids)

    dataset = PairDataset(data_path, split="train", preset=config.data.preset, prefix=config.data.prefix)
    sampler = PairBatchSampler(
        len(dataset), tc.batch_size, tc.seed, start_step, total, context.rank, context.world_size
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=config.data.num_workers,
        pin_memory=cuda,
        persistent_workers=False,
    )

    log = None
    sample_batch = None
    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / CONFIG_FILE)
        log = RunLog(run_dir, start_step, tensorboard=tensorboard)
        sample_batch = _sample_batch(data_path, config, dataset)
        if start_step == 0 and tc.sample_every > 0:
            _write_samples(generator, sample_batch, config, device, run_dir, 0, log)

    size = tuple(config.model.image_size)

    def conditioning(batch: dict, warp_skip: str):
        return pose_conditioning(batch["source_kp"], batch["target_kp"], size, warp_skip)

    def save(step: int) -> None:
        extra = {f"scaler/{n}": s.state_dict() for n, s in scalers.items() if s.is_enabled()}
        save_checkpoint(
            run_dir,
            step,
            generator=generator.state_dict(),
            discriminator=discriminator.state_dict(),
            optimizers={"generator": opt_g.state_dict(), "discriminator": opt_d.state_dict()},
            config=config.to_dict(),
            data_dir=data_path.resolve(),
            extra=extra,
            keep=tc.keep_checkpoints,
        )

    sums = {k: torch.zeros((), device=device) for k in LOG_KEYS if k != "time/step"}
    window_steps, window_time = 0, 0.0
    bar = tqdm(
        total=total,
        initial=start_step,
        desc=config.name,
        unit="it",
        disable=not (progress and context.is_main),
    )
    step = start_step
    last_saved = start_step if checkpoint is not None else -1
    loop_start = time.perf_counter()
    batches = iter(loader)
    generator.train()
    discriminator.train()
    try:
        while step < total:
            tick = time.perf_counter()
            # Dropout noise of this iteration: a pure function of (seed, step, rank), so resume is exact.
            torch.manual_seed(_seed_of(tc.seed, step, context.rank))
            real, fake_side, g_side = (_to_device(next(batches), device, channels_last) for _ in ROLES)

            # -- D step: real pairs vs generated pairs from a different batch (reference doc §5.1)
            for p in discriminator.parameters():
                p.requires_grad_(True)
            # The fake side needs no gradient: the bare generator (no DDP hooks) under no_grad.
            with torch.no_grad(), _autocast(device, tc.amp):
                fake_cond = conditioning(fake_side, config.model.warp_skip)
                fake = generator(fake_side["source_image"], fake_cond)
            real_cond = conditioning(real, "none")  # D needs heatmaps only
            with _autocast(device, tc.amp):
                logits = d_model(
                    torch.cat([real["source_image"], fake_side["source_image"]]),
                    torch.cat([real_cond.source_heatmaps, fake_cond.source_heatmaps]),
                    torch.cat([real["target_image"], fake]),
                    torch.cat([real_cond.target_heatmaps, fake_cond.target_heatmaps]),
                )
            # One D forward on real and fake concatenated along the batch, as the reference does (and
            # DDP needs: one forward per backward).
            real_logits, fake_logits = logits.float().split([real["source_image"].shape[0], fake.shape[0]])
            loss_d = d_loss(real_logits, fake_logits)
            opt_d.zero_grad(set_to_none=True)
            scalers["discriminator"].scale(loss_d).backward()
            scalers["discriminator"].step(opt_d)
            scalers["discriminator"].update()

            # -- G step on a third batch: gan_weight * L_adv + weight * L_rec (reference doc §5)
            # D is frozen here and only passes gradients to the image: call the bare module so that DDP
            # never waits for D gradients that this backward does not produce.
            for p in discriminator.parameters():
                p.requires_grad_(False)
            with _autocast(device, tc.amp):
                cond = conditioning(g_side, config.model.warp_skip)
                generated = g_model(g_side["source_image"], cond)
                fake_logits_g = discriminator(
                    g_side["source_image"], cond.source_heatmaps, generated, cond.target_heatmaps
                )
            loss_adv = g_adversarial_loss(fake_logits_g.float())
            loss_rec = reconstruction(generated.float(), g_side["target_image"])
            loss_g = config.loss.gan_weight * loss_adv + config.loss.weight * loss_rec
            opt_g.zero_grad(set_to_none=True)
            scalers["generator"].scale(loss_g).backward()
            scalers["generator"].step(opt_g)
            scalers["generator"].update()

            step += 1
            with torch.no_grad():
                terms = _discriminator_terms(real_logits, loss_d)
                for key, value in (
                    ("loss/G/total", loss_g),
                    ("loss/G/adv", loss_adv),
                    ("loss/G/rec", loss_rec),
                    ("loss/D/real", terms[0]),
                    ("loss/D/fake", terms[1]),
                ):
                    sums[key] += value.detach().float()
            window_steps += 1
            window_time += time.perf_counter() - tick
            bar.update(1)

            # -- maintenance (rank 0 writes; every rank reaches the same decisions)
            out_of_time = time_budget_s is not None and time.perf_counter() - loop_start >= time_budget_s
            if context.is_main and (step % tc.log_every == 0 or step == total or out_of_time):
                values = {k: float(v) / window_steps for k, v in sums.items()}
                values["time/step"] = window_time / window_steps
                log.write(step, values)
                bar.set_postfix(
                    G=f"{values['loss/G/total']:.3g}",
                    rec=f"{values['loss/G/rec']:.3g}",
                    D=f"{values['loss/D/real'] + values['loss/D/fake']:.3g}",
                    refresh=False,
                )
                if on_log is not None:
                    on_log(step, values)
                for v in sums.values():
                    v.zero_()
                window_steps, window_time = 0, 0.0
            if (
                context.is_main
                and tc.sample_every > 0
                and (step % tc.sample_every == 0 or step == total or out_of_time)
            ):
                _write_samples(generator, sample_batch, config, device, run_dir, step, log)
            if context.is_main and tc.checkpoint_every > 0 and step % tc.checkpoint_every == 0:
                save(step)
                last_saved = step
            if _all_agree(out_of_time, context):
                break
        if context.is_main and last_saved != step:
            save(step)  # always checkpoint at the end
    finally:
        bar.close()
        if log is not None:
            log.close()
        if context.enabled:
            dist.barrier()
        if owns_group:
            dist.destroy_process_group()
    return run_dir


def _all_agree(flag: bool, context: Distributed) -> bool:
    """True when rank 0's flag is True (broadcast so that every rank leaves the loop together)."""
    if not context.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        value = value.cuda()
    dist.broadcast(value, src=0)
    return bool(value.item())


def _discriminator_terms(
    real_logits: torch.Tensor, loss_d: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(real term, fake term) of the D loss, for logging (reference doc §5.1).

    ``d_loss = -mean log D(real) - mean log(1 - D(fake))``; its real term is the same expression as the
    non-saturating G loss applied to the real logits, and the fake term is the rest.
    """
    real_term = g_adversarial_loss(real_logits)
    return real_term, loss_d - real_term


def _sample_batch(data_path: Path, config: Config, train_set: PairDataset) -> dict:
    """A fixed batch for sample grids: the first test pairs when the test split has pairs, else train."""
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
