"""Checkpoints: the whole training state in step-named folders, written atomically.

Layout of a run folder::

    run/
      ckpt-00005000/
        generator.safetensors       # generator state dict
        discriminator.safetensors   # discriminator state dict
        optimizers.safetensors      # Adam tensors (exp_avg, exp_avg_sq, step)
        state.json                  # step, config, data path, param-group hyper-parameters
      ckpt-00010000/ ...
      latest                        # text file: the name of the newest complete checkpoint folder

A checkpoint folder is filled inside a hidden temporary folder in the same parent, every file fsync'ed,
then renamed into place; ``latest`` is rewritten (temp file + os.replace) only after that, and old
checkpoints are pruned last. A crash at any point therefore leaves the previous checkpoint and ``latest``
intact. Loading reads only safetensors and JSON: no pickle, no code execution (unlike the authors'
Keras ``.h5`` files or pickled checkpoints). The step is read from ``state.json``, never from a file name.

An **exported model** is a checkpoint's generator alone, for inference and sharing (the model shipped with
the package is one)::

    synth-people/
      generator.safetensors         # generator state dict, floating tensors stored as float16 or float32
      model.json                    # format, step, config, dtype, SHA-256, provenance (how it was made)

``load_checkpoint(..., weights_only=True)`` reads both kinds, and ``shipped:<name>`` names a model shipped
inside the package (``deformgan/shipped_models/<name>``).

No RNG state is stored: the training loop draws every batch and every dropout mask from seeds derived
from (run seed, iteration, rank), so a resumed run is bit-identical without one. Checkpoints of format 1
(deformgan 0.1) also stored RNG states, which are ignored, and their config is upgraded on load.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from deformgan.atomic import atomic_write_text, default_mode, temporary_dir
from deformgan.config import upgrade_legacy
from deformgan.errors import InputError, RunFailed

CHECKPOINT_PREFIX = "ckpt-"
CHECKPOINT_NAME = re.compile(r"ckpt-\d{8,}")
LATEST_FILE = "latest"
STATE_FILE = "state.json"
GENERATOR_FILE = "generator.safetensors"
DISCRIMINATOR_FILE = "discriminator.safetensors"
OPTIMIZERS_FILE = "optimizers.safetensors"
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
_FILES = (GENERATOR_FILE, DISCRIMINATOR_FILE, OPTIMIZERS_FILE, STATE_FILE)
MODEL_FILE = "model.json"
MODEL_FORMAT = "deformgan-generator-1"
EXPORT_DTYPES = {"float16": torch.float16, "float32": torch.float32}
SHIPPED_PREFIX = "shipped:"
#: The model the demo and the editor use by default (trained on synthetic people, see its model.json).
SHIPPED_MODEL = "shipped:synth-people"
SHIPPED_MODELS_DIR = Path(__file__).resolve().parent / "shipped_models"


@dataclass
class Checkpoint:
    """A loaded checkpoint: state dicts ready for ``load_state_dict`` plus the run's metadata."""

    path: Path
    step: int
    config: dict[str, Any]
    data_dir: str | None
    generator: dict[str, torch.Tensor]
    discriminator: dict[str, torch.Tensor]
    optimizers: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def checkpoint_name(step: int) -> str:
    """Folder name of the checkpoint after ``step`` iterations: ``ckpt-<step:08d>``."""
    return f"{CHECKPOINT_PREFIX}{step:08d}"


# ----------------------------------------------------------------------------------------------
# Optimiser state <-> (tensors, JSON)


