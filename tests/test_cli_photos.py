"""Users' own photos and videos through the command line: `deformgan keypoints` and `deformgan transfer`
with the person found automatically, the target pose from a photo, a driving video or frame folder, MP4
and GIF output, and `--paste`.

Every test needs the real pose model (`deformgan weights pose`) and skips with the reason without it. The
photos are synthetic people (deformgan.synth), which BlazePose finds at 128x64 and above; the generator is
a 1/16-width model trained for one iteration (its images are not people yet, but they are a deterministic
function of the inputs, so the command's output can be compared with the library's). The commands run
in-process through the console script's entry point (`deformgan.cli.main`), as the shell runs them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from test_train import make_tiny_dataset, tiny_config

from deformgan.images import read_image
from deformgan.keypoints import JOINT, read_annotations
from deformgan.synth import RenderedPerson, render_sample

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL_SIZE = (128, 64)  # tiny_config's Market preset (H, W)


def deformgan(monkeypatch, capsys, *args: object) -> tuple[int, str, str]:
    """Run `deformgan ARGS...` in this process -> (exit status, stdout, stderr)."""
    from deformgan import cli

    monkeypatch.setattr(sys, "argv", ["deformgan", *map(str, args)])
    with pytest.raises(SystemExit) as done:
        cli.main()
    captured = capsys.readouterr()
    return done.value.code, captured.out, captured.err


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run folder with a 1-iteration 1/16-width checkpoint for 128x64 (a few seconds)."""
    from deformgan.train import train

    root = tmp_path_factory.mktemp("run")
    data = make_tiny_dataset(root / "data")
    return train(
        tiny_config(iterations=1, sample_every=0), data, root / "run", progress=False, tensorboard=False
    )


def person(identity: int, index: int, size: tuple[int, int] = (256, 128)) -> RenderedPerson:
    """A synthetic person (deformgan.synth, seed 0): image uint8 (H, W, 3) and exact joints (x, y)."""
    return render_sample(0, identity, index, size)


def in_a_photo(
    image: np.ndarray, height: int = 360, width: int = 420, x0: int = 230, y0: int = 60
) -> np.ndarray:
    """``image`` placed at (x0, y0) on a larger textured background (blurred noise, nothing person-like):
    a photo where the person fills only part of the picture, so framing and pasting have work to do."""
    noise = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    photo = cv2.GaussianBlur(noise, (0, 0), 9)
    photo[y0 : y0 + image.shape[0], x0 : x0 + image.shape[1]] = image
    return photo


def save(image: np.ndarray, path: Path) -> Path:
    """Write a uint8 (H, W, 3) RGB image (format from the suffix); returns the path."""
    Image.fromarray(image).save(path)
    return path


# ---------------------------------------------------------------------------------------------------
# deformgan keypoints


def test_keypoints_command_reports_bad_images_and_writes_every_row(pose_model, tmp_path, monkeypatch, capsys):
    """Two people, a blank image and two files that cannot be decoded: the command succeeds, says each bad
    file on its own line (naming it and why), and writes all five rows, the three without keypoints as all
    -1. The people's rows are what the library finds (``annotate_images``, tested against the model in
    test_pose_sequence.py) and put the neck near the renderer's exact neck (within 8 % of the 256 px image
    height, 20 px; measured under 2 px)."""
    from deformgan.pose import annotate_images

    folder = tmp_path / "photos"
    folder.mkdir()
    people = {"p1.png": person(1, 0), "p2.png": person(2, 1)}
    for name, sample in people.items():
        save(sample.image, folder / name)
    save(np.full((256, 128, 3), 128, np.uint8), folder / "blank.png")
    (folder / "notes.jpg").write_text("not an image\n")
    whole = (folder / "p1.png").read_bytes()
    (folder / "cut.png").write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "annotations.csv"

    code, stdout, stderr = deformgan(monkeypatch, capsys, "keypoints", folder, "--out", out)
    assert code == 0, stderr
    lines = stderr.splitlines()
    for name in ("cut.png", "notes.jpg"):
        said = [
            line for line in lines if line.startswith(f"unreadable: {folder / name}: cannot read image (")
        ]
        assert len(said) == 1 and said[0].endswith("(written as all -1)"), stderr
    assert "no person found: blank.png (written as all -1)" in lines
    assert f"wrote 5 rows to {out} (2 with a person, 2 unreadable)" in stdout

    rows = read_annotations(out)
    assert sorted(rows) == ["blank.png", "cut.png", "notes.jpg", "p1.png", "p2.png"]
    assert all((rows[name] == -1).all() for name in ("blank.png", "cut.png", "notes.jpg"))
    library = annotate_images([folder / name for name in people], pose_model).rows
    for name, sample in people.items():
        assert np.array_equal(rows[name], library[name])
        neck = JOINT["neck"]
        assert np.linalg.norm(rows[name][neck] - sample.joints[neck]) < 0.08 * 256


