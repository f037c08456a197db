"""Keypoint heatmaps (paper Sec. 3; the authors' ``pose_utils.cords_to_map``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deformgan.pose import heatmap_keypoints, keypoint_heatmaps


def test_heatmap_values_by_hand():
    """exp(-d^2 / 2 sigma^2) on the integer grid: peak 1 at the joint, exp(-1/2) at distance sigma."""
    kp = torch.full((18, 2), -1.0)
    kp[0] = torch.tensor([10.0, 20.0])  # x=10, y=20
    maps = keypoint_heatmaps(kp, (40, 30), sigma=6.0)
    assert maps.shape == (18, 40, 30)
    assert maps[0, 20, 10] == 1.0
    torch.testing.assert_close(maps[0, 20, 16], torch.tensor(np.exp(-0.5), dtype=torch.float32))
    torch.testing.assert_close(maps[0, 26, 10], torch.tensor(np.exp(-0.5), dtype=torch.float32))
    assert maps[1:].abs().sum() == 0  # missing joints give all-zero channels
    assert torch.equal(heatmap_keypoints(maps)[0], torch.tensor([10, 20]))
    assert (heatmap_keypoints(maps)[1:] == -1).all()


def test_heatmaps_batched():
    kp = torch.randint(0, 60, (3, 2, 18, 2)).float()
    maps = keypoint_heatmaps(kp, (64, 64))
    assert maps.shape == (3, 2, 18, 64, 64)
    torch.testing.assert_close(maps[1, 0], keypoint_heatmaps(kp[1, 0], (64, 64)))


def test_reference_heatmaps_are_the_python2_floor_division_by_hand():
    """The authors' maps under Python 2: exp(floor(-d^2 / 72)) for sigma = 6 (integer division).

    d^2 = 0 -> e^0 = 1; 1 <= d^2 <= 72 -> floor in [-1, -1/72] = -1 -> e^-1 (so a pixel 8 px away, d^2 = 64,
    is e^-1, and the smooth Gaussian's exp(-64/72) = 0.41 differs); d^2 = 73 -> -2 -> e^-2; d^2 = 144
    (12 px) -> e^-2; d^2 = 145 -> e^-3.
    """
    kp = torch.full((18, 2), -1.0)
    kp[3] = torch.tensor([20.0, 30.0])  # x = 20, y = 30
    maps = keypoint_heatmaps(kp, (64, 48), mode="reference")
    e = np.exp
    for (dy, dx), expected in {
        (0, 0): 1.0, (1, 0): e(-1), (0, 8): e(-1), (6, 6): e(-1), (8, 3): e(-2), (0, 12): e(-2),
        (12, 1): e(-3), (-12, -1): e(-3),
    }.items():  # fmt: skip
        assert maps[3, 30 + dy, 20 + dx].item() == pytest.approx(expected, rel=1e-6), (dy, dx)
    assert maps[[0, 1, 2, *range(4, 18)]].abs().sum() == 0
    gaussian = keypoint_heatmaps(kp, (64, 48), mode="gaussian")
    assert gaussian[3, 30, 28].item() == pytest.approx(np.exp(-64 / 72), rel=1e-6)


def test_reference_heatmaps_equal_the_keras_oracle_inputs():
    """The Keras fixture (tests/fixtures/keras) stores the heatmaps it fed the authors' generator as
    k = -floor(-d^2 / 72) (maps exp(-k)) for two real Market pairs: ours are those maps."""
    from pathlib import Path

    io = np.load(Path(__file__).parent / "fixtures" / "keras" / "market_io.npz")
    for side in ("source", "target"):
        yx = torch.from_numpy(io[f"{side}_yx"].astype(np.float32))
        xy = torch.where(yx >= 0, yx.flip(-1), torch.full_like(yx, -1.0))
        k = io[f"{side}_heatmap_k"]
        expected = np.where(k == 255, 0.0, np.exp(-k.astype(np.float64))).astype(np.float32)
        ours = keypoint_heatmaps(xy, (128, 64), mode="reference").numpy()
        np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=0)
