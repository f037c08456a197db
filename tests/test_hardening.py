"""Nothing lost, nothing silently wrong, no tracebacks: each rule for every command a user runs.

The commands run in-process through ``deformgan.cli.main`` (what the console script calls): a failure must
be ``SystemExit`` with status 2 (bad input) or 1 (a run that cannot go on) and exactly one ``error:`` line
on stderr; anything else escaping ``main`` (a traceback) fails the test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_train import make_tiny_dataset, tiny_config

from deformgan import cli
from deformgan.checkpoint import list_checkpoints, load_checkpoint
from deformgan.errors import InputError, RunFailed

pytestmark = pytest.mark.usefixtures("one_thread")


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run ``deformgan ARGS`` in-process -> (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["deformgan", *map(str, args)])
    try:
        cli.main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, status: int = 2, fragment: str = "") -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert code == status, err
    assert len(errors) == 1 and "Traceback" not in err, err
    assert fragment in errors[0], errors[0]


def tree(folder: Path) -> dict[str, str]:
    """{relative path: sha256 (files) or 'dir'} of everything under ``folder``."""
    out = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        out[key] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture
def config_file(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(iterations=2, sample_every=0, checkpoint_every=1).to_dict()))
    return path


def _train(monkeypatch, capsys, config_file: Path, dataset: Path, run: Path, *extra: str):
    return run_main(
        monkeypatch, capsys, "train", "--config", config_file, "--data", dataset, "--out", run, *extra
    )


# ----------------------------------------------------------------------------------------------
# Nothing is lost


def test_a_run_folder_is_never_restarted_by_accident(monkeypatch, capsys, tmp_path, dataset, config_file):
    run = tmp_path / "run"
    code, _, err = _train(monkeypatch, capsys, config_file, dataset, run)
    assert code == 0, err
    before = tree(run)
    code, _, err = _train(monkeypatch, capsys, config_file, dataset, run)
    assert_one_line_error(code, err, fragment="already holds a run (newest checkpoint ckpt-00000002)")
    assert tree(run) == before  # no log row, config or checkpoint touched
    # A start that fails later (a dataset without the prefix) touches nothing either, even with --overwrite.
    code, _, err = _train(monkeypatch, capsys, config_file, tmp_path / "nowhere", run, "--overwrite")
    assert_one_line_error(code, err, fragment="dataset folder not found")
    assert tree(run) == before
    # --overwrite starts clean: one fresh history, no checkpoint of the old run left.
    code, _, err = _train(monkeypatch, capsys, config_file, dataset, run, "--overwrite", "train.iterations=1")
    assert code == 0, err
    assert [p.name for p in list_checkpoints(run)] == ["ckpt-00000001"]
    assert [line.split(",")[0] for line in (run / "log.csv").read_text().splitlines()] == ["step", "1"]
    # --overwrite never deletes a folder that is not a run.
    other = tmp_path / "photos"
    other.mkdir()
    (other / "me.jpg").write_bytes(b"precious")
    code, _, err = _train(monkeypatch, capsys, config_file, dataset, other, "--overwrite")
    assert_one_line_error(code, err, fragment="--overwrite deletes only a deformgan run folder")
    assert (other / "me.jpg").read_bytes() == b"precious"
    code, _, err = _train(monkeypatch, capsys, config_file, dataset, other / "me.jpg")
    assert_one_line_error(code, err, fragment="is a file")


def test_resuming_an_older_checkpoint_continues_the_run_in_its_folder(
    monkeypatch, capsys, tmp_path, dataset, config_file
):
    run = tmp_path / "run"
    assert (
        _train(
            monkeypatch, capsys, config_file, dataset, run, "train.iterations=3", "train.keep_checkpoints=5"
        )[0]
        == 0
    )
    code, _, err = run_main(
        monkeypatch, capsys, "train", "--resume", run / "ckpt-00000001", "--iterations", 3
    )
    assert code == 0, err
    assert "newer checkpoints set aside" in err
    assert sorted(p.name for p in (run / "set-aside").iterdir()) == ["ckpt-00000002", "ckpt-00000003"]
    assert (run / "ckpt-00000001" / "state.json").is_file()  # the resumed checkpoint stays
    assert load_checkpoint(run).step == 3 and (run / "latest").read_text().strip() == "ckpt-00000003"
    steps = [line.split(",")[0] for line in (run / "log.csv").read_text().splitlines()]
    assert steps == ["step", "1", "2", "3"]  # the set-aside history's rows were replaced, not duplicated
    # The run folder's own newest checkpoint unreadable: the error names an older one to resume from.
    (run / "ckpt-00000003" / "generator.safetensors").write_bytes(b"\0" * 64)
    code, _, err = run_main(monkeypatch, capsys, "train", "--resume", run)
    assert_one_line_error(code, err, fragment="resume from an older checkpoint instead: --resume")
    assert "ckpt-00000002" in err or "ckpt-00000001" in err


def test_checkpoint_write_error_is_one_line_and_keeps_the_previous(monkeypatch, tmp_path, dataset):
    """A full disk (here: a write that fails with ENOSPC) stops training with RunFailed naming the intact
    previous checkpoint; the temp folder is removed."""
    from deformgan import checkpoint as ckpt
    from deformgan.train import train

    config = tiny_config(iterations=3, sample_every=0, checkpoint_every=1)
    real = ckpt.save_file
    calls = {"n": 0}

    def full_disk(tensors, filename, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 6:  # the first two checkpoints (3 tensor files each) succeed
            raise OSError(28, "No space left on device")
        return real(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save_file", full_disk)
    with pytest.raises(
        RunFailed, match="could not write the checkpoint of step 3 .*No space left.*ckpt-00000002 is intact"
    ):
        train(config, dataset, tmp_path / "run", progress=False, tensorboard=False)
    assert (tmp_path / "run" / "latest").read_text().strip() == "ckpt-00000002"
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]


def test_leftovers_of_killed_writes_are_cleaned_at_the_next_start(
    monkeypatch, capsys, tmp_path, dataset, config_file
):
    run = tmp_path / "run"
    assert _train(monkeypatch, capsys, config_file, dataset, run, "train.iterations=1")[0] == 0
    (run / ".ckpt-00000002.x.tmp").mkdir()  # a kill while writing
    (run / ".ckpt-00000000.deleting").mkdir()  # a kill while pruning
    (run / ".latest.abc.tmp").write_text("ckpt-00000002")
    (run / "ckpt-00000000").mkdir()  # half-deleted by an older version
    code, _, err = run_main(monkeypatch, capsys, "train", "--resume", run, "--iterations", 2)
    assert code == 0, err
    assert "removed leftovers of an interrupted write" in err
    assert sorted(p.name for p in run.iterdir() if p.name.startswith((".", "ckpt-00000000"))) == []


def test_demo_refuses_a_used_folder(monkeypatch, capsys, tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "demo.json").write_text("{}")
    code, _, err = run_main(monkeypatch, capsys, "demo", "--out", out)
    assert_one_line_error(code, err, fragment="not empty (an earlier demo?)")
    (out / "thesis.pdf").write_text("x")
    code, _, err = run_main(monkeypatch, capsys, "demo", "--out", out, "--overwrite")
    assert_one_line_error(code, err, fragment="replaces only a demo folder; this one also holds thesis.pdf")
    assert (out / "thesis.pdf").exists()
    code, _, err = run_main(monkeypatch, capsys, "demo", "--out", out / "thesis.pdf")
    assert_one_line_error(code, err, fragment="is a file")
    code, _, err = run_main(monkeypatch, capsys, "demo", "--out", tmp_path / "new", "--threads", 0)
    assert_one_line_error(code, err, fragment="--threads: expected an integer >= 1")
    for minutes in ("-1", "0", "nan"):
        code, _, err = run_main(monkeypatch, capsys, "demo", "--out", tmp_path / "new", "--minutes", minutes)
        assert_one_line_error(code, err, fragment="--minutes: expected a number of minutes > 0")
    assert not (tmp_path / "new").exists()  # nothing written before the arguments are known to be good


# ----------------------------------------------------------------------------------------------
# Nothing is silently wrong


def test_a_diverging_loss_stops_without_checkpointing_it(monkeypatch, tmp_path, dataset):
    """A NaN in the G loss at iteration 3: the run stops naming the iteration and the term; the last
    checkpoint (step 2) is the one left, and no NaN weights were ever written."""
    from deformgan import objective
    from deformgan.train import train

    real_forward = objective.GeneratorObjective.forward
    calls = {"n": 0}

    def diverging(self, fake_logits, generated, target):
        calls["n"] += 1
        total, terms = real_forward(self, fake_logits, generated, target)
        if calls["n"] >= 3:
            terms["loss/G/rec"] = terms["loss/G/rec"] * float("nan")
            total = terms["loss/G/total"] = total * float("nan")
        return total, terms

    monkeypatch.setattr(objective.GeneratorObjective, "forward", diverging)
    config = tiny_config(iterations=6, sample_every=0, checkpoint_every=2, log_every=2)
    with pytest.raises(
        RunFailed, match=r"loss/G/total became non-finite at iteration 3; .*step 2, is intact"
    ):
        train(config, dataset, tmp_path / "run", progress=False, tensorboard=False)
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["ckpt-00000002"]
    loaded = load_checkpoint(tmp_path / "run")  # loads: its tensors are finite
    assert all(torch.isfinite(v).all() for v in loaded.generator.values())


def test_non_finite_weights_are_refused(tmp_path, dataset):
    """Weights that are NaN (a bad run saved by another tool, or bytes that decode to NaN) are refused
    with one line naming the tensor, even when the file's checksum is consistent."""
    from deformgan import checkpoint as ckpt
    from deformgan.train import train

    run = train(
        tiny_config(iterations=1, sample_every=0),
        dataset,
        tmp_path / "run",
        progress=False,
        tensorboard=False,
    )
    loaded = load_checkpoint(run)
    loaded.generator[next(iter(loaded.generator))].fill_(float("nan"))
    ckpt.save_checkpoint(
        tmp_path / "bad", 1, generator=loaded.generator, discriminator=loaded.discriminator,
        optimizers=loaded.optimizers, config=loaded.config, data_dir=None,
    )  # fmt: skip
    with pytest.raises(InputError, match="holds NaN or infinite values; refusing to use it"):
        load_checkpoint(tmp_path / "bad")


