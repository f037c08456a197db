"""The Discriminative Embedding: a siamese network trained with identification + verification losses.

Zheng, Zheng & Yang, "A Discriminatively Learned CNN Embedding for Person Re-identification", ACM TOMM
2018 (arXiv 1611.05666), §3, Fig. 2: two weight-sharing backbones see an image pair and give descriptors
f1, f2. Each descriptor predicts its identity (dropout + linear, softmax cross-entropy: the identification
loss), and the "square layer" ``f_s = (f1 - f2)^2`` feeds a two-way same / different classifier (dropout +
linear, softmax cross-entropy: the verification loss). At test time only the descriptor is used, compared
with the Euclidean distance.

Defaults follow the authors' MatConvNet code (layumi/2016_person_re-ID, ``resnet52_market.m``,
``resnet52_2stream.m``, ``train_id_net_res_2stream.m``): dropout 0.9 before both classifiers; loss =
0.5 identification(image 1) + 0.5 identification(image 2) + 1.0 verification; one positive pair for four
negative ones (``positive_fraction = 0.2``): each image of a batch is paired with a random other image of
its identity (a positive) or of another identity (a negative).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from deformgan.errors import InputError


class SiameseReIDNet(nn.Module):
    """Shared backbone + identity classifier + verification classifier on ``(f1 - f2)^2``.

    ``forward(x1, x2)`` -> dict with ``features1``/``features2`` (B, D), ``logits1``/``logits2`` (B, K) and
    ``verification`` (B, 2) logits (class 1 = same identity); ``embed(x)`` -> (B, D) descriptor.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, dropout: float = 0.9):
        super().__init__()
        if num_classes < 2:
            raise InputError(f"DE: expected at least 2 training identities, got {num_classes}")
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(backbone.out_dim, num_classes)
        self.verifier = nn.Linear(backbone.out_dim, 2)
        for layer in (self.classifier, self.verifier):
            nn.init.normal_(layer.weight, std=0.001)
            nn.init.zeros_(layer.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(torch.cat([x1, x2]))  # one pass: BatchNorm sees both halves together
        f1, f2 = features.chunk(2)
        return {
            "features1": f1,
            "features2": f2,
            "logits1": self.classifier(self.dropout(f1)),
            "logits2": self.classifier(self.dropout(f2)),
            "verification": self.verifier(self.dropout((f1 - f2).pow(2))),
        }

    def new_parameters(self) -> list[nn.Parameter]:
        """Parameters that are not part of the backbone (they get the full learning rate)."""
        return [*self.classifier.parameters(), *self.verifier.parameters()]


def discriminative_embedding_loss(
    outputs: dict[str, torch.Tensor],
    labels1: torch.Tensor,
    labels2: torch.Tensor,
    identification_weight: float = 0.5,
    verification_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the two identification losses and the verification loss (same = labels equal).

    Returns (scalar loss, {"identification", "verification", "accuracy", "verification_accuracy"}).
    """
    same = (labels1 == labels2).long()
    id1 = F.cross_entropy(outputs["logits1"], labels1)
    id2 = F.cross_entropy(outputs["logits2"], labels2)
    verification = F.cross_entropy(outputs["verification"], same)
    loss = identification_weight * (id1 + id2) + verification_weight * verification
    with torch.no_grad():
        accuracy = 0.5 * (
            (outputs["logits1"].argmax(1) == labels1).float().mean()
            + (outputs["logits2"].argmax(1) == labels2).float().mean()
        )
        verification_accuracy = (outputs["verification"].argmax(1) == same).float().mean()
    return loss, {
        "identification": float(0.5 * (id1 + id2).detach()),
        "verification": float(verification.detach()),
        "accuracy": float(accuracy),
        "verification_accuracy": float(verification_accuracy),
    }


class PairSampler:
    """Chooses the partner of each anchor image: a positive with probability ``positive_fraction``.

    labels: (N,) class index per image. A positive is another image of the same identity (the image
    itself when its identity has a single image); a negative is an image of another identity. Draws come
    from ``numpy.random.default_rng(seed)``, so the pairs are a function of the seed.
    """

    def __init__(self, labels, positive_fraction: float = 0.2, seed: int = 0):
        if not 0.0 <= positive_fraction <= 1.0:
            raise InputError(f"positive_fraction: expected a number in [0, 1], got {positive_fraction!r}")
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(np.unique(self.labels)) < 2:
            raise InputError("DE pairs: expected training images of at least two identities")
        self.positive_fraction = positive_fraction
        self.rng = np.random.default_rng(seed)
        order = np.argsort(self.labels, kind="stable")
        classes, starts, counts = np.unique(self.labels[order], return_index=True, return_counts=True)
        self._order = order
        self._start = dict(zip(classes, starts, strict=True))
        self._count = dict(zip(classes, counts, strict=True))

    def partners(self, anchors) -> list[int]:
        """Partner image index for each anchor index."""
        out = []
        n = len(self.labels)
        for anchor in anchors:
            label = self.labels[anchor]
            start, count = self._start[label], self._count[label]
            if self.rng.random() < self.positive_fraction:
                if count == 1:
                    out.append(int(anchor))
                    continue
                # a uniformly chosen *other* member of the class
                offset = int(self.rng.integers(count - 1))
                candidate = int(self._order[start + offset])
                out.append(candidate if candidate != anchor else int(self._order[start + count - 1]))
            else:
                # a uniform image outside the class: skip over the class's block in the sorted order
                position = int(self.rng.integers(n - count))
                out.append(int(self._order[position if position < start else position + count]))
        return out
