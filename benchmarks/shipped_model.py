"""Train, measure and export the model shipped inside the package (``shipped:synth-people``).

The demo (``deformgan demo``) and the editor open this model first, so it must be good on people it never
saw. This script is the whole recipe, from nothing to ``src/deformgan/shipped_models/synth-people``:

1. **Training data** (``make_training_data``): synthetic people of seeds 1..S (``--seeds``), each seed
   rendered by :func:`deformgan.synth.write_synthetic_dataset` with its own six cameras, then merged into
   one dataset in the field's layout (identity ``i`` of seed ``s`` becomes identity ``s * 1000 + i``).
   The demo renders seed 0, so no demo person, test or train, and none of its cameras is ever seen in
   training. Several seeds give 6 x S camera lights and backgrounds, so the model learns to carry the
   source's colours over rather than to recognise six scenes. ``--cameras-per-identity 1`` (the default,
   the shipped model) has each person seen by one camera, so that source and target share scene and
   light: the target is then a function of the input, and the model learns to keep the photo's
   background (what a user moving their own photo wants) instead of guessing an unknown camera's. The
   demo's pairs still change camera; ``--cameras-per-identity 6`` trains on such pairs (compared in
   ``shipped_model_pilots.md``).
2. **Training** with ``configs/synth-people.yaml`` (``deformgan.train.train``, one process, the
   iteration count of the config unless ``--iterations``). The run folder is resumable: run the script
   again with the same ``--work`` folder and it continues.
3. **Measurement** on the demo's held-out pairs (seed 0, 48 identities x 8 poses, exactly what
   ``deformgan demo`` renders and scores): mask-SSIM, SSIM and L1 of copy-source, warp-only and the model,
   every ``--eval-every`` iterations (the learning curve) and at the end.
4. **Export** (``--export``): the last checkpoint's generator as float16 safetensors + ``model.json`` with
   the provenance (command, seeds, iterations, wall time, machine, scores), into the package.

Results: ``benchmarks/results/shipped_model.md`` (+ ``shipped_model.png``, the learning curve and a
comparison grid of held-out pairs).

    .venv/bin/python benchmarks/shipped_model.py --work runs/shipped --export    # the shipped model
    .venv/bin/python benchmarks/shipped_model.py --work /tmp/s --quick            # 1-minute smoke run
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from deformgan.atomic import atomic_write_text
from deformgan.keypoints import read_annotations, read_pairs, write_annotations, write_pairs
from deformgan.synth import write_synthetic_dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_description  # noqa: E402  (benchmarks/machine.py)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PREFIX = "synth"
SIZE = (128, 64)
#: The demo's data (deformgan.demo.run_demo defaults): the held-out pairs every number here is measured on.
DEMO_SEED, DEMO_IDENTITIES, DEMO_POSES = 0, 48, 8
SEED_STRIDE = 1000  # identity i of seed s -> s * SEED_STRIDE + i in the merged dataset


def make_training_data(
    out: Path, seeds: list[int], identities: int, poses: int, cameras_per_identity: int = 6
) -> dict:
    """Render each seed, merge them into one dataset at ``out`` (the field's layout); return its counts.

    Every seed keeps its own train/test split (test = 1/16 of the identities, used only for the run's
    sample grids); identities are renamed ``s * 1000 + i`` so that seeds never share a person.
    """
    if DEMO_SEED in seeds:
        raise SystemExit(f"--seeds must not contain the demo's seed {DEMO_SEED}: its people are held out")
    marker = out / "merged.json"
    if marker.is_file():
        return json.loads(marker.read_text())
    parts = out / "parts"
    merged: dict[str, dict[str, np.ndarray]] = {"train": {}, "test": {}}
    pairs: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    for seed in seeds:
        part = parts / f"seed-{seed}"
        written = write_synthetic_dataset(
            part, identities=identities, poses_per_identity=poses, size=SIZE, seed=seed,
            test_fraction=1 / 16, prefix=PREFIX, progress=True, overwrite=True,
            cameras_per_identity=cameras_per_identity,
        )  # fmt: skip
        layout = written.layout
        for split in ("train", "test"):
            folder = out / f"{PREFIX}-dataset" / split
            folder.mkdir(parents=True, exist_ok=True)

            def renamed(name: str, seed: int = seed) -> str:
                identity, rest = name.split("_", 1)
                return f"{seed * SEED_STRIDE + int(identity):05d}_{rest}"

            for name, kp in read_annotations(layout.annotation_files[split]).items():
                shutil.move(layout.image_dirs[split] / name, folder / renamed(name))
                merged[split][renamed(name)] = kp
            pairs[split] += [(renamed(a), renamed(b)) for a, b in read_pairs(layout.pairs_files[split])]
    for split in ("train", "test"):
        write_annotations(out / f"{PREFIX}-annotation-{split}.csv", merged[split])
        write_pairs(out / f"{PREFIX}-pairs-{split}.csv", pairs[split])
    shutil.rmtree(parts)
    counts = {
        "seeds": seeds,
        "identities_per_seed": identities,
        "poses_per_identity": poses,
        "cameras_per_identity": cameras_per_identity,
        "images": {split: len(merged[split]) for split in merged},
        "pairs": {split: len(pairs[split]) for split in pairs},
    }
    atomic_write_text(marker, json.dumps(counts, indent=1) + "\n")
    return counts


# ----------------------------------------------------------------------------------------------
# Measurement on the demo's held-out pairs


def demo_pairs(work: Path):
    """The held-out pairs ``deformgan demo`` scores (its default data, rendered once into ``work``)."""
    from deformgan.demo import held_out_pairs

    data = work / "demo-data"
    if not (data / "synth.json").is_file():
        write_synthetic_dataset(
            data, identities=DEMO_IDENTITIES, poses_per_identity=DEMO_POSES, size=SIZE, seed=DEMO_SEED,
            progress=False, overwrite=True,
        )  # fmt: skip
    return held_out_pairs(data)


def references(pairs) -> dict[str, np.ndarray]:
    """copy-source and warp-only outputs of the held-out pairs (no network)."""
    from deformgan.evaluation.baselines import copy_source, warp_only

    return {
        "copy_source": copy_source(pairs.sources),
        "warp_only": warp_only(pairs.sources, pairs.source_kp, pairs.target_kp),
    }


def score_model(model_path: Path, pairs) -> tuple[dict[str, float], np.ndarray]:
    """(scores, uint8 outputs) of a checkpoint or model folder on the held-out pairs."""
    from deformgan.demo import generate_pairs, score_methods
    from deformgan.transfer import PoseTransfer

    outputs = generate_pairs(PoseTransfer.from_checkpoint(model_path, device="cpu"), pairs)
    return score_methods({"model": outputs}, pairs)["model"], outputs


def learning_curve(run_dir: Path, pairs, curve_file: Path) -> dict[str, dict[str, float]]:
    """Scores of every kept ``ckpt-*`` of the run (cached in ``curve_file``): {step: scores}."""
    curve = json.loads(curve_file.read_text()) if curve_file.is_file() else {}
    for folder in sorted(run_dir.glob("ckpt-*")):
        step = str(int(folder.name.split("-")[1]))
        if step not in curve:
            curve[step] = score_model(folder, pairs)[0]
            atomic_write_text(curve_file, json.dumps(curve, indent=1) + "\n")
            print(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in curve[step].items()), flush=True)
    return dict(sorted(curve.items(), key=lambda item: int(item[0])))


# ----------------------------------------------------------------------------------------------
# What limits the score: references that need no network, and the score per view change


def ceiling_references(pairs) -> dict[str, dict[str, float]]:
    """Scores of images made from the ground truth, to read a model's score against (module docstring).

    - ``truth_in_source_camera``: the renderer draws the target person in the target pose, exactly, but seen
      by the SOURCE image's camera (its background and light): what a perfect generator can reach, since
      nothing in the input tells the target camera.
    - ``truth_shifted_1.5px``: the true target moved by a random (x, y) shift of standard deviation 1.5 px,
      the synthetic keypoints' noise (``KEYPOINT_NOISE`` x the person's scale, ~37 px): where edges can be
      placed from noisy keypoints.
    - ``truth_blurred_2px`` / ``_3px``: the true target blurred by a Gaussian of that sigma.
    - ``warp_over_true_background``: warp-only with its empty pixels taken from the true target blurred by
      6 px: the part warps' own error once the background is forgiven.
    """
    from scipy.ndimage import gaussian_filter
    from scipy.ndimage import shift as nd_shift

    from deformgan.demo import score_methods
    from deformgan.evaluation.baselines import warp_only
    from deformgan.synth.dataset import NUM_CAMERAS, render_sample
    from deformgan.synth.render import make_cameras

    cameras = make_cameras(DEMO_SEED, NUM_CAMERAS)

    def identity_and_index(name: str) -> tuple[int, int]:
        # the synthetic writer names image `index` of an identity by its sorted random frame number
        identity, frame = int(name.split("_")[0]), int(name.split("_")[2])
        frames = np.sort(
            np.random.default_rng([DEMO_SEED, identity, 2]).choice(1_000_000, DEMO_POSES, replace=False)
        )
        return identity, int(np.flatnonzero(frames == frame)[0])

    oracle = []
    for source, target in pairs.dataset.pairs:
        camera = cameras[int(source.split("_")[1][1]) - 1]
        person = render_sample(DEMO_SEED, *identity_and_index(target), SIZE, cameras=[camera] * NUM_CAMERAS)
        oracle.append(person.image)
    truth = pairs.targets.astype(np.float32)
    rng = np.random.default_rng(0)
    shifted = [
        nd_shift(t, (*rng.normal(0.0, 1.5, 2)[::-1], 0), order=1, mode="nearest") for t in truth
    ]  # fmt: skip
    warped = warp_only(pairs.sources, pairs.source_kp, pairs.target_kp)
    empty = (warped == 0).all(-1, keepdims=True)
    background = gaussian_filter(truth, sigma=(0, 6, 6, 0))

    def as_uint8(images) -> np.ndarray:
        return np.clip(np.asarray(images) + 0.5, 0, 255).astype(np.uint8)

    images = {
        "truth_in_source_camera": np.stack(oracle),
        "truth_shifted_1.5px": as_uint8(shifted),
        "truth_blurred_2px": as_uint8(gaussian_filter(truth, sigma=(0, 2, 2, 0))),
        "truth_blurred_3px": as_uint8(gaussian_filter(truth, sigma=(0, 3, 3, 0))),
        "warp_over_true_background": np.where(empty, as_uint8(background), warped),
    }
    return score_methods(images, pairs)


def scores_by_view(outputs: dict[str, np.ndarray], pairs, data: Path) -> list[tuple[str, int, dict]]:
    """mask-SSIM of each method on pairs whose source and target views are the same / differ."""
    from deformgan.evaluation.metrics import ssim

    views = json.loads((data / "synth.json").read_text())["images"]
    same = np.array([views[a]["view"] == views[b]["view"] for a, b in pairs.dataset.pairs])
    per_pair = {name: ssim(images, pairs.targets, pairs.masks) for name, images in outputs.items()}
    rows = []
    for label, chosen in (("same view", same), ("view changes (e.g. front -> back)", ~same)):
        rows.append((label, int(chosen.sum()), {k: float(v[chosen].mean()) for k, v in per_pair.items()}))
    return rows


def other_pair_sets(work: Path, model_path: Path, count: int) -> dict[str, dict[str, dict[str, float]]]:
    """Scores of copy-source, warp-only and the model on two more pair sets, to tell fitting from
    generalising and the camera change from the person: the demo's people (seed 0, never trained on)
    rendered with one camera per person, so that each pair shares scene and light as a user's own photo
    does; and ``count`` of the model's own training pairs."""
    from deformgan.demo import dataset_pairs, score_methods

    same_camera = work / "demo-data-one-camera"
    if not (same_camera / "synth.json").is_file():
        write_synthetic_dataset(
            same_camera, identities=DEMO_IDENTITIES, poses_per_identity=DEMO_POSES, size=SIZE,
            seed=DEMO_SEED, progress=False, overwrite=True, cameras_per_identity=1,
        )  # fmt: skip
    sets = {
        f"held-out people, one camera each (seed {DEMO_SEED})": dataset_pairs(same_camera, "test"),
        "training pairs (evenly spaced, at most as many as the held-out ones)": dataset_pairs(
            work / "data", "train", count
        ),
    }
    table = {}
    for label, pairs in sets.items():
        outputs = references(pairs)
        outputs["model"] = score_model(model_path, pairs)[1]
        table[label] = score_methods(outputs, pairs) | {"n": len(pairs.sources)}
    return table


