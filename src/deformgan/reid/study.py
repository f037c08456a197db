"""The augmentation experiment on synthetic people: T vs A_gan vs A_oracle vs shuffled labels.

:func:`run_study` runs every stage into one folder, skipping stages already done (so an interrupted study
continues, and a finished one is re-scored without retraining):

1. the Re-ID set (:func:`deformgan.reid.synthetic.write_reid_experiment`): pose-starved training split,
   disjoint validation and test identities, distractors;
2. a pose generator trained on the **training identities only** (``ROOT/generator``) with deformgan's
   trainer (:func:`deformgan.train.train`, a 1/8-width synthetic config by default);
3. the augmented sets: ``gan`` (:func:`deformgan.reid.augment.augment` with that generator), ``oracle``
   (the same plan rendered by :class:`deformgan.reid.synthetic.OracleRenderer`: the ceiling of a perfect
   generator), ``shuffled`` (the ``gan`` images with permuted identities: the negative control), and
   ``gan1`` / ``oracle1`` (only the first of the K target poses of each training image: how the effect
   depends on the share of generated images in A);
4. one Re-ID network per (arm, seed) with the **same number of iterations** for every arm
   (:func:`deformgan.reid.train.train_reid`), T using the training split only;
5. per-query scores on the validation and test splits (Euclidean distance between L2-normalised
   descriptors, :func:`deformgan.reid.evaluation.per_query_results`), and the statistics of
   :func:`summarise`.

Statistics (:func:`summarise`): an arm's level is the mean over seeds; its 95 % interval is a percentile
bootstrap over **test identities** (identities resampled with replacement, all their queries kept, the
per-query value averaged over seeds first). A gain ``A - T`` is reported twice: the paired difference
per seed with a Student-t interval over seeds (training randomness), and a bootstrap over test
identities of the seed-averaged per-query difference (which test people happened to be drawn).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path

import numpy as np

from deformgan.atomic import atomic_write_text
from deformgan.errors import InputError
from deformgan.reid.evaluation import per_query_results
from deformgan.reid.metric_learning import fit_metric
from deformgan.reid.synthetic import ReIDExperimentSpec

ARMS = ("T", "gan", "oracle", "shuffled", "gan1", "oracle1")
ARM_LABELS = {
    "T": "T (real only)",
    "gan": "A_gan (T + deformgan)",
    "oracle": "A_oracle (T + renderer)",
    "shuffled": "shuffled labels (control)",
    "gan1": "A_gan, K = 1",
    "oracle1": "A_oracle, K = 1",
}
#: Arms built from the generator's images, and the K = 1 arms with their full-K source.
GAN_ARMS = ("gan", "shuffled", "gan1")
SUBSET_ARMS = {"gan1": "gan", "oracle1": "oracle"}
RESULTS_FILE = "results.json"
#: The benchmark's Re-ID set: 200 training identities x 2 cameras x 2 poses; 100 validation and 100 test
#: identities x 3 cameras x 2 images; 100 distractors per evaluation split.
DEFAULT_SPEC = ReIDExperimentSpec(train_identities=200, val_identities=100, test_identities=100)


@dataclass
class StudySettings:
    """Everything that defines a study (defaults: the benchmark's setting, tuned on validation).

    spec: the Re-ID set. gan_config / gan_iterations / gan_overrides: the pose generator's training
    (a shipped config name or YAML path, ``section.key=value`` overrides). per_image: K generated images
    per training image. Re-ID: small CNN (``feature_dim``-d descriptor) at ``input_size`` (H, W), trained
    ``iterations`` steps of ``batch_size`` with SGD at ``lr``. seeds: Re-ID training seeds (paired
    across arms). bootstrap: resamples of the test identities.
    """

    spec: ReIDExperimentSpec = field(default_factory=lambda: DEFAULT_SPEC)
    gan_config: str = "synth-full"
    gan_iterations: int = 3000
    gan_overrides: tuple[str, ...] = ("train.sample_every=500", "train.checkpoint_every=500")
    per_image: int = 10
    augment_seed: int = 0
    arms: tuple[str, ...] = ARMS
    backbone: str = "small"
    input_size: tuple[int, int] = (64, 32)
    feature_dim: int = 128
    iterations: int = 1500
    batch_size: int = 32
    lr: float = 0.05
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    bootstrap: int = 2000
    bootstrap_seed: int = 0

    def __post_init__(self) -> None:
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown or "T" not in self.arms:
            raise InputError(f"arms: expected T plus any of {', '.join(ARMS[1:])}, got {list(self.arms)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise InputError(f"seeds: expected distinct seeds, got {list(self.seeds)}")
        self.arms, self.seeds = tuple(self.arms), tuple(int(s) for s in self.seeds)
        self.gan_overrides = tuple(self.gan_overrides)
        self.input_size = tuple(int(v) for v in self.input_size)

    def to_dict(self) -> dict:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["spec"] = self.spec.to_dict()
        for key in ("gan_overrides", "arms", "input_size", "seeds"):
            values[key] = list(values[key])
        return values

    def reid_config(self, seed: int):
        from deformgan.reid.train import ReIDTrainConfig

        return ReIDTrainConfig(
            objective="ide",
            backbone=self.backbone,
            input_size=self.input_size,
            feature_dim=self.feature_dim,
            iterations=self.iterations,
            batch_size=self.batch_size,
            lr=self.lr,
            seed=seed,
            log_every=max(1, self.iterations // 10),
            cache_images=True,
        )


# ---------------------------------------------------------------------------------------------- stages


def train_generator(data: Path, run: Path, settings: StudySettings, progress: bool = True) -> Path:
    """Train (or finish training) the pose generator on ``data`` into ``run``; returns ``run``.

    A run already at ``gan_iterations`` is kept; one that stopped earlier is resumed.
    """
    from deformgan.config import find_config, load_config
    from deformgan.train import train

    overrides = [*settings.gan_overrides, f"train.iterations={settings.gan_iterations}", "train.device=cpu"]
    config = load_config(find_config(settings.gan_config), overrides)
    done = _generator_step(run)
    if done is not None and done >= settings.gan_iterations:
        return run
    resume = run if done is not None else None
    return train(
        None if resume else config,
        data,
        run,
        iterations=settings.gan_iterations,
        resume=resume,
        progress=progress,
        tensorboard=False,
    )


def _generator_step(run: Path) -> int | None:
    """Step of the newest checkpoint in ``run`` (None when there is none)."""
    if not run.is_dir():
        return None
    from deformgan.checkpoint import find_checkpoint, load_checkpoint

    try:
        return int(load_checkpoint(find_checkpoint(run), weights_only=True).step)
    except InputError:
        return None


def make_arms(root: Path, generator_run: Path | None, settings: StudySettings, progress: bool = True) -> dict:
    """The extra folders of every arm: {"T": [], "gan": [folder], ...} (each built once, then reused)."""
    from deformgan.reid.augment import (
        augment,
        augment_with,
        first_targets,
        plan_augmentation,
        shuffle_labels,
        training_images_and_keypoints,
    )
    from deformgan.reid.synthetic import OracleRenderer, load_reid_experiment

    experiment = load_reid_experiment(root / "data")
    extras: dict[str, list[Path]] = {"T": []}
    folders = root / "augmented"
    needs_gan = any(a in settings.arms for a in GAN_ARMS)
    if needs_gan:
        if generator_run is None:
            raise InputError("arms gan / shuffled need a trained generator")
        gan = folders / "gan"
        augment(
            generator_run,
            experiment.root,
            gan,
            settings.per_image,
            settings.augment_seed,
            annotations=experiment.annotations,
            batch_size=32,
            device="cpu",
            progress=progress,
        )
        if "gan" in settings.arms:
            extras["gan"] = [gan]
        if "shuffled" in settings.arms:
            shuffled = folders / "shuffled"
            if not (shuffled / "manifest.csv").is_file():
                shuffle_labels(gan, shuffled, seed=settings.augment_seed)
            extras["shuffled"] = [shuffled]
    if "oracle" in settings.arms or "oracle1" in settings.arms:
        oracle = folders / "oracle"
        images, keypoints, annotation_file = training_images_and_keypoints(
            experiment.root, experiment.annotations
        )
        items, counts = plan_augmentation(images, keypoints, settings.per_image, settings.augment_seed)
        render = OracleRenderer(experiment)
        description = {
            **render.describe(),
            "annotations": str(annotation_file.resolve()),
            "per_image": settings.per_image,
            "seed": settings.augment_seed,
        }
        augment_with(render, items, oracle, description, counts, batch_size=64, progress=progress,
                     desc="oracle")  # fmt: skip
        if "oracle" in settings.arms:
            extras["oracle"] = [oracle]
    for arm, source in SUBSET_ARMS.items():
        if arm in settings.arms:
            subset = folders / arm
            if not (subset / "manifest.csv").is_file():
                first_targets(folders / source, subset, 1)
            extras[arm] = [subset]
    return extras


def _run_done(run: Path, iterations: int) -> bool:
    state = run / "state.json"
    if not state.is_file() or not (run / "model.safetensors").is_file():
        return False
    return json.loads(state.read_text()).get("iteration") == iterations


def score_run(run: Path, splits: dict[str, tuple[list, list]], device: str = "cpu") -> dict[str, dict]:
    """Per-query outcomes of a trained run on each split: Euclidean distance between L2-normalised
    descriptors (the "Euclidean" row of :func:`deformgan.reid.report.evaluate_reid`).

    Returns {split: {"rank1": (Q,) 0/1, "ap": (Q,) standard AP, "query_ids": (Q,)}} as lists.
    """
    from deformgan.reid.train import extract_features, load_model

    model, state = load_model(run, device)
    size = tuple(state["config"]["input_size"])
    out = {}
    for split, (query, gallery) in splits.items():
        fq = extract_features(model, query, size, device=device)
        fg = extract_features(model, gallery, size, device=device)
        distances = fit_metric("euclidean").distances(fq, fg)  # L2-normalised, as evaluate_reid's row
        result = per_query_results(
            distances,
            [im.identity for im in query],
            [im.camera for im in query],
            [im.identity for im in gallery],
            [im.camera for im in gallery],
        )
        if np.any(result.num_good == 0):
            raise RuntimeError(f"{split}: a query without a good gallery image (the split is malformed)")
        out[split] = {
            "rank1": (result.first_match == 1).astype(int).tolist(),
            "ap": result.average_precision.tolist(),
            "query_ids": [im.identity for im in query],
        }
    return out


def run_study(
    out: str | os.PathLike,
    settings: StudySettings | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Run (or continue) the whole study into ``out`` (module docstring); returns the results dict, also
    written to ``out/results.json`` (settings, wall times, per-query scores, :func:`summarise`)."""
    from deformgan.reid.synthetic import load_reid_experiment, write_reid_experiment
    from deformgan.reid.train import train_reid

    settings = settings or StudySettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings_file = out / "settings.json"
    if settings_file.is_file():
        previous = json.loads(settings_file.read_text())
        if previous != settings.to_dict():
            changed = sorted(k for k in previous if previous.get(k) != settings.to_dict().get(k))
            raise InputError(f"{out}: holds a study with other settings (differs in {', '.join(changed)})")
    atomic_write_text(settings_file, json.dumps(settings.to_dict(), indent=1) + "\n")
    times: dict[str, float] = {}

    def stage(name: str, fn):
        start = time.perf_counter()
        log(f"[{name}] ...")
        value = fn()
        times[name] = round(time.perf_counter() - start, 1)
        log(f"[{name}] {times[name]:.0f} s")
        return value

    data = out / "data"
    if not (data / "experiment.json").is_file():
        stage("data", lambda: write_reid_experiment(data, settings.spec, progress=progress))
    experiment = load_reid_experiment(data)
    generator_run = None
    if any(a in settings.arms for a in GAN_ARMS):
        generator_run = out / "generator"
        gan_data = experiment.generator_data
        stage("generator", lambda: train_generator(gan_data, generator_run, settings, progress))
    extras = stage("augment", lambda: make_arms(out, generator_run, settings, progress))
    splits = {split: experiment.eval_split(split) for split in ("val", "test")}
    scores: dict[str, dict[int, dict]] = {arm: {} for arm in settings.arms}
    for seed in settings.seeds:
        for arm in settings.arms:
            run = out / "reid" / f"{arm}-seed{seed}"
            if not _run_done(run, settings.iterations):
                config = settings.reid_config(seed)
                job = partial(train_reid, data, run, extras[arm], config, device="cpu", progress=progress)
                stage(f"reid {arm} seed {seed}", job)
            scores[arm][seed] = score_run(run, splits)
    results = {
        "settings": settings.to_dict(),
        "seconds": times,
        "compute_seconds": compute_seconds(out, settings),
        "data": {
            split: {"queries": len(q), "gallery": len(g), "identities": len({im.identity for im in q})}
            for split, (q, g) in splits.items()
        },
        "train_images": {arm: _count_images(data, extras[arm]) for arm in settings.arms},
        "summary": {split: summarise(scores, split, settings) for split in ("val", "test")},
        "scores": {arm: {str(s): v for s, v in by_seed.items()} for arm, by_seed in scores.items()},
    }
    atomic_write_text(out / RESULTS_FILE, json.dumps(results, indent=1) + "\n")
    return results


def compute_seconds(out: Path, settings: StudySettings) -> dict:
    """Time each stage took when it ran (whichever invocation ran it), read from its outputs: the
    generator's log (``time/step``), ``augment.json``, every Re-ID run's ``state.json``. None where a
    stage did not record it."""
    result: dict = {"generator": None, "augment": {}, "reid": {}}
    if (out / "generator" / "log.csv").is_file():
        from deformgan.train import read_log

        log = read_log(out / "generator")
        steps = np.diff([0.0, *log["step"]])
        result["generator"] = round(float(np.sum(steps * np.asarray(log["time/step"]))), 1)
    for folder in sorted((out / "augmented").glob("*")):
        record = folder / "augment.json"
        if record.is_file():
            result["augment"][folder.name] = json.loads(record.read_text()).get("seconds")
    for arm in settings.arms:
        runs = [out / "reid" / f"{arm}-seed{seed}" / "state.json" for seed in settings.seeds]
        values = [json.loads(r.read_text()).get("seconds") for r in runs if r.is_file()]
        result["reid"][arm] = round(float(sum(values)), 1) if values and None not in values else None
    return result


def _count_images(data: Path, extras: Sequence[Path]) -> int:
    from deformgan.reid.train import collect_training_images

    return collect_training_images(data, extras)[1]["images"]


# ---------------------------------------------------------------------------------------------- statistics


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean of ``values`` (n >= 2)."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        raise InputError(f"t_interval: expected at least 2 values, got {values.size}")
    mean = float(values.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, values.size - 1) * stats.sem(values))
    return mean, mean - half, mean + half


