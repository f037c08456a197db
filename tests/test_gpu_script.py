"""benchmarks/gpu.py runs every code path on the CPU (``--device cpu --smoke``), as CI checks it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


@pytest.mark.slow
def test_gpu_benchmark_smoke_run_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.md"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    text = out.read_text()
    for mode in ("| fp32 |", "| bf16 |", "| channels_last |", "| bf16+channels_last |"):
        assert text.count(mode) == 2, mode  # both configs
    # The same fp32 iteration on "both devices" (here the CPU twice) gives the same losses: the check works.
    assert "max |difference| of the logged losses 0.00e+00" in text