# ----------------------------------------------------------------------------------------------
# Pictures


def curve_figure(curve: dict[str, dict[str, float]], refs: dict[str, dict[str, float]]):
    """mask-SSIM of the checkpoints against iterations, with the copy-source / warp-only levels."""
    from deformgan.demo import plot_curves

    steps = [float(s) for s in curve]
    series = {"model": (steps, [curve[s]["mask_ssim"] for s in curve])}
    for name, scores in refs.items():
        series[name.replace("_", "-")] = ([steps[0], steps[-1]], [scores["mask_ssim"]] * 2)
    return plot_curves(series, title="mask-SSIM on the demo's held-out pairs vs iterations")


def write_figure(path: Path, curve, refs, pairs, outputs: dict[str, np.ndarray]) -> None:
    from deformgan.demo import GRID_ROWS, _grid_rows, _stack, comparison_grid

    grid = comparison_grid(pairs, outputs, _grid_rows(pairs, GRID_ROWS))
    _stack([curve_figure(curve, refs), grid]).save(path)


# ----------------------------------------------------------------------------------------------
# The recipe


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="data + run folder (resumable)")
    parser.add_argument("--config", default="synth-people", help="config name or YAML")
    parser.add_argument("--iterations", type=int, default=None, help="default: the config's")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--identities", type=int, default=100, help="identities per seed")
    parser.add_argument("--poses", type=int, default=8, help="images per identity")
    parser.add_argument(
        "--cameras-per-identity",
        type=int,
        default=1,
        help="cameras that see each person: 1 (the shipped model; pairs share scene and light) to 6",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--override", nargs="*", default=[], help="config overrides, section.key=value")
    parser.add_argument("--export", action="store_true", help="write the model into the package")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny data, 40 iterations")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch

    from deformgan.checkpoint import SHIPPED_MODELS_DIR, export_generator, load_checkpoint
    from deformgan.config import find_config, load_config
    from deformgan.train import read_log, train

    torch.set_num_threads(args.threads)
    overrides = ["train.device=cpu", *args.override]
    if args.quick:
        args.seeds, args.identities, args.poses = [1], 8, 4
        overrides += ["train.iterations=40", "train.checkpoint_every=20", "train.sample_every=20"]
    config = load_config(find_config(args.config), overrides)
    total = config.train.iterations if args.iterations is None else args.iterations
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    counts = make_training_data(
        work / "data", args.seeds, args.identities, args.poses, args.cameras_per_identity
    )
    run_dir = work / "run"
    resume = run_dir if (run_dir / "latest").is_file() else None
    train(config, work / "data", run_dir, iterations=total, resume=resume, tensorboard=False)
    log = read_log(run_dir)
    train_s = float(np.sum(log["time/step"])) * config.train.log_every  # mean step time x iterations

    pairs = demo_pairs(work)
    ref_outputs = references(pairs)
    from deformgan.demo import score_methods

    refs = score_methods(ref_outputs, pairs)
    curve = learning_curve(run_dir, pairs, work / "curve.json")
    final_scores, final_outputs = score_model(run_dir, pairs)
    margin = final_scores["mask_ssim"] - refs["warp_only"]["mask_ssim"]
    ceilings = ceiling_references(pairs)
    by_view = scores_by_view({**ref_outputs, "model": final_outputs}, pairs, work / "demo-data")
    other_sets = other_pair_sets(work, run_dir, len(pairs.sources))

    command = "python benchmarks/shipped_model.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    n_params = sum(v.numel() for v in load_checkpoint(run_dir, weights_only=True).generator.values())
    summary = (
        f"{config.name}: {total} iterations of batch {config.train.batch_size} on synthetic people of "
        f"seeds {', '.join(map(str, args.seeds))} ({counts['images']['train']} training images), never the "
        "demo's"
    )
    provenance = {
        "summary": summary,
        "command": command,
        "config": config.name,
        "iterations": total,
        "training_seeds": args.seeds,
        "cameras_per_identity": args.cameras_per_identity,
        "training_images": counts["images"]["train"],
        "training_pairs": counts["pairs"]["train"],
        "train_wall_s": round(train_s),
        "machine": machine_description(),
        "threads": args.threads,
        "held_out": f"deformgan demo data: seed {DEMO_SEED}, {DEMO_IDENTITIES} identities x {DEMO_POSES}",
        "scores_on_demo_pairs": final_scores,
    }
    if args.export:
        target = SHIPPED_MODELS_DIR / "synth-people"
        export_generator(run_dir, target, dtype="float16", provenance=provenance)
        exported_scores, _ = score_model(target, pairs)
        scored = ", ".join(f"{k} {v:.4f}" for k, v in exported_scores.items())
        print(f"exported {target} (float16): {scored}")
    else:
        exported_scores = None

    args.results.mkdir(parents=True, exist_ok=True)
    figure = args.results / ("shipped_model_quick.png" if args.quick else "shipped_model.png")
    shown = {"warp_only": ref_outputs["warp_only"], "shipped": final_outputs}
    write_figure(figure, curve, refs, pairs, shown)
    lines = [
        "## Shipped model (`shipped:synth-people`) and the demo's measured quality",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_description()}, {args.threads} thread(s).  ",
        f"Config: `configs/{config.name}.yaml`; {total} iterations, batch {config.train.batch_size}, "
        f"{n_params:,} generator parameters; training {train_s / 3600:.2f} h, this invocation of the script "
        f"{(time.perf_counter() - started) / 3600:.2f} h.  ",
        f"Training data: seeds {args.seeds}, {args.identities} identities x {args.poses} poses each, "
        f"{args.cameras_per_identity} camera(s) per person "
        f"({counts['images']['train']} images, {counts['pairs']['train']} pairs). Held-out: the demo's "
        f"{len(pairs.sources)} test pairs (seed {DEMO_SEED}, never seen: other people, other cameras).",
        "",
        "| method | mask-SSIM ↑ | SSIM ↑ | L1 ↓ |",
        "|---|---|---|---|",
    ]
    rows = {**refs, "shipped (float32 checkpoint)": final_scores}
    if exported_scores is not None:
        rows["shipped (float16 export, what the package holds)"] = exported_scores
    for name, scores in rows.items():
        lines.append(f"| {name} | {scores['mask_ssim']:.4f} | {scores['ssim']:.4f} | {scores['l1']:.4f} |")
    lines += [
        "",
        f"Margin over warp-only: {margin:+.4f} mask-SSIM (target >= +0.06); absolute target > 0.87."
        + (
            ' Not reached: what limits it is measured in `shipped_model_pilots.md` ("What limits the '
            'shipped model").'
            if margin < 0.06 or final_scores["mask_ssim"] <= 0.87
            else ""
        ),
        "",
        "What the score can reach on these pairs (images made from the ground truth, no network; "
        "`ceiling_references` in the script):",
        "",
        "| reference | mask-SSIM | SSIM | L1 |",
        "|---|---|---|---|",
        *(
            f"| {name} | {v['mask_ssim']:.4f} | {v['ssim']:.4f} | {v['l1']:.4f} |"
            for name, v in ceilings.items()
        ),
        "",
        "mask-SSIM by view change (same pairs):",
        "",
        "| pairs | n | " + " | ".join(by_view[0][2]) + " |",
        "|---|---|" + "---|" * len(by_view[0][2]),
        *(
            f"| {label} | {n} | " + " | ".join(f"{v:.4f}" for v in row.values()) + " |"
            for label, n, row in by_view
        ),
        "",
        "The same final model on other pairs (mask-SSIM; `other_pair_sets` in the script):",
        "",
        "| pairs | n | copy_source | warp_only | model |",
        "|---|---|---|---|---|",
        *(
            f"| {label} | {row['n']} | "
            + " | ".join(f"{row[m]['mask_ssim']:.4f}" for m in ("copy_source", "warp_only", "model"))
            + " |"
            for label, row in other_sets.items()
        ),
        "",
        "Learning curve (mask-SSIM / SSIM / L1 of each kept checkpoint on the same pairs):",
        "",
        "| iteration | mask-SSIM | SSIM | L1 |",
        "|---|---|---|---|",
        *(f"| {s} | {v['mask_ssim']:.4f} | {v['ssim']:.4f} | {v['l1']:.4f} |" for s, v in curve.items()),
        "",
        f"Figure: `benchmarks/results/{figure.name}` (curve; rows of held-out pairs: source | target pose | "
        "ground truth | warp-only | shipped).",
        "",
    ]
    name = "shipped_model_quick.md" if args.quick else "shipped_model.md"
    atomic_write_text(args.results / name, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
