"""Weights lookup: explicit path, $DEFORMGAN_WEIGHTS, the torch hub cache; the temporary hub folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from deformgan.pretrained import MissingWeightsError, find_weights, hub_checkpoints_holding


def test_lookup_order_and_explicit_paths(tmp_path: Path, monkeypatch):
    env, home = tmp_path / "env", tmp_path / "home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    env.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("DEFORMGAN_WEIGHTS", str(env))
    (home / "hub" / "checkpoints" / "w.pth").write_bytes(b"hub")
    assert find_weights("w.pth") == home / "hub" / "checkpoints" / "w.pth"
    (env / "w.pth").write_bytes(b"env")
    assert find_weights("w.pth") == env / "w.pth"  # $DEFORMGAN_WEIGHTS before the hub cache
    assert find_weights("w.pth", explicit=env) == env / "w.pth"  # a folder holding the file
    with pytest.raises(MissingWeightsError, match="w.pth.*nowhere"):
        find_weights("w.pth", explicit=tmp_path / "nowhere")  # never falls back to the others


@pytest.mark.parametrize("explicit_dir", [False, True])
def test_hub_checkpoints_holding_shows_exactly_the_files_and_restores(
    tmp_path: Path, monkeypatch, explicit_dir
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    chosen = tmp_path / "chosen-hub"
    if explicit_dir:
        monkeypatch.setattr(torch.hub, "_hub_dir", None)  # undo whatever an earlier test chose
        torch.hub.set_dir(str(chosen))
    weights = tmp_path / "a.pth"
    weights.write_bytes(b"x")
    before = (torch.hub.get_dir(), os.environ.get("TORCH_HOME"))
    with hub_checkpoints_holding({"alexnet.pth": weights}) as folder:
        assert Path(torch.hub.get_dir()) / "checkpoints" == folder
        assert sorted(p.name for p in folder.iterdir()) == ["alexnet.pth"]
        assert (folder / "alexnet.pth").read_bytes() == b"x"
    assert (torch.hub.get_dir(), os.environ.get("TORCH_HOME")) == before
    if explicit_dir:
        monkeypatch.setattr(torch.hub, "_hub_dir", None)