# ---------------------------------------------------------------------------------------------------
# deformgan transfer --image PHOTO --pose PHOTO [--paste]


def test_transfer_to_the_pose_of_another_photo(pose_model, run, tmp_path, monkeypatch, capsys):
    """No --annotations: the person of the photo and the target pose of the other photo are both found by
    the pose model. The PNG is the model's 128x64 frame and equals, pixel for pixel, what the library
    computes from the same photos (person_from_photo for both, then PoseTransfer.render; eval mode, so
    deterministic). A second target photo gives another image (mean difference > 10 grey levels): the
    target pose is used."""
    from deformgan.transfer import PoseTransfer, person_from_photo

    photo = save(in_a_photo(person(1, 0).image), tmp_path / "me.png")
    other = save(person(2, 3).image, tmp_path / "someone.png")
    third = save(person(3, 5).image, tmp_path / "third.png")
    out = tmp_path / "me-posed.png"
    code, stdout, stderr = deformgan(
        monkeypatch, capsys, "transfer", "--checkpoint", run, "--image", photo, "--pose", other, "--out", out
    )
    assert code == 0 and f"wrote {out}" in stdout, stderr

    model = PoseTransfer.from_checkpoint(run)
    me = person_from_photo(photo, MODEL_SIZE, pose_model)
    target = person_from_photo(other, MODEL_SIZE, pose_model).keypoints
    expected = model.render(me.image, me.keypoints, target[None])[0]
    written = read_image(out)
    assert written.shape == (*MODEL_SIZE, 3) and np.array_equal(written, expected)

    out3 = tmp_path / "me-third.png"
    code, _, stderr = deformgan(
        monkeypatch, capsys, "transfer", "--checkpoint", run, "--image", photo, "--pose", third, "--out", out3
    )
    assert code == 0, stderr
    assert np.abs(read_image(out3).astype(int) - written).mean() > 10  # measured 31


def test_transfer_paste_puts_the_person_back_into_the_photo(pose_model, run, tmp_path, monkeypatch, capsys):
    """--paste: the output has the photo's size; outside the person's box (the framing) it is the photo
    unchanged, inside it is the generated frame resized to the box, i.e. exactly Framing.paste of the
    library's image. With --annotations there is no framing to paste with: one line, exit status 2."""
    from deformgan.keypoints import write_annotations
    from deformgan.transfer import PoseTransfer, person_from_photo

    photo_array = in_a_photo(person(1, 0).image)
    photo = save(photo_array, tmp_path / "me.png")
    other = save(person(2, 3).image, tmp_path / "someone.png")
    out = tmp_path / "pasted.png"
    args = ["transfer", "--checkpoint", run, "--image", photo, "--pose", other]
    code, _, stderr = deformgan(monkeypatch, capsys, *args, "--paste", "--out", out)
    assert code == 0, stderr

    me = person_from_photo(photo, MODEL_SIZE, pose_model)
    target = person_from_photo(other, MODEL_SIZE, pose_model).keypoints
    generated = PoseTransfer.from_checkpoint(run).render(me.image, me.keypoints, target[None])[0]
    pasted = read_image(out)
    assert pasted.shape == photo_array.shape
    assert np.array_equal(pasted, me.framing.paste(generated, photo_array))
    x0, y0, width, height = me.framing.box
    inside = np.zeros(photo_array.shape[:2], bool)
    inside[max(0, y0) : y0 + height, max(0, x0) : x0 + width] = True
    assert np.array_equal(pasted[~inside], photo_array[~inside])
    assert (pasted[inside] != photo_array[inside]).any()
    assert 230 < x0 + width / 2 < 230 + 128  # centred on the person (placed at x 230..358), not the photo

    csv = tmp_path / "me.csv"
    write_annotations(csv, {"me.png": me.keypoints})
    code, _, stderr = deformgan(
        monkeypatch, capsys, *args, "--annotations", csv, "--paste", "--out", tmp_path / "x.png"
    )
    assert code == 2 and stderr == "error: --paste needs the person found in the photo (omit --annotations)\n"


# ---------------------------------------------------------------------------------------------------
# deformgan transfer --video VIDEO|FOLDER (motion transfer)


def walker_frames(count: int) -> list[np.ndarray]:
    """``count`` 256x128 frames of one synthetic person in changing poses (a jerky but valid 'video')."""
    return [person(4, index).image for index in range(count)]


