"""A self-contained demo for a fresh clone: no data, no weights, no GPU, a few minutes on a laptop CPU.

``run_demo(out_dir)`` renders a synthetic-people dataset, shows the model shipped with the package on its
held-out people within seconds, trains a fresh ``configs/demo.yaml`` model (a narrow Full-like DSC
generator: part warps + nearest-neighbour loss on pixels, since no VGG-19 weights are available offline)
within a wall-clock budget, then measures copy-source, warp-only, shipped and fresh on the same held-out
pairs and writes a one-page summary (``summary.html`` with images embedded, and ``summary.png``).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from deformgan.atomic import atomic_write_text
from deformgan.checkpoint import SHIPPED_MODEL, load_checkpoint
from deformgan.config import find_config, load_config
from deformgan.data import PairDataset, find_layout
from deformgan.errors import InputError
from deformgan.evaluation.baselines import copy_source, warp_only
from deformgan.evaluation.mask import evaluation_mask
from deformgan.evaluation.scores import score_images
from deformgan.generate import generate_batch
from deformgan.images import to_uint8, write_gif, write_image
from deformgan.keypoints import draw_skeleton, read_annotations
from deformgan.parts import has_complete_torso
from deformgan.runtime import set_threads
from deformgan.synth import render_person, render_sample, write_synthetic_dataset
from deformgan.synth.pose import Pose, detected_keypoints, project, sample_body, sample_framing, skeleton_3d
from deformgan.synth.render import make_cameras, sample_appearance
from deformgan.train import read_log, train
from deformgan.transfer import PoseTransfer, poses_from_video, side_by_side, skeleton_frames

DEMO_CONFIG = "demo"
IMAGE_SIZE = (128, 64)
#: Time kept aside after training for scoring the fresh model, the GIF, the curves and the summary
#: (seconds; 28-33 s measured on 2 CPU cores, plus start-up).
FINISH_RESERVE_S = 40.0


# ----------------------------------------------------------------------------------------------
# Walk cycle of one synthetic identity (ground truth frames + keypoints)


def walk_cycle(seed: int, identity: int, frames: int = 16, size: tuple[int, int] = IMAGE_SIZE):
    """Rendered walk cycle of synthetic person ``identity``: images uint8 (T, H, W, 3), keypoints (T, 18, 2).

    The gait follows :func:`deformgan.synth.pose.sample_pose`'s walking model (hips swing +-40 deg * stride
    in antiphase, the swing knee bends, arms swing opposite to the legs) at a fixed three-quarter view.
    """
    import numpy.random as npr

    id_rng = npr.default_rng([seed, identity, 0])  # the identity stream of synth.render_sample
    body = sample_body(id_rng)
    appearance = sample_appearance(id_rng)
    camera = make_cameras(seed)[0]
    framing = sample_framing(npr.default_rng([seed, identity, 0xA1C]), body, size)
    deg = np.radians
    stride = 0.9
    images, keypoints = [], []
    for t in range(frames):
        phase = 2 * np.pi * t / frames
        swing = np.sin(phase)
        leg_flex = (deg(40.0) * stride * swing, -deg(40.0) * stride * swing)
        knee = tuple(
            deg(6.0) + deg(55.0) * stride * max(0.0, np.sin(phase + s * np.pi + 0.6)) for s in (0, 1)
        )
        pose = Pose(
            view="right",
            yaw=float(deg(50.0)),
            head_yaw=0.0,
            lean=0.0,
            pitch=float(deg(3.0)),
            arm_flex=(-0.8 * leg_flex[0], -0.8 * leg_flex[1]),
            arm_abd=(float(deg(10.0)), float(deg(10.0))),
            elbow=(float(deg(20.0)), float(deg(20.0))),
            leg_flex=leg_flex,
            leg_abd=(float(deg(4.0)), float(deg(4.0))),
            knee=knee,
        )
        rng = npr.default_rng([seed, identity, 0xA1C, t])
        no_drop = np.zeros(18)
        person = render_person(
            size,
            body=body,
            appearance=appearance,
            pose=pose,
            framing=framing,
            camera=camera,
            rng=rng,
            drop=no_drop,
        )
        images.append(person.image)
        joints = project(skeleton_3d(body, pose), framing)
        keypoints.append(detected_keypoints(joints, pose.view, size, rng, no_drop, 0.0))
    return np.stack(images), np.stack(keypoints)


def _test_identity(data_dir: Path, seed: int) -> tuple[int, np.ndarray, np.ndarray]:
    """(identity, source image, source keypoints) of the first test person with a complete torso."""
    layout = find_layout(data_dir, "synth")
    annotations = read_annotations(layout.annotation_files["test"])
    if not annotations:
        raise InputError(f"{layout.annotation_files['test']}: no test images to take a person from")
    identity = int(min(annotations).split("_")[0])  # Market-style name: identity before the first "_"
    for index in range(64):
        person = render_sample(seed, identity, 1000 + index, IMAGE_SIZE)
        if has_complete_torso(person.keypoints[None])[0]:
            return identity, person.image, person.keypoints
    raise InputError(f"demo: no rendering of test identity {identity} with a complete torso")


# ----------------------------------------------------------------------------------------------
# Drawing (PIL only: matplotlib is not a dependency)


def _font(size: int = 12) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def plot_curves(
    series: dict[str, tuple[list[float], list[float]]], size: tuple[int, int] = (640, 300), title: str = ""
) -> Image.Image:
    """A line plot of named (x, y) series on white, one colour each, with axes ticks and a legend."""
    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 56, 12, 24, 30
    xs = [x for xv, _ in series.values() for x in xv]
    ys = [y for _, yv in series.values() for y in yv if np.isfinite(y)]
    if not xs or not ys:
        draw.text((left, height // 2), "no data", fill="black", font=_font())
        return image
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    y0, y1 = y0 - 0.05 * (y1 - y0), y1 + 0.05 * (y1 - y0)

    def to_px(x: float, y: float) -> tuple[float, float]:
        px = left + (x - x0) / (x1 - x0) * (width - left - right)
        py = height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)
        return px, py

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for i in range(5):
        y = y0 + (y1 - y0) * i / 4
        _, py = to_px(x0, y)
        draw.line([left - 4, py, left, py], fill="black")
        draw.text((4, py - 6), f"{y:.3g}", fill="black", font=_font(11))
        x = x0 + (x1 - x0) * i / 4
        px, _ = to_px(x, y0)
        draw.line([px, height - bottom, px, height - bottom + 4], fill="black")
        label = f"{x:.0f}"  # centred on its tick, kept inside the picture
        half = draw.textlength(label, font=_font(11)) / 2
        draw.text(
            (min(max(px - half, 0), width - 2 * half - 1), height - bottom + 6),
            label,
            fill="black",
            font=_font(11),
        )
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    for k, (label, (xv, yv)) in enumerate(series.items()):
        colour = colours[k % len(colours)]
        points = [to_px(x, y) for x, y in zip(xv, yv, strict=True) if np.isfinite(y)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        draw.rectangle([left + 10, top + 8 + 16 * k, left + 22, top + 18 + 16 * k], fill=colour)
        draw.text((left + 28, top + 6 + 16 * k), label, fill="black", font=_font(12))
    draw.text((left, 4), title, fill="black", font=_font(13))
    return image


def _smooth(values: list[float], window: int) -> list[float]:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid").tolist()


def loss_curves(log: dict[str, list[float]]) -> Image.Image:
    """Two panels: the reconstruction term (the visible-learning signal) and the adversarial terms."""
    steps = log["step"]
    window = max(1, len(steps) // 30)
    rec = plot_curves(
        {"G reconstruction (unweighted)": (steps, _smooth(log["loss/G/rec"], window))}, title=""
    )
    adversarial = plot_curves(
        {
            "G adversarial": (steps, _smooth(log["loss/G/adv"], window)),
            "D real": (steps, _smooth(log["loss/D/real"], window)),
            "D fake": (steps, _smooth(log["loss/D/fake"], window)),
        }
    )
    sheet = Image.new("RGB", (rec.width + adversarial.width, rec.height), "white")
    sheet.paste(rec, (0, 0))
    sheet.paste(adversarial, (rec.width, 0))
    return sheet


def _labelled(image: Image.Image, label: str) -> Image.Image:
    out = Image.new("RGB", (image.width, image.height + 22), "white")
    out.paste(image, (0, 22))
    ImageDraw.Draw(out).text((4, 4), label, fill="black", font=_font(14))
    return out


def _png_data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


# ----------------------------------------------------------------------------------------------
# Held-out pairs and the four methods measured on them

#: The methods the demo measures, in table order, with the names the summary shows.
METHODS = {
    "copy_source": "copy source (no change)",
    "warp_only": "warp only (part affines, no network)",
    "shipped": "shipped model",
    "fresh": "fresh model (trained now)",
}
DEMO_METRICS = ("mask_ssim", "ssim", "l1")


@dataclass
class HeldOutPairs:
    """Pairs of a synthetic dataset (the demo's: its test pairs) as uint8 (N, H, W, 3) sources / targets,
    (N, 18, 2) (x, y) pixel keypoints and the bool (N, H, W) evaluation masks of the target poses;
    ``dataset`` yields the same pairs as model inputs."""

    sources: np.ndarray
    targets: np.ndarray
    source_kp: np.ndarray
    target_kp: np.ndarray
    masks: np.ndarray
    dataset: PairDataset | torch.utils.data.Subset


def held_out_pairs(data_dir: Path) -> HeldOutPairs:
    """Every test pair of the demo dataset (its people are never in the training split)."""
    return dataset_pairs(data_dir, "test")


def dataset_pairs(data_dir: Path, split: str, count: int | None = None) -> HeldOutPairs:
    """The pairs of one split of a synthetic dataset (prefix ``synth``, 128x64); with ``count``, that many
    evenly spaced pairs of it (all of them when the split has fewer)."""
    dataset = PairDataset(data_dir, split=split, preset="market", prefix="synth")
    if count is not None:
        chosen = np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().astype(int)
        dataset = torch.utils.data.Subset(dataset, chosen.tolist())
    items = [dataset[i] for i in range(len(dataset))]
    sources = to_uint8(torch.stack([item["source_image"] for item in items]))
    targets = to_uint8(torch.stack([item["target_image"] for item in items]))
    source_kp = torch.stack([item["source_kp"] for item in items])
    target_kp = torch.stack([item["target_kp"] for item in items])
    masks = evaluation_mask(target_kp, IMAGE_SIZE).numpy()
    return HeldOutPairs(sources, targets, source_kp.numpy(), target_kp.numpy(), masks, dataset)


@torch.no_grad()
def generate_pairs(model: PoseTransfer, pairs: HeldOutPairs, batch_size: int = 32) -> np.ndarray:
    """uint8 (N, H, W, 3): ``model``'s picture of every held-out pair (batched)."""
    loader = torch.utils.data.DataLoader(pairs.dataset, batch_size=batch_size, shuffle=False)
    out = [to_uint8(generate_batch(model.generator, model.config, batch, model.device)) for batch in loader]
    return np.concatenate(out)


def score_methods(outputs: dict[str, np.ndarray], pairs: HeldOutPairs) -> dict[str, dict[str, float]]:
    """``{method: {"mask_ssim", "ssim", "l1"}}`` on the held-out pairs (the protocol of ``evaluate``)."""
    scores = {}
    for method, images in outputs.items():
        entries = score_images(images, pairs.targets, pairs.masks, metrics=DEMO_METRICS)
        scores[method] = {metric: entries[metric]["value"] for metric in DEMO_METRICS}
    return scores


def scores_table(scores: dict[str, dict[str, float]], n: int) -> str:
    """The scores as aligned text lines (terminal and summary)."""
    lines = [f"{'method (' + str(n) + ' held-out pairs)':<40} {'mask-SSIM':>9} {'SSIM':>7} {'L1':>7}"]
    for method, row in scores.items():
        lines.append(f"{METHODS[method]:<40} {row['mask_ssim']:>9.3f} {row['ssim']:>7.3f} {row['l1']:>7.3f}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Pictures


def _enlarged(image: np.ndarray, scale: int = 2) -> np.ndarray:
    return np.kron(image, np.ones((scale, scale, 1), np.uint8))


def comparison_grid(
    pairs: HeldOutPairs, outputs: dict[str, np.ndarray], rows: list[int], scale: int = 2
) -> Image.Image:
    """Rows of source | target pose | ground truth | one column per method, with a header line."""
    columns = ["source", "target pose", "ground truth", *(METHODS[m].split(" (")[0] for m in outputs)]
    tiles = []
    for i in rows:
        skeleton = draw_skeleton(pairs.target_kp[i], IMAGE_SIZE, radius=2, thickness=2)
        row = [pairs.sources[i], skeleton, pairs.targets[i], *(images[i] for images in outputs.values())]
        tiles.append(np.concatenate([_enlarged(t, scale) for t in row], axis=1))
    body = Image.fromarray(np.concatenate(tiles, axis=0))
    tile_w = IMAGE_SIZE[1] * scale
    sheet = Image.new("RGB", (body.width, body.height + 20), "white")
    sheet.paste(body, (0, 20))
    draw = ImageDraw.Draw(sheet)
    for k, name in enumerate(columns):
        draw.text((k * tile_w + 3, 4), name, fill="black", font=_font(11))
    return sheet


def _text_block(text: str, width: int, size: int = 13) -> Image.Image:
    """``text`` wrapped to ``width`` pixels, black on white."""
    font = _font(size)
    lines: list[str] = []
    for paragraph in text.splitlines():
        line = ""
        for word in paragraph.split(" "):
            trial = f"{line} {word}".strip()
            if line and font.getlength(trial) > width - 12:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    image = Image.new("RGB", (width, 6 + (size + 4) * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for k, line in enumerate(lines):
        draw.text((6, 3 + (size + 4) * k), line, fill="black", font=font)
    return image


def _table_image(scores: dict[str, dict[str, float]], n: int, size: int = 13) -> Image.Image:
    """The scores as a drawn table (columns aligned whatever the font)."""
    font = _font(size)
    header = [f"method ({n} held-out pairs)", "mask-SSIM (higher)", "SSIM (higher)", "L1 (lower)"]
    rows = [header] + [[METHODS[m], *(f"{row[k]:.3f}" for k in DEMO_METRICS)] for m, row in scores.items()]
    widths = [max(font.getlength(r[c]) for r in rows) + 24 for c in range(len(header))]
    image = Image.new("RGB", (int(sum(widths)) + 12, 8 + (size + 6) * len(rows)), "white")
    draw = ImageDraw.Draw(image)
    for k, row in enumerate(rows):
        y = 4 + (size + 6) * k
        x = 6.0
        for c, cell in enumerate(row):
            offset = 0 if c == 0 else widths[c] - 24 - font.getlength(cell)  # numbers right-aligned
            draw.text((x + offset, y), cell, fill="black", font=font)
            x += widths[c]
        if k == 0:
            draw.line([6, y + size + 3, image.width - 6, y + size + 3], fill="black")
    return image


def _stack(parts: list[Image.Image], gap: int = 10) -> Image.Image:
    width = max(p.width for p in parts)
    sheet = Image.new("RGB", (width, sum(p.height for p in parts) + gap * (len(parts) - 1)), "white")
    y = 0
    for part in parts:
        sheet.paste(part, (0, y))
        y += part.height + gap
    return sheet


def _motion_frames(source: np.ndarray, columns: list[np.ndarray]) -> list[np.ndarray]:
    """Frames of [source | column_1 | column_2 ...] (each column (T, H, W, 3)), enlarged 2x."""
    sources = np.broadcast_to(source, columns[0].shape)
    return side_by_side(sources, *columns)


# ----------------------------------------------------------------------------------------------
# The demo


#: What a demo folder holds (``overwrite`` deletes only a folder made of these).
DEMO_ENTRIES = {
    "data",
    "run",
    "demo.json",
    "summary.html",
    "summary.png",
    "shipped_transfer.png",
    "shipped_motion.gif",
    "comparison.png",
    "motion_transfer.gif",
    "real_frames.gif",
    "loss_curves.png",
}
#: How many held-out pairs the comparison pictures show (one per test person, first pair of each).
GRID_ROWS = 6


def _check_demo_folder(out: Path, overwrite: bool) -> list[Path]:
    """What must be removed before the demo writes into ``out`` (refusing a folder it must not touch)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file, expected a new or empty folder for the demo")
    entries = {p.name for p in out.iterdir()} if out.is_dir() else set()
    if entries and not overwrite:
        raise InputError(
            f"{out}: not empty (an earlier demo?); pass --overwrite to replace it, or another --out"
        )
    if not entries <= DEMO_ENTRIES:
        others = ", ".join(sorted(entries - DEMO_ENTRIES)[:3])
        raise InputError(f"{out}: --overwrite replaces only a demo folder; this one also holds {others}")
    return [out / name for name in sorted(entries)]


def _claim_demo_folder(out: Path, earlier: list[Path]) -> Path:
    for path in earlier:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _grid_rows(pairs: HeldOutPairs, count: int) -> list[int]:
    """One pair per test person (the first pair of each), at most ``count``."""
    first: dict[str, int] = {}
    for index, (source, _) in enumerate(pairs.dataset.pairs):
        first.setdefault(source.split("_")[0], index)
    return list(first.values())[:count]


def run_demo(
    out_dir: str | os.PathLike,
    minutes_budget: float = 5.0,
    seed: int = 0,
    identities: int = 48,
    poses_per_identity: int = 8,
    progress: bool = True,
    threads: int | None = 1,
    overwrite: bool = False,
    shipped_model: str | os.PathLike = SHIPPED_MODEL,
    video: str | os.PathLike | None = None,
    pose_model: str | os.PathLike | None = None,
) -> Path:
    """Shipped model first (seconds), then a fresh model trained in ``minutes_budget``; returns summary.html.

    1. Renders the synthetic dataset (``seed``); its test people are held out from both models (the shipped
       model was trained on people of other seeds, see its ``model.json``).
    2. Shipped model: pose transfer of held-out people (``shipped_transfer.png``) and a walk cycle
       (``shipped_motion.gif``), written within seconds of the start.
    3. Trains ``configs/demo.yaml`` from scratch until the budget runs out (``run/``).
    4. Scores copy-source, warp-only, shipped and fresh on every held-out pair (mask-SSIM, SSIM, L1;
       ``demo.json["scores"]``) and writes ``comparison.png``, ``motion_transfer.gif``, ``summary.html`` /
       ``summary.png``.
    5. With ``video`` (a driving video or frame folder; needs the pose model of ``deformgan weights
       pose``): the held-out person follows its motion (``real_frames.gif``).

    ``out_dir`` must be new or empty; ``overwrite`` replaces an earlier demo there (and nothing else).
    threads: torch intra-op threads (None = torch's default). Default 1: the narrow models gain little
    from intra-op threads, and on a busy 2-core machine 2 threads measured 3-10x slower than 1.
    """
    if minutes_budget <= 0:
        raise InputError(f"minutes_budget: expected > 0, got {minutes_budget}")
    set_threads(threads)
    start = time.perf_counter()
    earlier = _check_demo_folder(Path(out_dir), overwrite)
    shipped = PoseTransfer.from_checkpoint(shipped_model)  # fails before anything is removed or written
    if tuple(shipped.image_size) != IMAGE_SIZE:
        raise InputError(f"{shipped_model}: a {shipped.image_size} model; the demo needs 128x64")
    pose_estimator = None
    if video is not None:
        from deformgan.pose import BlazePose

        pose_estimator = BlazePose(pose_model)  # a missing pose model is said now, not after training
    out = _claim_demo_folder(Path(out_dir), earlier)

    def say(message: str) -> None:
        if progress:
            print(f"[{time.perf_counter() - start:5.1f} s] {message}", flush=True)

    data_dir = out / "data"
    write_synthetic_dataset(
        data_dir, identities=identities, poses_per_identity=poses_per_identity, size=IMAGE_SIZE,
        seed=seed, progress=progress, overwrite=True,
    )  # fmt: skip
    pairs = held_out_pairs(data_dir)
    rows = _grid_rows(pairs, GRID_ROWS)

    # 1. The shipped model, within seconds.
    identity, source_image, source_kp = _test_identity(data_dir, seed)
    truth, walk_kp = walk_cycle(seed, identity)
    shipped_walk = shipped.render(source_image, source_kp, walk_kp)
    write_gif(_motion_frames(source_image, [truth, shipped_walk]), out / "shipped_motion.gif", fps=8)
    outputs = {
        "copy_source": copy_source(pairs.sources),
        "warp_only": warp_only(pairs.sources, pairs.source_kp, pairs.target_kp),
        "shipped": generate_pairs(shipped, pairs),
    }
    write_image(comparison_grid(pairs, outputs, rows), out / "shipped_transfer.png")
    say(f"shipped model: {out / 'shipped_transfer.png'}, {out / 'shipped_motion.gif'}")

    real = None
    if video is not None:
        driving, video_kp, rate = poses_from_video(video, IMAGE_SIZE, model=pose_estimator)
        followed = shipped.render(source_image, source_kp, video_kp)
        real = write_gif(
            side_by_side(driving, skeleton_frames(video_kp, IMAGE_SIZE), followed), out / "real_frames.gif",
            fps=rate,
        )  # fmt: skip
        say(f"real frames: {len(driving)} frames of {video} drive the held-out person -> {real}")

    # 2. A fresh model, trained within the rest of the budget.
    config = load_config(find_config(DEMO_CONFIG), [f"train.seed={seed}"])
    run_dir = out / "run"
    budget_s = max(minutes_budget * 60 - (time.perf_counter() - start) - FINISH_RESERVE_S, 1.0)
    say(f"training a fresh {config.name} model for {budget_s / 60:.1f} min")
    train_start = time.perf_counter()
    train(config, data_dir, run_dir, progress=progress, time_budget_s=budget_s)
    train_s = time.perf_counter() - train_start
    fresh = PoseTransfer.from_checkpoint(run_dir)
    outputs["fresh"] = generate_pairs(fresh, pairs)
    fresh_walk = fresh.render(source_image, source_kp, walk_kp)

    # 3. Measured comparison and pictures.
    scores = score_methods({m: outputs[m] for m in METHODS}, pairs)
    table = scores_table(scores, len(pairs.sources))
    comparison = comparison_grid(pairs, {m: outputs[m] for m in ("warp_only", "shipped", "fresh")}, rows)
    write_image(comparison, out / "comparison.png")
    frames = _motion_frames(source_image, [truth, shipped_walk, fresh_walk])
    gif = write_gif(frames, out / "motion_transfer.gif", fps=8)
    log = read_log(run_dir)
    steps = int(log["step"][-1])
    curves = loss_curves(log)
    write_image(curves, out / "loss_curves.png")
    shipped_info = load_checkpoint(shipped_model, weights_only=True)
    provenance = shipped_info.extra.get("provenance", {})
    people = len(_grid_rows(pairs, len(pairs.sources)))
    made = provenance.get("summary", str(shipped_model))
    caption = (
        f"deformgan demo (seed {seed}): {len(pairs.sources)} held-out pairs of {people} test people never "
        f"seen by either model. Shipped model: {made}. Fresh model: {config.name} config, {steps} "
        f"iterations in {train_s / 60:.1f} min on this CPU."
    )
    strip = Image.fromarray(np.concatenate(frames[:: max(len(frames) // 4, 1)][:4], axis=1))
    parts = [
        _text_block(caption, comparison.width),
        _table_image(scores, len(pairs.sources)),
        comparison,
        _text_block("motion transfer: source | ground truth | shipped | fresh", strip.width),
        strip,
        curves,
    ]
    write_image(_stack(parts), out / "summary.png")

    summary = out / "summary.html"
    atomic_write_text(
        summary, _summary_page(caption, scores, len(pairs.sources), comparison, gif, curves, real)
    )
    total_s = time.perf_counter() - start
    record = {
        "seed": seed,
        "iterations": steps,
        "train_seconds": train_s,
        "total_seconds": total_s,
        "held_out_pairs": len(pairs.sources),
        "shipped_model": str(shipped_info.path),
        "scores": scores,
    }
    atomic_write_text(out / "demo.json", json.dumps(record, indent=1) + "\n")
    if progress:
        print(table)
    say(f"fresh model: {steps} iterations in {train_s:.0f} s; summary: {summary}")
    if video is None and progress:
        print(
            "real frames: run `deformgan demo --video WALK.mp4` (or a folder of frames) to drive the "
            "held-out person with a real motion (needs the pose model: `deformgan weights pose`)"
        )
    return summary


def _summary_page(
    caption: str,
    scores: dict[str, dict[str, float]],
    n: int,
    comparison: Image.Image,
    gif: Path,
    curves: Image.Image,
    real: Path | None,
) -> str:
    def gif_uri(path: Path) -> str:
        return "data:image/gif;base64," + base64.b64encode(path.read_bytes()).decode()

    cells = "".join(
        f"<tr><td>{html.escape(METHODS[m])}</td>"
        + "".join(f"<td>{row[k]:.3f}</td>" for k in DEMO_METRICS)
        + "</tr>"
        for m, row in scores.items()
    )
    real_section = (
        f"<h2>Real frames</h2><p>driving frames | extracted skeleton | the held-out person following them "
        f'(shipped model).</p><img src="{gif_uri(real)}">'
        if real is not None
        else "<h2>Real frames</h2><p>Run <code>deformgan demo --video WALK.mp4</code> (or a folder of "
        "frames) to make the held-out person follow a real motion; it needs the pose model "
        "(<code>deformgan weights pose</code>). For your own photo: <code>deformgan transfer --checkpoint "
        "shipped:synth-people --image person.jpg --video walk.mp4 --out walk.gif</code>.</p>"
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>deformgan demo</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} img{{image-rendering:pixelated}}
table{{border-collapse:collapse}} td,th{{padding:2px 10px;border-bottom:1px solid #ccc;text-align:right}}
td:first-child,th:first-child{{text-align:left}}</style></head><body>
<h1>deformgan demo: Deformable GAN on synthetic people</h1>
<p>{html.escape(caption)}</p>
<h2>Scores on {n} held-out pairs</h2>
<table><tr><th>method</th><th>mask-SSIM &uarr;</th><th>SSIM &uarr;</th><th>L1 &darr;</th></tr>{cells}</table>
<p>mask-SSIM and SSIM as in the paper's evaluation (the authors' <code>test.py</code>), L1 on [0, 1] pixels;
the same protocol as <code>deformgan evaluate</code>.</p>
<h2>Pose transfer of held-out people</h2><img src="{_png_data_uri(comparison)}">
<h2>Motion transfer</h2><p>source | renderer's ground truth | shipped model | fresh model.</p>
<img src="{gif_uri(gif)}">
{real_section}
<h2>Fresh training: losses</h2><img src="{_png_data_uri(curves)}">
<p>Files: <code>run/</code> (checkpoints, log.csv, TensorBoard, sample grids), <code>comparison.png</code>,
<code>shipped_transfer.png</code>, <code>shipped_motion.gif</code>, <code>motion_transfer.gif</code>,
<code>loss_curves.png</code>, <code>demo.json</code> (scores), <code>summary.png</code>.</p>
</body></html>
"""
