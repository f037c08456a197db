"""Augmenting a Re-ID training set with a deformgan generator: the plan, the images, resuming, errors."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from deformgan.conditioning import conditioning_for
from deformgan.errors import InputError
from deformgan.generate import load_generator
from deformgan.images import from_uint8, read_image, to_uint8
from deformgan.keypoints import JOINT, MISSING, read_annotations, write_annotations
from deformgan.parts import has_complete_torso
from deformgan.reid.augment import (
    augment,
    augment_with,
    plan_augmentation,
    shuffle_labels,
    training_images_and_keypoints,
)
from deformgan.reid.data import ReIDImage, read_extra_folder
from deformgan.reid.synthetic import ReIDExperimentSpec, load_reid_experiment, write_reid_experiment

SPEC = ReIDExperimentSpec(
    train_identities=4,
    train_cameras=2,
    train_poses_per_camera=1,
    val_identities=1,
    test_identities=2,
    eval_cameras=2,
    eval_images_per_camera=2,
    distractors=1,
    seed=5,
)


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny experiment and a generator checkpoint after one training iteration on its training split."""
    from deformgan.config import find_config, load_config
    from deformgan.train import train

    base = tmp_path_factory.mktemp("augment")
    experiment = load_reid_experiment(write_reid_experiment(base / "exp", SPEC, progress=False))
    overrides = ["train.iterations=1", "train.sample_every=0", "train.checkpoint_every=0", "train.device=cpu"]
    config = load_config(find_config("synth-full"), overrides)
    run = train(
        config, experiment.generator_data, base / "gan", iterations=1, progress=False, tensorboard=False
    )
    return experiment, run


def test_plan_draws_distinct_torso_complete_poses_of_other_images():
    rng = np.random.default_rng(0)
    names = [f"{i // 2 + 1:04d}_c{i % 2 + 1}s1_{i:06d}_01.png" for i in range(8)]
    keypoints = {n: rng.integers(0, 60, (18, 2)) for n in names}
    keypoints[names[3]][JOINT["Rhip"]] = MISSING  # torso incomplete: neither a source nor a target pose
    images = [ReIDImage(Path("/data") / n, int(n[:4]), int(n[6])) for n in names]
    items, counts = plan_augmentation(images, keypoints, per_image=4, seed=1)
    assert counts == {
        "training_images": 8,
        "sources": 7,
        "skipped_sources_without_torso": 1,
        "pose_pool": 7,
        "generated": 28,
    }
    by_source = {}
    for item in items:
        by_source.setdefault(item.source.path.name, []).append(item)
        assert item.identity == int(item.source.path.name[:4]) and item.camera == item.source.camera
        assert item.target != item.source.path.name and item.target != names[3]
        assert has_complete_torso(item.target_kp)
        np.testing.assert_array_equal(item.target_kp, keypoints[item.target])
        assert item.name == f"{item.source.path.stem}_{item.target[:-4]}.png"
    assert names[3] not in by_source and len(by_source) == 7
    for group in by_source.values():
        assert len({it.target for it in group}) == 4 and [it.k for it in group] == [0, 1, 2, 3]
    again, _ = plan_augmentation(images, keypoints, per_image=4, seed=1)
    assert [it.name for it in again] == [it.name for it in items]  # seeded
    other, _ = plan_augmentation(images, keypoints, per_image=4, seed=2)
    assert [it.name for it in other] != [it.name for it in items]
    assert len(plan_augmentation(images, keypoints, per_image=6, seed=0)[0]) == 7 * 6  # all other poses
    with pytest.raises(InputError, match="7 target poses per image need at least 8 torso-complete"):
        plan_augmentation(images, keypoints, per_image=7, seed=0)


