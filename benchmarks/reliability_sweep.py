"""The hostile sweep: what a new or careless user does to every command, checked end to end.

Each case prepares files in its own folder, runs ``deformgan ...`` as a subprocess and checks the rule of
its class: bad input -> exit status 2 and exactly one ``error:`` line, no traceback, and nothing outside
the command's output touched; a refused overwrite -> the folder unchanged; interruptions -> a checkpoint
and exit 130. Writes ``benchmarks/results/reliability_sweep.md`` (the README's reliability table).

Usage: ``python benchmarks/reliability_sweep.py [--only SUBSTRING] [--results benchmarks/results]``
(about 5-10 minutes on 2 CPU cores; every case starts a fresh Python process).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_description  # noqa: E402
from test_train import make_tiny_dataset, tiny_config  # noqa: E402

from deformgan.atomic import atomic_write_text  # noqa: E402


@dataclass
class Case:
    group: str
    name: str
    prepare: Callable[[Path], list[str]]  # -> the command's arguments (after "deformgan")
    status: int = 2
    fragment: str = ""  # must appear in the error line
    protected: str = "."  # what must not change (relative to the case folder), "" = nothing to check
    signal_after_s: float | None = None  # send SIGINT this long after the log appears


def run(folder: Path, args: list[str], signal_after_s: float | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "deformgan.cli", *args]
    if signal_after_s is None:
        return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    process = subprocess.Popen(
        command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    while process.poll() is None and not any(folder.rglob("log.csv")):
        time.sleep(0.05)
    time.sleep(signal_after_s)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=900)
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def snapshot(folder: Path, skip: str) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
        if not str(p.relative_to(folder)).startswith(skip)
    }


# ----------------------------------------------------------------------------------------------
# Shared material


def _dataset(case: Path) -> Path:
    shutil.copytree(SHARED["data"], case / "data")
    return case / "data"


def _run(case: Path) -> Path:
    shutil.copytree(SHARED["run"], case / "run")
    return case / "run"


def _config(case: Path, **train) -> Path:
    path = case / "tiny.yaml"
    path.write_text(
        yaml.safe_dump(tiny_config(iterations=2, sample_every=0, checkpoint_every=1, **train).to_dict())
    )
    return path


def _train_args(case: Path, *extra: str) -> list[str]:
    return ["train", "--config", str(_config(case)), "--data", str(_dataset(case)), "--out", "out", *extra]


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


ROW = b"0001_c1s1_000001_01.png: [20, 32, 33, 48, 62, 33, 48, 62, 64, 85, 106, 64, 85, 106, 18, 18, 19, 19]: "
ROW += b"[32, 32, 24, 22, 21, 40, 42, 43, 27, 27, 27, 37, 37, 37, 34, 30, 36, 28]\n"


def _annotations_case(content: bytes) -> Callable[[Path], list[str]]:
    def prepare(case: Path) -> list[str]:
        data = _dataset(case)
        _write(data / "synth-annotation-test.csv", content)
        return ["check-data", "data"]

    return prepare


def _state_case(edit: Callable[[dict], None]) -> Callable[[Path], list[str]]:
    import json

    def prepare(case: Path) -> list[str]:
        _dataset(case)
        run_dir = _run(case)
        state_file = next(run_dir.glob("ckpt-*/state.json"))
        state = json.loads(state_file.read_text())
        edit(state)
        state_file.write_text(json.dumps(state))
        return ["train", "--resume", "run", "--iterations", "3", "--data", "data"]

    return prepare


def _image_case(make: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def prepare(case: Path) -> list[str]:
        data = _dataset(case)
        make(sorted((data / "synth-dataset" / "test").iterdir())[0])
        return ["check-data", "data"]

    return prepare


def _sixteen_bit(path: Path) -> None:
    wide = (np.asarray(Image.open(path).convert("L"), np.uint16) * 257).astype(np.uint16)
    Image.fromarray(wide).save(path, format="PNG")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-50])


def _existing_run(case: Path) -> list[str]:
    args = _train_args(case)
    shutil.copytree(SHARED["run"], case / "out")
    return args


def _generate_other(case: Path) -> list[str]:
    _dataset(case)
    _run(case)
    out = case / "gen"
    out.mkdir()
    atomic_write_text(out / "generated.json", '{"checkpoint": "/elsewhere/ckpt-00000009", "step": 9}\n')
    Image.fromarray(np.zeros((128, 64, 3), np.uint8)).save(out / "a.png")
    return ["generate", "--checkpoint", "run", "--out", "gen", "--data", "data"]


def _evaluate_escape(case: Path) -> list[str]:
    _dataset(case)
    (case / "gen").mkdir()
    _write(case / "secret.png", b"not yours")
    _write(case / "pairs.csv", b"from,to\n../secret.png,x.png\n")
    return ["evaluate", "--generated", "gen", "--data", "data", "--pairs", "pairs.csv"]


CASES: list[Case] = [
    # -- nothing is lost
    Case(
        "nothing lost",
        "train into a folder holding a run, no --resume",
        _existing_run,
        fragment="already holds a run",
        protected="out",
    ),
    Case(
        "nothing lost",
        "train --overwrite into a folder of photos",
        lambda c: (_write(c / "out" / "me.jpg", b"x"), _train_args(c, "--overwrite"))[1],
        fragment="deletes only a deformgan run folder",
    ),
    Case(
        "nothing lost",
        "train --resume and --overwrite together",
        lambda c: ["train", "--resume", str(_run(c)), "--overwrite"],
        fragment="choose one",
    ),
    Case(
        "nothing lost",
        "train --out naming a file",
        lambda c: (
            _write(c / "f", b"x"),
            ["train", "--config", str(_config(c)), "--data", str(_dataset(c)), "--out", "f"],
        )[1],
        fragment="is a file",
    ),
    Case(
        "nothing lost",
        "demo twice into one folder",
        lambda c: (_write(c / "demo" / "demo.json", b"{}"), ["demo", "--out", "demo"])[1],
        fragment="not empty",
    ),
    Case(
        "nothing lost",
        "generate into a folder made by another checkpoint",
        _generate_other,
        fragment="holds images made by",
        protected="gen",
    ),
    Case(
        "nothing lost",
        "Ctrl-C during training",
        lambda c: _train_args(c, "train.iterations=1000"),
        status=130,
        fragment="SIGINT: stopped at iteration",
        protected="",
        signal_after_s=1.0,
    ),
    # -- nothing silently wrong
    Case(
        "nothing silently wrong",
        "train.lr=.inf",
        lambda c: _train_args(c, "train.lr=.inf"),
        fragment="finite number",
    ),
    Case(
        "nothing silently wrong",
        "train.lr=nan in YAML",
        lambda c: [
            "train",
            "--config",
            str(_write(c / "c.yaml", b"train:\n  lr: .nan\n")),
            "--data",
            str(_dataset(c)),
            "--out",
            "out",
        ],
        fragment="finite number",
    ),
    Case(
        "nothing silently wrong",
        "corrupted checkpoint bytes",
        lambda c: (
            _dataset(c),
            _run(c),
            [_write(p, b"\0" * 64) for p in (c / "run").glob("ckpt-*/generator.safetensors")],
            ["generate", "--checkpoint", "run", "--out", "g", "--data", "data"],
        )[3],
        fragment="corrupted",
    ),
    Case(
        "nothing silently wrong",
        "16-bit grey PNG in the dataset (read scaled, not clipped to white)",
        _image_case(_sixteen_bit),
        status=0,
        protected="",
    ),
    Case(
        "nothing silently wrong",
        "truncated PNG in the test split",
        _image_case(_truncate),
        fragment="cannot read image",
    ),
    Case(
        "nothing silently wrong",
        "pairs CSV naming ../secret.png",
        _evaluate_escape,
        fragment="not a plain image file name",
    ),
    Case(
        "nothing silently wrong",
        "empty config file",
        lambda c: [
            "train",
            "--config",
            str(_write(c / "c.yaml", b"")),
            "--data",
            str(_dataset(c)),
            "--out",
            "out",
        ],
        fragment="empty config",
    ),
    # -- no tracebacks: readers
    Case(
        "no tracebacks",
        "non-UTF-8 byte in an annotation CSV",
        _annotations_case(b"name:keypoints_y:keypoints_x\n" + ROW.replace(b"0001", b"0\xe901")),
        fragment="not UTF-8 text",
    ),
    Case(
        "no tracebacks",
        "integer too large for int64",
        _annotations_case(
            b"name:keypoints_y:keypoints_x\n" + ROW.replace(b"[20,", b"[99999999999999999999999,")
        ),
        fragment="beyond",
    ),
    Case("no tracebacks", "CSV with a UTF-8 BOM (accepted)", lambda c: _bom(c), status=0, protected=""),
    Case(
        "no tracebacks",
        "state.json: step is a string",
        _state_case(lambda s: s.update(step="ten")),
        fragment="'step' must be an integer",
    ),
    Case(
        "no tracebacks",
        "state.json: step is null",
        _state_case(lambda s: s.update(step=None)),
        fragment="'step' must be an integer",
    ),
    Case(
        "no tracebacks",
        "state.json: negative step",
        _state_case(lambda s: s.update(step=-3)),
        fragment="'step' must be an integer >= 0",
    ),
    Case(
        "no tracebacks",
        "state.json: no config",
        _state_case(lambda s: s.pop("config")),
        fragment="'config' must be",
    ),
    Case(
        "no tracebacks",
        "state.json: no optimizers",
        _state_case(lambda s: s.pop("optimizers")),
        fragment="'optimizers' must hold",
    ),
    Case(
        "no tracebacks",
        "state.json: lr is a string",
        _state_case(lambda s: s["optimizers"]["generator"]["param_groups"][0].update(lr="fast")),
        fragment="lr must be a finite number",
    ),
    Case(
        "no tracebacks",
        "latest holds binary bytes",
        lambda c: (
            _dataset(c),
            _run(c),
            _write(c / "run" / "latest", b"\xff\x00\x13"),
            ["generate", "--checkpoint", "run", "--out", "g"],
        )[3],
        fragment="expected the name of a checkpoint folder",
    ),
    Case(
        "no tracebacks",
        "latest is a folder",
        lambda c: (
            _dataset(c),
            _run(c),
            (c / "run" / "latest").unlink(),
            (c / "run" / "latest").mkdir(),
            ["generate", "--checkpoint", "run", "--out", "g"],
        )[4],
        fragment="expected the name of a checkpoint folder",
    ),
    Case(
        "no tracebacks",
        "weights of another model",
        lambda c: (
            _dataset(c),
            _run(c),
            _swap_weights(c),
            ["train", "--resume", "run", "--data", "data", "--iterations", "3"],
        )[3],
        fragment="weights do not match",
    ),
    Case(
        "no tracebacks",
        "random bytes as pretrained weights",
        lambda c: _random_weights(c),
        fragment="not a readable weights file",
    ),
    Case(
        "no tracebacks",
        "evaluate --batch-size 0",
        lambda c: ["evaluate", "--generated", str(_mkdir(c / "g")), "--batch-size", "0"],
        fragment="--batch-size",
    ),
    Case(
        "no tracebacks",
        "evaluate --device bogus",
        lambda c: ["evaluate", "--generated", str(_mkdir(c / "g")), "--device", "bogus"],
        fragment="--device",
    ),
    Case(
        "no tracebacks",
        "evaluate --weights /nonexistent",
        lambda c: ["evaluate", "--generated", str(_mkdir(c / "g")), "--weights", "/nonexistent"],
        fragment="does not exist",
    ),
    Case(
        "no tracebacks",
        "synth --size 100000x100000",
        lambda c: ["synth", "--out", "s", "--size", "100000x100000"],
        fragment="at most 2048",
    ),
    Case(
        "no tracebacks",
        "demo --threads 0",
        lambda c: ["demo", "--out", "d", "--threads", "0"],
        fragment="--threads",
    ),
    Case(
        "no tracebacks",
        "transfer --out a folder",
        lambda c: [
            "transfer",
            "--checkpoint",
            str(_run(c)),
            "--image",
            "x.jpg",
            "--pose",
            "p.csv",
            "--out",
            str(_mkdir(c / "o")),
        ],
        fragment="is a folder",
    ),
    Case(
        "no tracebacks",
        "transfer --out x.gif for one pose",
        lambda c: [
            "transfer",
            "--checkpoint",
            str(_run(c)),
            "--image",
            "x.jpg",
            "--pose",
            "p.csv",
            "--out",
            "x.gif",
        ],
        fragment="expected a .png or .jpg",
    ),
    Case(
        "no tracebacks",
        "generate --out naming a file",
        lambda c: (
            _dataset(c),
            _run(c),
            _write(c / "f.png", b"x"),
            ["generate", "--checkpoint", "run", "--out", "f.png"],
        )[3],
        fragment="is a file",
    ),
]


def _bom(case: Path) -> list[str]:
    data = _dataset(case)
    for csv in data.glob("*-annotation-*.csv"):
        csv.write_bytes(b"\xef\xbb\xbf" + csv.read_bytes())
    return ["check-data", "data"]


def _random_weights(case: Path) -> list[str]:
    """One [source | target | generated] strip to score, and an AlexNet (LPIPS) file of random bytes."""
    strip = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    Image.fromarray(strip).save(_mkdir(case / "g") / "a.jpg_b.jpg.png")
    _write(case / "w" / "alexnet-owt-7be5be79.pth", np.random.default_rng(1).bytes(512))
    return ["evaluate", "--generated", "g", "--triplets", "--weights", "w"]


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _swap_weights(case: Path) -> bool:
    """Replace the run's generator weights by a 1/8-width generator's (another architecture), consistently
    checksummed: only the shape check can catch it."""
    import json

    from safetensors.torch import save_file

    from deformgan.config import config_from_dict
    from deformgan.models import build_generator

    folder = next((case / "run").glob("ckpt-*"))
    state = json.loads((folder / "state.json").read_text())
    config = config_from_dict(state["config"])
    wider = config.replace(generator=config.generator.__class__(width=0.125))
    save_file(
        {k: v.contiguous() for k, v in build_generator(wider).state_dict().items()},
        str(folder / "generator.safetensors"),
    )
    digest = hashlib.sha256((folder / "generator.safetensors").read_bytes()).hexdigest()
    state["sha256"]["generator.safetensors"] = digest
    (folder / "state.json").write_text(json.dumps(state))
    return True


SHARED: dict[str, Path] = {}


def _prepare_shared(root: Path) -> None:
    from deformgan.train import train

    SHARED["data"] = make_tiny_dataset(root / "data")
    config = tiny_config(iterations=1, sample_every=0)
    SHARED["run"] = train(config, SHARED["data"], root / "run", progress=False, tensorboard=False)


def check(case: Case, folder: Path) -> tuple[bool, str]:
    args = case.prepare(folder)
    before = snapshot(folder, "\0") if case.protected else {}
    result = run(folder, args, case.signal_after_s)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    problems = []
    if result.returncode != case.status:
        problems.append(f"exit {result.returncode}, expected {case.status}")
    if "Traceback" in result.stderr:
        problems.append("traceback")
    if case.status != 0 and len(errors) != 1:
        problems.append(f"{len(errors)} error lines")
    if case.fragment and not any(case.fragment in e for e in errors):
        problems.append(f"message lacks {case.fragment!r}")
    if case.protected:
        after = snapshot(folder, "\0")
        changed = [k for k in set(before) | set(after) if before.get(k) != after.get(k)]
        changed = [k for k in changed if case.protected == "." or k.startswith(case.protected)]
        if changed:
            problems.append(f"changed {changed[:2]}")
    detail = errors[0][7:] if errors else "(no error line)"
    return not problems, "; ".join(problems) or detail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        _prepare_shared(Path(tmp) / "shared")
        selected = [c for c in CASES if args.only in c.name]
        for i, case in enumerate(selected):
            folder = Path(tmp) / f"case{i:03d}"
            folder.mkdir()
            ok, detail = check(case, folder)
            rows.append((case.group, case.name, "pass" if ok else "FAIL", detail))
            print(f"{'pass' if ok else 'FAIL'}  {case.group}: {case.name}: {detail}", flush=True)
    passed = sum(r[2] == "pass" for r in rows)
    lines = [
        "# Reliability sweep",
        "",
        "Command: `.venv/bin/python benchmarks/reliability_sweep.py`",
        "",
        f"Machine: {machine_description()}. {passed} of {len(rows)} cases pass.",
        "",
        "| class | case | result | what the user sees |",
        "|---|---|---|---|",
        *[f"| {g} | {n} | {r} | {d.replace('|', '/')[:140]} |" for g, n, r, d in rows],
        "",
    ]
    if not args.only:
        atomic_write_text(args.results / "reliability_sweep.md", "\n".join(lines))
    print(f"{passed}/{len(rows)} pass")


if __name__ == "__main__":
    main()
