"""Shared test fixtures: the read-only ../shared folder (present in CI, absent on a user's clone), one torch
thread, and the real pose model (present once `deformgan weights pose` has run)."""

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


@pytest.fixture(scope="module")
def pose_model():
    """The BlazePose landmark model from the weights cache, run on one OpenCV thread; skips the test with
    the reason when `deformgan weights pose` has not fetched it."""
    import cv2

    from deformgan.pose.blazepose import BlazePose
    from deformgan.pretrained import MissingWeightsError

    try:
        model = BlazePose()
    except MissingWeightsError as error:
        pytest.skip(f"pose model not in the weights cache: {error}")
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    yield model
    cv2.setNumThreads(threads)
