"""deformgan: Deformable GANs for pose-based human image generation (Siarohin et al., CVPR 2018).

Pipeline, one module per concept, imports pointing backwards only (the full chain, shared helpers
included, is checked by tests/test_layering.py): ``keypoints`` -> ``pose`` -> ``parts`` -> ``conditioning``
-> ``warp`` -> ``models`` -> ``losses`` / ``vgg`` / ``objective`` -> ``data`` -> ``train`` -> ``generate``
/ ``transfer`` -> ``evaluation`` -> ``cli``.

The one-line API for trained models: ``deformgan.PoseTransfer.from_checkpoint(path).transfer(image,
source_kp, target_kp)`` (imported lazily, so ``import deformgan`` stays cheap).
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["PoseTransfer", "__version__"]


def __getattr__(name: str):
    if name == "PoseTransfer":
        from deformgan.transfer import PoseTransfer

        return PoseTransfer
    raise AttributeError(f"module 'deformgan' has no attribute {name!r}")
