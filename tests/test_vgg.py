"""VGG-19 feature extractor : weight lookup, layer mapping, preprocessing, freezing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
import torchvision.transforms.functional as TF

from deformgan.errors import InputError
from deformgan.pretrained import MissingWeightsError
from deformgan.vgg import VGG19_LAYERS, VGG19_WEIGHTS_FILE, VGG19Features

# Conv indices in torchvision's vgg19().features, counted by hand from the architecture
# (64,64,M,128,128,M,256x4,M,512x4,M,512x4,M; every conv followed by a ReLU).
EXPECTED_INDICES = {"conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv3_1": 10, "conv4_1": 19, "conv5_4": 34}


@pytest.fixture(scope="module")
def vgg_files(tmp_path_factory) -> tuple[Path, torch.nn.Sequential]:
    """A vgg19 state dict written by the test (explicit, random weights) and the torchvision features in it.

    The features are torchvision's own VGG-19 ("E") layers, randomly initialised. The classifier (102M
    parameters, cut off by VGG19Features) is stored as zero tensors expanded from one element, so the file
    stays small while the strict key/shape check still sees every torchvision key.
    """
    torch.manual_seed(0)
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"], batch_norm=False).eval()
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in torchvision.models.vgg19(weights=None).state_dict().items()}
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state |= {k: torch.zeros(1).expand(shape) for k, shape in shapes.items() if k.startswith("classifier.")}
    assert state.keys() == shapes.keys()
    folder = tmp_path_factory.mktemp("weights")
    torch.save(state, folder / VGG19_WEIGHTS_FILE)
    return folder / VGG19_WEIGHTS_FILE, features


def _images(batch=2, height=16, width=8, seed=0) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _torchvision_features(
    features: torch.nn.Sequential, images: torch.Tensor, conv_index: int
) -> torch.Tensor:
    x = TF.normalize((images + 1) / 2, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    with torch.no_grad():
        return features[: conv_index + 2](x)  # conv + its ReLU


def test_layer_names_map_to_torchvision_indices():
    for name, index in EXPECTED_INDICES.items():
        assert VGG19_LAYERS[name] == index
    assert len(VGG19_LAYERS) == 16  # VGG-19 has 16 convolutions


def test_explicit_file_and_folder_load_and_match_torchvision(vgg_files, monkeypatch):
    path, features = vgg_files
    monkeypatch.delenv("DEFORMGAN_WEIGHTS", raising=False)
    images = _images()
    for explicit in (path, path.parent):
        vgg = VGG19Features(["conv1_2", "conv2_1"], weights=explicit)
        conv1_2, conv2_1 = vgg(images)
        assert conv1_2.shape == (2, 64, 16, 8)
        assert conv2_1.shape == (2, 128, 8, 4)
        torch.testing.assert_close(conv1_2, _torchvision_features(features, images, 2))
        torch.testing.assert_close(conv2_1, _torchvision_features(features, images, 5))
        assert conv1_2.min() >= 0  # post-ReLU, like Keras' block1_conv2 output


def test_torch_home_lookup_gives_identical_outputs(vgg_files, monkeypatch, tmp_path):
    path, _ = vgg_files
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / VGG19_WEIGHTS_FILE).symlink_to(path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("DEFORMGAN_WEIGHTS", raising=False)
    images = _images(seed=1)
    from_home = VGG19Features(["conv1_2"])(images)[0]
    explicit = VGG19Features(["conv1_2"], weights=path)(images)[0]
    assert torch.equal(from_home, explicit)


def test_missing_weights_name_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("DEFORMGAN_WEIGHTS", raising=False)
    with pytest.raises(MissingWeightsError, match="vgg19-dcbb9e9d.pth"):
        VGG19Features(["conv1_2"])
    with pytest.raises(MissingWeightsError, match="vgg19-dcbb9e9d.pth"):
        VGG19Features(["conv1_2"], weights=tmp_path / "nowhere.pth")


def test_frozen_truncated_and_differentiable(vgg_files):
    path, _ = vgg_files
    vgg = VGG19Features(["conv2_1", "conv1_1"], weights=path)
    assert len(vgg.features) == EXPECTED_INDICES["conv2_1"] + 2  # truncated after conv2_1's ReLU
    assert not any(p.requires_grad for p in vgg.parameters())
    vgg.train()
    assert not vgg.training and not any(m.training for m in vgg.modules())
    images = _images().requires_grad_(True)
    conv2_1, conv1_1 = vgg(images)  # outputs follow the requested order
    assert conv2_1.shape[1] == 128 and conv1_1.shape[1] == 64
    conv2_1.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_keras_reference_preprocessing_by_hand(vgg_files):
    path, _ = vgg_files
    # keras-reference takes Keras' weights: the truncated notop file of the Keras fixtures (block1_conv1..).
    keras_file = Path(__file__).resolve().parent / "fixtures" / "keras" / "vgg19_notop_block1_block2conv1.h5"
    vgg = VGG19Features(["conv1_1"], weights=keras_file, preprocess="keras-reference")
    # R=1, G=0, B=-1 -> [255, 127.5, 0]; minus [103.939, 116.779, 123.68] in RGB order (the reference's
    # order), then flipped to BGR: [0 - 123.68, 127.5 - 116.779, 255 - 103.939].
    image = torch.tensor([1.0, 0.0, -1.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    expected = torch.tensor([-123.68, 10.721, 151.061]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    torch.testing.assert_close(vgg.normalize(image), expected)
    torchvision_style = VGG19Features(["conv1_1"], weights=path)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    expected_rgb = ((torch.tensor([1.0, 0.5, 0.0]) - mean) / std).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    torch.testing.assert_close(torchvision_style.normalize(image), expected_rgb)


def test_bad_arguments(vgg_files):
    path, _ = vgg_files
    with pytest.raises(InputError, match="layers"):
        VGG19Features(["block1_conv2"], weights=path)
    with pytest.raises(InputError, match="layers"):
        VGG19Features([], weights=path)
    with pytest.raises(InputError, match="preprocess"):
        VGG19Features(["conv1_2"], weights=path, preprocess="caffe")
    with pytest.raises(InputError, match=r"\(B,3,H,W\)"):
        VGG19Features(["conv1_2"], weights=path)(torch.zeros(1, 1, 8, 8))
