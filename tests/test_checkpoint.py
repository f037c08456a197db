"""Checkpoints: exact round trip of weights / Adam, atomic writes, rotation, safe loading, format 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from deformgan import checkpoint as ckpt
from deformgan.errors import InputError


def _models_and_optimizers(seed: int = 0):
    torch.manual_seed(seed)
    generator = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    discriminator = torch.nn.Linear(2, 1)
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    for _ in range(2):  # populate Adam state (step, exp_avg, exp_avg_sq)
        loss = discriminator(generator(torch.randn(5, 4))).square().mean()
        opt_g.zero_grad()
        opt_d.zero_grad()
        loss.backward()
        opt_g.step()
        opt_d.step()
    return generator, discriminator, opt_g, opt_d


def _save(run_dir: Path, step: int, seed: int = 0, keep: int = 3) -> Path:
    generator, discriminator, opt_g, opt_d = _models_and_optimizers(seed)
    return ckpt.save_checkpoint(
        run_dir,
        step,
        generator=generator.state_dict(),
        discriminator=discriminator.state_dict(),
        optimizers={"generator": opt_g.state_dict(), "discriminator": opt_d.state_dict()},
        config={"name": "t", "train": {"iterations": 9}},
        data_dir="/data/x",
        extra={"scaler/generator": {"scale": 1024.0}},
        keep=keep,
    )


def test_round_trip_is_exact(tmp_path: Path):
    generator, discriminator, opt_g, opt_d = _models_and_optimizers()
    folder = _save(tmp_path, 6)
    assert folder.name == "ckpt-00000006"
    assert sorted(p.name for p in folder.iterdir()) == sorted(ckpt._FILES)
    assert (tmp_path / "latest").read_text().strip() == "ckpt-00000006"

    loaded = ckpt.load_checkpoint(tmp_path)
    assert loaded.step == 6 and loaded.data_dir == "/data/x" and loaded.config["train"]["iterations"] == 9
    assert loaded.extra == {"scaler/generator": {"scale": 1024.0}}
    for key, value in generator.state_dict().items():
        assert torch.equal(loaded.generator[key], value)
    for key, value in discriminator.state_dict().items():
        assert torch.equal(loaded.discriminator[key], value)

    # Loading the flattened Adam state into a fresh optimiser gives back the same state dict.
    fresh = torch.optim.Adam(_models_and_optimizers(seed=1)[0].parameters(), lr=1.0)
    fresh.load_state_dict(loaded.optimizers["generator"])
    restored, original = fresh.state_dict(), opt_g.state_dict()
    assert restored["param_groups"] == original["param_groups"]
    for index, state in original["state"].items():
        for key, value in state.items():
            assert torch.equal(restored["state"][index][key], value), (index, key)


def test_optimizer_continues_identically_after_restore():
    """Adam resumed from a flattened state takes the same next step as the original (bit-exact)."""
    generator, _, opt_g, _ = _models_and_optimizers()
    tensors, meta = ckpt.flatten_optimizer_state("g", opt_g.state_dict())
    meta = json.loads(json.dumps(meta))  # what actually goes through state.json
    clone = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    clone.load_state_dict(generator.state_dict())
    opt_clone = torch.optim.Adam(clone.parameters())
    opt_clone.load_state_dict(ckpt.unflatten_optimizer_state("g", tensors, meta))
    x = torch.randn(3, 4)
    for model, opt in ((generator, opt_g), (clone, opt_clone)):
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
    for a, b in zip(generator.parameters(), clone.parameters(), strict=True):
        assert torch.equal(a, b)


def test_format_1_checkpoint_loads_with_its_config_upgraded(tmp_path: Path):
    """deformgan 0.1 wrote format 1: RNG states beside the Adam tensors and sections model/loss."""
    from safetensors.torch import load_file, save_file

    folder = _save(tmp_path, 2)
    state = json.loads((folder / "state.json").read_text())
    state["format"] = 1
    state["config"] = {"model": {"warp_skip": "full", "width": 0.5}, "loss": {"kind": "l1", "weight": 10.0}}
    state["rng"] = {"python": [3, [0] * 625, None]}
    del state["sha256"]  # format 1 recorded no checksums
    (folder / "state.json").write_text(json.dumps(state))
    tensors = load_file(str(folder / "optimizers.safetensors"))
    save_file(tensors | {"rng/torch_cpu": torch.get_rng_state()}, str(folder / "optimizers.safetensors"))
    loaded = ckpt.load_checkpoint(tmp_path)
    assert loaded.config["generator"] == {"warp_skip": "global", "width": 0.5}
    assert loaded.config["objective"] == {"reconstruction": "l1", "reconstruction_weight": 10.0}
    assert set(loaded.optimizers) == {"generator", "discriminator"}  # the RNG tensors are not Adam state
    assert ckpt.load_checkpoint(_save(tmp_path / "new", 1)).config == {
        "name": "t",
        "train": {"iterations": 9},
    }


def test_keeps_last_k_and_never_parses_step_from_name(tmp_path: Path):
    for step in (1, 2, 3, 4):
        _save(tmp_path, step, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["ckpt-00000003", "ckpt-00000004"]
    # The step comes from state.json: a renamed folder still reports its own step.
    (tmp_path / "ckpt-00000004").rename(tmp_path / "ckpt-00000099")
    assert ckpt.load_checkpoint(tmp_path / "ckpt-00000099").step == 4


def test_same_step_is_overwritten_atomically(tmp_path: Path):
    _save(tmp_path, 5, seed=0)
    _save(tmp_path, 5, seed=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-00000005", "latest"]
    expected = _models_and_optimizers(seed=1)[0].state_dict()
    loaded = ckpt.load_checkpoint(tmp_path)
    assert all(torch.equal(loaded.generator[k], v) for k, v in expected.items())


@pytest.mark.parametrize("fail_after", [0, 1, 2, 3])
def test_interrupted_write_keeps_previous_checkpoint(tmp_path: Path, monkeypatch, fail_after: int):
    """A crash at any point of writing step 2 leaves step 1 complete and ``latest`` pointing to it."""
    _save(tmp_path, 1, seed=0)
    real_save_file = ckpt.save_file
    calls = {"n": 0}

    def dying_save_file(tensors, filename, *args, **kwargs):
        if calls["n"] == fail_after:
            Path(filename).write_bytes(b"half a file")  # what a kill mid-write leaves behind
            raise KeyboardInterrupt("killed mid-write")
        calls["n"] += 1
        return real_save_file(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save_file", dying_save_file)
    if fail_after == 3:  # die while writing state.json, after the three safetensors files
        monkeypatch.setattr(Path, "write_text", lambda self, text: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, 2, seed=1)
    monkeypatch.undo()

    assert (tmp_path / "latest").read_text().strip() == "ckpt-00000001"
    assert not (tmp_path / "ckpt-00000002").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ckpt")]  # temp dir cleaned up
    loaded = ckpt.load_checkpoint(tmp_path)
    expected = _models_and_optimizers(seed=0)[0].state_dict()
    assert loaded.step == 1 and all(torch.equal(loaded.generator[k], v) for k, v in expected.items())


def test_crash_between_rename_and_latest_update(tmp_path: Path, monkeypatch):
    """A kill after the folder rename but before ``latest`` is rewritten: latest still names step 1,
    which is complete; a stale temp folder from a hard kill is ignored and later cleaned."""
    _save(tmp_path, 1)
    monkeypatch.setattr(
        ckpt, "atomic_write_text", lambda path, text, fsync=False: (_ for _ in ()).throw(KeyboardInterrupt())
    )
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, 2)
    monkeypatch.undo()
    (tmp_path / ".ckpt-00000003.abc.tmp").mkdir()  # left by a SIGKILL (no cleanup ran)
    assert ckpt.find_checkpoint(tmp_path).name == "ckpt-00000001"
    _save(tmp_path, 3)
    assert not (tmp_path / ".ckpt-00000003.abc.tmp").exists()
    assert ckpt.find_checkpoint(tmp_path).name == "ckpt-00000003"


def test_latest_pointing_to_incomplete_folder_falls_back(tmp_path: Path):
    _save(tmp_path, 1)
    (tmp_path / "ckpt-00000002").mkdir()
    (tmp_path / "latest").write_text("ckpt-00000002\n")
    assert ckpt.find_checkpoint(tmp_path).name == "ckpt-00000001"


def test_bad_inputs(tmp_path: Path):
    with pytest.raises(InputError, match="checkpoint not found"):
        ckpt.load_checkpoint(tmp_path / "missing")
    with pytest.raises(InputError, match="no checkpoint in this folder"):
        ckpt.load_checkpoint(tmp_path)
    folder = _save(tmp_path / "run", 1)
    (folder / ckpt.GENERATOR_FILE).write_bytes(b"\x00" * 16)
    with pytest.raises(InputError, match="generator.safetensors: corrupted"):
        ckpt.load_checkpoint(folder)
    (folder / ckpt.OPTIMIZERS_FILE).unlink()
    with pytest.raises(InputError, match="incomplete checkpoint, missing optimizers.safetensors"):
        ckpt.load_checkpoint(folder)


def test_loading_never_unpickles(tmp_path: Path, monkeypatch):
    folder = _save(tmp_path, 1)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load must not be used"))
    import pickle

    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("pickle must not be used"))
    assert ckpt.load_checkpoint(folder).step == 1


# ----------------------------------------------------------------------------------------------
# Exported models (the generator alone; the shipped model is one)


def test_export_round_trip_float32_is_exact_and_float16_is_half_precision(tmp_path: Path):
    generator, *_ = _models_and_optimizers()
    _save(tmp_path / "run", 6)
    exact = ckpt.export_generator(tmp_path / "run", tmp_path / "m32", dtype="float32", provenance={"by": "t"})
    half = ckpt.export_generator(tmp_path / "run", tmp_path / "m16")
    assert sorted(p.name for p in half.iterdir()) == [ckpt.GENERATOR_FILE, ckpt.MODEL_FILE]
    for folder in (exact, half):
        loaded = ckpt.load_checkpoint(folder, weights_only=True)
        assert loaded.step == 6 and loaded.config["name"] == "t" and loaded.data_dir is None
        assert loaded.discriminator == {}
    assert ckpt.load_exported(exact).extra == {"provenance": {"by": "t"}}
    loaded32, loaded16 = ckpt.load_exported(exact), ckpt.load_exported(half)
    for key, value in generator.state_dict().items():
        assert torch.equal(loaded32.generator[key], value)
        # float16 keeps 11 significant bits: relative error <= 2**-11 for normal numbers.
        assert loaded16.generator[key].dtype == torch.float32
        torch.testing.assert_close(loaded16.generator[key], value, rtol=2**-11, atol=2**-24)
    # The float16 file stores 2 bytes per value (half of float32's 4).
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(str(half / ckpt.GENERATOR_FILE)).values()} == {torch.float16}


def test_checkpoint_and_export_files_respect_the_umask(tmp_path: Path):
    """safetensors' save_file creates 0600 files whatever the umask; ours are 0644 under umask 022 (like
    every file a tool writes), so a shared run folder or an installed model is readable by others."""
    import os
    import stat

    previous = os.umask(0o022)
    try:
        folder = _save(tmp_path / "run", 2)
        model = ckpt.export_generator(tmp_path / "run", tmp_path / "model")
    finally:
        os.umask(previous)
    files = [*folder.iterdir(), *model.iterdir()]
    assert len(files) == 6 and {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o644}


def test_exported_model_refuses_resume_corruption_and_overflow(tmp_path: Path):
    _save(tmp_path / "run", 3)
    model = ckpt.export_generator(tmp_path / "run", tmp_path / "model")
    with pytest.raises(InputError, match="training cannot resume from it"):
        ckpt.load_checkpoint(model)
    data = bytearray((model / ckpt.GENERATOR_FILE).read_bytes())
    data[-1] ^= 0xFF
    (model / ckpt.GENERATOR_FILE).write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupted"):
        ckpt.load_checkpoint(model, weights_only=True)
    record = json.loads((model / ckpt.MODEL_FILE).read_text())
    (model / ckpt.MODEL_FILE).write_text(json.dumps({**record, "dtype": "int8"}))
    with pytest.raises(InputError, match="'dtype' must be one of"):
        ckpt.load_checkpoint(model, weights_only=True)
    with pytest.raises(InputError, match="dtype: expected one of"):
        ckpt.export_generator(tmp_path / "run", tmp_path / "m2", dtype="bfloat8")
    # A weight beyond float16's range (65504) cannot be stored in it: refused, naming the tensor.
    big = torch.nn.Linear(2, 1)
    with torch.no_grad():
        big.weight.fill_(1e6)
    opt = torch.optim.Adam(big.parameters())
    ckpt.save_checkpoint(
        tmp_path / "big", 1, generator=big.state_dict(), discriminator=big.state_dict(),
        optimizers={"generator": opt.state_dict(), "discriminator": opt.state_dict()},
        config={"name": "t"}, data_dir=None,
    )  # fmt: skip
    with pytest.raises(InputError, match="'weight' does not fit in float16"):
        ckpt.export_generator(tmp_path / "big", tmp_path / "m3")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not an exported model folder"):
        ckpt.export_generator(tmp_path / "run", tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_shipped_names_resolve_and_unknown_names_list_the_shipped_ones():
    assert ckpt.resolve_shipped("runs/a") == Path("runs/a")
    with pytest.raises(InputError, match="no shipped model of that name"):
        ckpt.resolve_shipped("shipped:nobody")
