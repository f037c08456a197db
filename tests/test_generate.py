"""Generation from a checkpoint, pose transfer / motion-transfer GIF, and the demo's helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_train import STANDING, make_tiny_dataset, tiny_config

from deformgan.errors import InputError
from deformgan.generate import generate, load_generator, output_name
from deformgan.keypoints import read_pairs
from deformgan.train import train
from deformgan.transfer import PoseTransfer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("gen")
    data = make_tiny_dataset(root / "data")
    run = train(
        tiny_config(iterations=1, sample_every=0), data, root / "run", progress=False, tensorboard=False
    )
    return run, data


def test_generate_one_png_per_pair_and_resumes(trained, tmp_path: Path):
    run, data = trained
    result = generate(run, data, None, tmp_path / "out", batch_size=5, progress=False)
    out = result.out
    pairs = read_pairs(data / "synth-pairs-test.csv")
    assert (result.written, result.skipped) == (len(pairs), 0)
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == sorted(output_name(a, b) for a, b in pairs)
    assert names[0].endswith(".png") and "_" in names[0]
    first = np.asarray(Image.open(out / names[0]))
    assert first.shape == (128, 64, 3) and first.dtype == np.uint8
    # Already generated files are skipped (resumable): a marked file is left untouched.
    marker = out / names[0]
    Image.fromarray(np.zeros((128, 64, 3), np.uint8)).save(marker)
    marker.unlink()
    again = generate(run, None, None, out, progress=False)  # data path from the checkpoint
    assert (again.written, again.skipped) == (1, len(pairs) - 1)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_generate_refuses_to_mix_checkpoints_or_settings(trained, tmp_path: Path):
    """A folder made by one checkpoint is never topped up with another's images, or other settings."""
    run, data = trained
    pairs = read_pairs(data / "synth-pairs-test.csv")[:2]
    out = tmp_path / "out"
    generate(run, data, pairs, out, progress=False)
    with pytest.raises(
        InputError, match="holds images made by .*ckpt-00000001 \\(step 1\\) with other settings"
    ):
        generate(run, data, pairs, out, strips=True, progress=False)
    other = train(
        tiny_config(iterations=2, sample_every=0), data, tmp_path / "other", progress=False, tensorboard=False
    )
    with pytest.raises(InputError, match="holds images made by"):
        generate(other, data, pairs, out, progress=False)
    replaced = generate(other, data, pairs, out, progress=False, overwrite=True)
    assert (replaced.written, replaced.skipped) == (2, 0)
    stray = tmp_path / "stray"
    stray.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(stray / "x.png")
    with pytest.raises(InputError, match="1 images of unknown origin"):
        generate(run, data, pairs, stray, progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        generate(run, data, pairs, tmp_path / "file", progress=False)


def test_generate_is_deterministic_eval_mode_and_strips(trained, tmp_path: Path):
    """Eval mode (dropout off): two runs give identical images; strips are [source | target | generated]."""
    run, data = trained
    pairs = read_pairs(data / "synth-pairs-test.csv")[:3]
    a = generate(run, data, pairs, tmp_path / "a", progress=False).out
    b = generate(run, data, pairs, tmp_path / "b", batch_size=1, progress=False).out
    c = generate(run, data, pairs, tmp_path / "c", strips=True, progress=False).out
    truncated = generate(run, data, pairs, tmp_path / "t", quantisation="truncate", progress=False).out
    for source, target in pairs:
        name = output_name(source, target)
        image_a, image_b = np.asarray(Image.open(a / name)), np.asarray(Image.open(b / name))
        assert np.array_equal(image_a, image_b)
        strip = np.asarray(Image.open(c / name))
        assert strip.shape == (128, 3 * 64, 3)
        assert np.array_equal(strip[:, 128:], image_a)
        source_pixels = np.asarray(Image.open(data / "synth-dataset" / "test" / source))
        assert np.array_equal(strip[:, :64], source_pixels)  # [-1, 1] round trip is exact on uint8
        # The authors' truncation is at most one grey level below rounding, never above.
        difference = image_a.astype(int) - np.asarray(Image.open(truncated / name)).astype(int)
        assert set(np.unique(difference)) <= {0, 1} and difference.any()


def test_generate_bad_inputs(trained, tmp_path: Path):
    run, data = trained
    with pytest.raises(InputError, match="checkpoint not found"):
        generate(tmp_path / "missing", data, None, tmp_path / "out", progress=False)
    with pytest.raises(InputError, match="dataset folder not found"):
        generate(run, tmp_path / "no-data", None, tmp_path / "out", progress=False)
    with pytest.raises(InputError, match="batch_size"):
        generate(run, data, None, tmp_path / "out", batch_size=0, progress=False)


def test_transfer_matches_batched_generation(trained):
    run, data = trained
    model = PoseTransfer.from_checkpoint(run)
    generator, config = load_generator(run)
    source_path = next((data / "synth-dataset" / "test").iterdir())
    source_kp, target_kp = STANDING, STANDING + np.array([3, -2])
    out = model.transfer(source_path, source_kp, target_kp)
    assert isinstance(out, Image.Image) and out.size == (64, 128)
    # Same input given as an array, and the same person at twice the size (keypoints scaled with it).
    pixels = np.asarray(Image.open(source_path).convert("RGB"))
    assert np.array_equal(np.asarray(model.transfer(pixels, source_kp, target_kp)), np.asarray(out))
    big = Image.fromarray(pixels).resize((128, 256), Image.NEAREST)
    scaled = model.transfer(big, source_kp * 2, target_kp * 2)
    assert scaled.size == (64, 128)
    with pytest.raises(InputError, match=r"expected \(18, 2\) keypoints"):
        model.transfer(pixels, source_kp[:5], target_kp)
    with pytest.raises(InputError, match="image file not found"):
        model.transfer(data / "nope.png", source_kp, target_kp)


def test_animate_writes_a_gif(trained, tmp_path: Path):
    run, data = trained
    model = PoseTransfer.from_checkpoint(run)
    source_path = next((data / "synth-dataset" / "test").iterdir())
    sequence = np.stack([STANDING + np.array([dx, 0]) for dx in (-2, 0, 2, 0, -2)])
    gif = model.animate(source_path, STANDING, sequence, tmp_path / "walk.gif", fps=5, batch_size=2)
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames == 5 and image.size == (64, 128)
        assert image.info["duration"] == 200
    with pytest.raises(InputError, match=r"targets: expected \(T, 18, 2\)"):
        model.animate(source_path, STANDING, STANDING, tmp_path / "bad.gif")


def test_transfer_missing_checkpoint(tmp_path: Path):
    with pytest.raises(InputError, match="checkpoint not found"):
        PoseTransfer.from_checkpoint(tmp_path / "missing")


def test_demo_plot_and_walk_cycle():
    from deformgan.demo import loss_curves, walk_cycle
    from deformgan.train import LOG_KEYS

    log = {"step": [10.0, 20.0, 30.0]} | {k: [3.0, 2.0, 1.0] for k in LOG_KEYS}
    curves = loss_curves(log)
    assert curves.size == (1280, 300)
    assert (np.asarray(curves) == (31, 119, 180)).all(-1).sum() > 50  # the first series' line is drawn
    images, keypoints = walk_cycle(seed=0, identity=1, frames=4)
    assert images.shape == (4, 128, 64, 3) and keypoints.shape == (4, 18, 2)
    # A walk: the ankles move between frames while the torso stays roughly in place.
    ankles = keypoints[:, [10, 13], 0]
    assert np.ptp(ankles[:, 0]) > 3


@pytest.mark.slow
def test_run_demo_end_to_end(tmp_path: Path):
    """The demo on a tiny budget: shipped model first, a few fresh iterations, scores, GIFs, summary."""
    import json

    from deformgan.demo import METHODS, run_demo

    summary = run_demo(tmp_path, minutes_budget=0.3, identities=4, poses_per_identity=3, progress=False)
    assert summary == tmp_path / "summary.html"
    page = summary.read_text()
    # comparison grid + loss curves as PNG, the motion GIF; no external reference of any kind
    assert page.count("data:image/png;base64,") == 2 and page.count("data:image/gif;base64,") == 1
    assert 'src="http' not in page
    for name in ("shipped_transfer.png", "shipped_motion.gif", "comparison.png", "summary.png",
                 "loss_curves.png", "motion_transfer.gif", "demo.json"):  # fmt: skip
        assert (tmp_path / name).is_file(), name
    record = json.loads((tmp_path / "demo.json").read_text())
    assert record["iterations"] >= 1 and record["total_seconds"] < 0.3 * 60 + 30
    # 1 test identity of 4 (round(4 / 4)) with 3 images: 3 * 2 ordered pairs, every one scored
    assert record["held_out_pairs"] == 6
    scores = record["scores"]
    assert list(scores) == list(METHODS) == ["copy_source", "warp_only", "shipped", "fresh"]
    for method, row in scores.items():
        assert set(row) == {"mask_ssim", "ssim", "l1"}, method
        assert 0 < row["mask_ssim"] <= 1 and -1 <= row["ssim"] <= 1 and 0 <= row["l1"] <= 1, method
    # source | ground truth | shipped | fresh, each 64x128 shown at 2x, one frame per walk-cycle step
    with Image.open(tmp_path / "motion_transfer.gif") as gif:
        assert gif.n_frames == 16 and gif.size == (2 * 4 * 64, 2 * 128)
    with Image.open(tmp_path / "shipped_motion.gif") as gif:
        assert gif.n_frames == 16 and gif.size == (2 * 3 * 64, 2 * 128)
