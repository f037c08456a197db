"""Framing a person from an arbitrary photo the way the training crops frame them, and back.

:func:`find_person` locates the most confident person in a photo of any size with the landmark model
alone (its pose-presence score over a few windows, then its own region refinement: MediaPipe's person
detector cannot run on OpenCV, see :mod:`deformgan.pose.blazepose`). :func:`frame_person` cuts the
upright box that frames that person as the dataset crops do (Market-1501 128 x 64, DeepFashion 256 x 256
or 256 x 176; padding by border replication where the box leaves the photo), resizes it, and returns a
:class:`Framing` that carries keypoints both ways and pastes a generated crop back into the photo.

How the datasets frame people is measured with the model's own body circle (its two auxiliary points:
the hip centre and a point on the circle around the whole body, diameter D): on the real test images of
each dataset, ``benchmarks/pose_accuracy.py`` reports the median crop height / D and the median vertical
offset of the crop centre from the hip centre / D; :data:`FRAMINGS` pins those medians.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from deformgan.errors import InputError
from deformgan.keypoints import MISSING, NUM_JOINTS, is_present
from deformgan.pose.blazepose import (
    FIRST_PASS_SIDE,
    NUM_BODY,
    BlazePose,
    Roi,
    check_image,
    to_openpose,
)
from deformgan.pose.sequence import (
    SMOOTH_BETA,
    SMOOTH_MIN_CUTOFF,
    OneEuroFilter,
    fill_missing,
    smooth_keypoints,
)


@dataclass(frozen=True)
class FramingStyle:
    """How a dataset frames a person: crop height = ``height_per_body`` x D (D: the body circle's diameter),
    crop centre = hip centre + (0, ``centre_offset`` x D) (negative: above the hips), centred horizontally
    on the hips."""

    height_per_body: float
    centre_offset: float


#: Medians on the real test images (``benchmarks/results/pose_accuracy.md``, "Framing"): Market-1501 crops
#: are tight around the body, DeepFashion's leave head room (their centre lies above the hips).
FRAMINGS: dict[str, FramingStyle] = {
    "market": FramingStyle(height_per_body=0.888, centre_offset=-0.012),
    "deepfashion": FramingStyle(height_per_body=0.747, centre_offset=-0.139),
}
#: Model frame size (H, W) -> the framing of the dataset trained at that size.
FRAMING_FOR_SIZE: dict[tuple[int, int], str] = {
    (128, 64): "market",
    (256, 256): "deepfashion",
    (256, 176): "deepfashion",
}

#: Windows searched when the whole photo shows no person: sides as fractions of the photo's longer side,
#: each scale tiled with half-window overlap.
SEARCH_SCALES = (0.8, 0.45)


@dataclass
class Person:
    """The person found in a photo: OpenPose keypoints (18, 2) int64 (x, y) photo pixels (-1 = missing),
    BlazePose landmarks (33, 5), the body circle (centre (x, y) pixel indices, diameter D in pixels), the
    pose-presence score, and the model's region of the last pass (to start from in the next frame)."""

    keypoints: np.ndarray
    landmarks: np.ndarray
    centre: tuple[float, float]
    diameter: float
    score: float
    roi: Roi | None = None


def _search_windows(size: tuple[int, int]) -> list[Roi]:
    height, width = size
    longest = max(height, width)
    windows = [Roi(width / 2, height / 2, FIRST_PASS_SIDE * longest)]
    for scale in SEARCH_SCALES:
        side = scale * longest
        for cy in _tile_centres(height, side):
            for cx in _tile_centres(width, side):
                windows.append(Roi(cx, cy, side))
    return windows


def _tile_centres(length: int, side: float) -> list[float]:
    """Centres of windows of ``side`` covering [0, length] with at least half-window overlap."""
    if side >= length:
        return [length / 2]
    count = int(np.ceil((length - side) / (side / 2))) + 1
    return list(np.linspace(side / 2, length - side / 2, count))


def find_person(
    image: np.ndarray,
    model: BlazePose | None = None,
    threshold: float = 0.5,
    passes: int = 2,
    where: str = "image",
    start: Roi | None = None,
) -> Person:
    """The person in a uint8 (H, W, 3) RGB photo of any size.

    The whole photo is tried first (an upright square 1.4 x its longer side; ``start``, when given, is
    tried before it: the previous frame's region when tracking). When the model's pose-presence score stays
    below ``threshold``, windows of 0.8 and 0.45 x the longer side tiled over the photo are tried too and the
    most confident one is kept. So a person who fills the photo wins over a smaller one beside them. Then
    ``passes`` passes on the model's own region refine the pose. Raises :class:`InputError` (naming
    ``where``) when no pose reaches ``threshold``.
    """
    image = check_image(image, where)
    model = model or BlazePose()
    windows = _search_windows(image.shape[:2])
    tried = [start, windows[0]] if start is not None else [windows[0]]
    lm, scores = model.run([image] * len(tried), tried)
    if scores.max() < threshold and len(windows) > 1:
        more_lm, more_scores = model.run([image] * (len(windows) - 1), windows[1:])
        lm, scores = np.concatenate([lm, more_lm]), np.concatenate([scores, more_scores])
    best = int(np.argmax(scores))
    lm, scores, rois = model.refine([image], lm[best : best + 1], passes=passes)
    if scores[0] < threshold:
        raise InputError(
            f"{where}: no person found (best pose-presence score {scores[0]:.2f} < {threshold}); "
            "expected a photo of one person, seen whole or mostly"
        )
    centre, scale_point = lm[0, NUM_BODY, :2], lm[0, NUM_BODY + 1, :2]
    return Person(
        keypoints=to_openpose(lm[:, :NUM_BODY], image.shape[:2])[0],
        landmarks=lm[0, :NUM_BODY],
        centre=(float(centre[0]), float(centre[1])),
        diameter=float(2 * np.hypot(*(scale_point - centre))),
        score=float(scores[0]),
        roi=rois[0],
    )


@dataclass
class Framing:
    """An upright box of a photo and the model frame it maps to.

    box: (x0, y0, width, height) integer pixels of the photo (may reach outside it: padded); size: the model
    frame (H, W). A photo pixel index p maps to the frame pixel index (p - box_origin + 0.5) x scale - 0.5
    per axis, scale = frame size / box size (the half-pixel convention of ``cv2.resize``).
    """

    box: tuple[int, int, int, int]
    size: tuple[int, int]
    photo_size: tuple[int, int]

    @property
    def scale(self) -> np.ndarray:
        """(sx, sy): frame pixels per photo pixel."""
        return np.array([self.size[1] / self.box[2], self.size[0] / self.box[3]])

    def to_frame(self, keypoints: np.ndarray) -> np.ndarray:
        """(..., 18, 2) photo keypoints -> frame keypoints (int64, rounded); missing or outside -> -1."""
        return self._map(keypoints, np.array(self.box[:2]), self.scale, self.size)

    def to_photo(self, keypoints: np.ndarray) -> np.ndarray:
        """(..., 18, 2) frame keypoints -> photo keypoints (int64, rounded); missing or outside -> -1."""
        origin = -np.array(self.box[:2]) * self.scale
        return self._map(keypoints, origin, 1.0 / self.scale, self.photo_size)

    @staticmethod
    def _map(
        keypoints: np.ndarray, origin: np.ndarray, scale: np.ndarray, size: tuple[int, int]
    ) -> np.ndarray:
        kp = np.asarray(keypoints)
        present = np.asarray(is_present(kp))
        mapped = np.rint((kp.astype(np.float64) - origin + 0.5) * scale - 0.5).astype(np.int64)
        inside = (
            (mapped[..., 0] >= 0)
            & (mapped[..., 0] < size[1])
            & (mapped[..., 1] >= 0)
            & (mapped[..., 1] < size[0])
        )
        mapped[~(present & inside)] = MISSING
        return mapped

    def crop(self, photo: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) frame of the photo: the box (border-replicated outside the photo), resized with
        area averaging (shrinking) or bilinear interpolation (enlarging)."""
        x0, y0, bw, bh = self.box
        ph, pw = photo.shape[:2]
        pad = (max(0, -y0), max(0, y0 + bh - ph), max(0, -x0), max(0, x0 + bw - pw))
        region = photo[max(0, y0) : min(ph, y0 + bh), max(0, x0) : min(pw, x0 + bw)]
        if region.size == 0:
            raise InputError(f"framing box {self.box} lies outside the {pw}x{ph} photo")
        region = cv2.copyMakeBorder(region, *pad, cv2.BORDER_REPLICATE)
        shrink = bw > self.size[1] or bh > self.size[0]
        return cv2.resize(
            region, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        )

    def paste(self, generated: np.ndarray, photo: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Put a generated uint8 (H, W, 3) frame back into (a copy of) the photo, resized to the box.

        mask: optional float (H, W) in [0, 1] in frame pixels (e.g. a person mask): alpha blending; the
        whole box is replaced when None. Parts of the box outside the photo are dropped.
        """
        generated = np.asarray(generated)
        if generated.shape != (*self.size, 3):
            raise InputError(f"generated image has shape {generated.shape}, expected {(*self.size, 3)}")
        x0, y0, bw, bh = self.box
        ph, pw = photo.shape[:2]
        big = cv2.resize(generated, (bw, bh), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        alpha = np.ones((bh, bw, 1), np.float32)
        if mask is not None:
            mask = np.asarray(mask, dtype=np.float32)
            if mask.shape != self.size:
                raise InputError(f"mask has shape {mask.shape}, expected {self.size}")
            alpha = np.clip(cv2.resize(mask, (bw, bh), interpolation=cv2.INTER_LINEAR), 0, 1)[..., None]
        out = photo.copy()
        ys, xs = slice(max(0, y0), min(ph, y0 + bh)), slice(max(0, x0), min(pw, x0 + bw))
        inner = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
        a = alpha[inner]
        out[ys, xs] = (
            np.rint(a * big[inner] + (1 - a) * out[ys, xs].astype(np.float32)).clip(0, 255).astype(np.uint8)
        )
        return out


def framing_for(
    person: Person, photo_size: tuple[int, int], size: tuple[int, int], style: str | None = None
) -> Framing:
    """The box that frames ``person`` like the dataset crops of frame ``size`` (H, W).

    style: a key of :data:`FRAMINGS` (default: the dataset trained at ``size``, see
    :data:`FRAMING_FOR_SIZE`; other sizes need it explicitly).
    """
    name = style if style is not None else FRAMING_FOR_SIZE.get(tuple(size))
    if name is None or name not in FRAMINGS:
        raise InputError(
            f"no framing style for frame size {size[0]}x{size[1]} (style {style!r}); "
            f"pass one of {sorted(FRAMINGS)}"
        )
    framing = FRAMINGS[name]
    box_h = framing.height_per_body * person.diameter
    box_w = box_h * size[1] / size[0]
    cx = person.centre[0] + 0.5  # pixel index -> continuous
    cy = person.centre[1] + 0.5 + framing.centre_offset * person.diameter
    height, width = max(1, round(box_h)), max(1, round(box_w))
    return Framing(
        (round(cx - width / 2), round(cy - height / 2), width, height), tuple(size), tuple(photo_size)
    )


@dataclass
class FramedPerson:
    """What :func:`frame_person` returns: the frame image, the keypoints in it and in the photo, the
    framing (to paste results back) and the person."""

    image: np.ndarray
    keypoints: np.ndarray
    framing: Framing
    person: Person


def frame_person(
    photo: np.ndarray,
    size: tuple[int, int],
    model: BlazePose | None = None,
    style: str | None = None,
    where: str = "image",
) -> FramedPerson:
    """Find the person in a uint8 (H, W, 3) RGB photo and frame them for a model of frame ``size`` (H, W).

    Returns the frame image uint8 (size, 3), its OpenPose keypoints (18, 2) (x, y frame pixels, -1 =
    missing; estimated on the photo at its own resolution and carried into the frame) and the
    :class:`Framing`. Raises :class:`InputError` naming ``where`` when the photo shows no person.
    """
    photo = check_image(photo, where)
    person = find_person(photo, model, where=where)
    framing = framing_for(person, photo.shape[:2], size, style)
    return FramedPerson(framing.crop(photo), framing.to_frame(person.keypoints), framing, person)


@dataclass
class FramedSequence:
    """What :func:`frame_sequence` returns for T frames: the frame images (T, H, W, 3) uint8, keypoints
    (T, 18, 2) int64 in frame pixels (-1 = missing; filled and smoothed), the framing of each frame, and the
    presence score of each frame."""

    images: np.ndarray
    keypoints: np.ndarray
    framings: list[Framing]
    score: np.ndarray


def frame_sequence(
    frames: Sequence[np.ndarray],
    size: tuple[int, int],
    fps: float,
    model: BlazePose | None = None,
    style: str | None = None,
    fill: bool = True,
    max_gap: int | None = 5,
    threshold: float = 0.5,
) -> FramedSequence:
    """Follow the person through video frames of any size and frame them like the dataset crops.

    Each frame starts from the previous frame's region (MediaPipe's tracking) and falls back to the search
    of :func:`find_person` when the person is lost. The body circle (centre, diameter) and the keypoints are
    smoothed over time with the One-Euro filter (:mod:`deformgan.pose.sequence`), so the crop box and the
    pose do not jitter; missing joints are filled from earlier frames (``max_gap``, see
    :func:`deformgan.pose.sequence.fill_missing`). A frame where no person reaches ``threshold`` (its
    ``score`` says so) keeps the last box and gets only filled joints. Raises :class:`InputError` for no
    frames, frames of different sizes, or no person in any frame.
    """
    if len(frames) == 0:
        raise InputError("no frames given")
    frames = [check_image(frame, f"frame {i}") for i, frame in enumerate(frames)]
    if len({frame.shape for frame in frames}) > 1:
        raise InputError("frames differ in size: a sequence needs frames of one size")
    model = model or BlazePose()
    people: list[Person | None] = []
    last: Person | None = None
    for i, frame in enumerate(frames):
        try:
            last = find_person(frame, model, threshold, passes=1, where=f"frame {i}", start=last and last.roi)
        except InputError:
            last = None
        people.append(last)
    found = [p for p in people if p is not None]
    if not found:
        raise InputError(f"no person found in any of the {len(frames)} frames")
    height = frames[0].shape[0]
    keypoints = np.stack(
        [p.keypoints if p is not None else np.full((NUM_JOINTS, 2), MISSING) for p in people]
    )
    if fill:
        keypoints = fill_missing(keypoints, max_gap)
    keypoints = smooth_keypoints(keypoints, fps, height)
    circles = OneEuroFilter(fps, min_cutoff=SMOOTH_MIN_CUTOFF, beta=SMOOTH_BETA)
    circle = np.array([*found[0].centre, found[0].diameter]) / height  # frames before the first person
    framings, images, framed = [], [], []
    for frame, person, kp in zip(frames, people, keypoints, strict=True):
        if person is not None:
            circle = circles(np.array([*person.centre, person.diameter]) / height)
        cx, cy, d = circle * height
        body = Person(kp, np.zeros((NUM_BODY, 5)), (float(cx), float(cy)), float(d), 0.0)
        framing = framing_for(body, frame.shape[:2], size, style)
        framings.append(framing)
        images.append(framing.crop(frame))
        framed.append(framing.to_frame(kp))
    scores = np.array([p.score if p is not None else 0.0 for p in people])
    return FramedSequence(np.stack(images), np.stack(framed), framings, scores)