def test_written_files_respect_the_umask(tmp_path):
    from deformgan.atomic import atomic_write_text
    from deformgan.images import write_image

    previous = os.umask(0o022)
    try:
        text = atomic_write_text(tmp_path / "a.txt", "x")
        image = write_image(np.zeros((2, 2, 3), np.uint8), tmp_path / "b.png")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(text.stat().st_mode) == 0o644 and stat.S_IMODE(image.stat().st_mode) == 0o644


def test_check_data_decodes_every_image_of_both_splits(monkeypatch, capsys, tmp_path):
    data = make_tiny_dataset(tmp_path / "data")
    code, out, err = run_main(monkeypatch, capsys, "check-data", data)
    assert code == 0 and out.count("ok:") == 2, err
    victim = sorted((data / "synth-dataset" / "test").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:-40])  # truncated: the header still reads
    code, _, err = run_main(monkeypatch, capsys, "check-data", data)
    assert_one_line_error(code, err, fragment=f"{victim.name}: cannot read image")


def test_help_texts_keep_their_brackets(monkeypatch, capsys):
    code, out, _ = run_main(monkeypatch, capsys, "generate", "--help")
    assert code == 0 and "[source | target | generated]" in out


# ----------------------------------------------------------------------------------------------
# No tracebacks: bad arguments


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["synth", "--out", "{tmp}/s", "--size", "100000x100000"], "at most 2048 pixels"),
        (["synth", "--out", "{tmp}/s", "--size", "12y"], "size: expected HxW"),
        (["evaluate", "--generated", "{tmp}", "--batch-size", "0"], "--batch-size: expected an integer >= 1"),
        (["evaluate", "--generated", "{tmp}", "--device", "bogus"], "--device: device: expected 'auto'"),
        (
            ["evaluate", "--generated", "{tmp}", "--weights", "/nonexistent"],
            "--weights: /nonexistent does not exist",
        ),
        (["generate", "--checkpoint", "{tmp}", "--out", "{tmp}/g", "--batch-size", "0"], "--batch-size"),
        (["train", "--config", "market-ful"], "not found (not a file, not a shipped config)"),
        (
            ["train", "--config", "market-full", "train.lr=.inf"],
            "train.lr: expected a finite number, got inf",
        ),
        (["train", "--config", "market-full", "train.seed=99999999999999999999"], "out of range"),
        (["train", "--resume", "{tmp}", "--overwrite"], "choose one"),
        (
            ["transfer", "--checkpoint", "{tmp}", "--image", "{tmp}/x.jpg", "--out", "{tmp}/o.png"],
            "exactly one target",
        ),
        (["keypoints", "{tmp}/none.jpg", "--out", "{tmp}"], "is a folder, expected a .csv"),
    ],
)
def test_bad_arguments_are_one_line(monkeypatch, capsys, tmp_path, args, fragment):
    code, _, err = run_main(monkeypatch, capsys, *(a.format(tmp=tmp_path) for a in args))
    assert_one_line_error(code, err, fragment=fragment)


