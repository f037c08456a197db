"""Crash safety, bounded for CI: SIGKILL at random moments and during a checkpoint write, Ctrl-C and SIGTERM,
then resume; the finished run must be bit-identical to an uninterrupted one. Also: the error line of an
interrupted (or failing) command starts a line of its own, never glued to a progress bar."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_train import make_tiny_dataset, tiny_config

from deformgan.checkpoint import load_checkpoint

ITERATIONS = 8


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "deformgan.cli", *map(str, args)]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _weights(run: Path) -> dict[str, torch.Tensor]:
    loaded = load_checkpoint(run)
    tensors = {f"G/{k}": v for k, v in loaded.generator.items()} | {
        f"D/{k}": v for k, v in loaded.discriminator.items()
    }
    for name, state in loaded.optimizers.items():
        for index, values in state["state"].items():
            tensors |= {f"{name}/{index}/{k}": v for k, v in values.items() if isinstance(v, torch.Tensor)}
    return tensors


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupts")
    data = make_tiny_dataset(root / "data")
    config = root / "tiny.yaml"
    settings = tiny_config(iterations=ITERATIONS, sample_every=0, checkpoint_every=1, log_every=1)
    config.write_text(yaml.safe_dump(settings.to_dict()))
    straight = root / "straight"
    command = _command("train", "--config", config, "--data", data, "--out", straight)
    subprocess.run(command, check=True, env=_env(), capture_output=True, timeout=600)
    return data, config, _weights(straight)


def _resume_until_done(config: Path, run: Path, data: Path) -> None:
    """Resume (or, when every attempt died before its first checkpoint, start anew) until the end."""
    for _ in range(ITERATIONS + 2):
        resumable = (run / "latest").is_file()
        if resumable and load_checkpoint(run).step == ITERATIONS:
            return
        if resumable:
            command = _command("train", "--resume", run, "--data", data)
        else:
            command = _command("train", "--config", config, "--data", data, "--out", run, "--overwrite")
        result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
    raise AssertionError("the run never completed")


def _start(config: Path, data: Path, run: Path, resume: bool) -> subprocess.Popen:
    """A fresh start (--overwrite when an earlier attempt died before its first checkpoint), or a resume."""
    args = (
        ("train", "--resume", run, "--data", data)
        if resume
        else ("train", "--config", config, "--data", data, "--out", run)
    )
    if not resume and run.exists():
        args = (*args, "--overwrite")
    return subprocess.Popen(
        _command(*args), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
def test_sigkill_at_random_moments_and_during_a_checkpoint_write_then_resume_is_bit_identical(
    setup, tmp_path
):
    data, config, expected = setup
    run = tmp_path / "run"
    rng = np.random.default_rng(0)
    kills = {"random": 0, "checkpoint write": 0}
    for attempt in range(4):
        process = _start(config, data, run, resume=(run / "latest").is_file())
        started = time.monotonic()
        if attempt % 2 == 0:
            # Wait until a checkpoint is being written (its hidden temp folder exists), then kill at once.
            while process.poll() is None and time.monotonic() - started < 120:
                if run.is_dir() and any(p.name.startswith(".ckpt-") for p in run.iterdir()):
                    process.kill()
                    kills["checkpoint write"] += 1
                    break
                time.sleep(0.002)
        else:
            while process.poll() is None and not (run / "log.csv").is_file():
                time.sleep(0.01)
            time.sleep(float(rng.uniform(0.0, 1.5)))
            if process.poll() is None:
                process.kill()
                kills["random"] += 1
        process.wait(timeout=600)
    assert kills["checkpoint write"] >= 1, kills  # the interesting case really happened
    _resume_until_done(config, run, data)
    got = _weights(run)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(got[key], value), key
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # leftovers cleaned on resume


def starts_a_line(text: str, index: int) -> bool:
    """Whether ``text[index:]`` starts at column 0 of a blank terminal line: everything written since the
    last newline was erased (a progress bar clears its line with spaces between carriage returns)."""
    cells: list[str] = []
    column = 0
    for char in text[:index].rpartition("\n")[2]:
        if char == "\r":
            column = 0
            continue
        cells[column : column + 1] = [char]
        column += 1
    return column == 0 and not "".join(cells).strip()


def _interrupt_then_resume(setup, run: Path, sig: signal.Signals) -> None:
    """Send ``sig`` to a training run mid-way: exit status 130 with one error line on a line of its own
    (not glued to the progress bar) naming the checkpoint of the very last iteration; resuming then
    finishes bit-identical to the uninterrupted run."""
    data, config, expected = setup
    process = _start(config, data, run, resume=False)
    while process.poll() is None and not (run / "log.csv").is_file():
        time.sleep(0.01)
    time.sleep(0.3)
    process.send_signal(sig)
    _, err = process.communicate(timeout=600)
    if process.returncode == 0:
        pytest.skip("the run finished before the signal arrived (a very fast machine)")
    assert process.returncode == 130, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"{sig.name}: stopped at iteration" in errors[0] and "Traceback" not in err
    assert starts_a_line(err, err.index("error: ")), repr(err[-300:])
    step = load_checkpoint(run).step
    assert f"iteration {step} with a checkpoint" in errors[0]  # the checkpoint of the very last iteration
    _resume_until_done(config, run, data)
    got = _weights(run)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_resume_is_bit_identical(setup, tmp_path):
    _interrupt_then_resume(setup, tmp_path / "run", signal.SIGINT)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_resume_is_bit_identical(setup, tmp_path):
    # What a cluster scheduler or `kill` sends: the same stop-and-checkpoint as Ctrl-C, and the same status.
    _interrupt_then_resume(setup, tmp_path / "run", signal.SIGTERM)


def test_error_line_is_not_glued_to_an_open_progress_bar(monkeypatch, capsys):
    """cli.main closes open progress bars before the error line. A bar a failing command still holds (its
    frame lives on in the traceback, so tqdm cannot close it) would otherwise have the error appended to
    its line; the control without the closing shows that this check sees the difference."""
    from test_hardening import run_main
    from tqdm import tqdm

    from deformgan import cli
    from deformgan.errors import InputError

    def failing_command() -> None:
        bar = tqdm(total=10, desc="work", file=sys.stderr)
        bar.update(3)
        raise InputError("row 4: bad")

    close_bars = cli._close_progress_bars
    monkeypatch.setattr(cli, "app", failing_command)
    code, _, err = run_main(monkeypatch, capsys)
    assert code == 2 and "work:  30%" in err  # the bar was drawn
    assert starts_a_line(err, err.index("error: row 4: bad")), repr(err)
    monkeypatch.setattr(cli, "_close_progress_bars", lambda: None)
    code, _, err = run_main(monkeypatch, capsys)
    close_bars()  # the control's bar, left open
    assert code == 2 and not starts_a_line(err, err.index("error: row 4: bad")), repr(err)
