"""The ``deformgan`` command line: one subcommand per task, each a thin wrapper over a Python function.

Errors never end in a traceback: bad input (a file, row or argument) is one line ``error: ...`` on stderr
and exit status 2; a run that cannot go on (a full disk, a diverged loss) exit status 1; Ctrl-C exit
status 130 after saving what can be saved.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from deformgan.errors import DeformganError, InputError, Interrupted, RunFailed

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts show [source | target | generated] literally
    help="Deformable GANs for pose-based human image generation (Siarohin et al., CVPR 2018).",
)


# ----------------------------------------------------------------------------------------------
# Argument checks shared by the commands


MODEL_HELP = "Run folder, ckpt-* folder, exported model folder, or shipped:synth-people."


def _positive(value: int, option: str) -> int:
    if value < 1:
        raise InputError(f"{option}: expected an integer >= 1, got {value}")
    return value


def _device(name: str, option: str = "--device") -> str:
    from deformgan.runtime import resolve_device

    try:
        resolve_device(name)
    except InputError as error:
        raise InputError(f"{option}: {error}") from None
    return name


def _existing(path: Path | None, option: str) -> Path | None:
    if path is not None and not path.exists():
        raise InputError(f"{option}: {path} does not exist")
    return path


def _folder_out(path: Path, option: str = "--out") -> Path:
    if path.exists() and not path.is_dir():
        raise InputError(f"{option}: {path} is a file, expected a folder")
    return path


def _frame(text: str | None, option: str = "--frame") -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise InputError(f"{option}: expected HxW with positive integers (e.g. 128x64), got {text!r}")
    return int(parts[0]), int(parts[1])


def _say(message: str) -> None:
    typer.echo(message, err=True)


# ----------------------------------------------------------------------------------------------
# Data


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
    from deformgan.synth import parse_size, preview_grid, write_synthetic_dataset

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
        path = preview_grid(Path(out) / "preview.png", size=parse_size(size), seed=seed)
        typer.echo(f"preview: {path}")


@app.command()
def pairs(
    root: Annotated[Path, typer.Argument(help="Dataset folder (<prefix>-dataset/, annotation CSVs).")],
    prefix: Annotated[str | None, typer.Option(help="Dataset prefix when the folder holds several.")] = None,
    test_sample: Annotated[int, typer.Option(help="Test pairs drawn at random (the field: 12,000).")] = 12000,
    seed: Annotated[int, typer.Option(help="Seed of the test draw (the authors': 0).")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace existing pairs files.")] = False,
) -> None:
    """Create <prefix>-pairs-{train,test}.csv for your own images + annotations, as the authors do."""
    from deformgan.data import write_pair_files

    written = write_pair_files(root, prefix=prefix, test_sample=test_sample, seed=seed, overwrite=overwrite)
    for split, (path, count) in written.items():
        typer.echo(f"{split}: {count} pairs -> {path}")


@app.command("check-data")
def check_data(
    root: Annotated[Path, typer.Argument(help="Dataset folder.")],
    preset: Annotated[str, typer.Option(help="market | deepfashion | deepfashion-176")] = "market",
    split: Annotated[str, typer.Option(help="train | test | all (every split with a pairs file)")] = "all",
    prefix: Annotated[str | None, typer.Option(help="Dataset prefix when the folder holds several.")] = None,
) -> None:
    """Check a dataset: every pair annotated with a full torso, every image present, decodable, of the
    preset's size (training reads the test split too, for its sample grids)."""
    from deformgan.data import SPLITS, PairDataset, find_layout

    if split not in (*SPLITS, "all"):
        raise InputError(f"--split: expected train, test or all, got {split!r}")
    layout = find_layout(root, prefix)
    splits = [s for s in SPLITS if layout.pairs_files[s].is_file()] if split == "all" else [split]
    if not splits:
        raise InputError(f"{root}: no pairs files (create them with: deformgan pairs {root})")
    for name in splits:
        dataset = PairDataset(root, split=name, preset=preset, prefix=layout.prefix)
        checked = dataset.check_images(progress=True)
        typer.echo(f"ok: {len(dataset)} {name} pairs, {checked} images decoded, all of the right size")


