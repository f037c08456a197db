"""A self-contained demo for a fresh clone: no data, no weights, no GPU, a few minutes on a laptop CPU.

``run_demo(out_dir)``:

1. renders a small synthetic-people dataset (:func:`deformgan.synth.write_synthetic_dataset`);
2. trains the ``configs/demo.yaml`` model (a narrow Full-like DSC generator: part warps + nearest-neighbour
   loss on pixels, since no VGG-19 weights are available offline) within a wall-clock budget;
3. writes sample grids before / after training, loss curves, a motion-transfer GIF (a test person, never
   seen in training, following a rendered walk cycle, next to the renderer's ground truth), and a one-page
   summary as ``summary.html`` (images embedded) and ``summary.png``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from deformgan.atomic import atomic_write_text
from deformgan.config import find_config, load_config
from deformgan.data import find_layout
from deformgan.errors import InputError
from deformgan.images import write_gif
from deformgan.keypoints import read_annotations
from deformgan.parts import has_complete_torso
from deformgan.runtime import set_threads
from deformgan.synth import render_person, render_sample, write_synthetic_dataset
from deformgan.synth.pose import Pose, detected_keypoints, project, sample_body, sample_framing, skeleton_3d
from deformgan.synth.render import make_cameras, sample_appearance
from deformgan.train import SAMPLES_DIR, read_log, train
from deformgan.transfer import PoseTransfer

DEMO_CONFIG = "demo"
IMAGE_SIZE = (128, 64)
#: Time kept aside after training for the GIF, the curves and the summary (seconds, 2 CPU cores).
FINISH_RESERVE_S = 15.0


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
        draw.text((px - 10, height - bottom + 6), f"{x:.0f}", fill="black", font=_font(11))
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
# The demo


#: What a demo folder holds (``overwrite`` deletes only a folder made of these).
DEMO_ENTRIES = {
    "data",
    "run",
    "demo.json",
    "summary.html",
    "summary.png",
    "motion_transfer.gif",
    "loss_curves.png",
}


def _claim_demo_folder(out: Path, overwrite: bool) -> Path:
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file, expected a new or empty folder for the demo")
    entries = {p.name for p in out.iterdir()} if out.is_dir() else set()
    if entries:
        if not overwrite:
            raise InputError(
                f"{out}: not empty (an earlier demo?); pass --overwrite to replace it, or another --out"
            )
        if not entries <= DEMO_ENTRIES:
            others = ", ".join(sorted(entries - DEMO_ENTRIES)[:3])
            raise InputError(f"{out}: --overwrite replaces only a demo folder; this one also holds {others}")
        for name in entries:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def run_demo(
    out_dir: str | os.PathLike,
    minutes_budget: float = 5.0,
    seed: int = 0,
    identities: int = 48,
    poses_per_identity: int = 8,
    progress: bool = True,
    threads: int | None = 1,
    overwrite: bool = False,
) -> Path:
    """Synthetic data -> CPU training in ``minutes_budget`` -> samples, GIF, summary; returns summary.html.

    ``out_dir`` must be new or empty; ``overwrite`` replaces an earlier demo there (and nothing else: a
    folder that holds other files is refused).

    The budget covers everything (data, training, outputs): training stops early, with a checkpoint, when
    the budget runs out before ``train.iterations`` of ``configs/demo.yaml``. threads: torch intra-op
    threads (None = torch's default). Default 1: the 1/8-width model gains little from intra-op threads,
    and on a busy 2-core machine 2 threads measured 3-10x slower than 1 (oversubscription).
    """
    if minutes_budget <= 0:
        raise InputError(f"minutes_budget: expected > 0, got {minutes_budget}")
    set_threads(threads)
    start = time.perf_counter()
    out = _claim_demo_folder(Path(out_dir), overwrite)
    data_dir = out / "data"
    write_synthetic_dataset(
        data_dir, identities=identities, poses_per_identity=poses_per_identity, size=IMAGE_SIZE,
        seed=seed, progress=progress, overwrite=True,
    )  # fmt: skip
    config = load_config(find_config(DEMO_CONFIG), [f"train.seed={seed}"])
    run_dir = out / "run"
    budget_s = max(minutes_budget * 60 - (time.perf_counter() - start) - FINISH_RESERVE_S, 1.0)
    train_start = time.perf_counter()
    train(config, data_dir, run_dir, progress=progress, time_budget_s=budget_s)
    train_s = time.perf_counter() - train_start

    # Motion transfer: an unseen test person follows a rendered walk cycle, next to the ground truth.
    identity, source_image, source_kp = _test_identity(data_dir, seed)
    truth, walk_kp = walk_cycle(seed, identity)
    model = PoseTransfer.from_checkpoint(run_dir)
    generated = [np.asarray(model.transfer(source_image, source_kp, kp)) for kp in walk_kp]
    frames = [np.concatenate([source_image, t, g], axis=1) for t, g in zip(truth, generated, strict=True)]
    frames = [
        np.asarray(Image.fromarray(f).resize((f.shape[1] * 2, f.shape[0] * 2), Image.NEAREST)) for f in frames
    ]
    gif = write_gif(frames, out / "motion_transfer.gif", fps=8)

    log = read_log(run_dir)
    steps = int(log["step"][-1])
    samples = sorted((run_dir / SAMPLES_DIR).glob("step-*.png"))
    before, after = Image.open(samples[0]).convert("RGB"), Image.open(samples[-1]).convert("RGB")
    curves = loss_curves(log)
    curves.save(out / "loss_curves.png")
    panels = [
        _labelled(before, "before training (step 0)"),
        _labelled(after, f"after {steps} iterations"),
    ]
    strip = Image.fromarray(np.concatenate(frames[:: max(len(frames) // 4, 1)][:4], axis=1))
    caption = (
        f"deformgan demo: {config.name} config, {steps} iterations in {train_s / 60:.1f} min on CPU "
        f"(seed {seed}). Grid columns: source | target pose | target | generated (test pairs)."
    )
    sheet_width = max(sum(p.width for p in panels) + 10, curves.width, strip.width)
    sheet_height = 30 + max(p.height for p in panels) + 10 + curves.height + 32 + strip.height
    sheet = Image.new("RGB", (sheet_width, sheet_height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 8), caption, fill="black", font=_font(14))
    x = 0
    for panel in panels:
        sheet.paste(panel, (x, 30))
        x += panel.width + 10
    y = 30 + max(p.height for p in panels) + 10
    sheet.paste(curves, (0, y))
    y += curves.height + 8
    draw.text((6, y), "motion transfer: source | ground truth | generated", fill="black", font=_font(14))
    sheet.paste(strip, (0, y + 24))
    sheet.save(out / "summary.png")

    gif_uri = "data:image/gif;base64," + base64.b64encode(gif.read_bytes()).decode()
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>deformgan demo</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} img{{image-rendering:pixelated}}
figure{{display:inline-block;margin:0 1em 1em 0;vertical-align:top}}</style></head><body>
<h1>deformgan demo: Deformable GAN on synthetic people</h1>
<p>{html.escape(caption)} Synthetic data: {identities} identities x {poses_per_identity} poses
(test identities are never seen in training). Model: <code>configs/demo.yaml</code> (deformable skip
connections with 10 part warps, nearest-neighbour loss on pixels because no VGG-19 weights are available
offline).</p>
<figure><img src="{_png_data_uri(before)}"><figcaption>before training (step 0)</figcaption></figure>
<figure><img src="{_png_data_uri(after)}"><figcaption>after {steps} iterations</figcaption></figure>
<h2>Losses</h2><img src="{_png_data_uri(curves)}">
<h2>Motion transfer</h2><p>source image | renderer's ground truth | generated, for a walk cycle.</p>
<img src="{gif_uri}">
<p>Files: <code>run/</code> (checkpoints, log.csv, TensorBoard, sample grids),
<code>motion_transfer.gif</code>, <code>loss_curves.png</code>, <code>summary.png</code>.</p>
</body></html>
"""
    summary = out / "summary.html"
    atomic_write_text(summary, page)
    total_s = time.perf_counter() - start
    atomic_write_text(
        out / "demo.json",
        json.dumps(
            {"iterations": steps, "train_seconds": train_s, "total_seconds": total_s, "seed": seed}, indent=1
        ),
    )
    print(f"demo: {steps} iterations in {train_s:.0f} s (total {total_s:.0f} s); summary: {summary}")
    return summary
