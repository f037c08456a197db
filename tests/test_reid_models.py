"""Re-ID networks: small CNN, ResNet-50 weight loading (never random unless asked), IDE, DE siamese net."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deformgan.errors import InputError
from deformgan.pretrained import MissingWeightsError
from deformgan.reid.embedding import PairSampler, SiameseReIDNet, discriminative_embedding_loss
from deformgan.reid.models import RESNET50_WEIGHTS, IDENet, SmallReIDCNN, build_backbone, resnet50_backbone


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


@pytest.fixture
def no_weights_anywhere(tmp_path, monkeypatch):
    monkeypatch.setenv("DEFORMGAN_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return tmp_path


def test_small_cnn_shapes():
    net = SmallReIDCNN(feature_dim=64, width=8)
    assert net(torch.zeros(2, 3, 64, 32)).shape == (2, 64)
    ide = IDENet(net, num_classes=5)
    features, logits = ide(torch.zeros(3, 3, 64, 32))
    assert features.shape == (3, 64) and logits.shape == (3, 5)
    assert ide.embed(torch.zeros(1, 3, 64, 32)).shape == (1, 64)


def test_resnet50_loads_a_weights_file_and_never_downloads(no_weights_anywhere):
    """A weights file the test writes (random values, torchvision's ResNet-50 layout and file name) is
    found in $DEFORMGAN_WEIGHTS and loaded exactly; without it the error names the file."""
    from torchvision.models import resnet50

    with pytest.raises(MissingWeightsError, match=RESNET50_WEIGHTS):
        resnet50_backbone()
    source = resnet50(weights=None)
    folder = no_weights_anywhere / "weights"
    folder.mkdir()
    torch.save(source.state_dict(), folder / RESNET50_WEIGHTS)
    model, init = resnet50_backbone()
    assert init == {"init": "imagenet", "requested_by_user": False, "weights": str(folder / RESNET50_WEIGHTS)}
    torch.testing.assert_close(model.conv1.weight, source.conv1.weight, rtol=0, atol=0)
    torch.testing.assert_close(
        model.layer4[2].bn3.running_var, source.layer4[2].bn3.running_var, rtol=0, atol=0
    )
    model.eval()
    assert model(torch.zeros(1, 3, 64, 32)).shape == (1, 2048)


def test_resnet50_random_only_when_asked(no_weights_anywhere):
    model, init = build_backbone("resnet50", random_init=True)
    assert init == {"init": "random", "requested_by_user": True, "weights": None}
    assert model.out_dim == 2048
    with pytest.raises(InputError, match="either a weights path or random_init"):
        resnet50_backbone(weights=no_weights_anywhere, random_init=True)


def test_wrong_weights_file_is_an_input_error(tmp_path):
    path = tmp_path / "not-resnet.pth"
    torch.save(SmallReIDCNN().state_dict(), path)
    with pytest.raises(InputError, match="not torchvision ResNet-50 weights"):
        resnet50_backbone(weights=path)
    with pytest.raises(InputError, match="backbone: expected one of resnet50, small"):
        build_backbone("vgg")


def test_siamese_forward_and_loss():
    torch.manual_seed(0)
    net = SiameseReIDNet(SmallReIDCNN(feature_dim=32, width=8), num_classes=4, dropout=0.0)
    x1, x2 = torch.randn(6, 3, 32, 16), torch.randn(6, 3, 32, 16)
    out = net(x1, x2)
    assert out["features1"].shape == (6, 32) and out["logits2"].shape == (6, 4)
    assert out["verification"].shape == (6, 2)
    labels1 = torch.tensor([0, 1, 2, 3, 0, 1])
    labels2 = torch.tensor([0, 2, 2, 1, 3, 1])
    loss, parts = discriminative_embedding_loss(out, labels1, labels2)
    # untrained heads (weights ~ N(0, 0.001)): cross-entropies ~ log K and log 2
    assert parts["identification"] == pytest.approx(np.log(4), rel=0.05)
    assert parts["verification"] == pytest.approx(np.log(2), rel=0.05)
    assert float(loss.detach()) == pytest.approx(
        0.5 * 2 * parts["identification"] + parts["verification"], rel=1e-5
    )
    # identical images of a pair give f_s = 0, so the verification logits equal the bias
    same = net.eval()(x1, x1.clone())
    torch.testing.assert_close(same["verification"], net.verifier.bias.expand(6, 2), rtol=0, atol=1e-6)


def test_pair_sampler():
    """Positives: same identity, another image; negatives: another identity; the positive share is
    positive_fraction (binomial: 0.2 +- 4 sd over 5000 draws); the same seed gives the same pairs."""
    labels = np.repeat(np.arange(25), 4)
    labels[-1] = 99  # one identity with a single image: its positive partner is itself
    sampler = PairSampler(labels, positive_fraction=0.2, seed=0)
    anchors = np.random.default_rng(1).integers(0, len(labels), 5000)
    partners = np.array(sampler.partners(anchors))
    positive = labels[partners] == labels[anchors]
    assert abs(positive.mean() - 0.2) < 4 * np.sqrt(0.2 * 0.8 / 5000)
    single = labels[anchors] == 99
    assert np.all(partners[positive & ~single] != anchors[positive & ~single])
    assert np.all(partners[positive & single] == anchors[positive & single])
    others = partners[positive & ~single]
    assert len(np.unique(others)) > 80  # spread over the classes' members
    assert PairSampler(labels, 0.2, seed=0).partners(anchors[:50]) == list(partners[:50])
    with pytest.raises(InputError, match="positive_fraction"):
        PairSampler(labels, 1.5)
    with pytest.raises(InputError, match="at least two identities"):
        PairSampler([3, 3, 3])