# ----------------------------------------------------------------------------------------------
# No tracebacks: hand-edited and foreign files (the cases of benchmarks/reliability_sweep.py, here for CI)


def _edited_state(
    edit: Callable[[dict], object],
    command: tuple[str, ...] = ("generate", "--checkpoint", "run", "--out", "g"),
) -> Callable[[Path], list[str]]:
    """The run's checkpoint with ``edit`` applied to its state.json by hand; ``command`` reads it."""

    def prepare(case: Path) -> list[str]:
        path = case / "run" / "ckpt-00000001" / "state.json"
        state = json.loads(path.read_text())
        edit(state)
        path.write_text(json.dumps(state))
        return list(command)

    return prepare


def _edited_latest(make: Callable[[Path], object]) -> Callable[[Path], list[str]]:
    """The run's ``latest`` replaced by ``make(path)``; ``generate`` reads it."""

    def prepare(case: Path) -> list[str]:
        (case / "run" / "latest").unlink()
        make(case / "run" / "latest")
        return ["generate", "--checkpoint", "run", "--out", "g"]

    return prepare


def _foreign_generator(command: list[str], **generator: object) -> Callable[[Path], list[str]]:
    """The checkpoint's generator weights replaced by those of a generator built with ``generator``
    settings (another network), with the new file's checksum recorded: a consistent file that only the
    shape check can refuse."""

    def prepare(case: Path) -> list[str]:
        from safetensors.torch import save_file

        from deformgan.config import config_from_dict
        from deformgan.models import build_generator

        folder = case / "run" / "ckpt-00000001"
        state = json.loads((folder / "state.json").read_text())
        config = config_from_dict(state["config"])
        other = config.replace(generator=dataclasses.replace(config.generator, **generator))
        weights = {k: v.contiguous() for k, v in build_generator(other).state_dict().items()}
        save_file(weights, str(folder / "generator.safetensors"))
        state["sha256"]["generator.safetensors"] = hashlib.sha256(
            (folder / "generator.safetensors").read_bytes()
        ).hexdigest()
        (folder / "state.json").write_text(json.dumps(state))
        return [a.format(case=case) for a in command]

    return prepare


