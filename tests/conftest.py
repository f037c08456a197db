"""Shared test fixtures: the read-only ../shared folder (present in CI, absent on a user's clone)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def shared() -> Path:
    """Path of ../shared; skips the test with the reason when it is absent (e.g. on a fresh user clone)."""
    if not SHARED.is_dir():
        pytest.skip(
            f"../shared absent ({SHARED}): real-data checks run only where it exists (CI, dev machines)"
        )
    return SHARED


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a test module: tiny models gain nothing from more, and a shared 2-core
    machine loses a lot to oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
