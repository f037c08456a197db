"""Synthetic people with exact ground truth, written in the Market-1501 dataset layout.

Procedurally rendered 2-D people (a 2.5-D articulated skeleton, capsule body parts, per-identity clothes,
per-camera scenes and light) with the 18 OpenPose keypoints a detector would report. Every later command
(train, generate, evaluate) runs on the written folder unchanged, and for each pair (a, b) image b is the
exact ground truth for a's person in b's pose. See ``docs/synthetic-people.md``.

- :mod:`deformgan.synth.pose`: body proportions, pose sampler, projection, detector misses;
- :mod:`deformgan.synth.render`: appearance, cameras, anti-aliased rasteriser;
- :mod:`deformgan.synth.dataset`: :func:`write_synthetic_dataset`, :func:`render_person`,
  :func:`preview_grid`.
"""

from deformgan.synth.dataset import (
    SYNTH_VERSION,
    RenderedPerson,
    SyntheticDataset,
    overlay_skeleton,
    parse_size,
    preview_grid,
    render_person,
    render_sample,
    write_synthetic_dataset,
)
from deformgan.synth.pose import MARKET_MISSING_RATES, expected_missing_rates, sample_keypoints

__all__ = [
    "MARKET_MISSING_RATES",
    "SYNTH_VERSION",
    "RenderedPerson",
    "SyntheticDataset",
    "expected_missing_rates",
    "overlay_skeleton",
    "parse_size",
    "preview_grid",
    "render_person",
    "render_sample",
    "sample_keypoints",
    "write_synthetic_dataset",
]
