"""Re-ID networks: backbones (ImageNet ResNet-50, a small CPU CNN) and the IDE classifier.

**IDE** ("ID-discriminative embedding", Zheng, Yang & Hauptmann, "Person Re-identification: Past, Present
and Future", arXiv 1610.02984, §5): an ImageNet ResNet-50 whose 1000-way layer is replaced by a classifier
over the training identities (dropout + linear), trained with softmax cross-entropy; at test time the
2048-d globally pooled ``pool5`` activations are the descriptor.

The ResNet-50 weights are torchvision's ``ResNet50_Weights.IMAGENET1K_V1`` file ``resnet50-0676ba61.pth``
(the original ImageNet training; torchvision's newer default ``IMAGENET1K_V2`` is ``resnet50-11ad3fa6.pth``
and is accepted as an explicit path too). They are looked up with :func:`deformgan.pretrained.find_weights`
(explicit path, ``$DEFORMGAN_WEIGHTS``, ``$TORCH_HOME/hub/checkpoints``) and never downloaded; a ResNet-50
starts from random weights only when the caller asks for it (``random_init=True``), and that choice is
returned in the ``init`` record that training writes into its state file.

The **small CNN** (for CPU runs and tests) is five 3x3 conv-BN-ReLU blocks, four of them with stride 2,
and global average pooling: a (B, 3, H, W) image gives a (B, feature_dim) descriptor. It is always trained
from scratch.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from deformgan.errors import InputError
from deformgan.pretrained import find_weights, load_state_dict

BACKBONES = ("resnet50", "small")
RESNET50_WEIGHTS = "resnet50-0676ba61.pth"
RESNET50_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"
RESNET50_DIM = 2048


class SmallReIDCNN(nn.Module):
    """(B, 3, H, W) -> (B, feature_dim): conv-BN-ReLU blocks (strides 2, 2, 2, 1, 2) and average pooling."""

    def __init__(self, feature_dim: int = 128, width: int = 32):
        super().__init__()
        channels = [3, width, 2 * width, 4 * width, 4 * width, feature_dim]
        strides = [2, 2, 2, 1, 2]
        layers: list[nn.Module] = []
        for c_in, c_out, stride in zip(channels[:-1], channels[1:], strides, strict=True):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = feature_dim
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


def resnet50_backbone(
    weights: str | os.PathLike | None = None, random_init: bool = False
) -> tuple[nn.Module, dict]:
    """torchvision ResNet-50 without its 1000-way layer: (B, 3, H, W) -> (B, 2048) pooled features.

    ImageNet weights come from ``weights`` (a file or a folder holding ``resnet50-0676ba61.pth``) or the
    standard places (:func:`deformgan.pretrained.find_weights`); a missing file raises
    :class:`deformgan.pretrained.MissingWeightsError`. ``random_init=True`` skips them (recorded in the
    returned init record). Returns (module, init record).
    """
    from torchvision.models import resnet50

    model = resnet50(weights=None)
    if random_init:
        if weights is not None:
            raise InputError("resnet50: pass either a weights path or random_init, not both")
        init = {"init": "random", "requested_by_user": True, "weights": None}
    else:
        path = find_weights(RESNET50_WEIGHTS, weights, RESNET50_URL)
        state = load_state_dict(path)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            first = str(error).splitlines()[0]
            raise InputError(f"{path}: not torchvision ResNet-50 weights ({first})") from None
        init = {"init": "imagenet", "requested_by_user": False, "weights": str(path)}
    model.fc = nn.Identity()
    model.out_dim = RESNET50_DIM
    return model, init


def build_backbone(
    name: str,
    *,
    weights: str | os.PathLike | None = None,
    random_init: bool = False,
    feature_dim: int = 128,
    pretrained: bool = True,
) -> tuple[nn.Module, dict]:
    """Backbone ``name`` ("resnet50" | "small") -> (module with ``out_dim``, init record).

    pretrained=False builds the architecture only, for loading a trained Re-ID checkpoint over it (the
    record then says so).
    """
    if name not in BACKBONES:
        raise InputError(f"backbone: expected one of {', '.join(BACKBONES)}, got {name!r}")
    if name == "small":
        if weights is not None:
            raise InputError("backbone small: is trained from scratch and takes no weights file")
        return SmallReIDCNN(feature_dim=feature_dim), {
            "init": "random",
            "requested_by_user": False,
            "weights": None,
        }
    if not pretrained:
        from torchvision.models import resnet50

        model = resnet50(weights=None)
        model.fc = nn.Identity()
        model.out_dim = RESNET50_DIM
        return model, {"init": "checkpoint", "requested_by_user": False, "weights": None}
    return resnet50_backbone(weights=weights, random_init=random_init)


class IDENet(nn.Module):
    """IDE: backbone + dropout + linear identity classifier.

    ``forward(x)`` -> (features (B, D), logits (B, num_classes)); ``embed(x)`` -> features (the descriptor).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, dropout: float = 0.5):
        super().__init__()
        if num_classes < 2:
            raise InputError(f"IDE: expected at least 2 training identities, got {num_classes}")
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(backbone.out_dim, num_classes)
        nn.init.normal_(self.classifier.weight, std=0.001)
        nn.init.zeros_(self.classifier.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(x)
        return features, self.classifier(self.dropout(features))

    def new_parameters(self) -> list[nn.Parameter]:
        """Parameters that are not part of the backbone (they get the full learning rate)."""
        return list(self.classifier.parameters())