# ----------------------------------------------------------------------------------------------
# Training and generation


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
        Path | None,
        typer.Option(help="Run folder to continue from its newest checkpoint, or one of its ckpt-* folders."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Start anew in a run folder that holds an old run.")
    ] = False,
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Config overrides section.key=value, e.g. train.batch_size=2")
    ] = None,
) -> None:
    """Train a Deformable GAN (one of the paper's configs, or your own). Multi-GPU: run under torchrun.

    Ctrl-C stops after the current iteration with a checkpoint; --resume continues.
    """
    from deformgan.config import find_config, load_config
    from deformgan.train import train as run_training

    if resume is None and config is None:
        raise InputError("--config: give a config file or name (see configs/), or --resume RUN_DIR")
    loaded = None
    if config is not None:
        loaded = load_config(find_config(config), overrides or ())
    elif overrides:
        raise InputError("overrides apply to --config; a resumed run keeps the config saved in its folder")
    run_dir = run_training(loaded, data, out, iterations=iterations, resume=resume, overwrite=overwrite)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for the job
        typer.echo(f"run folder: {run_dir}")


@app.command()
def generate(
    checkpoint: Annotated[Path, typer.Option(help=MODEL_HELP)],
    out: Annotated[Path, typer.Option(help="Output folder: one <from>_<to>.png per pair.")],
    data: Annotated[Path | None, typer.Option(help="Dataset folder (default: the run's).")] = None,
    pairs: Annotated[Path | None, typer.Option(help="Pairs CSV (default: the test pairs).")] = None,
    batch_size: Annotated[int, typer.Option(help="Pairs per batch.")] = 16,
    strips: Annotated[bool, typer.Option(help="Write [source | target | generated] strips.")] = False,
    quantisation: Annotated[
        str, typer.Option(help="round | truncate (the authors' uint8 conversion, for evaluation parity)")
    ] = "round",
    overwrite: Annotated[bool, typer.Option(help="Replace images another checkpoint made in OUT.")] = False,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
) -> None:
    """Generate the target-pose image of every pair (resumable: existing images of the same run are kept)."""
    from deformgan.generate import generate as run_generation

    _positive(batch_size, "--batch-size")
    result = run_generation(
        checkpoint, data, pairs, _folder_out(out), batch_size=batch_size, strips=strips,
        device=_device(device), quantisation=quantisation, overwrite=overwrite,
    )  # fmt: skip
    skipped = f", {result.skipped} already there (kept)" if result.skipped else ""
    typer.echo(f"images: {result.out} ({result.written} written{skipped})")


def _pose_row(annotations: Path, name: str | None, option: str):
    from deformgan.keypoints import read_annotations

    poses = read_annotations(annotations)
    if name is None:
        if len(poses) != 1:
            raise InputError(f"{option}: {annotations} holds {len(poses)} poses; name one with --row")
        return next(iter(poses.values()))
    if name not in poses:
        raise InputError(f"--row: {name!r} is not a row of {annotations}")
    return poses[name]


