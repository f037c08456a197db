"""The editor's engine: the generator split into source-side work (once per photo) and per-pose work gives
the generator's own forward; the overlays show the part masks and the source warped as the skips are."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deformgan.conditioning import conditioning_for
from deformgan.config import config_from_dict
from deformgan.editor.engine import PART_COLORS, EditorEngine, colour_masks
from deformgan.editor.poses import template_pose
from deformgan.errors import InputError
from deformgan.images import from_uint8, to_uint8
from deformgan.keypoints import JOINT
from deformgan.models import build_generator
from deformgan.parts import part_masks

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = (128, 64)


def make_engine(warp_skip: str = "mask", **options) -> EditorEngine:
    config = config_from_dict(
        {"name": "t", "generator": {"width": 0.0625, "warp_skip": warp_skip}, "data": {"preset": "market"}}
    )
    torch.manual_seed(0)
    return EditorEngine(build_generator(config), config, **options)


def a_photo(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*SIZE, 3), dtype=np.uint8)


def target_poses() -> list[np.ndarray]:
    """The template, its right wrist dragged in steps, and one with the left elbow hidden."""
    base = template_pose(SIZE)
    poses = []
    for step in range(3):
        kp = base.copy()
        kp[JOINT["Rwri"]] += (3 * step, -5 * step)
        poses.append(kp)
    hidden = base.copy()
    hidden[JOINT["Lelb"]] = -1
    return poses + [hidden]


def forward(engine: EditorEngine, image: np.ndarray, source_kp, target_kp) -> np.ndarray:
    """The plain generator forward on the same input, as uint8."""
    cond = conditioning_for(
        engine.config, torch.from_numpy(source_kp)[None].float(), torch.from_numpy(target_kp)[None].float()
    )
    with torch.no_grad():
        return to_uint8(engine.generator(from_uint8(image)[None], cond))[0]


@pytest.mark.parametrize("warp_skip", ["mask", "global", "none"])
def test_render_is_the_generator_forward_bit_for_bit(warp_skip):
    engine = make_engine(warp_skip, channels_last=False)
    image, source_kp = a_photo(), template_pose(SIZE)
    source = engine.prepare(image, source_kp)
    assert engine.reuses_source == (warp_skip != "none")
    for target in target_poses():
        rendering = engine.render(source, target)
        assert rendering.image.dtype == np.uint8 and rendering.image.shape == (*SIZE, 3)
        assert np.array_equal(rendering.image, forward(engine, image, source_kp, target))


def test_channels_last_matches_up_to_rounding():
    """NHWC runs other oneDNN kernels: the same sums in another order, so at most one grey level apart
    (a float difference ~1e-6 crossing a rounding boundary)."""
    nchw, nhwc = make_engine(channels_last=False), make_engine(channels_last=True)
    image, source_kp = a_photo(1), template_pose(SIZE)
    a, b = nchw.prepare(image, source_kp), nhwc.prepare(image, source_kp)
    for target in target_poses():
        diff = nchw.render(a, target).image.astype(int) - nhwc.render(b, target).image.astype(int)
        assert np.abs(diff).max() <= 1


def test_source_side_runs_once_per_photo_and_pose_side_per_update():
    engine = make_engine()
    calls = {"appearance": 0, "pose": 0}
    engine.generator.appearance_encoder.register_forward_hook(
        lambda *a: calls.__setitem__("appearance", calls["appearance"] + 1)
    )
    engine.generator.pose_encoder.register_forward_hook(
        lambda *a: calls.__setitem__("pose", calls["pose"] + 1)
    )
    source = engine.prepare(a_photo(), template_pose(SIZE))
    for target in target_poses():
        timings = engine.render(source, target).timings
    assert calls == {"appearance": 1, "pose": len(target_poses())}
    assert set(timings) == {"conditioning", "pose_encoder", "warp_skips", "decoder", "total"}
    assert timings["total"] >= timings["decoder"] > 0


def test_bf16_preview_only_while_dragging():
    """preview="bf16": updates with final=False run in bfloat16 (8 significant bits: a relative rounding of
    2^-9 per operation, a few grey levels after ~15 layers); final renders are the fp32 result exactly. The
    bounds leave about 2x room over what this model and a full-width 256x256 generator measure (mean
    0.3-0.4, max 4-5 grey levels)."""
    exact, fast = make_engine(channels_last=False), make_engine(channels_last=False, preview="bf16")
    image, source_kp = a_photo(2), template_pose(SIZE)
    a, b = exact.prepare(image, source_kp), fast.prepare(image, source_kp)
    target = target_poses()[1]
    reference = exact.render(a, target).image
    assert np.array_equal(fast.render(b, target, final=True).image, reference)
    preview = fast.render(b, target, final=False).image.astype(int)
    assert not np.array_equal(preview, reference)  # bf16 really ran
    diff = np.abs(preview - reference)
    assert diff.mean() < 1 and diff.max() <= 10
    with pytest.raises(InputError, match="preview precision"):
        make_engine(preview="fp16")


def test_overlays_at_the_identity_pose_show_the_source():
    """Target = source: every part's affine is the identity and the torso mask covers the frame, so the
    warped source is the source itself (in [0, 1] and max-aggregated, as the skips see it), the torso's own
    warp is the whole source, and the head's warp is the source inside the head mask, black outside."""
    engine = make_engine()
    image, kp = a_photo(3), template_pose(SIZE)
    rendering = engine.render(engine.prepare(image, kp), kp, overlays=True)
    assert np.array_equal(rendering.warped, image)
    assert rendering.parts.shape == (10, *SIZE, 3)
    assert np.array_equal(rendering.parts[0], image)
    head = part_masks(torch.from_numpy(kp)[None].float(), SIZE)[0, 1].numpy() > 0.5
    assert head.any() and not head.all()
    assert np.array_equal(rendering.parts[1][head], image[head]) and not rendering.parts[1][~head].any()
    masks = part_masks(torch.from_numpy(kp)[None].float(), SIZE)[0].numpy() > 0.5
    assert np.array_equal(rendering.masks, colour_masks(masks, rendering.image))
    assert {"overlays"} <= set(rendering.timings)
    # The Baseline has no part geometry: nothing to overlay.
    baseline = make_engine("none")
    plain = baseline.render(baseline.prepare(image, kp), kp, overlays=True)
    assert plain.masks is None and plain.warped is None and plain.parts is None


