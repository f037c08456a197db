"""Keypoint heatmaps (paper Sec. 3; the authors' ``pose_utils.cords_to_map``)."""

from __future__ import annotations

import numpy as np
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