@app.command()
def transfer(
    checkpoint: Annotated[Path, typer.Option(help=MODEL_HELP)],
    image: Annotated[
        Path, typer.Option(help="Photo of the person (any size: the person is found and framed).")
    ],
    out: Annotated[Path, typer.Option(help="Output image (.png/.jpg) or, for a motion, .gif/.mp4.")],
    pose: Annotated[
        Path | None, typer.Option(help="Target pose: a photo of someone in it, or an annotation CSV (--row).")
    ] = None,
    row: Annotated[str | None, typer.Option(help="Row name of the target pose in the --pose CSV.")] = None,
    sequence: Annotated[
        Path | None, typer.Option(help="Annotation CSV of a pose sequence (rows in order) -> a motion.")
    ] = None,
    video: Annotated[
        Path | None, typer.Option(help="Driving video (or folder of frames): the person follows its motion.")
    ] = None,
    annotations: Annotated[
        Path | None,
        typer.Option(help="Annotation CSV with the person's own keypoints (instead of detecting)."),
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="Row name of the person's keypoints in --annotations.")
    ] = None,
    paste: Annotated[bool, typer.Option(help="Paste the generated person back into the photo.")] = False,
    fps: Annotated[
        float | None, typer.Option(help="Frames per second (default: the video's, or 10).")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N")] = "cpu",
) -> None:
    """Move the person of a photo into a target pose, or make them follow a pose sequence or a video."""
    import numpy as np

    from deformgan.images import IMAGE_FORMATS, VIDEO_FORMATS, read_image, write_image, write_video
    from deformgan.transfer import (
        PoseTransfer,
        person_from_photo,
        poses_from_video,
        side_by_side,
        skeleton_frames,
    )

    targets = [
        name for name, value in (("--pose", pose), ("--sequence", sequence), ("--video", video)) if value
    ]
    if len(targets) != 1:
        raise InputError("give exactly one target: --pose (a photo or CSV row), --sequence CSV or --video")
    if out.is_dir():
        raise InputError(f"--out: {out} is a folder, expected an image or video file name")
    moving = pose is None
    allowed = VIDEO_FORMATS if moving else tuple(IMAGE_FORMATS)
    if out.suffix.lower() not in allowed:
        raise InputError(f"--out: {out.name}: expected a {' or '.join(allowed)} file for this target")
    if fps is not None and not fps > 0:
        raise InputError(f"--fps: expected > 0, got {fps}")
    for path, option in ((image, "--image"), (pose, "--pose"), (sequence, "--sequence"), (video, "--video")):
        _existing(path, option)
    model = PoseTransfer.from_checkpoint(checkpoint, device=_device(device))
    size = model.image_size

    if annotations is not None:  # the person's keypoints given: the photo is used as it is (resized)
        person_image, source_kp, framing = read_image(image), _pose_row(annotations, source, "--source"), None
    else:
        person = person_from_photo(image, size)
        person_image, source_kp, framing = person.image, person.keypoints, person.framing

    if pose is not None:
        if pose.suffix.lower() == ".csv":
            target_kp = _pose_row(pose, row, "--pose")
        else:
            target_kp = person_from_photo(pose, size).keypoints
        result = model.render(person_image, source_kp, np.asarray(target_kp)[None])[0]
        if paste:
            if framing is None:
                raise InputError("--paste needs the person found in the photo (omit --annotations)")
            result = framing.paste(result, person.photo)
        write_image(result, out)
    elif sequence is not None:
        from deformgan.keypoints import read_annotations
        from deformgan.pose.sequence import fill_missing

        rows = list(read_annotations(sequence).values())
        if not rows:
            raise InputError(f"{sequence}: no poses in the sequence file")
        poses = fill_missing(np.stack(rows), max_gap=5)
        frames = model.render(person_image, source_kp, poses)
        write_video(side_by_side(skeleton_frames(poses, size), frames), out, fps or 10.0)
    else:
        driving, poses, rate = poses_from_video(video, size, fps)
        frames = model.render(person_image, source_kp, poses)
        write_video(side_by_side(driving, skeleton_frames(poses, size), frames), out, rate)
    typer.echo(f"wrote {out}")


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="Run folder or ckpt-* folder.")],
    out: Annotated[Path, typer.Option(help="Model folder to write (generator.safetensors + model.json).")],
    dtype: Annotated[str, typer.Option(help="float16 (half the size) | float32 (exact)")] = "float16",
) -> None:
    """Export the generator of a checkpoint alone (no optimiser state): for generate, transfer, editor."""
    from deformgan.checkpoint import export_generator

    folder = export_generator(checkpoint, out, dtype=dtype)
    size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    typer.echo(f"model: {folder} ({size:.1f} MiB)")


