"""The console script: commands run end to end; bad input is one line on stderr and exit status 2."""

from __future__ import annotations

import subprocess
import sys

from deformgan.data import find_layout


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deformgan.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_help_lists_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("synth", "pairs", "check-data"):
        assert command in result.stdout


def test_synth_then_check_data(tmp_path):
    out = tmp_path / "people"
    args = ["--identities", "4", "--poses-per-identity", "3", "--seed", "1"]
    result = run_cli("synth", "--out", str(out), *args)
    assert result.returncode == 0, result.stderr
    assert (out / "preview.png").is_file()
    layout = find_layout(out)
    assert layout.prefix == "synth"
    check = run_cli("check-data", str(out), "--split", "test")
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("ok:")


def test_bad_argument_is_one_line_exit_2(tmp_path):
    result = run_cli("synth", "--out", str(tmp_path / "x"), "--size", "12y")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: size:")
    missing = run_cli("check-data", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "nowhere" in missing.stderr


def test_evaluate_real_triplets_writes_json(shared, tmp_path):
    """`deformgan evaluate --triplets` on the authors' Market strips: the JSON holds every metric key,
    weight-free metrics as numbers and weight-dependent ones as null with the missing file named."""
    import json

    annotations = shared / "data/annotations"
    out = tmp_path / "scores.json"
    result = run_cli(
        "evaluate", "--generated", str(shared / "data/triplets/market"), "--triplets",
        "--annotations", str(annotations / "market-annotation-test.csv"),
        "--annotations", str(annotations / "market-annotation-train.csv"), "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    scores = json.loads(out.read_text())
    for key in ("ssim", "mask_ssim", "is", "mask_is", "ds", "ds_hog", "lpips", "fid", "l1"):
        assert key in scores
    assert 0 < scores["ssim"]["value"] < scores["mask_ssim"]["value"] < 1
    assert out.with_suffix(".md").is_file()
