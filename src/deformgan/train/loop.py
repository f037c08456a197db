"""The training loop: per iteration one discriminator step, then one generator step.

As the authors train (``--training_ratio 1``; Adam 2e-4, betas (0.5, 0.999) for both networks, no
schedule): D sees real pairs and pairs the generator rendered from *other* pairs, concatenated in one
forward; G then renders a third batch and descends ``L_G = w_adv L_adv + w_rec L_rec``
(:mod:`deformgan.objective`). Every batch and every dropout mask is a pure function of (seed, iteration,
rank), so a run stopped at iteration k and resumed ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from deformgan.conditioning import conditioning_for
from deformgan.config import Config
from deformgan.errors import Interrupted, RunFailed
from deformgan.objective import discriminator_objective
from deformgan.runtime import seed_of
from deformgan.train.distributed import all_agree
from deformgan.train.runlog import TermMeter
from deformgan.train.sampler import ROLES
from deformgan.train.setup import Networks, plan_run, save_training_state, start_session


def _autocast(device: torch.device, amp: str):
    """bf16/fp16 autocast on CUDA when asked; a no-op elsewhere."""
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda" and amp != "off")


def learning_rate(lr: float, lr_decay: int, step: int, total: int) -> float:
    """The learning rate of iteration ``step`` (0-based) of a run of ``total`` iterations: ``lr``, then a
    linear decay over the last ``lr_decay`` iterations (the last one runs at ``lr / lr_decay``; 0 = constant).
    """
    if lr_decay <= 0:
        return lr
    return lr * min(1.0, (total - step) / lr_decay)


def discriminator_step(
    nets: Networks, config: Config, real: dict, fake_side: dict, device: torch.device
) -> dict[str, torch.Tensor]:
    """One D update on real pairs vs pairs generated from another batch -> the D terms (detached)."""
    nets.discriminator.requires_grad_(True)
    amp = config.train.amp
    # The fake side needs no gradient: the bare generator (no DDP hooks) under no_grad.
    with torch.no_grad(), _autocast(device, amp):
        fake_cond = conditioning_for(config, fake_side["source_kp"], fake_side["target_kp"])
        fake = nets.generator(fake_side["source_image"], fake_cond)
    real_cond = conditioning_for(
        config, real["source_kp"], real["target_kp"], "none"
    )  # D reads heatmaps only
    with _autocast(device, amp):
        # One D forward on real and fake concatenated along the batch, as the authors do (and DDP needs:
        # one forward per backward).
        logits = nets.d_model(
            torch.cat([real["source_image"], fake_side["source_image"]]),
            torch.cat([real_cond.source_heatmaps, fake_cond.source_heatmaps]),
            torch.cat([real["target_image"], fake]),
            torch.cat([real_cond.target_heatmaps, fake_cond.target_heatmaps]),
        )
    real_logits, fake_logits = logits.float().split([real["source_image"].shape[0], fake.shape[0]])
    loss, terms = discriminator_objective(real_logits, fake_logits)
    nets.opt_d.zero_grad(set_to_none=True)
    scaler = nets.scalers["discriminator"]
    scaler.scale(loss).backward()
    scaler.step(nets.opt_d)
    scaler.update()
    return {k: v.detach() for k, v in terms.items()}


def generator_step(
    nets: Networks, config: Config, batch: dict, device: torch.device
) -> dict[str, torch.Tensor]:
    """One G update on its own batch -> the G terms (detached)."""
    # D is frozen here and only passes gradients to the image: call the bare module so that DDP never
    # waits for D gradients that this backward does not produce.
    nets.discriminator.requires_grad_(False)
    with _autocast(device, config.train.amp):
        cond = conditioning_for(config, batch["source_kp"], batch["target_kp"])
        generated = nets.g_model(batch["source_image"], cond)
        fake_logits = nets.discriminator(
            batch["source_image"], cond.source_heatmaps, generated, cond.target_heatmaps
        )
    loss, terms = nets.objective(fake_logits.float(), generated.float(), batch["target_image"])
    nets.opt_g.zero_grad(set_to_none=True)
    scaler = nets.scalers["generator"]
    scaler.scale(loss).backward()
    scaler.step(nets.opt_g)
    scaler.update()
    return {k: v.detach() for k, v in terms.items()}


class _StopRequest:
    """SIGINT / SIGTERM while training: the first one asks the loop to stop after the current iteration
    and checkpoint; a second one interrupts at once (the checkpoint writes are atomic either way)."""

    def __init__(self):
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        print(
            "\nstopping after this iteration and saving a checkpoint (again to stop at once)", file=sys.stderr
        )

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _check_finite(meter: TermMeter, plan, last_saved: int, context) -> None:
    """Stop every rank (RunFailed) once a loss went NaN/inf: that state is never logged or checkpointed."""
    bad = meter.first_non_finite()
    if all_agree(bad is not None, context):
        step, term = bad if bad is not None else (-1, "a loss on another rank")
        kept = (
            f"the last checkpoint, step {last_saved}, is intact" if last_saved >= 0 else "nothing was saved"
        )
        raise RunFailed(
            f"{plan.run_dir}: {term} became non-finite at iteration {step + 1}; training stopped and {kept} "
            "(lower train.lr or check the data)"
        )


def train(
    config: Config | str | os.PathLike | None,
    data_dir: str | os.PathLike | None,
    out_dir: str | os.PathLike | None,
    iterations: int | None = None,
    resume: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    time_budget_s: float | None = None,
    tensorboard: bool = True,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
) -> Path:
    """Train a Deformable GAN; return the run folder (checkpoints, ``log.csv``, samples, config.yaml).

    config: a Config or a YAML path (must equal the saved one when resuming, but for the iteration count).
    data_dir: dataset root in the field's layout (default: ``data.root``, or the path saved in the resumed
    checkpoint). out_dir: run folder (default with resume: the resumed run's folder); a folder that already
    holds something is refused unless ``resume`` continues it or ``overwrite`` starts it anew. iterations:
    the TOTAL number of iterations (default ``train.iterations``); a resumed run continues to it. resume:
    a run folder or one of its ``ckpt-*`` folders (newer checkpoints are then set aside). time_budget_s:
    stop early (checkpointing) once the loop has run this long. on_log: called with (step, logged values)
    on rank 0. Ctrl-C / SIGTERM stop after the current iteration with a checkpoint (:class:`Interrupted`);
    a non-finite loss stops the run without checkpointing it (:class:`RunFailed`).
    """
    plan = plan_run(config, data_dir, out_dir, iterations, resume, overwrite)
    session = start_session(plan, tensorboard)
    config, tc, nets, device = plan.config, plan.config.train, session.nets, session.device
    main = session.context.is_main
    meter = TermMeter(device)
    bar = tqdm(
        total=plan.total,
        initial=plan.start_step,
        desc=config.name,
        unit="it",
        disable=not (progress and main),
    )
    step, last_saved = plan.start_step, plan.start_step if plan.checkpoint is not None else -1
    with _StopRequest() as stop:
        try:
            if main and step == 0 and tc.sample_every > 0:
                session.write_samples(0)
            loop_start = time.perf_counter()
            nets.generator.train()
            nets.discriminator.train()
            while step < plan.total:
                tick = time.perf_counter()
                torch.manual_seed(seed_of(tc.seed, step, session.context.rank))  # this iteration's dropout
                lr = learning_rate(tc.lr, tc.lr_decay, step, plan.total)
                for group in (*nets.opt_d.param_groups, *nets.opt_g.param_groups):
                    group["lr"] = lr
                real, fake_side, g_side = (session.next_batch() for _ in ROLES)
                terms = discriminator_step(nets, config, real, fake_side, device)
                terms |= generator_step(nets, config, g_side, device)
                step += 1
                meter.add(terms, time.perf_counter() - tick, step - 1)
                bar.update(1)
                if time_budget_s is not None and step % 10 == 0:  # the total the budget allows, as it runs
                    elapsed = time.perf_counter() - loop_start
                    reachable = step + int((time_budget_s - elapsed) / (elapsed / (step - plan.start_step)))
                    bar.total = max(step, min(plan.total, reachable))
                    bar.refresh()

                # Maintenance: rank 0 writes; every rank reaches the same decisions.
                out_of_time = time_budget_s is not None and time.perf_counter() - loop_start >= time_budget_s
                stopping = all_agree(out_of_time or stop.signal is not None, session.context)
                last = step == plan.total or stopping
                checkpoint_due = tc.checkpoint_every > 0 and step % tc.checkpoint_every == 0
                if step % tc.log_every == 0 or last or checkpoint_due:
                    _check_finite(meter, plan, last_saved, session.context)
                if main and (step % tc.log_every == 0 or last):
                    values = meter.flush()
                    session.log.write(step, values)
                    d_loss = values["loss/D/real"] + values["loss/D/fake"]
                    bar.set_postfix(G=f"{values['loss/G/total']:.3g}", D=f"{d_loss:.3g}", refresh=False)
                    if on_log is not None:
                        on_log(step, values)
                if main and tc.sample_every > 0 and (step % tc.sample_every == 0 or last):
                    session.write_samples(step)
                if main and checkpoint_due:
                    save_training_state(nets, plan, step)
                    last_saved = step
                if stopping:
                    break
            if main and last_saved != step:
                save_training_state(nets, plan, step)  # always checkpoint at the end (checked above)
                last_saved = step
        finally:
            bar.close()
            session.close()
    if stop.signal is not None:
        name = signal.Signals(stop.signal).name
        raise Interrupted(
            f"{name}: stopped at iteration {step} with a checkpoint in {plan.run_dir}; "
            f"continue with: deformgan train --resume {plan.run_dir}"
        )
    return plan.run_dir
