"""Frozen VGG-19 feature extractor for the perceptual / nearest-neighbour losses (the
authors' ``gan/layer_utils.content_features_model``).

The reference applies Keras' ImageNet VGG-19 (``block1_conv2``, ``block2_conv1``, ... outputs, which include
the ReLU) to generated and real images. We use torchvision's VGG-19 architecture and its ImageNet weights
(``vgg19-dcbb9e9d.pth``), loaded from disk only (:func:`deformgan.pretrained.find_weights`): never downloaded,
never replaced by random weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torchvision
from torch import nn

from deformgan.errors import InputError
from deformgan.pretrained import find_weights, load_state_dict

VGG19_WEIGHTS_FILE = "vgg19-dcbb9e9d.pth"
VGG19_WEIGHTS_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"

_BLOCK_SIZES = (2, 2, 4, 4, 4)  # convolutions per block of VGG-19


def _conv_feature_indices() -> dict[str, int]:
    """conv{block}_{i} -> index of its conv in torchvision's ``vgg19().features`` (each conv is followed by
    a ReLU, each block by a max-pool)."""
    indices: dict[str, int] = {}
    position = 0
    for block, size in enumerate(_BLOCK_SIZES, start=1):
        for i in range(1, size + 1):
            indices[f"conv{block}_{i}"] = position
            position += 2  # conv, relu
        position += 1  # max-pool
    return indices


#: Layer name -> torchvision feature index of the conv (conv1_2 -> 2, conv2_1 -> 5, conv5_4 -> 34).
VGG19_LAYERS: dict[str, int] = _conv_feature_indices()

PREPROCESSING = ("torchvision", "keras-reference")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, images in [0, 1] (torchvision weights)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN = (103.939, 116.779, 123.68)  # BGR means of the Keras/caffe weights, images in [0, 255]


class VGG19Features(nn.Module):
    """Post-ReLU activations of VGG-19 layers ``layers`` (e.g. ["conv1_2"]), frozen and in eval mode.

    forward(images (B,3,H,W) in [-1,1]) -> list with one (B,C_l,H_l,W_l) map per requested layer, in the
    requested order (conv1_2: (B,64,H,W); conv2_1: (B,128,H/2,W/2)). The network is truncated after the
    deepest requested layer; parameters have ``requires_grad=False`` but gradients flow to the input.

    ``weights``: path of the torchvision state dict (or a folder holding ``vgg19-dcbb9e9d.pth``); None
    looks in ``$DEFORMGAN_WEIGHTS`` and ``$TORCH_HOME/hub/checkpoints``; missing -> ``MissingWeightsError``.

    ``preprocess``:
      * "torchvision" (default): RGB in [0,1] normalised by the ImageNet mean/std -- what torchvision's
        VGG-19 weights were trained on, hence the right choice for the weights we load.
      * "keras-reference": the reference's transform, same operations in the same order:
        x*127.5+127.5, subtract [103.939, 116.779, 123.68] from channels (R, G, B) in that order, *then* flip
        RGB->BGR (so the R and B means are swapped relative to the caffe convention -- the reference's small
        bug). Only meaningful with Keras' caffe-style BGR weights converted to this layout; torchvision's
        weights would see badly scaled inputs.
    """

    def __init__(
        self,
        layers: Sequence[str],
        weights: str | Path | None = None,
        preprocess: str = "torchvision",
    ):
        super().__init__()
        if isinstance(layers, str):
            layers = [layers]
        layers = list(layers)
        unknown = [name for name in layers if name not in VGG19_LAYERS]
        if not layers or unknown:
            raise InputError(
                f"VGG19Features: layers must be a non-empty list of {', '.join(VGG19_LAYERS)}; got {layers!r}"
            )
        if preprocess not in PREPROCESSING:
            raise InputError(f"VGG19Features: preprocess must be one of {PREPROCESSING}, got {preprocess!r}")
        path = find_weights(VGG19_WEIGHTS_FILE, explicit=weights, url=VGG19_WEIGHTS_URL)
        # Built on the meta device and filled with assign=True: no time spent initialising 143M parameters
        # that the file overwrites; strict=True still checks every key and shape of torchvision's vgg19.
        with torch.device("meta"):
            model = torchvision.models.vgg19(weights=None)
        model.load_state_dict(load_state_dict(path), strict=True, assign=True)

        self.layers = layers
        self.preprocess = preprocess
        # Output after each requested conv's ReLU (Keras' blockN_convM output includes the activation).
        self._outputs = [VGG19_LAYERS[name] + 1 for name in layers]
        self.features = model.features[: max(self._outputs) + 1]
        for parameter in self.features.parameters():
            parameter.requires_grad_(False)
        if preprocess == "torchvision":
            # x in [-1,1] -> ((x+1)/2 - mean) / std, folded into x * scale + shift
            scale = [0.5 / s for s in _IMAGENET_STD]
            shift = [(0.5 - m) / s for m, s in zip(_IMAGENET_MEAN, _IMAGENET_STD, strict=True)]
        else:
            # Applied literally in normalize(): x * 127.5 + 127.5, then minus these means in R, G, B order.
            scale, shift = [127.5] * 3, list(_CAFFE_MEAN)
        self.register_buffer("scale", torch.tensor(scale).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", torch.tensor(shift).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Features:
        """Always stays in eval mode: the feature extractor is frozen."""
        return super().train(False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) RGB in [-1,1] -> the network's input, per ``preprocess`` (see the class docstring)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise InputError(f"VGG19Features: expected images (B,3,H,W), got shape {tuple(images.shape)}")
        scale, shift = self.scale.to(images.dtype), self.shift.to(images.dtype)
        if self.preprocess == "torchvision":
            return images * scale + shift
        # The reference's operation order: scale to [0,255], subtract the means from channels R, G, B,
        # then flip RGB -> BGR.
        return ((images * 127.5 + 127.5) - shift).flip(1)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B,3,H,W) in [-1,1] -> list of post-ReLU feature maps, one per requested layer."""
        x = self.normalize(images)
        outputs: dict[int, torch.Tensor] = {}
        wanted = set(self._outputs)
        for index, module in enumerate(self.features):
            x = module(x)
            if index in wanted:
                outputs[index] = x
        return [outputs[index] for index in self._outputs]

    def extra_repr(self) -> str:
        return f"layers={self.layers!r}, preprocess={self.preprocess!r}"
