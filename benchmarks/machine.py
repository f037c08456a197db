"""The machine line every benchmark result file states (scripts in this folder import it as ``machine``)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    for line in lines:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_description() -> str:
    """e.g. ``AMD EPYC, 2 logical CPUs, torch 2.14.1``."""
    import torch

    return f"{cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}"