def test_colour_masks_by_hand():
    """Pixel 0: torso only -> torso grey; pixel 1: torso + head + right upper leg -> the mean of the head
    and leg colours (the whole-frame torso does not wash them out); pixel 2: no part -> the image."""
    masks = np.zeros((10, 1, 3), bool)
    masks[0, 0, :2] = True
    masks[1, 0, 1] = masks[2, 0, 1] = True
    image = np.full((1, 3, 3), 100, np.uint8)
    out = colour_masks(masks, image, alpha=0.6)
    torso, head, leg = (np.array(PART_COLORS[i]) for i in range(3))
    assert out[0, 0].tolist() == np.rint(0.6 * torso + 0.4 * 100).tolist()
    assert out[0, 1].tolist() == np.rint(0.6 * (head + leg) / 2 + 0.4 * 100).tolist()
    assert out[0, 2].tolist() == [100, 100, 100]


def test_bad_inputs():
    engine = make_engine()
    with pytest.raises(InputError, match=r"expected uint8 \(128, 64, 3\)"):
        engine.prepare(np.zeros((64, 64, 3), np.uint8), template_pose(SIZE))
    with pytest.raises(InputError, match=r"source keypoints: expected \(18, 2\)"):
        engine.prepare(a_photo(), template_pose(SIZE)[:3])
    source = engine.prepare(a_photo(), template_pose(SIZE))
    with pytest.raises(InputError, match="target keypoints"):
        engine.render(source, np.zeros((17, 2)))
