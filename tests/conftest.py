"""Shared test fixtures: the read-only ../shared folder (present in CI, absent on a user's clone)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def shared() -> Path:
    """Path of ../shared; skips the test with the reason when it is absent (e.g. on a fresh user clone)."""
    if not SHARED.is_dir():
        pytest.skip(
            f"../shared absent ({SHARED}): real-data checks run only where it exists (CI, dev machines)"
        )
    return SHARED
