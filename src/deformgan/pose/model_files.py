"""Fetching the pose model from the one registry package that ships it, and finding it afterwards.

The BlazePose landmark model (``pose_landmark_full.tflite``, Apache-2.0, Bazarevsky et al., "BlazePose:
On-device Real-time Body Pose tracking", CVPR Workshops 2020) is bundled inside the ``mediapipe`` wheel on
PyPI up to release 0.10.21 (later releases download it at run time instead). deformgan does not install
mediapipe (it pins numpy < 2): :func:`fetch_pose_model` downloads that one wheel with pip, without its
dependencies, takes the model file out of the zip, checks its SHA-256 against the value pinned below
(measured on the real wheel), and writes it atomically into the weights cache
(``$DEFORMGAN_WEIGHTS`` when set, else :func:`deformgan.pretrained.hub_checkpoint_dir`), where
:func:`find_pose_model` (through :func:`deformgan.pretrained.find_weights`) finds it like every other
weights file. The model itself runs on OpenCV's DNN module (:mod:`deformgan.pose.blazepose`).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from deformgan.atomic import atomic_write_bytes
from deformgan.errors import InputError
from deformgan.pretrained import find_weights, hub_checkpoint_dir

#: The registry release that bundles the models: ``pip download`` picks exactly this file. The model bytes
#: do not depend on the platform or Python tag; one fixed tag makes the download the same everywhere.
MEDIAPIPE_REQUIREMENT = "mediapipe==0.10.21"
WHEEL_PLATFORM = "manylinux_2_28_x86_64"
WHEEL_PYTHON = "3.11"
#: The command users (and CI) run to fetch the model.
FETCH_COMMAND = "deformgan weights pose"


@dataclass(frozen=True)
class ModelFile:
    """One file to take out of the wheel: its path inside the zip, its SHA-256, its name in the cache."""

    member: str
    sha256: str
    filename: str


#: The landmark model, pinned by the SHA-256 of the member of mediapipe-0.10.21 (measured on
#: mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl). The cache name carries the first 8 hex digits,
#: as torchvision's file names do, so another version can never be mistaken for this one.
POSE_LANDMARK_FULL = ModelFile(
    member="mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
    sha256="e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
    filename="pose_landmark_full-e9a5c5cb.tflite",
)
POSE_MODEL_FILES: tuple[ModelFile, ...] = (POSE_LANDMARK_FULL,)


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_dir() -> Path:
    """Where fetched weights go: ``$DEFORMGAN_WEIGHTS`` when set, else torchvision's checkpoint folder."""
    env = os.environ.get("DEFORMGAN_WEIGHTS")
    return Path(env) if env else hub_checkpoint_dir()


def find_pose_model(explicit: str | os.PathLike | None = None, model: ModelFile = POSE_LANDMARK_FULL) -> Path:
    """Path of the landmark model (explicit path, ``$DEFORMGAN_WEIGHTS``, torch hub checkpoints), checked.

    Raises :class:`deformgan.pretrained.MissingWeightsError` (one line, naming the file and the fetch
    command) when it is absent, and :class:`InputError` when the file found has another SHA-256.
    """
    path = find_weights(
        model.filename, explicit, url=f"run `{FETCH_COMMAND}` ({MEDIAPIPE_REQUIREMENT} wheel)"
    )
    actual = sha256_of(path)
    if actual != model.sha256:
        raise InputError(
            f"{path}: SHA-256 {actual[:16]}... is not that of {model.member} in {MEDIAPIPE_REQUIREMENT} "
            f"({model.sha256[:16]}...); delete it and run `{FETCH_COMMAND}`"
        )
    return path


def _download_wheel(folder: Path, find_links: str | os.PathLike | None, index_url: str | None) -> Path:
    """``pip download`` the pinned mediapipe wheel (no dependencies) into ``folder`` -> the wheel's path."""
    command = [
        sys.executable, "-m", "pip", "download", MEDIAPIPE_REQUIREMENT, "--no-deps", "--only-binary=:all:",
        "--python-version", WHEEL_PYTHON, "--platform", WHEEL_PLATFORM, "--dest", str(folder),
        "--disable-pip-version-check", "--quiet",
    ]  # fmt: skip
    if find_links is not None:  # a local folder of wheels (offline mirrors, tests): no index at all
        command += ["--no-index", "--find-links", str(find_links)]
    elif index_url is not None:
        command += ["--index-url", index_url]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR")] or lines or ["(no output)"]
        raise InputError(f"pip download {MEDIAPIPE_REQUIREMENT} failed: {errors[-1]}")
    wheels = sorted(folder.glob("mediapipe-*.whl"))
    if len(wheels) != 1:
        raise InputError(
            f"pip download {MEDIAPIPE_REQUIREMENT} left {len(wheels)} wheels in {folder}, expected 1"
        )
    return wheels[0]


def _extract(wheel: Path, files: tuple[ModelFile, ...]) -> dict[ModelFile, bytes]:
    """Read and checksum each member of the wheel; a missing member or a wrong checksum is refused."""
    try:
        archive = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as error:
        raise InputError(f"{wheel}: not a readable wheel (zip): {error}") from None
    contents: dict[ModelFile, bytes] = {}
    with archive:
        names = set(archive.namelist())
        for spec in files:
            if spec.member not in names:
                raise InputError(f"{wheel}: has no member {spec.member} (is it {MEDIAPIPE_REQUIREMENT}?)")
            data = archive.read(spec.member)
            actual = hashlib.sha256(data).hexdigest()
            if actual != spec.sha256:
                raise InputError(
                    f"{wheel}: {spec.member} has SHA-256 {actual[:16]}..., expected {spec.sha256[:16]}...; "
                    "refusing it"
                )
            contents[spec] = data
    return contents


def fetch_pose_model(
    dest: str | os.PathLike | None = None,
    wheel: str | os.PathLike | None = None,
    find_links: str | os.PathLike | None = None,
    index_url: str | None = None,
    files: tuple[ModelFile, ...] = POSE_MODEL_FILES,
) -> dict[str, Path]:
    """Put the pose model files into the weights cache -> ``{cache file name: path}``.

    dest: the folder (default :func:`weights_dir`). wheel: a mediapipe wheel already on disk (nothing is
    downloaded). find_links: a local folder holding the wheel, used by pip instead of any index (offline
    mirror). index_url: another package index for pip. Otherwise pip downloads ``mediapipe==0.10.21`` from
    the configured index. Files already in ``dest`` with the right SHA-256 are kept and nothing is
    downloaded (idempotent); a cached file with another checksum is replaced. Each file is checked against
    its pinned SHA-256 before it is written (atomically). Raises :class:`InputError` with one line on a
    failed download, a missing member or a wrong checksum.
    """
    folder = Path(dest) if dest is not None else weights_dir()
    present = {spec: folder / spec.filename for spec in files}
    todo = tuple(
        spec for spec, path in present.items() if not (path.is_file() and sha256_of(path) == spec.sha256)
    )
    if todo:
        if wheel is not None:
            wheel_path = Path(wheel)
            if not wheel_path.is_file():
                raise InputError(f"{wheel_path}: wheel file not found")
            contents = _extract(wheel_path, todo)
        else:
            with tempfile.TemporaryDirectory(prefix="deformgan-mediapipe-") as tmp:
                contents = _extract(_download_wheel(Path(tmp), find_links, index_url), todo)
        for spec, data in contents.items():
            atomic_write_bytes(present[spec], data)
    return {spec.filename: path for spec, path in present.items()}
