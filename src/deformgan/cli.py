"""The ``deformgan`` command line: one subcommand per task, each a thin wrapper over a Python function.

Every command turns an :class:`~deformgan.errors.InputError` (bad file, row or argument) into one line on
stderr and exit status 2 — no traceback for a user's typo.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from deformgan.errors import InputError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Deformable GANs for pose-based human image generation (Siarohin et al., CVPR 2018).",
)


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Output folder (the Market-1501 layout is written inside).")],
    identities: Annotated[int, typer.Option(help="Number of synthetic people (train + test).")] = 40,
    poses_per_identity: Annotated[int, typer.Option(help="Images per person.")] = 8,
    size: Annotated[str, typer.Option(help="Image size HxW, e.g. 128x64 (Market) or 256x256.")] = "128x64",
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes byte-identical files.")] = 0,
    test_fraction: Annotated[float, typer.Option(help="Fraction of identities held out for test.")] = 0.25,
    prefix: Annotated[str, typer.Option(help="File-name prefix (<prefix>-annotation-...).")] = "synth",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset in OUT.")] = False,
    preview: Annotated[bool, typer.Option(help="Also write OUT/preview.png (people with skeletons).")] = True,
) -> None:
    """Write a synthetic-people dataset with exact keypoints and ground truth."""
    from deformgan.synth import preview_grid, write_synthetic_dataset

    dataset = write_synthetic_dataset(
        out, identities=identities, poses_per_identity=poses_per_identity, size=size, seed=seed,
        test_fraction=test_fraction, prefix=prefix, overwrite=overwrite,
    )  # fmt: skip
    images, pair_counts = dataset.num_images, dataset.num_pairs
    typer.echo(
        f"wrote {sum(images.values())} images ({images['train']} train, {images['test']} test) and "
        f"{sum(pair_counts.values())} pairs to {out}"
    )
    if preview:
        path = preview_grid(Path(out) / "preview.png", size=dataset_size(size), seed=seed)
        typer.echo(f"preview: {path}")


def dataset_size(size: str) -> tuple[int, int]:
    from deformgan.synth import parse_size

    return parse_size(size)


@app.command()
def pairs(
    root: Annotated[Path, typer.Argument(help="Dataset folder (<prefix>-dataset/, annotation CSVs).")],
    prefix: Annotated[str | None, typer.Option(help="Dataset prefix when the folder holds several.")] = None,
    test_sample: Annotated[int, typer.Option(help="Test pairs drawn at random (the field: 12,000).")] = 12000,
    seed: Annotated[int, typer.Option(help="Seed of the test draw (the reference: 0).")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace existing pairs files.")] = False,
) -> None:
    """Create <prefix>-pairs-{train,test}.csv for your own images + annotations, as the reference does."""
    from deformgan.data import write_pair_files

    written = write_pair_files(root, prefix=prefix, test_sample=test_sample, seed=seed, overwrite=overwrite)
    for split, (path, count) in written.items():
        typer.echo(f"{split}: {count} pairs -> {path}")


@app.command("check-data")
def check_data(
    root: Annotated[Path, typer.Argument(help="Dataset folder.")],
    preset: Annotated[str, typer.Option(help="market | deepfashion | deepfashion-176")] = "market",
    split: Annotated[str, typer.Option(help="train | test")] = "train",
    prefix: Annotated[str | None, typer.Option(help="Dataset prefix when the folder holds several.")] = None,
) -> None:
    """Check a dataset folder: every pair annotated, every image present and of the preset's size."""
    from deformgan.data import PairDataset

    dataset = PairDataset(root, split=split, preset=preset, prefix=prefix)
    checked = dataset.check_images()
    typer.echo(f"ok: {len(dataset)} {split} pairs, {checked} images of the right size")


@app.command()
def evaluate(
    generated: Annotated[Path, typer.Option(help="Folder of <from>_<to>.png images (or strips).")],
    data: Annotated[Path | None, typer.Option(help="Dataset folder: keypoints, pairs, real images.")] = None,
    annotations: Annotated[
        list[Path] | None, typer.Option(help="Annotation CSV(s) with the keypoints (instead of --data).")
    ] = None,
    pairs: Annotated[Path | None, typer.Option(help="Pairs CSV (default: the dataset's test pairs).")] = None,
    triplets: Annotated[bool, typer.Option(help="Images are [source | target | generated] strips.")] = False,
    dataset: Annotated[str | None, typer.Option(help="market | deepfashion (default: by size).")] = None,
    out: Annotated[Path | None, typer.Option(help="JSON file (a .md table is written beside it).")] = None,
    weights: Annotated[Path | None, typer.Option(help="Folder holding pretrained weights files.")] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N")] = "cpu",
    batch_size: Annotated[int, typer.Option(help="Images per batch for the network metrics.")] = 50,
) -> None:
    """Score generated images: SSIM, mask-SSIM, IS, mask-IS, DS (+ HOG), LPIPS, FID, L1."""
    from deformgan.evaluation import evaluate as run_evaluation
    from deformgan.evaluation import markdown_table, write_results

    results = run_evaluation(
        generated, data=data, annotations=annotations or None, pairs=pairs, triplets=triplets,
        dataset=dataset, weights=weights, device=device, batch_size=batch_size,
    )  # fmt: skip
    scores = {key: value for key, value in results.items() if key != "meta"}
    typer.echo(markdown_table({generated.name or "generated": scores}))
    if out is not None:
        json_path, md_path = write_results(results, out)
        typer.echo(f"wrote {json_path} and {md_path}")


