"""Same-person (source, target) pairs, exactly as the authors' ``create_pairs_dataset.py`` makes them."""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from deformgan.data.layout import SPLITS, find_layout, image_files
from deformgan.errors import InputError
from deformgan.keypoints import read_annotations, write_pairs
from deformgan.parts import has_complete_torso

#: Market-1501 junk (``-1``) and distractor (``0000``) images, dropped from pairs.
DISTRACTOR_PREFIXES: tuple[str, ...] = ("-1", "0000")

#: The authors' ``--images_for_test`` default.
DEFAULT_TEST_PAIRS = 12000


def is_distractor(name: str) -> bool:
    """Market-1501 junk (``-1_...``) or distractor (``0000_...``) image."""
    return name.startswith(DISTRACTOR_PREFIXES)


def person_id(name: str) -> str:
    """Identity of an image: its name up to the first underscore (as ``create_pairs_dataset.py``)."""
    return name.split("_", 1)[0]


def make_pairs(
    annotations: Mapping[str, np.ndarray], *, test_sample: int | None = None, seed: int = 0
) -> list[tuple[str, str]]:
    """Same-person (source, target) pairs, exactly as the reference's ``create_pairs_dataset.py``.

    annotations: ``{name: (18, 2) keypoints}`` in file order. Images without a complete torso
    (:data:`TORSO_JOINTS`) and Market junk/distractors are dropped; identities are taken in order of first
    appearance (the reference's ``pd.unique``) and, within one, all ordered pairs
    (``itertools.permutations(names, 2)``, file order), so an identity with n images gives n (n - 1) pairs.

    test_sample: if given, return a random sample without replacement of ``min(test_sample, N)`` pairs
    (the test split; the reference uses 12000). The reference draws it with pandas
    ``DataFrame.sample(n, random_state=seed)``, which is ``np.random.RandomState(seed).choice(N, n,
    replace=False)``; the same call is made here, so the draw is identical (it reproduces the standard
    12,000 Market test pairs from the test annotations, see tests).
    """
    groups: dict[str, list[str]] = {}
    for name, kp in annotations.items():
        if is_distractor(name) or not has_complete_torso(kp):
            continue
        groups.setdefault(person_id(name), []).append(name)
    pairs = [pair for names in groups.values() for pair in itertools.permutations(names, 2)]
    if test_sample is None:
        return pairs
    if test_sample < 0:
        raise InputError(f"test_sample: expected a non-negative number of pairs, got {test_sample}")
    chosen = np.random.RandomState(seed).choice(len(pairs), min(test_sample, len(pairs)), replace=False)
    return [pairs[i] for i in chosen]


def write_pair_files(
    root: str | os.PathLike,
    *,
    prefix: str | None = None,
    test_sample: int | None = DEFAULT_TEST_PAIRS,
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, tuple[Path, int]]:
    """Create ``<prefix>-pairs-{train,test}.csv`` for a dataset folder (the "own dataset" recipe).

    For each split with an annotation CSV, pairs are made with :func:`make_pairs` (the test split sampled
    to ``test_sample`` pairs; ``None`` keeps all) and written atomically. Every annotated image must exist
    in the image folders (train, then test), so the pairs never name a missing file. Existing pairs files
    are an error unless ``overwrite``. Returns ``{split: (pairs file, number of pairs)}``.
    """
    layout = find_layout(root, prefix)
    files = image_files(layout)
    splits = [s for s in SPLITS if layout.annotation_files[s].is_file()]
    for split in splits:  # refuse before writing anything, so a refusal never leaves half the files
        out = layout.pairs_files[split]
        if out.exists() and not overwrite:
            raise InputError(f"{out}: pairs file already exists (pass overwrite=True to replace it)")
    written: dict[str, tuple[Path, int]] = {}
    for split in splits:
        annotation_file = layout.annotation_files[split]
        out = layout.pairs_files[split]
        annotations = read_annotations(annotation_file)
        missing = [name for name in annotations if name not in files]
        if missing:
            raise InputError(
                f"{annotation_file}: {len(missing)} annotated image(s) not found in "
                f"{' or '.join(map(str, layout.existing_image_dirs()))}, e.g. {missing[0]!r}"
            )
        pairs = make_pairs(annotations, test_sample=test_sample if split == "test" else None, seed=seed)
        write_pairs(out, pairs)
        written[split] = (out, len(pairs))
    return written
