"""Metrics: SSIM/L1 against hand values; IS/FID/LPIPS/DS invariants with weight files we create."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from deformgan.errors import InputError
from deformgan.evaluation import metrics as M
from deformgan.pretrained import MissingWeightsError


def _random_images(n: int, size=(32, 24), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------- SSIM / L1


def test_ssim_of_an_image_with_itself_is_one():
    images = _random_images(3)
    np.testing.assert_allclose(M.ssim(images, images), 1.0, atol=1e-12)


def _offset_pair(range_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Channel 0 identical, values spanning [0, range_max]; channel 1 constant 100 -> 120; channel 2 50."""
    target = np.zeros((1, 24, 20, 3), dtype=np.uint8)
    target[0, ..., 0] = np.random.default_rng(1).integers(0, range_max + 1, (24, 20))
    target[0, 0, 0, 0], target[0, 0, 1, 0] = 0, range_max
    target[0, ..., 1] = 100
    target[0, ..., 2] = 50
    generated = target.copy()
    generated[0, ..., 1] = 120
    return generated, target


@pytest.mark.parametrize("range_max", [255, 200])
def test_ssim_constant_offset_matches_the_formula_with_the_generated_data_range(range_max):
    # Channel 0 is identical (SSIM 1) and channel 2 too (1). In channel 1 both images are constant, so
    # every Gaussian window has sigma_x = sigma_y = sigma_xy = 0 and
    # SSIM = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1), with C1 = (0.01 L)^2 where L is the generated
    # image's max - min (the authors' test.py), not 255.
    generated, target = _offset_pair(range_max)
    c1 = (0.01 * range_max) ** 2
    luminance = (2 * 100 * 120 + c1) / (100**2 + 120**2 + c1)
    expected = (1 + luminance + 1) / 3
    np.testing.assert_allclose(M.ssim(generated, target), [expected], rtol=1e-9)


def test_mask_ssim_ignores_differences_outside_the_mask():
    target = _random_images(2, (40, 30), seed=3)
    generated = target.copy()
    generated[:, :, 15:] = 255 - generated[:, :, 15:]  # right half differs
    mask = np.zeros((2, 40, 30), dtype=bool)
    mask[:, :, :15] = True
    assert M.ssim(generated, target).max() < 0.9
    # Masked, both images are equal (right half 0 in both) -> SSIM 1 exactly.
    np.testing.assert_allclose(M.ssim(generated, target, mask), 1.0, atol=1e-12)
    # A full mask changes nothing.
    np.testing.assert_allclose(M.ssim(generated, target, np.ones_like(mask)), M.ssim(generated, target))


def test_l1_is_in_minus_one_one_units():
    black = np.zeros((1, 4, 4, 3), dtype=np.uint8)
    np.testing.assert_allclose(M.l1(black, np.full_like(black, 255)), [2.0])  # -1 vs +1
    np.testing.assert_allclose(M.l1(black, np.full_like(black, 51)), [51 / 127.5])
    np.testing.assert_allclose(M.l1(black, black), [0.0])


def test_bad_input_is_an_input_error():
    with pytest.raises(InputError, match="uint8"):
        M.ssim(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 8, 3)))
    with pytest.raises(InputError, match="differ in shape"):
        M.l1(_random_images(1, (8, 8)), _random_images(1, (8, 9)))
    with pytest.raises(InputError, match="mask"):
        M.ssim(_random_images(1, (8, 8)), _random_images(1, (8, 8)), np.ones((1, 8, 9), bool))


# ---------------------------------------------------------------------------------------------- IS


def test_inception_score_from_logits_hand_values():
    confident = torch.tensor([[50.0, 0.0], [0.0, 50.0]]).repeat(5, 1)  # alternating classes, 10 images
    # One split holding both classes equally: KL(one-hot || uniform) = log 2 for every image -> IS = 2.
    mean, std = M.inception_score_from_logits(confident, splits=1)
    assert mean == pytest.approx(2.0, rel=1e-9) and std == 0.0
    # Identical predictions: p(y|x) = p(y) -> KL 0 -> IS = 1.
    assert M.inception_score_from_logits(torch.randn(1, 7).repeat(10, 1))[0] == pytest.approx(1.0)
    # Consecutive splits, not shuffled (OpenAI code): first half class 0, second half class 1 -> each
    # split is one class only -> IS 1 per split. torchmetrics' random permutation would mix them.
    ordered = torch.cat([confident[0::2], confident[1::2]])
    assert M.inception_score_from_logits(ordered, splits=2) == pytest.approx((1.0, 0.0))


def test_inception_score_needs_one_image_per_split():
    with pytest.raises(InputError, match="at least 10"):
        M.inception_score_from_logits(torch.randn(9, 5))


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory) -> str:
    """A randomly initialised Inception state dict saved as a file: explicit, loaded like the real one."""
    fidelity = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    cls = fidelity.FeatureExtractorInceptionV3
    with pytest.MonkeyPatch.context() as patch:  # build the module without fetching its weights
        patch.setattr(fidelity, "load_state_dict_from_url", lambda *a, **k: {})
        patch.setattr(cls, "load_state_dict", lambda self, *a, **k: None)
        torch.manual_seed(0)
        module = cls("random", ["2048"])
    path = tmp_path_factory.mktemp("weights") / M.INCEPTION_WEIGHTS
    torch.save(module.state_dict(), path)
    return str(path)