@app.command()
def train(
    config: Annotated[
        str | None, typer.Option(help="Config YAML, or a shipped config's name (e.g. market-full).")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="Dataset folder (default: the config's data.root).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (checkpoints, logs, samples).")] = None,
    iterations: Annotated[int | None, typer.Option(help="TOTAL iterations (also when resuming).")] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Run folder to continue from its newest checkpoint.")
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Config overrides section.key=value, e.g. train.batch_size=2")
    ] = None,
) -> None:
    """Train a Deformable GAN (one of the paper's configs, or your own). Multi-GPU: run under torchrun."""
    from deformgan.config import find_config, load_config
    from deformgan.train import train as run_training

    if resume is None and config is None:
        raise InputError("--config: give a config file or name (see configs/), or --resume RUN_DIR")
    loaded = None
    if config is not None:
        loaded = load_config(find_config(config), overrides or ())
    elif overrides:
        raise InputError("overrides apply to --config; a resumed run keeps the config saved in its folder")
    run_dir = run_training(loaded, data, out, iterations=iterations, resume=resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for the job
        typer.echo(f"run folder: {run_dir}")


@app.command()
def generate(
    checkpoint: Annotated[Path, typer.Option(help="Run folder or ckpt-* folder.")],
    out: Annotated[Path, typer.Option(help="Output folder: one <from>_<to>.png per pair.")],
    data: Annotated[Path | None, typer.Option(help="Dataset folder (default: the run's).")] = None,
    pairs: Annotated[Path | None, typer.Option(help="Pairs CSV (default: the test pairs).")] = None,
    batch_size: Annotated[int, typer.Option(help="Pairs per batch.")] = 16,
    strips: Annotated[bool, typer.Option(help="Write [source | target | generated] strips.")] = False,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
) -> None:
    """Generate the target-pose image of every pair (resumable: existing images are kept)."""
    from deformgan.generate import generate as run_generation

    folder = run_generation(checkpoint, data, pairs, out, batch_size=batch_size, strips=strips, device=device)
    typer.echo(f"images: {folder}")


def _pose_from(annotations: dict, name: str, option: str):
    if name not in annotations:
        raise InputError(f"{option}: {name!r} is not a row of the annotation file")
    return annotations[name]


@app.command()
def transfer(
    checkpoint: Annotated[Path, typer.Option(help="Run folder or ckpt-* folder.")],
    image: Annotated[Path, typer.Option(help="Photo of the person (resized to the model's size).")],
    annotations: Annotated[Path, typer.Option(help="Annotation CSV holding the poses (name:y:x rows).")],
    source: Annotated[str, typer.Option(help="Row name of the person's own keypoints (in --image's frame).")],
    out: Annotated[Path, typer.Option(help="Output PNG (one pose) or GIF (--sequence).")],
    target: Annotated[str | None, typer.Option(help="Row name of the target pose.")] = None,
    sequence: Annotated[
        Path | None, typer.Option(help="Annotation CSV of a pose sequence (rows in order) -> GIF.")
    ] = None,
    fps: Annotated[float, typer.Option(help="GIF frames per second.")] = 10.0,
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N")] = "cpu",
) -> None:
    """Move a person into a target pose (PNG), or make them follow a pose sequence (animated GIF)."""
    from deformgan.keypoints import read_annotations
    from deformgan.transfer import PoseTransfer

    if (target is None) == (sequence is None):
        raise InputError("give exactly one of --target NAME (one image) or --sequence CSV (a GIF)")
    poses = read_annotations(annotations)
    source_kp = _pose_from(poses, source, "--source")
    model = PoseTransfer.from_checkpoint(checkpoint, device=device)
    if target is not None:
        result = model.transfer(image, source_kp, _pose_from(poses, target, "--target"))
        from deformgan.images import write_image

        write_image(result, out)
    else:
        frames = list(read_annotations(sequence).values())
        if not frames:
            raise InputError(f"{sequence}: no poses in the sequence file")
        model.animate(image, source_kp, frames, out, fps=fps)
    typer.echo(f"wrote {out}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("demo-output"),
    minutes: Annotated[float, typer.Option(help="Wall-clock budget for the whole demo.")] = 5.0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads (default: torch's; use 1 on a busy shared machine).")
    ] = None,
) -> None:
    """No data, no weights: synthetic people -> train a small Full model on the CPU -> pictures + summary."""
    from deformgan.demo import run_demo

    summary = run_demo(out, minutes_budget=minutes, seed=seed, threads=threads)
    typer.echo(f"demo summary: {summary}")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except InputError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
