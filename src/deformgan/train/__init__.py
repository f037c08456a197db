"""Training: the loop (:mod:`.loop`), its set-up (:mod:`.setup`), the deterministic batch sampler
(:mod:`.sampler`), the run log (:mod:`.runlog`), sample grids (:mod:`.samples`) and ``torchrun`` support
(:mod:`.distributed`)."""

from deformgan.train.loop import discriminator_step, generator_step, train
from deformgan.train.runlog import LOG_FILE, LOG_KEYS, RunLog, read_log
from deformgan.train.sampler import ROLES, PairBatchSampler
from deformgan.train.samples import SAMPLES_DIR, sample_grid

__all__ = [
    "LOG_FILE",
    "LOG_KEYS",
    "ROLES",
    "SAMPLES_DIR",
    "PairBatchSampler",
    "RunLog",
    "discriminator_step",
    "generator_step",
    "read_log",
    "sample_grid",
    "train",
]
