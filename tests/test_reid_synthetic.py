"""The synthetic Re-ID experiment set: splits, the no-leak generator dataset, determinism, the oracle."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from deformgan.errors import InputError
from deformgan.images import read_image
from deformgan.keypoints import read_annotations, read_pairs
from deformgan.reid.augment import plan_augmentation, training_images_and_keypoints
from deformgan.reid.data import list_market_folder, load_reid_dataset
from deformgan.reid.evaluation import per_query_results
from deformgan.reid.synthetic import (
    OracleRenderer,
    ReIDExperimentSpec,
    SyntheticReID,
    load_reid_experiment,
    write_reid_experiment,
)

SPEC = ReIDExperimentSpec(
    train_identities=5,
    train_cameras=2,
    train_poses_per_camera=2,
    val_identities=2,
    test_identities=3,
    eval_cameras=3,
    eval_images_per_camera=2,
    distractors=4,
    seed=3,
)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = write_reid_experiment(tmp_path_factory.mktemp("reid") / "exp", SPEC, progress=False)
    return load_reid_experiment(root)


def test_training_split_is_pose_starved(experiment):
    train = load_reid_dataset(experiment.root).train
    assert len(train) == 5 * 2 * 2
    per_identity = defaultdict(Counter)
    for image in train:
        per_identity[image.identity][image.camera] += 1
    assert sorted(per_identity) == [1, 2, 3, 4, 5]
    for cameras in per_identity.values():  # exactly 2 cameras, 2 images (poses) in each
        assert sorted(cameras.values()) == [2, 2]
    frames = [im.path.name.split("_")[2] for im in train]  # the frame field is the pose number
    assert len(set(frames)) == len(frames)  # every image in its own pose


def test_evaluation_splits_are_disjoint_and_well_formed(experiment):
    train_ids = {im.identity for im in load_reid_dataset(experiment.root).train}
    ids = {}
    for split, count in (("val", 2), ("test", 3)):
        query, gallery = experiment.eval_split(split)
        people = {im.identity for im in query}
        assert len(people) == count and 0 not in people
        # one query per (identity, camera), eval_cameras cameras each
        assert len(query) == count * 3 == len({(im.identity, im.camera) for im in query})
        # gallery: the other image of every (identity, camera) + the distractors (identity 0)
        assert sum(im.identity == 0 for im in gallery) == 4
        assert sum(im.identity > 0 for im in gallery) == count * 3
        ids[split] = people
        # every query has exactly eval_cameras - 1 = 2 good matches (same person, other camera) and one junk
        distances = np.random.default_rng(0).random((len(query), len(gallery)))
        result = per_query_results(
            distances,
            [im.identity for im in query],
            [im.camera for im in query],
            [im.identity for im in gallery],
            [im.camera for im in gallery],
        )
        assert np.all(result.num_good == 2) and np.all(result.num_junk == 1)
    assert not (ids["val"] & ids["test"]) and not (ids["val"] & train_ids) and not (ids["test"] & train_ids)


def test_generator_dataset_holds_training_identities_only(experiment):
    # No validation or test person may leak into the pose generator's training data.
    gen = experiment.generator_data
    images = sorted(p.name for p in (gen / "synth-dataset" / "train").iterdir())
    train = sorted(im.path.name for im in load_reid_dataset(experiment.root).train)
    assert images == train
    assert not (gen / "synth-dataset" / "test").exists()
    annotations = read_annotations(gen / "synth-annotation-train.csv")
    assert sorted(annotations) == train
    pairs = read_pairs(gen / "synth-pairs-train.csv")
    assert len(pairs) == 5 * 4 * 3  # all ordered pairs of the 4 images of each of the 5 identities
    assert all(a.split("_")[0] == b.split("_")[0] and a != b for a, b in pairs)


def test_images_are_a_function_of_identity_pose_camera(experiment, tmp_path):
    renderer = SyntheticReID(SPEC.seed)
    for key, record in list(experiment.images.items())[:6]:
        path = (
            experiment.root
            / {
                "train": "bounding_box_train",
                "val/query": "val/query",
                "val/gallery": "val/bounding_box_test",
                "test/query": "query",
                "test/gallery": "bounding_box_test",
            }[key.rsplit("/", 1)[0]]
        )
        name = key.rsplit("/", 1)[1]
        again = renderer.render(record["identity"], record["pose"], record["camera"], SPEC.size)
        np.testing.assert_array_equal(read_image(path / name), again.image)
    keypoints = read_annotations(experiment.annotations)
    name = next(iter(keypoints))
    record = experiment.images[f"train/{name}"]
    again = renderer.render(record["identity"], record["pose"], record["camera"], SPEC.size)
    np.testing.assert_array_equal(keypoints[name], again.keypoints)
    # the same spec writes the same bytes
    second = write_reid_experiment(tmp_path / "again", SPEC, progress=False)
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        first_files = list_market_folder(experiment.root / folder)
        second_files = list_market_folder(second / folder)
        assert [f.path.name for f in first_files] == [f.path.name for f in second_files]
        assert all(
            a.path.read_bytes() == b.path.read_bytes() for a, b in zip(first_files, second_files, strict=True)
        )


def test_oracle_draws_the_source_person_in_the_target_pose(experiment):
    images, keypoints, _ = training_images_and_keypoints(experiment.root, experiment.annotations)
    items, _ = plan_augmentation(images, keypoints, per_image=19, seed=0)  # every other pose
    oracle = OracleRenderer(experiment)
    # A target of the same person in the same camera: the oracle must give exactly that training image,
    # since an image is a function of (identity, pose, camera) only.
    same = [it for it in items if it.target.split("_")[:2] == it.source.path.name.split("_")[:2]]
    assert same
    folder = images[0].path.parent
    expected = np.stack([read_image(folder / it.target) for it in same[:3]])
    np.testing.assert_array_equal(oracle(same[:3]), expected)
    # Another person's pose: the source identity's clothes (not the target's) in the target's pose.
    other = next(it for it in items if it.target.split("_")[0] != it.source.path.name.split("_")[0])
    renderer = SyntheticReID(SPEC.seed)
    pose = experiment.train_pose(other.target)
    expected = renderer.render(other.identity, pose, other.camera, SPEC.size).image
    np.testing.assert_array_equal(oracle([other])[0], expected)
    target_person = int(other.target.split("_")[0])
    assert not np.array_equal(expected, renderer.render(target_person, pose, other.camera, SPEC.size).image)


def test_bad_specs_and_folders_are_one_line_errors(tmp_path, experiment):
    with pytest.raises(InputError, match="eval_cameras: expected >= 2"):
        ReIDExperimentSpec(eval_cameras=1)
    with pytest.raises(InputError, match="train_cameras / eval_cameras: at most 6"):
        ReIDExperimentSpec(train_cameras=7)
    with pytest.raises(InputError, match="train_identities: expected an integer >= 2"):
        ReIDExperimentSpec(train_identities=1)
    with pytest.raises(InputError, match="another spec"):
        write_reid_experiment(experiment.root, ReIDExperimentSpec(seed=99), progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        write_reid_experiment(tmp_path / "busy", SPEC, progress=False)
    with pytest.raises(InputError, match="missing experiment.json"):
        load_reid_experiment(tmp_path / "busy")
    with pytest.raises(InputError, match="not a training image"):
        experiment.train_pose("0001_c1s1_999999_01.png")
    assert isinstance(experiment.root, Path)
