"""The pose as the networks see it: keypoint heatmaps (paper Sec. 3) and, for users' own photos, the
estimator that finds the 18 keypoints."""

from deformgan.pose.heatmaps import HEATMAP_MODES, heatmap_keypoints, keypoint_heatmaps

__all__ = ["HEATMAP_MODES", "heatmap_keypoints", "keypoint_heatmaps"]