def write_avi(frames: list[np.ndarray], path: Path, fps: float) -> Path:
    """RGB uint8 frames -> an MJPG AVI at ``fps`` (a real video file for OpenCV to read back)."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), "OpenCV writes MJPG AVI files with its bundled codecs"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_transfer_follows_a_video_into_an_mp4(pose_model, run, tmp_path, monkeypatch, capsys):
    """A 4-frame AVI at 12 fps drives the person of a photo; MP4 out. The MP4 holds 4 frames at the video's
    12 fps, each [driving frame | skeleton | generated] of 128x64 panels enlarged 2x: 256 x 384. It matches
    the library's frames (poses_from_video, then render) up to the MP4 codec's loss: mean absolute
    difference < 8 grey levels (measured 2.6-2.9 with OpenCV's mp4v), while each frame differs from the
    library's frames of the other poses by > 15 (measured 22-31): the frames are the right ones, in order."""
    from deformgan.pose.sequence import read_video
    from deformgan.transfer import (
        PoseTransfer,
        person_from_photo,
        poses_from_video,
        side_by_side,
        skeleton_frames,
    )

    video = write_avi(walker_frames(4), tmp_path / "walk.avi", 12.0)
    photo = save(in_a_photo(person(1, 0).image), tmp_path / "me.png")
    out = tmp_path / "me-walking.mp4"
    code, _, stderr = deformgan(
        monkeypatch, capsys, "transfer", "--checkpoint", run, "--image", photo, "--video", video, "--out", out
    )
    assert code == 0, stderr
    frames, fps = read_video(out)
    assert len(frames) == 4 and fps == pytest.approx(12.0)
    assert frames[0].shape == (2 * MODEL_SIZE[0], 2 * 3 * MODEL_SIZE[1], 3)

    model = PoseTransfer.from_checkpoint(run)
    me = person_from_photo(photo, MODEL_SIZE, pose_model)
    driving, poses, rate = poses_from_video(video, MODEL_SIZE, model=pose_model)
    expected = side_by_side(
        driving, skeleton_frames(poses, MODEL_SIZE), model.render(me.image, me.keypoints, poses)
    )
    assert rate == pytest.approx(12.0)

    def difference(i: int, j: int) -> float:
        return float(np.abs(frames[i].astype(int) - expected[j]).mean())

    assert max(difference(i, i) for i in range(4)) < 8  # the codec's loss
    assert min(difference(i, j) for i in range(4) for j in range(4) if i != j) > 15  # the control


def test_transfer_from_a_frame_folder_needs_its_frame_rate(pose_model, run, tmp_path, monkeypatch, capsys):
    """A folder of frames has no frame rate: without --fps the command says so on one line (exit 2); with
    --fps 5 the GIF has one frame per driving frame shown 200 ms each (Pillow may merge identical
    consecutive frames, adding their durations, so the durations are summed: 3 x 200 ms)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(walker_frames(3)):
        save(frame, folder / f"frame{index:03d}.png")
    photo = save(person(1, 0).image, tmp_path / "me.png")
    args = ["transfer", "--checkpoint", run, "--image", photo, "--video", folder]
    code, _, stderr = deformgan(monkeypatch, capsys, *args, "--out", tmp_path / "x.gif")
    assert code == 2 and stderr == f"error: {folder}: a folder of frames has no frame rate; pass --fps\n"

    out = tmp_path / "me.gif"
    code, _, stderr = deformgan(monkeypatch, capsys, *args, "--fps", "5", "--out", out)
    assert code == 0, stderr
    gif = Image.open(out)
    durations = []
    for index in range(gif.n_frames):
        gif.seek(index)
        durations.append(gif.info["duration"])
    assert sum(durations) == 3 * 200 and gif.size == (2 * 3 * MODEL_SIZE[1], 2 * MODEL_SIZE[0])


def test_motion_transfer_on_the_real_walk(pose_model, run, shared, tmp_path, monkeypatch, capsys):
    """The real example of ../shared/data/walk: the person of source-image.jpg follows the first 12 walking
    frames (linked into a folder here, not copied; 25 fps as --fps), the person of the photo found
    automatically. The walker is found in every frame: each frame's skeleton panel has a whole skeleton
    drawn (over 1000 coloured pixels at 2x), and the skeleton moves (a walk: the first and last panels
    differ). The GIF shows 12 frames of 40 ms (durations summed: Pillow may merge identical frames)."""
    walk = shared / "data" / "walk"
    frames = tmp_path / "frames"
    frames.mkdir()
    for source in sorted((walk / "frames").glob("*.jpg"))[:12]:
        os.symlink(source, frames / source.name)
    out = tmp_path / "walking.gif"
    code, _, stderr = deformgan(
        monkeypatch, capsys, "transfer", "--checkpoint", run, "--image", walk / "source-image.jpg",
        "--video", frames, "--fps", "25", "--out", out,
    )  # fmt: skip
    assert code == 0, stderr
    gif = Image.open(out)
    width = 2 * MODEL_SIZE[1]
    assert gif.size == (3 * width, 2 * MODEL_SIZE[0])
    durations, skeletons = [], []
    for index in range(gif.n_frames):
        gif.seek(index)
        durations.append(gif.info["duration"])
        skeletons.append(np.asarray(gif.convert("RGB"))[:, width : 2 * width].astype(int))
    assert sum(durations) == 12 * 40
    assert all((panel.max(axis=-1) > 60).sum() > 1000 for panel in skeletons)  # measured 2016-2760
    assert np.abs(skeletons[0] - skeletons[-1]).mean() > 4  # measured 11.5
