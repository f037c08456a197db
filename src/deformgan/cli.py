"""The ``deformgan`` command line: one subcommand per task, each a thin wrapper over a Python function.

Every command turns an :class:`~deformgan.errors.InputError` (bad file, row or argument) into one line on
stderr and exit status 2 — no traceback for a user's typo.
"""

from __future__ import annotations

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
    from deformgan.evaluate import evaluate as run_evaluation
    from deformgan.evaluate import markdown_table, write_results

    results = run_evaluation(
        generated, data=data, annotations=annotations or None, pairs=pairs, triplets=triplets,
        dataset=dataset, weights=weights, device=device, batch_size=batch_size,
    )  # fmt: skip
    scores = {key: value for key, value in results.items() if key != "meta"}
    typer.echo(markdown_table({generated.name or "generated": scores}))
    if out is not None:
        json_path, md_path = write_results(results, out)
        typer.echo(f"wrote {json_path} and {md_path}")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except InputError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
