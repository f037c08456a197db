"""Person re-identification toolkit: the Re-ID side of the Deformable GANs supplementary material (§4).

Generated people, labelled with the identity of their conditioning image, augment the Market-1501 training
set (A = T + generated), and Re-ID models trained on A are compared with models trained on T (Table 1).

- :mod:`deformgan.reid.evaluation`: the Market-1501 protocol, CMC and mAP (:func:`evaluate_ranking`);
- :mod:`deformgan.reid.data`: Market-1501 / synthetic layouts, extra image folders with a manifest;
- :mod:`deformgan.reid.models`, :mod:`deformgan.reid.embedding`: IDE (ResNet-50 or a small CNN) and the
  Discriminative Embedding (siamese identification + verification);
- :mod:`deformgan.reid.metric_learning`: Euclidean, XQDA and KISSME distances;
- :mod:`deformgan.reid.train`, :mod:`deformgan.reid.report`: training, scoring, the Table-1 report;
- :mod:`deformgan.reid.augment`: the augmented set, K generated poses per training image (resumable);
- :mod:`deformgan.reid.synthetic`, :mod:`deformgan.reid.study`: the experiment on synthetic people (T,
  A_gan, A_oracle, shuffled labels; ``benchmarks/reid_augmentation.py``).

The numpy parts load eagerly; the torch parts on first use.
"""

from __future__ import annotations

import importlib

from deformgan.reid.evaluation import evaluate_ranking, per_query_results
from deformgan.reid.metric_learning import fit_kissme, fit_metric, fit_xqda

_LAZY = {
    "ReIDImage": "deformgan.reid.data",
    "ReIDImageDataset": "deformgan.reid.data",
    "ReIDSplits": "deformgan.reid.data",
    "load_reid_dataset": "deformgan.reid.data",
    "read_extra_folder": "deformgan.reid.data",
    "write_manifest": "deformgan.reid.data",
    "ReIDTrainConfig": "deformgan.reid.train",
    "train_reid": "deformgan.reid.train",
    "load_model": "deformgan.reid.train",
    "extract_features": "deformgan.reid.train",
    "evaluate_reid": "deformgan.reid.report",
    "write_table1_report": "deformgan.reid.report",
    "augment": "deformgan.reid.augment",
    "shuffle_labels": "deformgan.reid.augment",
    "ReIDExperimentSpec": "deformgan.reid.synthetic",
    "write_reid_experiment": "deformgan.reid.synthetic",
    "StudySettings": "deformgan.reid.study",
    "run_study": "deformgan.reid.study",
}

__all__ = ["evaluate_ranking", "fit_kissme", "fit_metric", "fit_xqda", "per_query_results", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deformgan.reid' has no attribute {name!r}")