@app.command("import-keras")
def import_keras(
    file: Annotated[
        Path,
        typer.Argument(help="The authors' Keras 2.0.8 generator .h5 (e.g. generator-warp-mask-nn3-cl12.h5)."),
    ],
    config: Annotated[
        str | None,
        typer.Option(help="The paper config the file was trained with: market-full, fashion-dsc, ..."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder to write (new or empty).")] = None,
    discriminator: Annotated[
        Path | None, typer.Option(help="The matching discriminator .h5 (optional).")
    ] = None,
    check: Annotated[bool, typer.Option(help="Only print the architecture found in the file.")] = False,
) -> None:
    """Convert the authors' released Keras checkpoints into a run folder (generate, transfer, evaluate,
    train --resume and PoseTransfer use it)."""
    from deformgan.config import find_config, load_config
    from deformgan.keras_import import describe, import_run, inspect_keras_file

    _existing(file, "FILE")
    if check:
        for path in (file, discriminator):
            if path is not None:
                typer.echo(describe(inspect_keras_file(_existing(path, "--discriminator"))))
        return
    if config is None or out is None:
        raise InputError("give --config (e.g. market-full) and --out RUN_DIR, or --check")
    run_dir = import_run(
        file, load_config(find_config(config)), _folder_out(out), _existing(discriminator, "--discriminator")
    )
    typer.echo(f"run folder: {run_dir}")


# ----------------------------------------------------------------------------------------------
# Evaluation


@app.command()
def evaluate(
    generated: Annotated[Path, typer.Option(help="Folder of <from>_<to>.png images (or strips).")],
    data: Annotated[
        Path | None, typer.Option(help="Dataset folder: keypoints, test pairs, real images.")
    ] = None,
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
    frame: Annotated[str | None, typer.Option(help="Panel size HxW for a dataset of another size.")] = None,
    first_number: Annotated[int, typer.Option(help="Numbered strips: the number of the first pair.")] = 0,
) -> None:
    """Score generated images: SSIM, mask-SSIM, IS, mask-IS, DS (+ HOG), LPIPS, FID, L1.

    Reads deformgan's <from>_<to>.png images, the authors' [source | target | generated] strips,
    VUNet/PATN-style <from>___<to>_vis.jpg strips, or numbered strips (the format is detected and shown).
    """
    from deformgan.evaluation import evaluate as run_evaluation
    from deformgan.evaluation import markdown_table, write_results

    _positive(batch_size, "--batch-size")
    _existing(weights, "--weights")
    if out is not None and out.is_dir() and out.suffix == ".json":
        raise InputError(f"--out: {out} is a folder")
    results = run_evaluation(
        generated, data=data, annotations=annotations or None, pairs=pairs, triplets=triplets,
        dataset=dataset, weights=weights, device=_device(device), batch_size=batch_size,
        frame=_frame(frame), first_number=first_number,
    )  # fmt: skip
    meta = results["meta"]
    _say(meta["format_description"])
    for key, what in (("missing", "pairs without an image"), ("extra", "images of no pair")):
        if meta[key]["count"]:
            _say(f"note: {meta[key]['count']} {what} ({', '.join(meta[key]['examples'][:3])}, ...)")
    _say(f"scored {meta['pairs']} pairs: {meta['pairs_source']}")
    scores = {key: value for key, value in results.items() if key != "meta"}
    typer.echo(markdown_table({generated.name or "generated": scores}))
    if out is not None:
        json_path, md_path = write_results(results, out)
        typer.echo(f"wrote {json_path} and {md_path}")


@app.command()
def compare(
    method: Annotated[
        list[str], typer.Option(help="NAME=FOLDER of a method's images (repeat; column order).")
    ],
    out: Annotated[Path, typer.Option(help="Output folder: compare.json/.md, figures/, compare.html.")],
    data: Annotated[Path | None, typer.Option(help="Dataset folder: keypoints, targets, test pairs.")] = None,
    annotations: Annotated[
        list[Path] | None, typer.Option(help="Annotation CSV(s) instead of --data.")
    ] = None,
    pairs: Annotated[Path | None, typer.Option(help="Pairs CSV (names numbered strips; restricts).")] = None,
    first_number: Annotated[int, typer.Option(help="Numbered strips: the number of the first pair.")] = 0,
    frame: Annotated[str | None, typer.Option(help="Panel size HxW for a dataset of another size.")] = None,
    dataset: Annotated[str | None, typer.Option(help="market | deepfashion | deepfashion-176")] = None,
    weights: Annotated[Path | None, typer.Option(help="Folder holding pretrained weights files.")] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N")] = "cpu",
    rows_per_page: Annotated[int, typer.Option(help="Pairs per figure page.")] = 8,
    pages: Annotated[int, typer.Option(help="Figure pages to write (the HTML page lists every pair).")] = 10,
) -> None:
    """Compare several methods on the pairs they share: scores, paper-style figures, a sortable HTML page."""
    from deformgan.evaluation.compare import compare_methods, comparison_markdown

    methods = {}
    for entry in method:
        name, sep, folder = entry.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise InputError(f"--method: expected NAME=FOLDER, got {entry!r}")
        if name in methods:
            raise InputError(f"--method: the name {name!r} is given twice")
        methods[name.strip()] = Path(folder)
    _positive(rows_per_page, "--rows-per-page")
    _positive(pages, "--pages")
    result = compare_methods(
        methods, out=_folder_out(out), data=data, annotations=annotations or None, pairs=pairs,
        first_number=first_number, frame=_frame(frame), dataset=dataset,
        weights=_existing(weights, "--weights"), device=_device(device), rows_per_page=rows_per_page,
        max_pages=pages, progress=True,
    )  # fmt: skip
    for name, entry in result.get("methods", {}).items():
        _say(f"{name}: {entry.get('meta', {}).get('format_description', '')}")
    typer.echo(comparison_markdown(result))
    typer.echo(f"wrote {out / 'compare.html'}")


@app.command()
def failures(
    generated: Annotated[Path, typer.Option(help="The method's folder of generated images (any format).")],
    out: Annotated[Path, typer.Option(help="Output folder: failures.html/.json/.md.")],
    data: Annotated[
        Path | None, typer.Option(help="Dataset folder: keypoints, targets, training poses.")
    ] = None,
    annotations: Annotated[
        list[Path] | None, typer.Option(help="Annotation CSV(s) instead of --data.")
    ] = None,
    train_annotations: Annotated[
        list[Path] | None, typer.Option(help="Training annotation CSV(s): the poses that define rarity.")
    ] = None,
    pairs: Annotated[Path | None, typer.Option(help="Pairs CSV (names numbered strips; restricts).")] = None,
    score: Annotated[
        str, typer.Option(help="Per-pair score to rank by: mask_ssim, ssim, l1, lpips.")
    ] = "mask_ssim",
    worst: Annotated[int, typer.Option(help="How many of the worst pairs to show.")] = 50,
    threshold: Annotated[
        list[str] | None, typer.Option(help="CAUSE=VALUE to override a cause's threshold.")
    ] = None,
    frame: Annotated[str | None, typer.Option(help="Panel size HxW for a dataset of another size.")] = None,
    weights: Annotated[Path | None, typer.Option(help="Folder holding pretrained weights files.")] = None,
) -> None:
    """Rank the test pairs worst first and tag the worst with their likely causes (the paper's failure
    catalogue: keypoint errors, rare poses, occlusion ambiguity, large warps, rare appearance)."""
    from deformgan.evaluation.failures import failures_markdown, find_failures

    _positive(worst, "--worst")
    thresholds = {}
    for entry in threshold or ():
        name, sep, value = entry.partition("=")
        try:
            thresholds[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise InputError(f"--threshold: expected CAUSE=NUMBER, got {entry!r}")
    result = find_failures(
        generated, out=_folder_out(out), data=data, annotations=annotations or None,
        train_annotations=train_annotations or None, pairs=pairs, frame=_frame(frame), score=score,
        worst=worst, thresholds=thresholds or None, weights=_existing(weights, "--weights"), progress=True,
    )  # fmt: skip
    typer.echo(failures_markdown(result))
    typer.echo(f"wrote {out / 'failures.html'}")


reid_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Re-ID with generated people (supplementary Table 1)."
)
app.add_typer(reid_app, name="reid")


@reid_app.command("augment")
def reid_augment(
    checkpoint: Annotated[Path, typer.Option(help="A trained deformgan run (or ckpt-*) folder.")],
    data: Annotated[Path, typer.Option(help="Re-ID dataset (Market-1501 layout or deformgan synth).")],
    out: Annotated[Path, typer.Option(help="Folder for the generated people + manifest.csv.")],
    per_image: Annotated[int, typer.Option(help="Generated images per training image (the paper: 10).")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the target-pose draw.")] = 0,
    annotations: Annotated[Path | None, typer.Option(help="Keypoints of the training images (CSV).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images generated per batch.")] = 16,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
) -> None:
    """Each training person in K new poses (drawn from the training poses), labelled with their identity."""
    from deformgan.reid.augment import augment

    _positive(per_image, "--per-image")
    _positive(batch_size, "--batch-size")
    folder = augment(
        checkpoint, data, _folder_out(out), per_image=per_image, seed=seed,
        annotations=_existing(annotations, "--annotations"), batch_size=batch_size, device=_device(device),
    )  # fmt: skip
    typer.echo(f"generated people: {folder}")


@reid_app.command("train")
def reid_train(
    data: Annotated[Path, typer.Option(help="Re-ID dataset (Market-1501 layout or deformgan synth).")],
    out: Annotated[Path, typer.Option(help="Run folder for the Re-ID model.")],
    extra: Annotated[
        list[Path] | None, typer.Option(help="Generated-people folder to add (repeatable).")
    ] = None,
    weights: Annotated[Path | None, typer.Option(help="ImageNet ResNet-50 weights (file or folder).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    settings: Annotated[
        list[str] | None, typer.Argument(help="key=value settings, e.g. backbone=small iterations=1500")
    ] = None,
) -> None:
    """Train a Re-ID model (IDE or the discriminative embedding) on T, or T + generated people (A)."""
    import yaml

    from deformgan.reid.train import ReIDTrainConfig, train_reid

    values = {}
    for entry in settings or ():
        key, sep, text = entry.partition("=")
        if not sep or not key.strip():
            raise InputError(f"setting {entry!r}: expected key=value (e.g. iterations=1500)")
        try:
            values[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise InputError(f"setting {entry!r}: the value is not valid YAML") from None
    run = train_reid(
        data, _folder_out(out), extra=[_existing(e, "--extra") for e in extra or ()],
        config=ReIDTrainConfig.from_dict(values), weights=_existing(weights, "--weights"),
        device=_device(device),
    )  # fmt: skip
    typer.echo(f"re-id run: {run}")


@reid_app.command("evaluate")
def reid_evaluate(
    run: Annotated[Path, typer.Option(help="A Re-ID run folder of `deformgan reid train`.")],
    data: Annotated[Path | None, typer.Option(help="Re-ID dataset (default: the run's).")] = None,
    out: Annotated[Path | None, typer.Option(help="JSON file (a .md table beside it).")] = None,
    ap: Annotated[
        str, typer.Option(help="standard (torchreid) | official (Market-1501's compute_AP.m)")
    ] = "standard",
    no_match: Annotated[str, typer.Option(help="A query without a valid match: zero | skip")] = "zero",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
) -> None:
    """Rank-1/5/10 and mAP of a Re-ID model with Euclidean, XQDA and KISSME distances (and DE's own)."""
    from deformgan.reid.report import evaluate_reid

    result = evaluate_reid(
        _existing(run, "--run"), data=data, out=out, ap=ap, no_match=no_match, device=_device(device)
    )
    for method, scores in result["results"].items():
        typer.echo(f"{method}: Rank-1 {100 * scores['rank1']:.1f} %, mAP {100 * scores['mAP']:.1f} %")
    typer.echo(f"wrote {(Path(out) if out else run / 'evaluation').with_suffix('.json')}")


@reid_app.command("report")
def reid_report(
    evaluations: Annotated[
        list[Path], typer.Argument(help="Evaluated Re-ID run folders (or their evaluation .json files).")
    ],
    out: Annotated[Path, typer.Option(help="JSON file of the table (a .md table beside it).")],
    title: Annotated[str | None, typer.Option(help="Title of the Markdown table.")] = None,
) -> None:
    """The Table-1-shaped report: rows Euclidean / XQDA / KISSME / DE, columns T / A (Rank-1 / mAP %),
    with the paper's Market-1501 values beside."""
    from deformgan.reid.report import write_table1_report

    for item in evaluations:
        _existing(item, "EVALUATIONS")
    json_path, md_path = write_table1_report(evaluations, out, title=title)
    typer.echo(md_path.read_text())
    typer.echo(f"wrote {json_path} and {md_path}")


# ----------------------------------------------------------------------------------------------
# Users' own photos


@app.command()
def keypoints(
    images: Annotated[list[Path], typer.Argument(help="Images and/or folders of images.")],
    out: Annotated[Path, typer.Option(help="Annotation CSV to write (name:keypoints_y:keypoints_x).")],
) -> None:
    """Find the 18 OpenPose keypoints of the person in each image (offline: BlazePose, see `weights pose`).

    An image without a person, or one that cannot be read, is said on one line and written as all -1."""
    from deformgan.keypoints import write_annotations
    from deformgan.pose import annotate_images

    if out.is_dir():
        raise InputError(f"--out: {out} is a folder, expected a .csv file name")
    found = annotate_images(images, progress=True)
    for reason in found.unreadable.values():
        _say(f"unreadable: {reason} (written as all -1)")
    for name in found.without_person:
        _say(f"no person found: {name} (written as all -1)")
    write_annotations(out, found.rows)
    people = len(found.rows) - len(found.without_person) - len(found.unreadable)
    unreadable = f", {len(found.unreadable)} unreadable" if found.unreadable else ""
    typer.echo(f"wrote {len(found.rows)} rows to {out} ({people} with a person{unreadable})")


weights_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Fetch model files a package ships."
)
app.add_typer(weights_app, name="weights")


@weights_app.command("pose")
def weights_pose(
    wheel: Annotated[Path | None, typer.Option(help="A mediapipe 0.10.21 wheel you already have.")] = None,
    find_links: Annotated[Path | None, typer.Option(help="A local folder of wheels instead of PyPI.")] = None,
) -> None:
    """Fetch the BlazePose landmark model from the mediapipe 0.10.21 wheel on PyPI (checksummed)."""
    from deformgan.pose import fetch_pose_model

    for name, path in fetch_pose_model(wheel=_existing(wheel, "--wheel"), find_links=find_links).items():
        typer.echo(f"{name}: {path}")


@app.command()
def editor(
    checkpoint: Annotated[
        Path | None, typer.Option(help="Run or ckpt-* folder (default: the shipped model).")
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port).")] = 7860,
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N")] = "cpu",
    threads: Annotated[int | None, typer.Option(help="torch CPU threads (1 on a busy machine).")] = None,
    preview: Annotated[
        str, typer.Option(help="Precision while dragging: fp32 | bf16 (release renders fp32).")
    ] = "fp32",
    pose_model: Annotated[
        Path | None, typer.Option(help="BlazePose file (default: the weights cache).")
    ] = None,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload accepted, MiB.")] = 64,
) -> None:
    """Pose editor in the browser: drag the target skeleton, the generated person follows (local, offline;
    needs the editor extra: pip install "deformgan[editor]")."""
    try:
        from deformgan.editor import run_editor
    except ImportError as error:
        raise InputError(
            f'the editor needs its extra: pip install "deformgan[editor]" ({error.name} missing)'
        ) from None
    if threads is not None:
        _positive(threads, "--threads")
    if not 0 <= port <= 65535:
        raise InputError(f"--port: expected 0..65535, got {port}")
    run_editor(
        checkpoint, host=host, port=port, device=_device(device), threads=threads, preview=preview,
        pose_model=_existing(pose_model, "--pose-model"), max_upload_mb=max_upload_mb,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Demo


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output folder (new or empty).")] = Path("demo-output"),
    minutes: Annotated[float, typer.Option(help="Wall-clock budget for the whole demo.")] = 5.0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads (default: torch's; use 1 on a busy shared machine).")
    ] = None,
    video: Annotated[
        Path | None,
        typer.Option(help="A real video (or frame folder) whose motion a held-out person follows."),
    ] = None,
    pose_model: Annotated[
        Path | None, typer.Option(help="BlazePose file for --video (default: the weights cache).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier demo in OUT.")] = False,
) -> None:
    """No data, no weights: the shipped model on held-out synthetic people, then a small Full model
    trained on the CPU, both measured against copy-source and warp-only -> pictures + summary."""
    from deformgan.demo import run_demo

    if threads is not None:
        _positive(threads, "--threads")
    if not minutes > 0:  # also refuses nan
        raise InputError(f"--minutes: expected a number of minutes > 0, got {minutes}")
    summary = run_demo(
        _folder_out(out), minutes_budget=minutes, seed=seed, threads=threads, overwrite=overwrite,
        video=_existing(video, "--video"), pose_model=_existing(pose_model, "--pose-model"),
    )  # fmt: skip
    typer.echo(f"demo summary: {summary}")


# ----------------------------------------------------------------------------------------------


def _close_progress_bars() -> None:
    """Close open progress bars so that an error line starts on a line of its own."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except DeformganError as error:
        _close_progress_bars()
        typer.echo(f"error: {error}", err=True)
        sys.exit(130 if isinstance(error, Interrupted) else 1 if isinstance(error, RunFailed) else 2)
    except KeyboardInterrupt:
        _close_progress_bars()
        typer.echo("error: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
