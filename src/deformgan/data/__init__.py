"""Datasets in the field's layout: discovery and presets (:mod:`.layout`), pair creation (:mod:`.pairs`),
the pair Dataset (:mod:`.dataset`)."""

from deformgan.data.dataset import PairDataset, load_image
from deformgan.data.layout import (
    PRESETS,
    SPLITS,
    DatasetLayout,
    DatasetPreset,
    find_layout,
    get_preset,
    image_files,
    shift_keypoints,
)
from deformgan.data.pairs import (
    DEFAULT_TEST_PAIRS,
    DISTRACTOR_PREFIXES,
    is_distractor,
    make_pairs,
    person_id,
    write_pair_files,
)

__all__ = [
    "DEFAULT_TEST_PAIRS",
    "DISTRACTOR_PREFIXES",
    "PRESETS",
    "SPLITS",
    "DatasetLayout",
    "DatasetPreset",
    "PairDataset",
    "find_layout",
    "get_preset",
    "image_files",
    "is_distractor",
    "load_image",
    "make_pairs",
    "person_id",
    "shift_keypoints",
    "write_pair_files",
]
