"""Everything the loop needs before its first step: the resolved run, the networks and their optimisers."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from deformgan.atomic import atomic_write_text
from deformgan.checkpoint import (
    LATEST_FILE,
    Checkpoint,
    clean_run_folder,
    find_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from deformgan.config import CONFIG_FILE, Config, config_from_dict, load_config, save_config
from deformgan.data import PairDataset, find_layout
from deformgan.errors import InputError
from deformgan.models import Discriminator, Generator, build_discriminator, build_generator, load_weights
from deformgan.objective import GeneratorObjective
from deformgan.runtime import resolve_device, seed_of
from deformgan.train.distributed import Distributed, setup_distributed, training_device
from deformgan.train.runlog import LOG_FILE, RunLog
from deformgan.train.sampler import PairBatchSampler
from deformgan.train.samples import sample_batch, write_samples

#: Files that mark a folder as a deformgan run folder (``--overwrite`` deletes only such folders).
RUN_MARKERS = (CONFIG_FILE, LATEST_FILE, LOG_FILE)
SET_ASIDE_DIR = "set-aside"


@dataclass
class RunPlan:
    """A resolved request to train: config, dataset folder, run folder, and the checkpoint to resume.

    ``overwrite``: the run folder holds an old run that is deleted once the new one is known to start.
    ``set_aside``: checkpoints newer than the resumed one, moved to ``<run>/set-aside/`` at the start.
    """

    config: Config
    data_dir: Path
    run_dir: Path
    total: int  # the TOTAL number of iterations the run goes to
    checkpoint: Checkpoint | None = None
    overwrite: bool = False
    set_aside: list[Path] = dataclasses.field(default_factory=list)

    @property
    def start_step(self) -> int:
        return self.checkpoint.step if self.checkpoint is not None else 0


def is_run_folder(folder: Path) -> bool:
    """The folder holds a deformgan run (a config, a ``latest`` pointer, a log or a checkpoint)."""
    return folder.is_dir() and (
        any((folder / marker).exists() for marker in RUN_MARKERS) or bool(list_checkpoints(folder))
    )


def _describe_run(folder: Path) -> str:
    checkpoints = list_checkpoints(folder)
    return f"a run (newest checkpoint {checkpoints[-1].name})" if checkpoints else "files"


def _resume_checkpoint(resume: Path) -> tuple[Checkpoint, Path]:
    """Load the checkpoint to resume and find its run folder: a run folder -> its newest checkpoint; a
    ``ckpt-*`` folder -> that checkpoint, continued in the run folder that holds it."""
    folder = find_checkpoint(resume)
    run_dir = folder.parent if folder != resume or is_run_folder(resume.parent) else folder
    if folder == resume and not is_run_folder(resume.parent):
        run_dir = resume  # a lone checkpoint folder: the run continues beside it, in a new folder
    try:
        checkpoint = load_checkpoint(folder)
    except InputError as error:
        older = [p for p in list_checkpoints(run_dir) if p.name < folder.name]
        hint = f"; resume from an older checkpoint instead: --resume {older[-1]}" if older else ""
        raise InputError(f"{error}{hint}") from None
    return checkpoint, run_dir


def plan_run(
    config: Config | str | os.PathLike | None,
    data_dir: str | os.PathLike | None,
    out_dir: str | os.PathLike | None,
    iterations: int | None,
    resume: str | os.PathLike | None,
    overwrite: bool = False,
) -> RunPlan:
    """Resolve the arguments of :func:`deformgan.train.train` into a :class:`RunPlan` (nothing written).

    Nothing is lost: a run folder that already holds something is refused unless the run resumes it or
    ``overwrite`` asks for a clean start (and only a folder that holds a deformgan run is overwritten).
    """
    checkpoint, set_aside = None, []
    if resume is not None and overwrite:
        raise InputError("--resume and --overwrite: choose one (continue the run, or start it anew)")
    if resume is not None:
        checkpoint, resumed_dir = _resume_checkpoint(Path(resume))
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
        if out_dir is None or Path(out_dir).resolve() == resumed_dir.resolve():
            out_dir = resumed_dir
            set_aside = [p for p in list_checkpoints(resumed_dir) if p.name > checkpoint.path.name]
        elif Path(out_dir).exists() and (not Path(out_dir).is_dir() or any(Path(out_dir).iterdir())):
            raise InputError(f"{out_dir}: not empty; a resumed run continues in its own folder or a new one")
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
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file, expected a run folder (a new or empty folder)")
    if checkpoint is None and out.is_dir() and any(out.iterdir()):
        if not overwrite:
            if is_run_folder(out) and not list_checkpoints(out):
                raise InputError(
                    f"{out}: holds a run that saved no checkpoint yet; start it anew with --overwrite, or "
                    "choose another folder"
                )
            raise InputError(
                f"{out}: already holds {_describe_run(out)}; continue it with --resume {out}, start it anew "
                "with --overwrite, or choose another folder"
            )
        if not is_run_folder(out):
            raise InputError(
                f"{out}: --overwrite deletes only a deformgan run folder; this one holds other files"
            )
    total = config.train.iterations if iterations is None else int(iterations)
    if total < 0:
        raise InputError(f"iterations: expected >= 0, got {total}")
    plan = RunPlan(
        config, Path(data_dir), out, total, checkpoint, overwrite and checkpoint is None, set_aside
    )
    if total < plan.start_step:
        raise InputError(
            f"iterations: {total} is below the resumed checkpoint's step {plan.start_step} "
            "(it counts the total)"
        )
    return plan


def prepare_run_folder(plan: RunPlan) -> list[str]:
    """Rank 0, once the run is known to start: empty an overwritten folder, remove what interrupted writes
    left, set newer checkpoints aside (so that ``latest`` can never jump past the resumed one). Returns
    notes for the user."""
    notes = []
    run_dir = plan.run_dir
    if plan.overwrite:
        for entry in run_dir.iterdir():
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        notes.append(f"{run_dir}: old run deleted (--overwrite)")
    run_dir.mkdir(parents=True, exist_ok=True)
    cleaned = clean_run_folder(run_dir)
    if cleaned:
        notes.append(f"{run_dir}: removed leftovers of an interrupted write: {', '.join(cleaned)}")
    if plan.set_aside:
        target = run_dir / SET_ASIDE_DIR
        target.mkdir(exist_ok=True)
        for folder in plan.set_aside:
            destination = target / folder.name
            if destination.exists():
                destination = target / f"{folder.name}.{int(time.time())}"
            os.replace(folder, destination)
        names = ", ".join(p.name for p in plan.set_aside)
        notes.append(
            f"resuming from {plan.checkpoint.path.name}: newer checkpoints set aside in {target} ({names})"
        )
    if plan.checkpoint is not None:
        atomic_write_text(run_dir / LATEST_FILE, plan.checkpoint.path.name + "\n", fsync=True)
    return notes


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
        saved = checkpoint.extra.get("feature_source", "unrecorded")
        if saved != "unrecorded" and saved != objective.feature_source:
            raise InputError(
                f"{checkpoint.path}: trained with reconstruction features {saved}, but this machine would "
                f"use {objective.feature_source} (a VGG-19 file appeared or vanished); put the original back"
            )
        load_weights(generator, checkpoint.generator, f"{checkpoint.path}: generator")
        load_weights(discriminator, checkpoint.discriminator, f"{checkpoint.path}: discriminator")
        for name, optimizer in (("generator", opt_g), ("discriminator", opt_d)):
            try:
                optimizer.load_state_dict(checkpoint.optimizers[name])
            except (ValueError, KeyError, TypeError, RuntimeError) as error:
                raise InputError(
                    f"{checkpoint.path}: the {name} optimiser state does not fit ({error})"
                ) from None
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
    extra["feature_source"] = nets.objective.feature_source
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
        session.samples = sample_batch(plan.data_dir, config, dataset)
        # Everything that can fail on the user's input has run: only now touch the run folder.
        for note in prepare_run_folder(plan):
            print(note, file=sys.stderr)
        print(f"reconstruction loss on {nets.objective.describe_features()}", file=sys.stderr)
        save_config(config, plan.run_dir / CONFIG_FILE)
        session.log = RunLog(plan.run_dir, plan.start_step, tensorboard=tensorboard)
    return session