def bootstrap_identities(
    values: np.ndarray, identities: Sequence[int], resamples: int, seed: int, confidence: float = 0.95
) -> tuple[float, float, float]:
    """(mean, low, high): the mean of per-query ``values`` (Q,) and its percentile bootstrap interval
    when **identities** are resampled with replacement (every query of a drawn identity counts)."""
    values = np.asarray(values, dtype=np.float64)
    identities = np.asarray(identities)
    unique, inverse = np.unique(identities, return_inverse=True)
    sums = np.bincount(inverse, weights=values, minlength=len(unique))
    counts = np.bincount(inverse, minlength=len(unique)).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(len(unique), size=(resamples, len(unique)))
    means = sums[draws].sum(1) / counts[draws].sum(1)
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(values.mean()), float(low), float(high)


def summarise(scores: dict[str, dict[int, dict]], split: str, settings: StudySettings) -> dict:
    """Levels and gains per arm on ``split`` (module docstring), in percent."""
    seeds = list(settings.seeds)
    ids = scores["T"][seeds[0]][split]["query_ids"]
    per_query = {
        arm: {m: np.array([by_seed[s][split][m] for s in seeds], dtype=np.float64) for m in ("rank1", "ap")}
        for arm, by_seed in scores.items()
    }  # (seeds, Q)
    summary: dict = {"seeds": seeds, "queries": len(ids), "identities": len(set(ids)), "arms": {}}
    for arm, metrics in per_query.items():
        entry: dict = {}
        for metric, values in metrics.items():
            name = "rank1" if metric == "rank1" else "mAP"
            mean, low, high = bootstrap_identities(
                values.mean(0), ids, settings.bootstrap, settings.bootstrap_seed
            )
            entry[name] = {
                "mean": 100 * mean,
                "bootstrap_ci": [100 * low, 100 * high],
                "per_seed": (100 * values.mean(1)).tolist(),
            }
            if arm != "T":
                diff = values - per_query["T"][metric]  # paired by seed and query
                per_seed = diff.mean(1)
                t_ci = [100 * v for v in t_interval(per_seed)[1:]] if len(seeds) >= 2 else None
                _, b_low, b_high = bootstrap_identities(
                    diff.mean(0), ids, settings.bootstrap, settings.bootstrap_seed
                )
                entry[name]["gain"] = {
                    "mean": 100 * float(per_seed.mean()),
                    "per_seed": (100 * per_seed).tolist(),
                    "t_ci": t_ci,  # None with one seed
                    "bootstrap_ci": [100 * b_low, 100 * b_high],
                    "seeds_better": int((per_seed > 0).sum()),
                }
        summary["arms"][arm] = entry
    if {"gan", "oracle"} <= set(per_query):
        for name in ("rank1", "mAP"):
            gan = summary["arms"]["gan"][name]["gain"]["mean"]
            oracle = summary["arms"]["oracle"][name]["gain"]["mean"]
            summary.setdefault("gan_over_oracle", {})[name] = gan / oracle if oracle != 0 else None
    return summary


__all__ = [
    "ARMS",
    "ARM_LABELS",
    "StudySettings",
    "bootstrap_identities",
    "compute_seconds",
    "make_arms",
    "run_study",
    "score_run",
    "summarise",
    "t_interval",
    "train_generator",
]