@pytest.mark.slow  # Inception-v3 at 299x299 on CPU: 5-20 s on 2 shared cores
def test_inception_is_and_fid_invariants_with_a_weights_file(inception_weights):
    inception = M.InceptionV3(inception_weights)
    image = _random_images(1, (64, 32))
    images = np.concatenate([image, image, _random_images(2, (64, 32), seed=5)])
    pool3, logits = M.inception_outputs(images, inception)
    assert pool3.shape == (4, 2048) and logits.shape == (4, 1008)
    # A frozen network is deterministic: equal images, equal outputs; so 10 copies of one image have
    # p(y|x) = p(y) and IS = 1 exactly.
    torch.testing.assert_close(logits[0], logits[1])
    assert M.inception_score_from_logits(logits[:1].repeat(10, 1)) == pytest.approx((1.0, 0.0), abs=1e-9)
    # FID of a set with itself is 0 (same mean and covariance); against another set it is not.
    same, other = M.FID(inception), M.FID(inception)
    same.update_features(pool3[1:], real=True)
    same.update_features(pool3[1:], real=False)
    other.update_features(pool3[:2], real=True)
    other.update_features(pool3[2:], real=False)
    assert abs(same.compute()) < 1e-3 * other.compute()


def test_missing_weights_name_the_file(tmp_path):
    with pytest.raises(MissingWeightsError, match=M.INCEPTION_WEIGHTS):
        M.InceptionV3(tmp_path)
    with pytest.raises(MissingWeightsError, match=M.ALEXNET_WEIGHTS):
        M.LPIPS(tmp_path)
    with pytest.raises(MissingWeightsError, match=M.SSD_WEIGHTS):
        M.PersonDetector(tmp_path)


# ---------------------------------------------------------------------------------------------- LPIPS / DS


def test_lpips_with_a_weights_file(tmp_path):
    from torchvision.models import alexnet

    torch.manual_seed(0)
    state = alexnet(weights=None).state_dict()
    path = tmp_path / M.ALEXNET_WEIGHTS
    torch.save(state, path)
    hub, home = torch.hub.get_dir(), os.environ.get("TORCH_HOME")
    model = M.LPIPS(tmp_path)
    assert (torch.hub.get_dir(), os.environ.get("TORCH_HOME")) == (hub, home)  # restored after building
    # The backbone is the file's (features.3 lives in torchmetrics' slice2 under its original index).
    lpips = model.metric.net
    assert torch.equal(getattr(lpips.net.slice2, "3").weight, state["features.3.weight"])
    # The linear layers are torchmetrics' shipped LPIPS v0.1 weights: non-negative, not a random init.
    assert all((lin.model[-1].weight >= 0).all() for lin in lpips.lins)
    x = torch.rand(2, 3, 64, 32) * 2 - 1
    y = torch.rand(2, 3, 64, 32) * 2 - 1
    assert torch.allclose(model(x, x), torch.zeros(2), atol=1e-7)  # LPIPS(x, x) = 0
    assert (model(x, y) > 0).all()
    with pytest.raises(InputError, match="same shape"):
        model(x, y[:1])


@pytest.mark.slow  # builds and saves a 35M-parameter SSD300 (a few seconds on 2 cores)
def test_person_detector_with_a_weights_file(tmp_path):
    from torchvision.models.detection import ssd300_vgg16

    torch.manual_seed(0)
    torch.save(ssd300_vgg16(weights=None, weights_backbone=None).state_dict(), tmp_path / M.SSD_WEIGHTS)
    detector = M.PersonDetector(tmp_path)
    images = np.repeat(_random_images(1, (128, 64)), 2, axis=0)
    scores = M.detection_scores(images, detector)
    assert scores.shape == (2,) and ((scores >= 0) & (scores <= 1)).all()
    assert scores[0] == pytest.approx(scores[1])  # deterministic


def test_hog_detector_or_a_clear_unavailable_message():
    import cv2

    blank = np.full((2, 128, 64, 3), 128, dtype=np.uint8)
    if not hasattr(cv2, "HOGDescriptor"):
        with pytest.raises(M.MetricUnavailable, match="HOGDescriptor"):
            M.hog_detections(blank)
        return
    found = M.hog_detections(blank)
    # A uniform image has no gradient, hence no HOG feature and no detection.
    assert not found.detected.any() and (found.max_margin == 0).all()


def test_hog_detects_real_people(shared):
    import cv2

    if not hasattr(cv2, "HOGDescriptor"):
        pytest.skip(f"OpenCV {cv2.__version__} has no HOGDescriptor (removed in OpenCV 5)")
    from deformgan.evaluation.formats import read_method

    triplets = read_method(shared / "data" / "triplets" / "market")
    found = M.hog_detections(triplets.target[:20])
    # benchmarks/results/real_triplets.md: 87 % of the 100 real Market targets; a person fills each crop.
    assert found.detected.mean() >= 0.6
