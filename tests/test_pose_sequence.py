"""Reading images, frame folders and videos; filling and One-Euro smoothing of keypoint sequences."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from deformgan.errors import InputError
from deformgan.keypoints import read_annotations, write_annotations
from deformgan.pose.sequence import (
    OneEuroFilter,
    annotate_images,
    estimate_sequence,
    fill_missing,
    list_images,
    read_frames,
    read_video,
    smooth_keypoints,
)


def synth_frames(count: int, size: tuple[int, int] = (128, 64)) -> list[np.ndarray]:
    from deformgan.synth import render_sample

    return [render_sample(3, 0, i, size).image for i in range(count)]


# ---------------------------------------------------------------------------------------------------
# Reading


def test_list_images_sorted_and_errors(tmp_path):
    (tmp_path / "frames").mkdir()
    for name in ("b.png", "a.jpg", "c.txt", "a10.png"):
        (tmp_path / "frames" / name).write_bytes(b"")
    single = tmp_path / "one.png"
    single.write_bytes(b"")
    assert [p.name for p in list_images([tmp_path / "frames", single])] == [
        "a.jpg",
        "a10.png",
        "b.png",
        "one.png",
    ]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="folder holds no image"):
        list_images([tmp_path / "empty"])
    with pytest.raises(InputError, match="no such file or folder"):
        list_images([tmp_path / "nope"])


def test_read_video_and_frame_folder(tmp_path):
    frames = synth_frames(5)
    writer = cv2.VideoWriter(str(tmp_path / "walk.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (64, 128))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    images, fps = read_video(tmp_path / "walk.avi")
    assert len(images) == 5 and images[0].shape == (128, 64, 3) and fps == pytest.approx(12.0)
    assert np.abs(images[2].astype(int) - frames[2]).mean() < 8  # MJPG is lossy; colours are RGB again
    seq = read_frames(tmp_path / "walk.avi", max_frames=3)
    assert (
        len(seq.images) == 3
        and seq.names == ["walk_000000", "walk_000001", "walk_000002"]
        and seq.fps == 12.0
    )

    (tmp_path / "folder").mkdir()
    for i, frame in enumerate(frames[:3]):
        Image.fromarray(frame).save(tmp_path / "folder" / f"f{2 - i}.png")
    seq = read_frames(tmp_path / "folder")
    assert seq.names == ["f0.png", "f1.png", "f2.png"] and seq.fps is None
    assert np.array_equal(seq.images[0], frames[2])
    Image.fromarray(frames[0][:64]).save(tmp_path / "folder" / "f3.png")
    with pytest.raises(InputError, match="frames differ in size"):
        read_frames(tmp_path / "folder")


def test_video_without_frames_is_one_line(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.mp4: (OpenCV cannot open|the video has no frame)") as error:
        read_video(tmp_path / "empty.mp4")
    assert "\n" not in str(error.value)
    with pytest.raises(InputError, match="video file not found"):
        read_frames(tmp_path / "absent.mp4")


# ---------------------------------------------------------------------------------------------------
# Filling and smoothing


def test_fill_missing_from_previous_frame():
    kp = np.full((5, 18, 2), -1, dtype=np.int64)
    kp[0, 3] = (10, 20)
    kp[3, 3] = (12, 22)
    kp[2, 5] = (1, 2)  # appears late: nothing to fill before it
    out = fill_missing(kp)
    assert [tuple(p) for p in out[:, 3]] == [(10, 20), (10, 20), (10, 20), (12, 22), (12, 22)]
    assert [tuple(p) for p in out[:, 5]] == [(-1, -1), (-1, -1), (1, 2), (1, 2), (1, 2)]
    assert (kp[1] == -1).all()  # the input is not modified
    capped = fill_missing(kp, max_gap=1)
    assert [tuple(p) for p in capped[:, 3]] == [(10, 20), (10, 20), (-1, -1), (12, 22), (12, 22)]
    with pytest.raises(InputError, match=r"shape \(T, 18, 2\)"):
        fill_missing(np.zeros((5, 17, 2)))


def test_one_euro_constant_cutoff_matches_the_low_pass_formulas():
    """With beta = 0 the filter is x_t = a s_t + (1 - a) x_(t-1), a = 1 / (1 + rate / (2 pi f_c)):
    on white noise its stationary variance is a / (2 - a) sigma^2; on a ramp of slope v per sample it lags
    by v (1 - a) / a."""
    rate, cutoff, sigma = 30.0, 2.0, 1.0
    a = 1.0 / (1.0 + rate / (2 * np.pi * cutoff))
    noise = np.random.default_rng(0).normal(0.0, sigma, (4000, 50))
    flt = OneEuroFilter(rate, min_cutoff=cutoff, beta=0.0)
    out = np.stack([flt(x) for x in noise])[200:]
    assert out.var() == pytest.approx(a / (2 - a) * sigma**2, rel=0.05)
    ramp = np.arange(300, dtype=np.float64)[:, None] * 0.5
    flt = OneEuroFilter(rate, min_cutoff=cutoff, beta=0.0)
    lag = ramp[-1, 0] - np.stack([flt(x) for x in ramp])[-1, 0]
    assert lag == pytest.approx(0.5 * (1 - a) / a, rel=1e-6)
    # The speed term raises the cutoff for a moving signal: less lag.
    flt = OneEuroFilter(rate, min_cutoff=cutoff, beta=1.0)
    assert ramp[-1, 0] - np.stack([flt(x) for x in ramp])[-1, 0] < 0.5 * lag


def test_one_euro_restarts_after_a_gap():
    flt = OneEuroFilter(25.0, min_cutoff=1.0, beta=0.0)
    assert flt(np.array([10.0])) == 10.0  # the first sample is taken as is
    assert 10.0 < flt(np.array([20.0]))[0] < 20.0
    assert np.isnan(flt(np.array([np.nan]))[0])
    assert flt(np.array([50.0]))[0] == 50.0  # no smoothing across the gap
    with pytest.raises(InputError, match="One-Euro filter needs"):
        OneEuroFilter(0.0)


def test_smooth_keypoints_reduces_jitter_and_keeps_missing():
    rng = np.random.default_rng(1)
    t = np.arange(100)
    truth = np.stack([40 + 10 * np.sin(t / 10), 60 + 0 * t], axis=-1)  # one joint drifting slowly
    kp = np.full((100, 18, 2), -1, dtype=np.int64)
    kp[:, 4] = np.rint(truth + rng.normal(0, 2.0, truth.shape))
    kp[50:53, 4] = -1
    out = smooth_keypoints(kp, fps=25.0, height=128)
    assert (out[50:53, 4] == -1).all() and (out[:, 0] == -1).all() and out.dtype == np.int64
    jitter = lambda k: np.abs(np.diff(k[60:, 4].astype(float), 2, axis=0)).mean()  # noqa: E731
    assert jitter(out) < 0.6 * jitter(kp)
    assert np.abs(out[60:, 4] - truth[60:]).mean() < np.abs(kp[60:, 4] - truth[60:]).mean()


# ---------------------------------------------------------------------------------------------------
# With the real model


def test_annotate_images_round_trips_through_the_csv(pose_model, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    frames = synth_frames(3, (256, 256))
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"p{i}.png")
    Image.fromarray(np.full((128, 64, 3), 128, np.uint8)).save(folder / "empty.png")
    found = annotate_images([folder], pose_model)
    rows = found.rows
    assert list(rows) == ["empty.png", "p0.png", "p1.png", "p2.png"] and found.without_person == ["empty.png"]
    assert (rows["empty.png"] == -1).all() and (rows["p0.png"] >= 0).any() and found.unreadable == {}
    write_annotations(tmp_path / "annotations.csv", rows)
    back = read_annotations(tmp_path / "annotations.csv")
    assert all(np.array_equal(back[n], rows[n]) for n in rows)
    (tmp_path / "other").mkdir()
    Image.fromarray(frames[0]).save(tmp_path / "other" / "p0.png")
    with pytest.raises(InputError, match="same file name"):
        annotate_images([folder, tmp_path / "other"], pose_model)


def test_annotate_images_keeps_a_row_for_every_unreadable_file(pose_model, tmp_path):
    """A text file named .jpg and a PNG cut in half cannot be decoded: each gets an all-missing row and a
    one-line reason naming the file, and nothing else changes: the readable images get the keypoints the
    model finds for them alone (each image is estimated on its own). With chunk=2 the two bad files (first
    by name) fill one chunk, which leaves the model nothing to run on for it."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    frames = synth_frames(2, (256, 256))
    for name, frame in zip(("c_person.png", "d_person.png"), frames, strict=True):
        Image.fromarray(frame).save(folder / name)
    (folder / "a_text.jpg").write_text("not an image\n")
    whole = (folder / "c_person.png").read_bytes()
    (folder / "b_cut.png").write_bytes(whole[: len(whole) // 2])

    found = annotate_images([folder], pose_model, chunk=2)
    assert list(found.rows) == ["a_text.jpg", "b_cut.png", "c_person.png", "d_person.png"]
    assert list(found.unreadable) == ["a_text.jpg", "b_cut.png"] and found.without_person == []
    for name, reason in found.unreadable.items():
        assert (found.rows[name] == -1).all()
        assert reason.startswith(f"{folder / name}: cannot read image (") and "\n" not in reason
    for name, frame in zip(("c_person.png", "d_person.png"), frames, strict=True):
        alone = pose_model.estimate([frame], progress=False)
        assert alone.detected[0] and np.array_equal(found.rows[name], alone.keypoints[0])


def test_estimate_sequence_errors(pose_model):
    with pytest.raises(InputError, match="no frames"):
        estimate_sequence([], pose_model, fps=25)
    with pytest.raises(InputError, match="frame rate"):
        estimate_sequence(synth_frames(2), pose_model)
    with pytest.raises(InputError, match="no person found in any of the 2 frames"):
        estimate_sequence([np.full((128, 64, 3), 90, np.uint8)] * 2, pose_model, fps=25)


def test_real_walk_is_tracked_and_smoothed(pose_model, shared):
    """The first 30 real walking frames: a person in every frame, and the smoothed keypoints jitter less
    (mean |second difference| over joints present in three frames in a row)."""
    frames = read_frames(shared / "data" / "walk" / "frames", max_frames=30)
    result = estimate_sequence(frames.images, pose_model, fps=25)
    assert result.detected.all() and result.keypoints.shape == (30, 18, 2)

    def jitter(kp: np.ndarray) -> float:
        ok = (kp[2:, :, 0] >= 0) & (kp[1:-1, :, 0] >= 0) & (kp[:-2, :, 0] >= 0)
        return float(np.abs(np.diff(kp.astype(float), 2, axis=0)).sum(-1)[ok].mean())

    assert jitter(result.keypoints) < 0.75 * jitter(result.raw)
    # Neck above the hips and the ankles below the knees in every frame: an upright walker.
    kp = result.keypoints
    assert (kp[:, 1, 1] < kp[:, [8, 11], 1].min(axis=1)).all()