def test_generated_images_are_the_generator_output_labelled_with_the_source(setup, tmp_path):
    experiment, run = setup
    out = augment(run, experiment.root, tmp_path / "gan", per_image=3, seed=0, batch_size=5, progress=False)
    extra = read_extra_folder(out)
    assert len(extra) == 8 * 3
    assert Counter(im.identity for im in extra) == {1: 6, 2: 6, 3: 6, 4: 6}
    with open(out / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    settings = json.loads((out / "augment.json").read_text())
    assert settings["complete"] and settings["counts"]["generated"] == 24
    # Each image is what the generator makes of (source image, source pose, target pose), batch or not.
    generator, config = load_generator(run, "cpu")
    keypoints = read_annotations(experiment.annotations)
    train_dir = experiment.root / "bounding_box_train"
    for row in rows[:2]:
        source = row["source"]
        assert row["identity"] == source[:4].lstrip("0") and row["camera"] == source[6]
        image = from_uint8(read_image(train_dir / source))[None]
        kp = [torch.as_tensor(keypoints[n], dtype=torch.float32)[None] for n in (source, row["target"])]
        with torch.no_grad():
            expected = to_uint8(generator(image, conditioning_for(config, *kp)))[0]
        got = read_image(out / row["name"], (128, 64))
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1  # batch-size rounding only


class Interrupted(Exception):
    """Stands for a killed process: the renderer stops in the middle of the run."""


def test_an_interrupted_run_resumes_without_redoing_images(setup, tmp_path):
    experiment, _ = setup
    images, keypoints, _ = training_images_and_keypoints(experiment.root)
    items, counts = plan_augmentation(images, keypoints, per_image=2, seed=0)
    rendered = []
    fail_on_call = [2]

    def render(batch):
        fail_on_call[0] -= 1
        if fail_on_call[0] == 0:
            raise Interrupted
        rendered.extend(it.name for it in batch)
        return np.stack([np.full((128, 64, 3), 10 * it.k, np.uint8) for it in batch])

    out = tmp_path / "aug"
    with pytest.raises(Interrupted):
        augment_with(render, items, out, {"renderer": "test"}, counts, batch_size=4, progress=False)
    assert not (out / "manifest.csv").exists()  # an incomplete folder is never usable as training data
    assert not json.loads((out / "augment.json").read_text())["complete"]
    written = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert sorted(written) == sorted(rendered) and len(written) == 4
    rendered.clear()
    augment_with(render, items, out, {"renderer": "test"}, counts, batch_size=4, progress=False)
    assert sorted(rendered) == sorted(it.name for it in items if it.name not in written)  # only the rest
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png") if p.name in written} == written
    assert len(read_extra_folder(out)) == len(items)
    assert json.loads((out / "augment.json").read_text())["complete"]
    with pytest.raises(InputError, match="other settings"):
        augment_with(render, items, out, {"renderer": "other"}, counts, progress=False)


def test_shuffled_control_permutes_identities_only(setup, tmp_path):
    experiment, _ = setup
    images, keypoints, _ = training_images_and_keypoints(experiment.root)
    items, counts = plan_augmentation(images, keypoints, per_image=3, seed=0)

    def render(batch):
        return np.stack([np.full((128, 64, 3), it.identity * 20 + it.k, np.uint8) for it in batch])

    source = augment_with(render, items, tmp_path / "a", {"renderer": "test"}, counts, progress=False)
    control = shuffle_labels(source, tmp_path / "shuffled", seed=0)
    original, shuffled = read_extra_folder(source), read_extra_folder(control)
    assert [im.path.name for im in original] == [im.path.name for im in shuffled]
    assert all(a.path.read_bytes() == b.path.read_bytes() for a, b in zip(original, shuffled, strict=True))
    assert [im.camera for im in original] == [im.camera for im in shuffled]
    assert sorted(im.identity for im in original) == sorted(im.identity for im in shuffled)
    changed = np.mean([a.identity != b.identity for a, b in zip(original, shuffled, strict=True)])
    assert changed > 0.5  # 4 identities: a random permutation keeps about 1/4 of the labels
    with open(control / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["original_identity"]) for r in rows] == [im.identity for im in original]


def test_bad_inputs_are_one_line_errors(setup, tmp_path):
    experiment, run = setup
    bare = tmp_path / "bare"  # the Re-ID folders without a keypoints file
    bare.mkdir()
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        (bare / folder).symlink_to(experiment.root / folder)
    with pytest.raises(InputError, match=r"expected one <prefix>-annotation-train.csv .*\(found none\)"):
        augment(run, bare, tmp_path / "x", per_image=2, progress=False)
    with pytest.raises(InputError, match=r"need at least 11 torso-complete training poses, found 8"):
        augment(run, experiment.root, tmp_path / "x", per_image=10, progress=False)
    with pytest.raises(InputError, match="per_image: expected a positive integer"):
        augment(run, experiment.root, tmp_path / "x", per_image=0, progress=False)
    partial = tmp_path / "partial.csv"
    keypoints = read_annotations(experiment.annotations)
    write_annotations(partial, dict(list(keypoints.items())[:5]))
    with pytest.raises(InputError, match="3 training image"):
        augment(run, experiment.root, tmp_path / "x", per_image=2, annotations=partial, progress=False)
    with pytest.raises(InputError):
        augment(tmp_path / "no-such-run", experiment.root, tmp_path / "x", per_image=2, progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        augment(run, experiment.root, tmp_path / "busy", per_image=2, progress=False)
    assert not (tmp_path / "x").exists()  # nothing written on a refusal