def flatten_optimizer_state(name: str, state_dict: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into safetensors-able tensors and a JSON-able rest.

    Tensors become ``"<name>/state/<param index>/<key>"``; non-tensor per-parameter values and the
    param groups (lr, betas, eps, ... and the parameter indices) go to the JSON part.
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, param_state in state_dict["state"].items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}/state/{index}/{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[key] = value
    groups = [dict(group) for group in state_dict["param_groups"]]
    json.dumps(groups)  # fail here (not half-way through writing) if a hyper-parameter is not JSON-able
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer_state(
    name: str, tensors: Mapping[str, torch.Tensor], meta: Mapping
) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state`: a dict for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    prefix = f"{name}/state/"
    for key, value in tensors.items():
        if key.startswith(prefix):
            index, entry = key[len(prefix) :].split("/", 1)
            state.setdefault(int(index), {})[entry] = value
    for index, values in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


# ----------------------------------------------------------------------------------------------
# Writing


def _fsync_file(path: Path) -> None:
    with path.open("rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save_tensors(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    """safetensors file at ``path`` with the umask's permissions (``save_file`` itself creates 0600)."""
    save_file(dict(tensors), str(path))
    os.chmod(path, default_mode())


def _state_dict_tensors(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared storage and non-contiguous tensors: store independent contiguous copies.
    return {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_checkpoint_files(
    folder: Path,
    generator: Mapping[str, torch.Tensor],
    discriminator: Mapping[str, torch.Tensor],
    optimizer_tensors: Mapping[str, torch.Tensor],
    state: Mapping[str, Any],
) -> None:
    """Write the four files of a checkpoint into ``folder`` (fsync'ed); ``state.json`` records the SHA-256 of
    the three tensor files, so that a corrupted byte is caught when loading. Monkeypatched by the tests."""
    _save_tensors(_state_dict_tensors(generator), folder / GENERATOR_FILE)
    _save_tensors(_state_dict_tensors(discriminator), folder / DISCRIMINATOR_FILE)
    _save_tensors(dict(optimizer_tensors), folder / OPTIMIZERS_FILE)
    checksums = {name: _sha256(folder / name) for name in _FILES if name != STATE_FILE}
    (folder / STATE_FILE).write_text(json.dumps({**state, "sha256": checksums}, indent=1))
    for name in _FILES:
        _fsync_file(folder / name)


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    *,
    generator: Mapping[str, torch.Tensor],
    discriminator: Mapping[str, torch.Tensor],
    optimizers: Mapping[str, Mapping[str, Any]],
    config: Mapping[str, Any],
    data_dir: str | os.PathLike | None,
    extra: Mapping[str, Any] | None = None,
    keep: int = 3,
) -> Path:
    """Write ``run_dir/ckpt-<step:08d>/`` atomically, point ``latest`` at it, keep the newest ``keep``.

    generator / discriminator: state dicts. optimizers: ``{name: optimizer.state_dict()}``.
    config: the resolved config dict. extra: more JSON-able state (e.g. the AMP grad-scaler state).
    Returns the checkpoint folder. A write error (a full disk, a file-size limit) raises
    :class:`RunFailed` saying that the previous checkpoint is intact.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    optimizer_tensors: dict[str, torch.Tensor] = {}
    optimizer_meta: dict[str, Any] = {}
    for name, state_dict in optimizers.items():
        tensors, meta = flatten_optimizer_state(name, state_dict)
        optimizer_tensors.update(tensors)
        optimizer_meta[name] = meta
    state = {
        "format": FORMAT_VERSION,
        "step": int(step),
        "config": dict(config),
        "data_dir": None if data_dir is None else str(data_dir),
        "optimizers": optimizer_meta,
        "extra": dict(extra or {}),
    }

    final = run_dir / checkpoint_name(step)
    previous = _read_latest(run_dir)
    tmp = None
    try:
        tmp = temporary_dir(run_dir, final.name)
        _write_checkpoint_files(tmp, generator, discriminator, optimizer_tensors, state)
        _fsync_dir(tmp)
        if final.exists():  # re-saving the same step (e.g. a resumed run ending where it started)
            trash = temporary_dir(run_dir, final.name)
            os.replace(final, trash / final.name)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(run_dir)
        atomic_write_text(run_dir / LATEST_FILE, final.name + "\n", fsync=True)
        _fsync_dir(run_dir)
    except OSError as error:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        kept = (
            f"the previous checkpoint {run_dir / previous} is intact" if previous else "no earlier checkpoint"
        )
        raise RunFailed(
            f"{final}: could not write the checkpoint of step {step} ({error.strerror or error}); {kept}"
        ) from None
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    prune_checkpoints(run_dir, keep)
    return final


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoint folders in ``run_dir`` (all four files present), oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [
        p
        for p in run_dir.glob(f"{CHECKPOINT_PREFIX}*")
        if p.is_dir() and CHECKPOINT_NAME.fullmatch(p.name) and all((p / name).is_file() for name in _FILES)
    ]
    return sorted(found, key=lambda p: p.name)  # zero-padded step: name order is step order


def _remove(folder: Path) -> None:
    """Delete a folder so that a kill half-way never leaves a half-deleted ``ckpt-*`` behind: it is renamed
    to a hidden ``.ckpt-*.deleting`` first (cleaned by the next :func:`clean_run_folder`)."""
    doomed = folder.with_name(f".{folder.name}.deleting")
    try:
        os.replace(folder, doomed)
    except OSError:
        return
    shutil.rmtree(doomed, ignore_errors=True)


def clean_run_folder(run_dir: str | os.PathLike) -> list[str]:
    """Remove what interrupted writes and deletions leave in a run folder: hidden ``.ckpt-*`` temp/trash
    folders, ``.latest.*.tmp`` / other atomic-write temp files, and incomplete ``ckpt-*`` folders that
    ``latest`` does not name. Returns the names removed."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    latest = _read_latest(run_dir)
    removed = []
    for entry in run_dir.iterdir():
        name = entry.name
        if name.startswith(f".{CHECKPOINT_PREFIX}") and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        elif name.startswith(".") and name.endswith(".tmp") and entry.is_file():
            entry.unlink(missing_ok=True)
        elif (
            CHECKPOINT_NAME.fullmatch(name)
            and entry.is_dir()
            and name != latest
            and not all((entry / f).is_file() for f in _FILES)
        ):
            _remove(entry)
        else:
            continue
        removed.append(name)
    return sorted(removed)


def prune_checkpoints(run_dir: str | os.PathLike, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (never the one ``latest`` names) and stale temp dirs."""
    run_dir = Path(run_dir)
    checkpoints = list_checkpoints(run_dir)
    latest = _read_latest(run_dir)
    for old in checkpoints[: max(len(checkpoints) - keep, 0)]:
        if old.name != latest:
            _remove(old)
    clean_run_folder(run_dir)


# ----------------------------------------------------------------------------------------------
# Reading


def _read_latest(run_dir: Path) -> str | None:
    """The checkpoint name ``latest`` holds, or None when there is no usable ``latest`` (absent, a folder,
    not a checkpoint name)."""
    try:
        text = (run_dir / LATEST_FILE).read_bytes().decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if CHECKPOINT_NAME.fullmatch(text) else None


def find_checkpoint(path: str | os.PathLike) -> Path:
    """Resolve ``path`` (a checkpoint folder, or a run folder) to a complete checkpoint folder.

    For a run folder: the one ``latest`` names when complete, else the newest complete one.
    Raises InputError when there is none, or when ``latest`` exists but is not a checkpoint name.
    """
    path = Path(path)
    if path.is_dir() and (path / STATE_FILE).is_file():
        missing = [name for name in _FILES if not (path / name).is_file()]
        if missing:
            raise InputError(f"{path}: incomplete checkpoint, missing {', '.join(missing)}")
        return path
    if not path.is_dir():
        raise InputError(
            f"{path}: checkpoint not found (expected a run folder or a {CHECKPOINT_PREFIX}* folder)"
        )
    complete = list_checkpoints(path)
    latest_file = path / LATEST_FILE
    latest = _read_latest(path)
    if latest is None and (latest_file.exists() or latest_file.is_symlink()):
        newest = f"; the newest complete checkpoint is {complete[-1]}" if complete else ""
        raise InputError(
            f"{latest_file}: expected the name of a checkpoint folder (e.g. ckpt-00005000) in one line"
            f"{newest}"
        )
    if latest is not None and any(p.name == latest for p in complete):
        return path / latest
    if complete:
        return complete[-1]
    raise InputError(
        f"{path}: no checkpoint in this folder (expected {CHECKPOINT_PREFIX}<step>/ with {STATE_FILE})"
    )


def _load_tensors(path: Path, checksum: str | None) -> dict[str, torch.Tensor]:
    if checksum is not None and _sha256(path) != checksum:
        raise InputError(f"{path}: corrupted (its SHA-256 differs from the one recorded in {STATE_FILE})")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError(f"{path}: not a readable safetensors file ({error})") from None
    for key, value in tensors.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise InputError(f"{path}: tensor {key!r} holds NaN or infinite values; refusing to use it")
    return tensors


def _state_error(folder: Path, what: str) -> InputError:
    return InputError(f"{folder / STATE_FILE}: {what}")


def _read_state(folder: Path) -> dict[str, Any]:
    """``state.json`` parsed and checked field by field: a hand-edited file gets one line naming the field."""
    try:
        state = json.loads((folder / STATE_FILE).read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _state_error(folder, f"unreadable checkpoint state ({error})") from None
    if not isinstance(state, dict) or state.get("format") not in READABLE_FORMATS:
        raise _state_error(folder, f"unknown checkpoint format (expected format {FORMAT_VERSION})")
    step = state.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise _state_error(folder, f"'step' must be an integer >= 0, got {step!r}")
    if not isinstance(state.get("config"), dict):
        raise _state_error(folder, "'config' must be the run's config (a mapping)")
    if not isinstance(state.get("data_dir"), (str, type(None))):
        raise _state_error(folder, f"'data_dir' must be a path or null, got {state.get('data_dir')!r}")
    if not isinstance(state.get("extra", {}), dict):
        raise _state_error(folder, "'extra' must be a mapping")
    checksums = state.get("sha256", {})
    if not isinstance(checksums, dict) or not all(isinstance(v, str) for v in checksums.values()):
        raise _state_error(folder, "'sha256' must map file names to hex digests")
    tensor_files = (GENERATOR_FILE, DISCRIMINATOR_FILE, OPTIMIZERS_FILE)
    if state["format"] >= 2 and not all(name in checksums for name in tensor_files):
        # Format 2 always records them (format 1 recorded none): a missing one would skip the check.
        raise _state_error(folder, f"'sha256' must give the digests of {', '.join(tensor_files)}")
    optimizers = state.get("optimizers")
    if not isinstance(optimizers, dict) or set(optimizers) != {"generator", "discriminator"}:
        raise _state_error(folder, "'optimizers' must hold the 'generator' and 'discriminator' states")
    for name, meta in optimizers.items():
        groups = meta.get("param_groups") if isinstance(meta, dict) else None
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            raise _state_error(folder, f"optimizers.{name}.param_groups must be a list of mappings")
        for group in groups:
            # Adam reads these at every step (torch fills in only its flags): none may be missing.
            params = group.get("params")
            if not isinstance(params, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in params
            ):
                raise _state_error(
                    folder,
                    f"optimizers.{name}: params must be a list of parameter indices, got {params!r:.60}",
                )
            for key in ("lr", "eps", "weight_decay"):
                value = group.get(key)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise _state_error(
                        folder, f"optimizers.{name}: {key} must be a finite number, got {value!r}"
                    )
            betas = group.get("betas")
            if not (
                isinstance(betas, list)
                and len(betas) == 2
                and all(isinstance(b, (int, float)) for b in betas)
            ):
                raise _state_error(folder, f"optimizers.{name}: betas must be two numbers, got {betas!r}")
    return state


def load_checkpoint(path: str | os.PathLike, *, weights_only: bool = False) -> Checkpoint:
    """Load a checkpoint (folder, or run folder -> its latest) from safetensors + JSON only.

    weights_only: skip the optimiser file (for generation and transfer); then ``path`` may also be an
    exported model folder or ``shipped:<name>`` (see :func:`load_exported`). Every tensor file is checked
    against the SHA-256 recorded when it was written, and weights holding NaN/inf are refused.
    """
    path = resolve_shipped(path)
    if is_exported_model(path):
        if not weights_only:
            raise InputError(
                f"{path}: an exported generator (no discriminator or optimiser state); training cannot "
                "resume from it. Use it for generate/transfer, or resume from a run folder"
            )
        return load_exported(path)
    folder = find_checkpoint(path)
    state = _read_state(folder)
    checksums = state.get("sha256", {})
    config = state["config"]
    if state["format"] == 1:
        config = upgrade_legacy(config)
    checkpoint = Checkpoint(
        path=folder,
        step=state["step"],
        config=config,
        data_dir=state.get("data_dir"),
        generator=_load_tensors(folder / GENERATOR_FILE, checksums.get(GENERATOR_FILE)),
        discriminator=_load_tensors(folder / DISCRIMINATOR_FILE, checksums.get(DISCRIMINATOR_FILE)),
        extra=state.get("extra", {}),
    )
    if not weights_only:
        tensors = _load_tensors(folder / OPTIMIZERS_FILE, checksums.get(OPTIMIZERS_FILE))
        checkpoint.optimizers = {
            name: unflatten_optimizer_state(name, tensors, meta) for name, meta in state["optimizers"].items()
        }
    return checkpoint


# ----------------------------------------------------------------------------------------------
# Exported models: the generator alone


def shipped_models() -> list[str]:
    """Names of the models shipped inside the package (``shipped:<name>``)."""
    if not SHIPPED_MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_MODELS_DIR.iterdir() if (p / MODEL_FILE).is_file())


def resolve_shipped(path: str | os.PathLike) -> Path:
    """``shipped:<name>`` -> the model's folder in the package; any other path unchanged."""
    text = os.fspath(path)
    if not text.startswith(SHIPPED_PREFIX):
        return Path(path)
    name = text[len(SHIPPED_PREFIX) :]
    if name not in shipped_models():
        available = ", ".join(shipped_models()) or "none"
        raise InputError(f"{text}: no shipped model of that name (shipped models: {available})")
    return SHIPPED_MODELS_DIR / name


def is_exported_model(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an exported model folder (it holds ``model.json``)."""
    return (Path(path) / MODEL_FILE).is_file()


def export_generator(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    dtype: str = "float16",
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write the generator of ``checkpoint`` (folder or run folder) as an exported model folder ``out``.

    dtype: storage of the floating tensors, "float16" (half the size; loading casts back to float32) or
    "float32" (exact). provenance: JSON-able facts on how the model was made (command, data, machine,
    wall time, scores). The folder is written atomically; an existing model folder is replaced.
    """
    if dtype not in EXPORT_DTYPES:
        raise InputError(f"dtype: expected one of {', '.join(EXPORT_DTYPES)}, got {dtype!r}")
    loaded = load_checkpoint(checkpoint, weights_only=True)
    tensors = {}
    for key, value in loaded.generator.items():
        stored = value.to(EXPORT_DTYPES[dtype]) if value.is_floating_point() else value
        if stored.is_floating_point() and not torch.isfinite(stored).all():
            raise InputError(f"{loaded.path}: tensor {key!r} does not fit in {dtype}; export as float32")
        tensors[key] = stored
    out = Path(out)
    if out.exists() and not is_exported_model(out):
        if not out.is_dir() or any(out.iterdir()):
            raise InputError(f"{out}: exists and is not an exported model folder; choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_dir(out.parent, out.name)
    try:
        _save_tensors(_state_dict_tensors(tensors), tmp / GENERATOR_FILE)
        record = {
            "format": MODEL_FORMAT,
            "step": loaded.step,
            "config": loaded.config,
            "dtype": dtype,
            "sha256": {GENERATOR_FILE: _sha256(tmp / GENERATOR_FILE)},
            "provenance": dict(provenance or {}),
        }
        (tmp / MODEL_FILE).write_text(json.dumps(record, indent=1) + "\n")
        for name in (GENERATOR_FILE, MODEL_FILE):
            _fsync_file(tmp / name)
        if out.exists():
            _remove(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_model_record(folder: str | os.PathLike) -> dict[str, Any]:
    """``model.json`` of an exported model, checked field by field."""
    folder = resolve_shipped(folder)
    where = folder / MODEL_FILE
    try:
        record = json.loads(where.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{where}: unreadable model record ({error})") from None
    if not isinstance(record, dict) or record.get("format") != MODEL_FORMAT:
        raise InputError(f"{where}: unknown model format (expected {MODEL_FORMAT!r})")
    step = record.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise InputError(f"{where}: 'step' must be an integer >= 0, got {step!r}")
    if not isinstance(record.get("config"), dict):
        raise InputError(f"{where}: 'config' must be the model's config (a mapping)")
    if record.get("dtype") not in EXPORT_DTYPES:
        raise InputError(f"{where}: 'dtype' must be one of {', '.join(EXPORT_DTYPES)}")
    checksums = record.get("sha256")
    if not isinstance(checksums, dict) or not isinstance(checksums.get(GENERATOR_FILE), str):
        raise InputError(f"{where}: 'sha256' must give the digest of {GENERATOR_FILE}")
    if not isinstance(record.get("provenance", {}), dict):
        raise InputError(f"{where}: 'provenance' must be a mapping")
    return record


def load_exported(folder: str | os.PathLike) -> Checkpoint:
    """An exported model as a :class:`Checkpoint` with the generator only (floating tensors as float32)."""
    folder = resolve_shipped(folder)
    record = read_model_record(folder)
    tensors = _load_tensors(folder / GENERATOR_FILE, record["sha256"][GENERATOR_FILE])
    generator = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    return Checkpoint(
        path=folder,
        step=record["step"],
        config=record["config"],
        data_dir=None,
        generator=generator,
        discriminator={},
        extra={"provenance": record.get("provenance", {})},
    )
