"""Frozen VGG-19 feature extractor for the perceptual / nearest-neighbour losses (the
authors' ``gan/layer_utils.content_features_model``).

The reference applies Keras' ImageNet VGG-19 (``block1_conv2``, ``block2_conv1``, ... outputs, which include
the ReLU) to generated and real images; the paper's lambdas (0.01 for the NN loss on conv1_2, 0.5 for L1 on
conv2_1) were tuned on it. Two weight files, two input conventions, one architecture (torchvision's
``vgg19().features``):

* Keras' ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`` (caffe-style: 0-255 BGR minus the ImageNet
  means), converted by :func:`deformgan.keras_import.convert_keras_vgg19`, with ``preprocess=
  "keras-reference"`` -- what the authors trained with;
* torchvision's ``vgg19-dcbb9e9d.pth`` with ``preprocess="torchvision"`` (RGB in [0, 1], ImageNet mean/std).

``preprocess="auto"`` takes the Keras file when it is found, else torchvision's. Files are looked up like
every weights file (:func:`deformgan.pretrained.find_weights`: explicit path, ``$DEFORMGAN_WEIGHTS``,
``$TORCH_HOME/hub/checkpoints``), never downloaded, never replaced by random weights; a file of one kind
with the other's preprocessing is refused. :meth:`VGG19Features.describe` and ``source`` say what was used.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torchvision
from torch import nn

from deformgan.errors import InputError
from deformgan.pretrained import MissingWeightsError, find_weights, load_state_dict

VGG19_WEIGHTS_FILE = "vgg19-dcbb9e9d.pth"
VGG19_WEIGHTS_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
#: Keras' ImageNet VGG-19 without the classifier (what ``keras.applications.VGG19(include_top=False)`` loads)
KERAS_VGG19_WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_VGG19_WEIGHTS_URL = (
    "https://github.com/fchollet/deep-learning-models/releases/download/v0.1/" + KERAS_VGG19_WEIGHTS_FILE
)
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

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
#: What a loss may ask for: one of PREPROCESSING, or "auto" (Keras' file when found, else torchvision's).
VGG_CHOICES = ("auto", *PREPROCESSING)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, images in [0, 1] (torchvision weights)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN = (103.939, 116.779, 123.68)  # BGR means of the Keras/caffe weights, images in [0, 255]


def _is_hdf5(path: Path) -> bool:
    """True for an HDF5 file (Keras' .h5), by the format signature at the start of the file."""
    with open(path, "rb") as f:
        return f.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE


def resolve_vgg19(weights: str | Path | None, preprocess: str) -> tuple[Path, str]:
    """Which VGG-19 file to load and with which preprocessing: -> (path, "torchvision" | "keras-reference").

    ``weights``: a file (of either kind, told apart by its content: HDF5 = Keras), a folder holding the
    standard file name(s), or None for the standard lookup. ``preprocess`` "keras-reference" needs Keras'
    file, "torchvision" torchvision's; "auto" prefers Keras' (the authors' network) and falls back to
    torchvision's only when Keras' is not found. Raises MissingWeightsError naming the file(s) looked for,
    InputError for a file of the wrong kind.
    """
    if preprocess not in VGG_CHOICES:
        raise InputError(f"VGG19Features: preprocess must be one of {VGG_CHOICES}, got {preprocess!r}")
    if preprocess == "auto":
        if weights is not None and not Path(weights).is_dir():  # one explicit file: its content decides
            path = find_weights(VGG19_WEIGHTS_FILE, explicit=weights, url=VGG19_WEIGHTS_URL)
            return path, "keras-reference" if _is_hdf5(path) else "torchvision"
        try:
            path, preprocess = find_weights(KERAS_VGG19_WEIGHTS_FILE, explicit=weights), "keras-reference"
        except MissingWeightsError as keras_missing:
            try:
                path, preprocess = find_weights(VGG19_WEIGHTS_FILE, explicit=weights), "torchvision"
            except MissingWeightsError as torchvision_missing:
                raise MissingWeightsError(
                    f"{KERAS_VGG19_WEIGHTS_FILE} (Keras' VGG-19, preferred; {KERAS_VGG19_WEIGHTS_URL}) or "
                    f"{VGG19_WEIGHTS_FILE} (torchvision's; {VGG19_WEIGHTS_URL})",
                    keras_missing.searched + torchvision_missing.searched,
                ) from None
    else:
        keras = preprocess == "keras-reference"
        name = KERAS_VGG19_WEIGHTS_FILE if keras else VGG19_WEIGHTS_FILE
        url = KERAS_VGG19_WEIGHTS_URL if keras else VGG19_WEIGHTS_URL
        path = find_weights(name, explicit=weights, url=url)
    if _is_hdf5(path) != (preprocess == "keras-reference"):
        if preprocess == "keras-reference":
            holds, fits = "a torch state dict, not Keras' HDF5 VGG-19", "torchvision"
        else:
            holds, fits = "Keras' caffe-style VGG-19 (HDF5)", "keras-reference"
        raise InputError(
            f"VGG19Features: {path} holds {holds}, which does not match preprocess {preprocess!r}; use "
            f"preprocess {fits!r} (or 'auto') with this file"
        )
    return path, preprocess


class VGG19Features(nn.Module):
    """Post-ReLU activations of VGG-19 layers ``layers`` (e.g. ["conv1_2"]), frozen and in eval mode.

    forward(images (B,3,H,W) in [-1,1]) -> list with one (B,C_l,H_l,W_l) map per requested layer, in the
    requested order (conv1_2: (B,64,H,W); conv2_1: (B,128,H/2,W/2)). The network is truncated after the
    deepest requested layer; parameters have ``requires_grad=False`` but gradients flow to the input.

    ``weights``: a weights file (torchvision's state dict or Keras' HDF5 file), or a folder holding
    ``vgg19-dcbb9e9d.pth`` / ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``; None looks in
    ``$DEFORMGAN_WEIGHTS`` and ``$TORCH_HOME/hub/checkpoints``; missing -> ``MissingWeightsError``
    (:func:`resolve_vgg19`).

    ``preprocess``:
      * "torchvision" (default): torchvision's weights, RGB in [0,1] normalised by the ImageNet mean/std --
        what those weights were trained on.
      * "keras-reference": Keras' weights (converted at load; a notop file needs only the convolutions up
        to the deepest requested layer), with the reference's transform, same operations in the same order:
        x*127.5+127.5, subtract [103.939, 116.779, 123.68] from channels (R, G, B) in that order, *then* flip
        RGB->BGR (so the R and B means are swapped relative to the caffe convention -- the reference's small
        bug).
      * "auto": "keras-reference" when Keras' file is found, else "torchvision".
    ``self.preprocess`` is the resolved one; ``self.source`` / :meth:`describe` say which file was loaded.
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
        path, preprocess = resolve_vgg19(weights, preprocess)
        # Output after each requested conv's ReLU (Keras' blockN_convM output includes the activation).
        self._outputs = [VGG19_LAYERS[name] + 1 for name in layers]
        end = max(self._outputs) + 1
        # Built on the meta device and filled with assign=True: no time spent initialising 143M parameters
        # that the file overwrites; strict=True still checks every key and shape.
        with torch.device("meta"):
            model = torchvision.models.vgg19(weights=None)
        if preprocess == "torchvision":
            model.load_state_dict(load_state_dict(path), strict=True, assign=True)
            self.features = model.features[:end]
        else:
            from deformgan.keras_import import convert_keras_vgg19

            needed = [_keras_name(name) for name, index in VGG19_LAYERS.items() if index < end]
            state = convert_keras_vgg19(path, require=needed)
            self.features = model.features[:end]
            kept = {key: value.contiguous() for key, value in state.items() if int(key.split(".")[0]) < end}
            self.features.load_state_dict(kept, strict=True, assign=True)

        self.layers = layers
        self.preprocess = preprocess
        self.weights_path = Path(path)
        #: What was loaded (JSON-able): weights file, its kind, the preprocessing, the layers.
        self.source = {
            "weights": str(self.weights_path),
            "weights_kind": "keras" if preprocess == "keras-reference" else "torchvision",
            "preprocess": preprocess,
            "layers": list(layers),
        }
        self.features.requires_grad_(False)
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

    def describe(self) -> str:
        """One line: the layers, the weights file and its kind, the preprocessing (logs, run folders)."""
        kind = (
            "Keras ImageNet weights, caffe-style BGR 0-255 input"
            if self.preprocess == "keras-reference"
            else "torchvision ImageNet weights, RGB mean/std input; the paper's lambdas were tuned on Keras' "
            "VGG-19, not on this network"
        )
        return f"VGG-19 {'+'.join(self.layers)}: {self.weights_path} ({kind}), preprocess {self.preprocess!r}"

    def extra_repr(self) -> str:
        return f"layers={self.layers!r}, preprocess={self.preprocess!r}, weights={str(self.weights_path)!r}"


def _keras_name(layer: str) -> str:
    """conv1_2 -> block1_conv2 (Keras' name of the same convolution)."""
    block, index = layer.removeprefix("conv").split("_")
    return f"block{block}_conv{index}"
