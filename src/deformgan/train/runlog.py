"""The run log: one CSV row of averaged named terms every ``log_every`` iterations, and TensorBoard.

``log.csv`` has a ``step`` column and one column per logged term (:data:`LOG_KEYS`: the objective's
terms, then ``time/step``). Resuming at step k drops the rows after k (the CSV file and TensorBoard's
events), so a log never holds two histories.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import torch

from deformgan.atomic import atomic_write_text
from deformgan.errors import InputError
from deformgan.objective import DISCRIMINATOR_TERMS, GENERATOR_TERMS

LOG_FILE = "log.csv"
#: The CSV columns after ``step``: every objective term, then the mean wall time of an iteration.
LOG_KEYS = (*GENERATOR_TERMS, *DISCRIMINATOR_TERMS, "time/step")


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


class TermMeter:
    """Averages the logged terms over the iterations since the last :meth:`flush`.

    Sums stay on the device (no sync per iteration); ``flush`` returns ``{term: mean}`` plus
    ``time/step``, the mean wall time of an iteration, and starts a new window.
    """

    def __init__(self, device: torch.device):
        self._sums = {k: torch.zeros((), device=device) for k in LOG_KEYS if k != "time/step"}
        self._steps, self._seconds = 0, 0.0
        # The first iteration whose terms were not all finite, and which term: kept on the device, so that
        # watching for divergence costs no synchronisation per iteration.
        self._bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self._bad_term = torch.full((), -1, dtype=torch.long, device=device)

    def add(self, terms: dict[str, torch.Tensor], seconds: float, step: int) -> None:
        values = torch.stack([terms[k].float() for k in self._sums])
        for key, value in zip(self._sums, values, strict=True):
            self._sums[key] += value
        bad = ~torch.isfinite(values)
        first = (self._bad_step < 0) & bad.any()
        self._bad_step = torch.where(first, step, self._bad_step)
        self._bad_term = torch.where(first, bad.long().argmax(), self._bad_term)
        self._steps += 1
        self._seconds += seconds

    def first_non_finite(self) -> tuple[int, str] | None:
        """(iteration, term name) of the first non-finite term so far, or None (one device sync)."""
        step = int(self._bad_step)
        return None if step < 0 else (step, list(self._sums)[int(self._bad_term)])

    def flush(self) -> dict[str, float]:
        values = {k: float(v) / self._steps for k, v in self._sums.items()}
        values["time/step"] = self._seconds / self._steps
        for v in self._sums.values():
            v.zero_()
        self._steps, self._seconds = 0, 0.0
        return values
