"""The pose: keypoint heatmaps as the networks see them (:mod:`.heatmaps`), and, for users' own photos and
videos, the offline estimator that finds the 18 keypoints (:mod:`.blazepose`, model files fetched by
:mod:`.model_files`), person framing (:mod:`.framing`) and keypoint sequences (:mod:`.sequence`).

The estimator modules import OpenCV; they are loaded on first use, so training never pays for them.
"""

from __future__ import annotations

import importlib

from deformgan.pose.heatmaps import HEATMAP_MODES, heatmap_keypoints, keypoint_heatmaps

_LAZY = {
    "BlazePose": "blazepose",
    "PoseEstimate": "blazepose",
    "estimate_keypoints": "blazepose",
    "fetch_pose_model": "model_files",
    "find_pose_model": "model_files",
    "Framing": "framing",
    "FramedPerson": "framing",
    "find_person": "framing",
    "frame_person": "framing",
    "frame_sequence": "framing",
    "OneEuroFilter": "sequence",
    "ImageAnnotations": "sequence",
    "annotate_images": "sequence",
    "estimate_sequence": "sequence",
    "fill_missing": "sequence",
    "read_frames": "sequence",
    "smooth_keypoints": "sequence",
}

__all__ = ["HEATMAP_MODES", "heatmap_keypoints", "keypoint_heatmaps", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"deformgan.pose.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'deformgan.pose' has no attribute {name!r}")
