"""Scoring generated people: the paper's protocol (SSIM, mask-SSIM, IS, mask-IS, DS) and the field's later
one (LPIPS, FID), on folders of generated images."""

from deformgan.evaluation.evaluate import evaluate
from deformgan.evaluation.mask import evaluation_mask
from deformgan.evaluation.scores import METRICS, markdown_table, score_images, write_results

__all__ = ["METRICS", "evaluate", "evaluation_mask", "markdown_table", "score_images", "write_results"]
