"""What the editor's page asks the server for, without the web layer: photos in, poses in and out, renders.

:class:`EditorBackend` holds the model (:class:`~deformgan.editor.engine.EditorEngine`), the optional pose
estimator (BlazePose, :mod:`deformgan.pose`) and, per loaded photo, its source side computed once. Every
method takes and returns plain values (bytes, lists, numpy arrays); :mod:`deformgan.editor.app` maps them
to HTTP. Bad input raises :class:`~deformgan.errors.InputError` with one line for the page to show.

Photos are decoded by :func:`deformgan.images.read_image` (the reader used everywhere in deformgan) from a
temporary file named as the upload, so a message names the user's file, not a temporary path.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deformgan.editor.engine import PART_COLORS, EditorEngine, Rendering, Source
from deformgan.editor.poses import (
    annotation_csv,
    check_keypoints,
    from_openpose_json,
    mirror_permutation,
    template_pose,
    to_openpose_json,
)
from deformgan.errors import InputError
from deformgan.images import read_image
from deformgan.keypoints import JOINT_COLORS, JOINT_NAMES, SKELETON_LIMBS, read_annotations
from deformgan.parts import PART_NAMES

#: How a photo becomes the model frame: "person" finds the person and frames them as the dataset crops do
#: (:func:`deformgan.pose.framing.frame_person`; needs the pose model); "whole" fits the whole photo into
#: the frame (border replicated where the aspect ratios differ).
FRAMING_MODES = ("person", "whole")
#: Photos (and videos) whose source side stays cached; older ones are dropped (the page reloads them).
MAX_PHOTOS = 8
MAX_VIDEOS = 2
#: Frames counted at most when a video file does not state its length.
MAX_VIDEO_FRAMES = 100_000
POSE_FORMATS = ("openpose", "csv")


@dataclass
class Photo:
    """A loaded source photo: the model-frame image, the source side for ``keypoints`` (recomputed when
    the page sends other source keypoints), and its name."""

    name: str
    image: np.ndarray
    source: Source
    keypoints: np.ndarray


@dataclass
class Framed:
    """A photo or video frame brought into the model frame: uint8 (H, W, 3) image, int64 (18, 2) keypoints
    (-1 = missing), whether they came from the pose model, and a note for the page (or "")."""

    image: np.ndarray
    keypoints: np.ndarray
    detected: bool
    note: str


def _safe_name(filename: str, default: str) -> str:
    """The base name of an upload, reduced to characters safe in a file name."""
    base = Path(filename or "").name
    base = re.sub(r"[^A-Za-z0-9._ -]", "_", base).strip(" .")
    return base[:120] or default


def whole_photo_box(photo_size: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, width, height): the smallest box of the frame's aspect ratio that holds the whole photo,
    centred on it. photo_size, size: (H, W)."""
    (ph, pw), (height, width) = photo_size, size
    if pw * height >= ph * width:  # the photo is wider than the frame: full width, padded above and below
        box_w, box_h = pw, max(1, round(pw * height / width))
    else:
        box_w, box_h = max(1, round(ph * width / height)), ph
    return ((pw - box_w) // 2, (ph - box_h) // 2, box_w, box_h)


def frame_count(capture) -> int:
    """Frames of an opened ``cv2.VideoCapture`` whose first frame was just read: the container's count, or,
    when it states none (some streams report 0 or -1), 1 + the frames that can still be grabbed (at most
    :data:`MAX_VIDEO_FRAMES`)."""
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    if count >= 1:
        return count
    count = 1
    while count < MAX_VIDEO_FRAMES and capture.grab():
        count += 1
    return count


class EditorBackend:
    """The editor's state and operations for one server.

    engine: the model. pose_model: a path to the BlazePose landmark model, or None for the weights cache
    (:func:`deformgan.pose.model_files.find_pose_model`); when it cannot be loaded the editor still works
    with keypoints placed by hand and :attr:`pose_message` says what to run. work_dir: where uploads are
    written while they are read (a temporary folder of the caller's).
    """

    def __init__(self, engine: EditorEngine, work_dir: str | os.PathLike, pose_model=None, name: str = ""):
        self.engine = engine
        self.size: tuple[int, int] = engine.image_size
        self.work_dir = Path(work_dir)
        self.name = name
        self._photos: OrderedDict[str, Photo] = OrderedDict()
        self._videos: OrderedDict[str, Path] = OrderedDict()
        self._model_lock = threading.Lock()  # one generator call at a time
        self._pose_lock = threading.Lock()  # OpenCV's DNN net is not shared between threads
        self._state_lock = threading.Lock()
        self.pose_estimator = None
        self.pose_message = ""
        try:
            from deformgan.pose.blazepose import BlazePose

            self.pose_estimator = BlazePose(pose_model)
        except InputError as error:  # MissingWeightsError included
            from deformgan.pose.model_files import FETCH_COMMAND

            self.pose_message = (
                f"Automatic keypoints are off: {error}. Run `{FETCH_COMMAND}` to fetch the pose model; "
                "until then place the joints by hand."
            )

    # ------------------------------------------------------------------------------------------
    # What the page needs to know

    def info(self) -> dict:
        """Frame size, joint names, skeleton, colours, the template pose, part names/colours, model and pose
        estimator status: everything the page draws with (so nothing is duplicated in JavaScript)."""
        height, width = self.size
        config = self.engine.config
        return {
            "name": self.name,
            "size": [height, width],
            "joint_names": list(JOINT_NAMES),
            "joint_colors": [list(c) for c in JOINT_COLORS],
            "limbs": [list(pair) for pair in SKELETON_LIMBS],
            "mirror": mirror_permutation(),
            "template": template_pose(self.size).tolist(),
            "part_names": list(PART_NAMES),
            "part_colors": [list(c) for c in PART_COLORS],
            "warp_skip": self.engine.warp_skip,
            "width": config.generator.width,
            "reuses_source": self.engine.reuses_source,
            "preview": self.engine.preview,
            "pose_model": self.pose_estimator is not None,
            "pose_message": self.pose_message,
            "framings": list(FRAMING_MODES),
        }

    # ------------------------------------------------------------------------------------------
    # Photos

    def _upload_path(self, data: bytes, filename: str, default: str) -> Path:
        folder = Path(tempfile.mkdtemp(dir=self.work_dir))
        path = folder / _safe_name(filename, default)
        path.write_bytes(data)
        return path

    def _read_photo(self, data: bytes, filename: str) -> np.ndarray:
        if not data:
            raise InputError(f"{_safe_name(filename, 'upload')}: the file is empty")
        path = self._upload_path(data, filename, "photo")
        try:
            return read_image(path)
        except InputError as error:
            raise InputError(str(error).replace(f"{path.parent}{os.sep}", "")) from None
        finally:
            path.unlink(missing_ok=True)
            path.parent.rmdir()

    def _estimator(self, what: str):
        if self.pose_estimator is None:
            raise InputError(f"{what} needs the pose model. {self.pose_message}")
        return self.pose_estimator

    def frame(self, photo: np.ndarray, framing: str, where: str) -> Framed:
        """Bring a uint8 (H, W, 3) photo into the model frame with its keypoints (see :data:`FRAMING_MODES`).

        "whole" without the pose model (or when it finds nobody) starts from :func:`template_pose` and says
        so in the note: the user places the joints by hand.
        """
        from deformgan.pose.framing import Framing, frame_person

        if framing not in FRAMING_MODES:
            raise InputError(f"framing: expected one of {FRAMING_MODES}, got {framing!r}")
        if framing == "person":
            model = self._estimator("Finding the person in a photo")
            with self._pose_lock:
                framed = frame_person(photo, self.size, model, where=where)
            return Framed(framed.image, framed.keypoints, True, "")
        box = Framing(whole_photo_box(photo.shape[:2], self.size), self.size, photo.shape[:2])
        image = box.crop(photo)
        if self.pose_estimator is None:
            note = f"{where}: no pose model, the joints start from a standing template: drag them into place."
            return Framed(image, template_pose(self.size), False, note)
        with self._pose_lock:
            estimate = self.pose_estimator.estimate([photo], progress=False)
        if not estimate.detected[0]:
            note = (
                f"{where}: the pose model found no person (score {estimate.score[0]:.2f}); the joints start "
                "from a standing template: drag them into place."
            )
            return Framed(image, template_pose(self.size), False, note)
        return Framed(image, box.to_frame(estimate.keypoints[0]), True, "")

    def load_photo(self, data: bytes, filename: str, framing: str) -> tuple[str, Framed]:
        """A source photo: decode, frame, estimate its keypoints, compute its source side once.
        Returns (photo id, framed photo)."""
        name = _safe_name(filename, "photo")
        framed = self.frame(self._read_photo(data, filename), framing, name)
        with self._model_lock:
            source = self.engine.prepare(framed.image, framed.keypoints)
        photo_id = secrets.token_hex(8)
        with self._state_lock:
            self._photos[photo_id] = Photo(name, framed.image, source, framed.keypoints.copy())
            while len(self._photos) > MAX_PHOTOS:
                self._photos.popitem(last=False)
        return photo_id, framed

    def photo_pose(self, data: bytes, filename: str, framing: str) -> Framed:
        """The pose of the person in another photo (a target pose), in the model frame."""
        return self.frame(self._read_photo(data, filename), framing, _safe_name(filename, "photo"))

    def _photo(self, photo_id: str) -> Photo:
        with self._state_lock:
            photo = self._photos.get(photo_id)
            if photo is None:
                raise InputError(
                    "this photo is no longer loaded on the server (it was restarted?): load it again"
                )
            self._photos.move_to_end(photo_id)
            return photo

    # ------------------------------------------------------------------------------------------
    # Rendering

    def render(self, photo_id: str, source_kp, target_kp, overlays: bool, final: bool = True) -> Rendering:
        """The photo's person in pose ``target_kp``; ``source_kp`` are the photo's (possibly corrected)
        keypoints: when they differ from the cached ones the source side is recomputed once."""
        photo = self._photo(photo_id)
        source = check_keypoints(source_kp, self.size, "source pose")
        target = check_keypoints(target_kp, self.size, "target pose")
        with self._model_lock:
            if not np.array_equal(source, photo.keypoints):
                photo.source = self.engine.prepare(photo.image, source)
                photo.keypoints = source
            return self.engine.render(photo.source, target, overlays=overlays, final=final)

    # ------------------------------------------------------------------------------------------
    # Videos

    def load_video(self, data: bytes, filename: str) -> tuple[str, int, float | None]:
        """Keep an uploaded video to take poses from its frames -> (video id, frame count, fps or None)."""
        name = _safe_name(filename, "video")
        if not data:
            raise InputError(f"{name}: the file is empty")
        path = self._upload_path(data, filename, "video")
        capture = cv2.VideoCapture(str(path))
        try:
            ok, _ = capture.read() if capture.isOpened() else (False, None)
            fps = float(capture.get(cv2.CAP_PROP_FPS)) if ok else 0.0
            count = frame_count(capture) if ok else 0
        finally:
            capture.release()
        if not ok or count < 1:
            path.unlink(missing_ok=True)
            raise InputError(
                f"{name}: OpenCV cannot read a frame of this video (expected e.g. MP4, AVI, WebM)"
            )
        video_id = secrets.token_hex(8)
        with self._state_lock:
            self._videos[video_id] = path
            while len(self._videos) > MAX_VIDEOS:
                _, old = self._videos.popitem(last=False)
                old.unlink(missing_ok=True)
        return video_id, count, (fps if np.isfinite(fps) and fps > 0 else None)

    def video_frame(self, video_id: str, index: int, framing: str = "person") -> Framed:
        """Frame ``index`` (0-based) of a loaded video, framed, with the pose of its person."""
        with self._state_lock:
            path = self._videos.get(video_id)
        if path is None:
            raise InputError("this video is no longer loaded on the server: load it again")
        if not isinstance(index, int) or index < 0:
            raise InputError(f"video frame: expected an index >= 0, got {index!r}")
        capture = cv2.VideoCapture(str(path))
        try:
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = capture.read()
        finally:
            capture.release()
        if not ok:
            raise InputError(f"{path.name}: cannot read frame {index} (past the end of the video?)")
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        return self.frame(rgb, framing, f"{path.name} frame {index}")

    # ------------------------------------------------------------------------------------------
    # Poses in and out

    def import_poses(self, data: bytes, filename: str) -> list[tuple[str, np.ndarray]]:
        """Poses from an OpenPose JSON file (one per person) or an annotation CSV (one per row), as
        (name, int64 (18, 2)) in the model frame."""
        name = _safe_name(filename, "poses")
        if not data:
            raise InputError(f"{name}: the file is empty")
        if data.lstrip()[:1] == b"{":
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(f"{name}: not UTF-8 text") from None
            poses = from_openpose_json(text, self.size, name)
            return [(f"{Path(name).stem} person {i + 1}", kp) for i, kp in enumerate(poses)]
        path = self._upload_path(data, filename, "poses.csv")
        try:
            rows = read_annotations(path)
        except InputError as error:
            raise InputError(str(error).replace(f"{path.parent}{os.sep}", "")) from None
        finally:
            path.unlink(missing_ok=True)
            path.parent.rmdir()
        if not rows:
            raise InputError(f"{name}: the annotation file has no rows")
        return [(row, check_keypoints(kp, self.size, f"{name}: {row}")) for row, kp in rows.items()]

    def export_pose(self, keypoints, fmt: str, name: str) -> tuple[str, str]:
        """A pose as a file -> (file name, text): OpenPose JSON (``fmt`` "openpose") or a one-row annotation
        CSV ("csv") whose row is named ``name``."""
        kp = check_keypoints(keypoints, self.size, "pose")
        stem = Path(_safe_name(name, "pose")).stem or "pose"
        if fmt == "openpose":
            return f"{stem}_keypoints.json", to_openpose_json(kp, self.size)
        if fmt == "csv":
            return f"{stem}.csv", annotation_csv(_safe_name(name, "pose"), kp)
        raise InputError(f"pose format: expected one of {POSE_FORMATS}, got {fmt!r}")
