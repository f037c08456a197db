"""The model shipped inside the package (``shipped:synth-people``): where it comes from, and that it is the
model benchmarks/results/shipped_model.md measured, on the demo's own held-out pairs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deformgan.checkpoint import (
    MODEL_FILE,
    SHIPPED_MODEL,
    load_checkpoint,
    read_model_record,
    resolve_shipped,
)
from deformgan.config import config_from_dict, find_config, load_config

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "shipped_model.md"


def test_the_shipped_model_is_small_float16_and_says_how_it_was_made():
    folder = resolve_shipped(SHIPPED_MODEL)
    record = read_model_record(folder)
    assert record["dtype"] == "float16"
    assert sum(p.stat().st_size for p in folder.iterdir()) < 10 * 2**20  # the "under ~10 MB"
    provenance = record["provenance"]
    # never trained on the demo's people: the demo renders seed 0
    assert provenance["training_seeds"] and 0 not in provenance["training_seeds"]
    assert provenance["command"].startswith("python benchmarks/shipped_model.py")
    assert provenance["iterations"] == record["step"]
    # the config it was trained with is the package's synth-people.yaml (resolved, as run)
    shipped = config_from_dict(record["config"])
    assert shipped == load_config(find_config("synth-people"), ["train.device=cpu"])
    assert shipped.image_size == (128, 64)


def test_the_shipped_model_loads_as_float32_and_renders_128x64():
    from deformgan.transfer import PoseTransfer

    model = PoseTransfer.from_checkpoint(SHIPPED_MODEL)
    assert all(p.dtype == torch.float32 for p in model.generator.parameters())
    assert (resolve_shipped(SHIPPED_MODEL) / MODEL_FILE).is_file()
    assert tuple(model.image_size) == (128, 64)


@pytest.mark.slow
def test_the_shipped_model_scores_what_its_results_file_says(tmp_path: Path):
    """On the demo's 672 held-out pairs (what `deformgan demo` renders with its defaults), the package's
    float16 model gives the scores that benchmarks/results/shipped_model.md reports for it (to 1e-4: the
    same computation, deterministic on the CPU), and beats warp-only."""
    from deformgan.demo import generate_pairs, held_out_pairs, score_methods
    from deformgan.evaluation.baselines import warp_only
    from deformgan.synth import write_synthetic_dataset
    from deformgan.transfer import PoseTransfer

    write_synthetic_dataset(tmp_path, identities=48, poses_per_identity=8, seed=0, progress=False)
    pairs = held_out_pairs(tmp_path)
    assert len(pairs.sources) == 672
    outputs = {
        "warp_only": warp_only(pairs.sources, pairs.source_kp, pairs.target_kp),
        "shipped": generate_pairs(PoseTransfer.from_checkpoint(SHIPPED_MODEL), pairs),
    }
    scores = score_methods(outputs, pairs)
    assert scores["shipped"]["mask_ssim"] > scores["warp_only"]["mask_ssim"]
    row = next(line for line in RESULTS.read_text().splitlines() if line.startswith("| shipped (float16"))
    reported = [float(cell) for cell in row.strip("|").split("|")[1:]]
    got = [scores["shipped"][k] for k in ("mask_ssim", "ssim", "l1")]
    np.testing.assert_allclose(got, reported, atol=1e-4)
    # and model.json records the scores of that measurement (mask-SSIM, SSIM and L1)
    provenance = load_checkpoint(SHIPPED_MODEL, weights_only=True).extra["provenance"]
    assert json.dumps(sorted(provenance["scores_on_demo_pairs"])) == json.dumps(["l1", "mask_ssim", "ssim"])
