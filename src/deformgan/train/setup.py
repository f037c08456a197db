"""Everything the loop needs before its first step: the resolved run, the networks and their optimisers."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from deformgan.checkpoint import Checkpoint, find_checkpoint, load_checkpoint, save_checkpoint
from deformgan.config import CONFIG_FILE, Config, config_from_dict, load_config, save_config
from deformgan.data import PairDataset, find_layout
from deformgan.errors import InputError
from deformgan.models import Discriminator, Generator, build_discriminator, build_generator
from deformgan.objective import GeneratorObjective
from deformgan.runtime import resolve_device, seed_of
from deformgan.train.distributed import Distributed, setup_distributed, training_device
from deformgan.train.runlog import RunLog
from deformgan.train.sampler import PairBatchSampler
from deformgan.train.samples import sample_batch, write_samples


@dataclass
class RunPlan:
    """A resolved request to train: config, dataset folder, run folder, and the checkpoint to resume."""

    config: Config
    data_dir: Path
    run_dir: Path
    total: int  # the TOTAL number of iterations the run goes to
    checkpoint: Checkpoint | None = None

    @property
    def start_step(self) -> int:
        return self.checkpoint.step if self.checkpoint is not None else 0


def plan_run(
    config: Config | str | os.PathLike | None,
    data_dir: str | os.PathLike | None,
    out_dir: str | os.PathLike | None,
    iterations: int | None,
    resume: str | os.PathLike | None,
) -> RunPlan:
    """Resolve the arguments of :func:`deformgan.train.train` into a :class:`RunPlan` (nothing written)."""
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
    total = config.train.iterations if iterations is None else int(iterations)
    if total < 0:
        raise InputError(f"iterations: expected >= 0, got {total}")
    plan = RunPlan(config, Path(data_dir), Path(out_dir), total, checkpoint)
    if total < plan.start_step:
        raise InputError(
            f"iterations: {total} is below the resumed checkpoint's step {plan.start_step} "
            "(it counts the total)"
        )
    return plan


@dataclass
class Networks:
    """The networks being trained, their optimisers and the objective.

    ``generator`` / ``discriminator`` are the bare modules (checkpointed, used without DDP where no
    gradient must be synchronised); ``g_model`` / ``d_model`` are the same wrapped in DDP when distributed.
    """

    generator: Generator
    discriminator: Discriminator
    g_model: torch.nn.Module
    d_model: torch.nn.Module
    objective: GeneratorObjective
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scalers: dict[str, torch.amp.GradScaler]


def build_networks(
    config: Config, device: torch.device, context: Distributed, checkpoint: Checkpoint | None
) -> Networks:
    """Networks with identical initial weights on every rank (or the checkpoint's), Adam optimisers
    (the authors' 2e-4, betas (0.5, 0.999) for both), DDP wrappers when distributed."""
    tc = config.train
    cuda = device.type == "cuda"
    torch.manual_seed(seed_of(tc.seed, 0xB17D))  # initial weights: identical on every rank
    generator = build_generator(config).to(device)
    discriminator = build_discriminator(config).to(device)
    objective = GeneratorObjective(**dataclasses.asdict(config.objective)).to(device)
    if tc.channels_last and cuda:
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
    g_model, d_model = generator, discriminator
    if context.enabled:
        device_ids = [device.index] if cuda else None
        g_model = DistributedDataParallel(generator, device_ids=device_ids)
        d_model = DistributedDataParallel(discriminator, device_ids=device_ids)
    return Networks(generator, discriminator, g_model, d_model, objective, opt_g, opt_d, scalers)


def save_training_state(nets: Networks, plan: RunPlan, step: int) -> Path:
    """Checkpoint the whole training state after ``step`` iterations (rank 0 only)."""
    extra = {f"scaler/{n}": s.state_dict() for n, s in nets.scalers.items() if s.is_enabled()}
    return save_checkpoint(
        plan.run_dir,
        step,
        generator=nets.generator.state_dict(),
        discriminator=nets.discriminator.state_dict(),
        optimizers={"generator": nets.opt_g.state_dict(), "discriminator": nets.opt_d.state_dict()},
        config=plan.config.to_dict(),
        data_dir=plan.data_dir.resolve(),
        extra=extra,
        keep=plan.config.train.keep_checkpoints,
    )


@dataclass
class Session:
    """A started run: this process's place in the job, its device, the networks, the batch stream, and
    (rank 0 only) the run log and the fixed sample batch."""

    plan: RunPlan
    context: Distributed
    owns_group: bool
    device: torch.device
    nets: Networks
    batches: Iterator[dict]
    log: RunLog | None = None
    samples: dict | None = None

    def next_batch(self) -> dict:
        """The next batch of the stream, on the device."""
        channels_last = self.plan.config.train.channels_last and self.device.type == "cuda"
        moved = {}
        for key, value in next(self.batches).items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device, non_blocking=True)
                if channels_last and value.dim() == 4:
                    value = value.contiguous(memory_format=torch.channels_last)
            moved[key] = value
        return moved

    def write_samples(self, step: int) -> None:
        """Rank 0: the sample grid after ``step`` iterations (PNG + TensorBoard)."""
        grid = write_samples(
            self.nets.generator, self.samples, self.plan.config, self.device, self.plan.run_dir, step
        )
        self.log.add_image("samples", grid, step)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
        if self.context.enabled:
            dist.barrier()
        if self.owns_group:
            dist.destroy_process_group()


def start_session(plan: RunPlan, tensorboard: bool) -> Session:
    """Join the ``torchrun`` job (if any), build the networks and the batch stream; on rank 0 write the
    resolved config and open the run log."""
    config, tc = plan.config, plan.config.train
    context, owns_group = setup_distributed(resolve_device(tc.device))
    device = training_device(tc.device, context)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    nets = build_networks(config, device, context, plan.checkpoint)
    dataset = PairDataset(plan.data_dir, split="train", preset=config.data.preset, prefix=config.data.prefix)
    sampler = PairBatchSampler(
        len(dataset), tc.batch_size, tc.seed, plan.start_step, plan.total, context.rank, context.world_size
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=config.data.num_workers, pin_memory=device.type == "cuda"
    )
    session = Session(plan, context, owns_group, device, nets, iter(loader))
    if context.is_main:
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, plan.run_dir / CONFIG_FILE)
        session.log = RunLog(plan.run_dir, plan.start_step, tensorboard=tensorboard)
        session.samples = sample_batch(plan.data_dir, config, dataset)
    return session