def _random_lpips_weights(case: Path) -> list[str]:
    """One [source | target | generated] strip to score, with an AlexNet (LPIPS) file of random bytes."""
    from deformgan.images import write_image

    (case / "g").mkdir()
    strip = np.random.default_rng(0).integers(0, 256, (128, 192, 3), dtype=np.uint8)
    write_image(strip, case / "g" / "a.jpg_b.jpg.png")
    (case / "w").mkdir()
    (case / "w" / "alexnet-owt-7be5be79.pth").write_bytes(np.random.default_rng(1).bytes(512))
    return ["evaluate", "--generated", "g", "--triplets", "--weights", "w", "--out", "g.json"]


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


#: case -> (prepare(case folder) -> the command, fragments of the one error line). The case folder holds
#: ``run`` (a trained one-step run, checkpoint ckpt-00000001) and ``data``. Each fragment names the file or
#: argument and what was expected, so the user can fix it by hand: that is the rule each reader enforces.
HAND_EDITED: dict[str, tuple[Callable[[Path], list[str]], str | tuple[str, ...]]] = {
    "state.json: step a string": (
        _edited_state(lambda s: s.update(step="ten")),
        "ckpt-00000001/state.json: 'step' must be an integer >= 0, got 'ten'",
    ),
    "state.json: step null": (
        _edited_state(lambda s: s.update(step=None)),
        "state.json: 'step' must be an integer >= 0, got None",
    ),
    "state.json: step negative": (  # once resumed silently from step -3
        _edited_state(lambda s: s.update(step=-3)),
        "state.json: 'step' must be an integer >= 0, got -3",
    ),
    "state.json: step missing": (  # a missing key reads as None, the same line as null
        _edited_state(lambda s: s.pop("step")),
        "state.json: 'step' must be an integer >= 0, got None",
    ),
    "state.json: no config": (
        _edited_state(lambda s: s.pop("config")),
        "state.json: 'config' must be the run's config (a mapping)",
    ),
    "state.json: no optimizers": (
        _edited_state(lambda s: s.pop("optimizers")),
        "state.json: 'optimizers' must hold the 'generator' and 'discriminator' states",
    ),
    "state.json: lr a string": (
        _edited_state(lambda s: s["optimizers"]["generator"]["param_groups"][0].update(lr="fast")),
        "state.json: optimizers.generator: lr must be a finite number, got 'fast'",
    ),
    "state.json: no betas, then resumed": (  # once accepted, then a KeyError traceback at Adam's first step
        _edited_state(
            lambda s: s["optimizers"]["discriminator"]["param_groups"][0].pop("betas"),
            ("train", "--resume", "run", "--data", "data", "--iterations", "2"),
        ),
        "state.json: optimizers.discriminator: betas must be two numbers, got None",
    ),
    "state.json: no checksums": (  # format 2 always records them; without them nothing would be checked
        _edited_state(lambda s: s.pop("sha256")),
        "state.json: 'sha256' must give the digests of generator.safetensors, discriminator.safetensors",
    ),
    "latest: binary bytes": (
        _edited_latest(lambda p: p.write_bytes(b"\xff\x00\x13")),
        "latest: expected the name of a checkpoint folder",
    ),
    "latest: a folder": (
        _edited_latest(lambda p: p.mkdir()),
        "latest: expected the name of a checkpoint folder",
    ),
    # generate's message was once empty here. Width 0.125 is twice the run's 0.0625: the first appearance
    # convolution (3 image + 18 heatmap channels in) has 8 filters where the run's network has 4.
    "generate: weights of another width": (
        _foreign_generator(["generate", "--checkpoint", "run", "--out", "g"], width=0.125),
        (
            "ckpt-00000001: generator weights do not match its config's network: ",
            "of another shape (e.g. appearance_encoder.levels.0.weight: (8, 21, 3, 3) vs (4, 21, 3, 3)",
        ),
    ),
    "train --resume: Baseline weights in a DSC run": (
        _foreign_generator(
            ["train", "--resume", "run", "--data", "{case}/data", "--iterations", "2"], warp_skip="none"
        ),
        # the Baseline has one encoder ("encoder"), the run's DSC network two (appearance, pose)
        (
            "ckpt-00000001: generator weights do not match its config's network: ",
            "missing (e.g. appearance_encoder.levels.0.weight)",
        ),
    ),
    "random bytes as pretrained weights": (
        _random_lpips_weights,
        "alexnet-owt-7be5be79.pth: not a readable weights file",
    ),
    "empty config file": (
        lambda c: (
            _write(c / "c.yaml", b""),
            ["train", "--config", "c.yaml", "--data", "data", "--out", "out"],
        )[1],
        "c.yaml: empty config (expected sections conditioning, generator",
    ),
    "transfer --out a folder": (
        lambda c: (
            (c / "o").mkdir(),
            ["transfer", "--checkpoint", "run", "--image", "x.jpg", "--pose", "p.csv", "--out", "o"],
        )[1],
        "--out: o is a folder, expected an image or video file name",
    ),
    "generate --out an existing file": (
        lambda c: (_write(c / "f.png", b"x"), ["generate", "--checkpoint", "run", "--out", "f.png"])[1],
        "--out: f.png is a file, expected a folder",
    ),
}


