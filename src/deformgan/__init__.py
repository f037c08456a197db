"""deformgan: Deformable GANs for pose-based human image generation (Siarohin et al., CVPR 2018).

Pipeline, one module per concept, imports pointing backwards only:
``keypoints`` -> ``geometry`` -> ``warp`` -> ``models`` -> ``losses`` -> ``data`` -> ``train`` /
``generate`` / ``evaluate`` -> ``cli``.
"""

__version__ = "0.1.0"