@pytest.mark.parametrize("case_name", list(HAND_EDITED))
def test_hand_edited_and_foreign_files_are_one_line(
    monkeypatch, capsys, tmp_path, dataset, trained_run, case_name
):
    """Exit status 2, one ``error:`` line naming the file or argument and what was expected, no
    traceback, and no file of the case changed (a refused command writes nothing)."""
    import shutil

    prepare, fragments = HAND_EDITED[case_name]
    fragments = (fragments,) if isinstance(fragments, str) else fragments
    shutil.copytree(dataset, tmp_path / "data")
    shutil.copytree(trained_run, tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    command = prepare(tmp_path)
    before = tree(tmp_path)
    code, _, err = run_main(monkeypatch, capsys, *command)
    for fragment in fragments:
        assert_one_line_error(code, err, fragment=fragment)
    assert tree(tmp_path) == before


class _Code:
    """Unpickling this runs ``os.mkdir(path)``: what a malicious weights file would do."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("random bytes", "not a readable weights file"),
        ("random bytes .safetensors", "not a readable weights file"),
        ("empty", "not a readable weights file"),
        ("pickle with code", "not a readable weights file"),
        ("a list of tensors", "expected a state dict of tensors, got list"),
    ],
)
def test_pretrained_weights_that_are_not_a_state_dict_are_one_line(tmp_path, kind, fragment):
    """deformgan.pretrained.load_state_dict: every file that is not a plain state dict is refused in one
    InputError line naming it, and a pickle's code never runs (weights_only loading)."""
    from deformgan.pretrained import load_state_dict

    ran = tmp_path / "code-ran"
    path = tmp_path / ("w.safetensors" if kind.endswith(".safetensors") else "w.pth")
    if kind.startswith("random bytes"):
        path.write_bytes(np.random.default_rng(0).bytes(512))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "pickle with code":
        torch.save({"features.0.weight": torch.zeros(1), "x": _Code(ran)}, path)
    else:
        torch.save([torch.zeros(1)], path)
    with pytest.raises(InputError, match=fragment) as error:
        load_state_dict(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    assert not ran.exists()


# ----------------------------------------------------------------------------------------------
# No tracebacks: every reader, fed random corruptions


def _corruptions(seed: int, data: bytes) -> list[tuple[str, bytes]]:
    """Random damage of the kinds files really suffer: truncation, flipped bytes, random bytes, a Latin-1
    byte, a BOM, an empty file, a huge number."""
    rng = np.random.default_rng(seed)
    flipped = bytearray(data)
    for i in rng.integers(0, len(data), max(1, len(data) // 50)):
        flipped[i] ^= int(rng.integers(1, 256))
    return [
        ("truncated", data[: int(rng.integers(1, max(2, len(data))))]),
        ("flipped", bytes(flipped)),
        ("random", rng.integers(0, 256, 256, dtype=np.uint8).tobytes()),
        ("latin-1", data.replace(b".", b"\xe9.", 1) if b"." in data else b"\xe9" + data),
        ("empty", b""),
        ("bom+digits", b"\xef\xbb\xbf" + data.replace(b"1", b"1" + b"9" * 30, 1)),
    ]


KeyPath = tuple[str, ...]

#: Keys of the structured files that a reader cannot do without ("*": any key at that level); deleting one
#: must be exit 2. Every other key has a documented default: config keys (config.py, "missing keys take
#: defaults", which keeps checkpoints older than a key readable), state.json's data_dir (null) and extra
#: ({}), the Adam flags torch fills in, model.json's provenance.
REQUIRED_KEYS: dict[str, tuple[KeyPath, ...]] = {
    "config yaml": (),
    "state.json": (
        ("format",),
        ("step",),
        ("config",),
        ("sha256",),
        ("sha256", "*"),
        ("optimizers",),
        ("optimizers", "*"),
        ("optimizers", "*", "param_groups"),
        *(("optimizers", "*", "param_groups", "*", key) for key in ("params", "lr", "betas", "eps")),
        ("optimizers", "*", "param_groups", "*", "weight_decay"),
    ),
    "model.json": (("format",), ("step",), ("config",), ("dtype",), ("sha256",), ("sha256", "*")),
}


def _key_paths(node: object, prefix: KeyPath = ()) -> list[KeyPath]:
    """Every mapping key of a parsed YAML/JSON document, as paths (list items are indexed by number)."""
    paths: list[KeyPath] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        path = (*prefix, str(key))
        if isinstance(node, dict):
            paths.append(path)
        paths.extend(_key_paths(value, path))
    return paths


def _is_required(reader: str, path: KeyPath) -> bool:
    return any(
        len(pattern) == len(path) and all(p in ("*", k) for p, k in zip(pattern, path, strict=True))
        for pattern in REQUIRED_KEYS[reader]
    )


def _missing_keys(seed: int, reader: str, data: bytes) -> list[tuple[str, bytes]]:
    """The document with one key deleted: a random required key (if the reader has any), and a random
    key with a default. Written back in the file's own format (JSON or YAML)."""
    import copy

    document = json.loads(data) if reader.endswith(".json") else yaml.safe_load(data)
    rng = np.random.default_rng(seed)
    paths = _key_paths(document)
    required = [p for p in paths if _is_required(reader, p)]
    damaged = []
    for kind, choices in (("missing required key", required), ("missing key with a default", paths)):
        choices = [p for p in choices if p not in required] if kind.endswith("default") else choices
        if not choices:
            continue
        path = choices[int(rng.integers(len(choices)))]
        edited = copy.deepcopy(document)
        parent = edited
        for key in path[:-1]:
            parent = parent[int(key)] if isinstance(parent, list) else parent[key]
        del parent[path[-1]]
        text = json.dumps(edited) if reader.endswith(".json") else yaml.safe_dump(edited)
        damaged.append((kind, text.encode()))
    return damaged


def _still_a_config(damage: bytes) -> bool:
    try:
        return isinstance(yaml.safe_load(damage.decode("utf-8-sig")), dict)
    except (UnicodeDecodeError, yaml.YAMLError):
        return False


#: Damage a reader may accept (exit 0) when the condition on the damaged bytes holds, and why that is not
#: an error; every other corruption of a file the command reads must be exit 2.
HARMLESS: dict[tuple[str, str], tuple[Callable[[bytes, bytes], bool], str]] = {
    ("config yaml", "truncated"): (
        lambda damage, original: _still_a_config(damage),
        "YAML has no end marker: cut where it still parses, it is a shorter config (defaults for the rest)",
    ),
    ("config yaml", "bom+digits"): (
        lambda damage, original: True,
        "a BOM is accepted, and a longer number is still a valid value where the range allows it",
    ),
    ("config yaml", "missing key with a default"): (lambda damage, original: True, "the key's default"),
    ("state.json", "missing key with a default"): (lambda damage, original: True, "the key's default"),
    ("model.json", "missing key with a default"): (lambda damage, original: True, "the key's default"),
    **{
        (csv, "truncated"): (
            lambda damage, original: damage.endswith(b"\n"),
            "cut at the end of a row, it is a shorter file",
        )
        for csv in ("annotation csv", "pairs csv")
    },
    ("latest", "truncated"): (
        lambda damage, original: damage.strip() == original.strip(),
        "only the newline was cut: the same checkpoint name",
    ),
}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, dataset) -> Path:
    from deformgan.train import train

    root = tmp_path_factory.mktemp("run")
    return train(
        tiny_config(iterations=1, sample_every=0), dataset, root / "run", progress=False, tensorboard=False
    )


@pytest.fixture(scope="module")
def exported_model(tmp_path_factory, trained_run) -> Path:
    from deformgan.checkpoint import export_generator

    return export_generator(trained_run, tmp_path_factory.mktemp("export") / "model")


GENERATE = ["generate", "--checkpoint", "run", "--out", "out"]
READERS = {
    # file to corrupt -> the command that reads it (relative names: inside the case's copy)
    "annotation csv": ("data/synth-annotation-test.csv", ["check-data", "data"]),
    "pairs csv": ("data/synth-pairs-test.csv", ["check-data", "data"]),
    "image": ("IMAGE", ["check-data", "data"]),
    "config yaml": (
        "config.yaml",
        ["train", "--config", "config.yaml", "--data", "data", "--out", "out", "train.iterations=1"],
    ),
    "state.json": ("run/ckpt-00000001/state.json", GENERATE),
    "latest": ("run/latest", GENERATE),
    "generator weights": ("run/ckpt-00000001/generator.safetensors", GENERATE),
    "optimizer state": (
        "run/ckpt-00000001/optimizers.safetensors",
        ["train", "--resume", "run", "--iterations", "2"],
    ),
    "model.json": (
        "model/model.json",
        ["generate", "--checkpoint", "model", "--out", "out", "--data", "data"],
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("seed", [0, 1])
def test_corrupted_files_are_one_line_errors_and_touch_nothing_else(
    monkeypatch, capsys, tmp_path, dataset, trained_run, exported_model, config_file, reader, seed
):
    """Every reader, fed random corruptions (bytes, encodings, numbers, and, for YAML/JSON files, a deleted
    key): exit 2, one line, no traceback, nothing outside the command's output folder changed. Exit 0 only
    where :data:`HARMLESS` says why the damaged file is still a valid one."""
    import shutil

    def fill(case: Path) -> Path:
        """The case folder (dataset, run, exported model, config) -> the file to corrupt in it."""
        shutil.copytree(dataset, case / "data")
        shutil.copytree(trained_run, case / "run")
        shutil.copytree(exported_model, case / "model")
        shutil.copy(config_file, case / "config.yaml")
        if target == "IMAGE":
            return sorted((case / "data" / "synth-dataset" / "test").iterdir())[0]
        return case / target

    target, command = READERS[reader]
    original = fill(tmp_path / "original").read_bytes()
    damages = _corruptions(seed, original)
    damages += _missing_keys(seed, reader, original) if reader in REQUIRED_KEYS else []
    for kind, damage in damages:
        case = tmp_path / kind.replace(" ", "-")
        fill(case).write_bytes(damage)
        before = {k: v for k, v in tree(case).items() if not k.startswith("out")}
        monkeypatch.chdir(case)
        code, _, err = run_main(monkeypatch, capsys, *command)
        monkeypatch.chdir(tmp_path)
        after = {k: v for k, v in tree(case).items() if not k.startswith("out")}
        harmless, _ = HARMLESS.get((reader, kind), (lambda damage, original: False, ""))
        if code == 0:
            assert harmless(damage, original), f"{reader}/{kind}: accepted (exit 0): {err[-300:]}"
            continue  # still a valid file (see HARMLESS): the command did its work
        assert code == 2, f"{reader}/{kind}: status {code}: {err}"
        assert_one_line_error(code, err)
        assert after == before, f"{reader}/{kind} changed files outside the output folder"
