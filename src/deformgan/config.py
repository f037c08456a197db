"""Run configuration: frozen, typed dataclasses loaded strictly from YAML.

A config has six sections; each holds exactly the keyword arguments of what it configures (the
first-order-model style: ``Generator(image_size, **generator)``, ``Discriminator(image_size,
**discriminator)``, with ``image_size`` given by the data preset):

- ``conditioning``: how poses become heatmaps (:func:`deformgan.conditioning.pose_conditioning`);
- ``generator``: :class:`deformgan.models.Generator` (paper Sec. 3-4: skip type, part aggregation, ...);
- ``discriminator``: :class:`deformgan.models.Discriminator`;
- ``objective``: the generator objective ``adversarial_weight * L_adv + reconstruction_weight * L_rec``
  (:mod:`deformgan.objective`);
- ``data``: which dataset layout and image-size preset to read;
- ``train``: optimiser and loop settings, counted in **iterations** (the paper: 90k; never "epochs").

Loading is strict: an unknown key fails with the section's valid keys and the closest match, a wrong type
or a non-finite number fails naming the key, the expected type and the value. ``configs/`` holds the
paper's eight runs (``{market,fashion}-{baseline,dsc,percloss,full}.yaml``) and the CPU-sized synthetic
runs. Run folders written by deformgan 0.1 (sections ``model`` and ``loss``) are read through
:func:`upgrade_legacy`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from deformgan.atomic import atomic_write_text
from deformgan.errors import InputError

#: The file a run folder keeps its resolved config in.
CONFIG_FILE = "config.yaml"


@dataclass(frozen=True)
class GeneratorConfig:
    """``deformgan.models.Generator`` keyword arguments (all but ``image_size``, which the preset gives)."""

    warp_skip: Literal["none", "mask", "global"] = "mask"  # none = paper Baseline, mask = DSC / Full
    warp_agg: Literal["max", "avg"] = "max"  # the paper combines parts by max
    warp_mode: Literal["nearest", "bilinear"] = "nearest"  # the authors' transform samples nearest
    norm: Literal["reference", "instance"] = "reference"
    width: float = 1.0  # channel multiplier; 1.0 = the paper's (64, ..., 512) filters
    dropout: float = 0.5
    # Backward of the warp: exact = its adjoint; tf = TF 1.x's resampling (what trained the released models)
    warp_gradient: Literal["exact", "tf"] = "exact"


@dataclass(frozen=True)
class ConditioningConfig:
    """How poses are shown to the networks: ``deformgan.conditioning.pose_conditioning`` keyword arguments."""

    heatmaps: Literal["reference", "gaussian"] = "reference"  # reference = the authors' Python 2 floor maps
    sigma: float = 6.0  # pixels, at every resolution


@dataclass(frozen=True)
class DiscriminatorConfig:
    """``deformgan.models.Discriminator`` keyword arguments (all but ``image_size``)."""

    norm: Literal["reference", "instance"] = "reference"
    width: float = 1.0


@dataclass(frozen=True)
class ObjectiveConfig:
    """The generator objective ``adversarial_weight * L_adv + reconstruction_weight * L_rec``."""

    adversarial_weight: float = 1.0
    reconstruction: Literal["l1", "nn"] = "l1"  # nn = the nearest-neighbour loss
    reconstruction_weight: float = 100.0  # lambda (the authors' --l1_penalty_weight)
    features: Literal["pixel", "conv1_2", "conv2_1"] = "pixel"  # compared: pixels or VGG-19 features
    neighborhood: int = 1  # n of the n x n NN window (3 Market / 5 DeepFashion in the Full model)
    vgg_weights: str | None = None  # path to VGG-19 weights (file or folder); None = standard lookup
    # which VGG-19: keras-reference = Keras' weights + the authors' caffe input (the lambdas' network),
    # torchvision = torchvision's weights + ImageNet mean/std, auto = Keras' file when found, else torchvision
    vgg_preprocess: Literal["auto", "torchvision", "keras-reference"] = "torchvision"


@dataclass(frozen=True)
class DataConfig:
    """Dataset layout: ``root/<prefix>-dataset/{train,test}`` + CSVs, read with an image-size preset."""

    preset: str = "market"  # key of deformgan.data.PRESETS (image size, crop)
    root: str | None = None  # dataset folder; None = must be passed to train()
    prefix: str | None = None  # e.g. "market", "fasion", "synth"; None = the unique one found in root
    num_workers: int = 0  # DataLoader worker processes


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser (Adam 2e-4, (0.5, 0.999) as the authors' training) and loop settings, in iterations."""

    iterations: int = 90_000
    batch_size: int = 4
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    # Linear decay of lr to 0 over the LAST lr_decay iterations of the run (pix2pix's schedule); 0 = a
    # constant lr, as the authors train (the paper configs)
    lr_decay: int = 0
    seed: int = 0
    log_every: int = 100
    sample_every: int = 1000
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda", "cuda:1", ...
    amp: Literal["off", "bf16", "fp16"] = "off"  # autocast dtype; CUDA only (ignored on CPU)
    channels_last: bool = False  # CUDA only (ignored on CPU)


@dataclass(frozen=True)
class Config:
    """A whole run: the six sections plus a name (used for run folders and logs)."""

    name: str = "run"
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the images the networks see: the data preset's."""
        from deformgan.data.layout import get_preset

        return tuple(get_preset(self.data.preset).image_size)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-able dict (tuples become lists); inverse of :func:`config_from_dict`."""
        return _plain(dataclasses.asdict(self))

    def replace(self, **sections: Any) -> Config:
        """Copy with whole sections or ``name`` replaced (dataclasses.replace)."""
        return dataclasses.replace(self, **sections)


SECTIONS: dict[str, type] = {
    "conditioning": ConditioningConfig,
    "generator": GeneratorConfig,
    "discriminator": DiscriminatorConfig,
    "objective": ObjectiveConfig,
    "data": DataConfig,
    "train": TrainConfig,
}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ----------------------------------------------------------------------------------------------
# Strict conversion of YAML values to the annotated types


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is tuple:
        return f"[{', '.join(_type_name(a) for a in typing.get_args(annotation))}]"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """Return ``value`` as ``annotation`` or raise InputError naming ``where``, the type and the value."""
    origin = typing.get_origin(annotation)

    def fail() -> typing.NoReturn:
        raise InputError(f"config key {where}: expected {_type_name(annotation)}, got {value!r}")

    if origin is Literal:
        if value not in typing.get_args(annotation) or isinstance(value, bool):
            fail()
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None:
            if type(None) in options:
                return None
            fail()
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where)
            except InputError:
                continue
        fail()
    if origin is tuple:
        args = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            fail()
        try:
            return tuple(_convert(v, a, where) for v, a in zip(value, args, strict=True))
        except InputError:
            fail()
    if annotation is bool:
        if not isinstance(value, bool):
            fail()
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail()
        if not -(2**63) <= value < 2**63:
            raise InputError(f"config key {where}: {value} is out of range (a 64-bit integer)")
        return value
    if annotation is float:
        # YAML reads "2e-4" (no dot) as a string; accept it and ints where a float is expected.
        if isinstance(value, bool):
            fail()
        number = None
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                fail()
        if number is None:
            fail()
        if not math.isfinite(number):
            raise InputError(f"config key {where}: expected a finite number, got {value!r}")
        return number
    if annotation is str:
        if not isinstance(value, str):
            fail()
        return value
    raise TypeError(f"unsupported config annotation {annotation!r} for {where}")  # programming error


def _unknown_key_error(key: str, valid: Iterable[str], section: str | None) -> InputError:
    valid = list(valid)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    where = f"section {section!r}" if section else "top level"
    return InputError(f"unknown config key {key!r} in {where}{hint}; valid keys: {', '.join(valid)}")


def _section_from_dict(cls: type, values: Any, section: str) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise InputError(f"config section {section!r}: expected a mapping of keys, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise _unknown_key_error(str(key), names, section)
        kwargs[key] = _convert(value, hints[key], f"{section}.{key}")
    return cls(**kwargs)


def config_from_dict(values: Mapping[str, Any]) -> Config:
    """Build a :class:`Config` from a nested dict (missing keys take defaults); strict on keys and types."""
    if not isinstance(values, Mapping):
        raise InputError(f"config: expected a mapping with sections {', '.join(SECTIONS)}, got {values!r}")
    valid = ["name", *SECTIONS]
    for key in values:
        if key not in valid:
            raise _unknown_key_error(str(key), valid, None)
    name = _convert(values.get("name", "run"), str, "name")
    sections = {key: _section_from_dict(cls, values.get(key), key) for key, cls in SECTIONS.items()}
    config = Config(name=name, **sections)
    validate(config)
    return config


def validate(config: Config) -> None:
    """Check value ranges that types cannot express; raise InputError with the key and the constraint."""
    from deformgan.data.layout import PRESETS

    objective = config.objective
    checks = [
        (config.conditioning.sigma > 0, "conditioning.sigma", "> 0"),
        (config.generator.width > 0, "generator.width", "> 0"),
        (0 <= config.generator.dropout < 1, "generator.dropout", "in [0, 1)"),
        (config.discriminator.width > 0, "discriminator.width", "> 0"),
        (objective.adversarial_weight >= 0, "objective.adversarial_weight", ">= 0"),
        (objective.reconstruction_weight >= 0, "objective.reconstruction_weight", ">= 0"),
        (
            objective.neighborhood >= 1 and objective.neighborhood % 2 == 1,
            "objective.neighborhood",
            "odd >= 1",
        ),
        (
            objective.reconstruction == "nn" or objective.neighborhood == 1,
            "objective.neighborhood",
            "1 unless reconstruction is nn",
        ),
        (config.data.preset in PRESETS, "data.preset", f"one of {', '.join(PRESETS)}"),
        (config.data.num_workers >= 0, "data.num_workers", ">= 0"),
        (config.train.iterations >= 0, "train.iterations", ">= 0"),
        (config.train.batch_size >= 1, "train.batch_size", ">= 1"),
        (config.train.lr > 0, "train.lr", "> 0"),
        (config.train.lr_decay >= 0, "train.lr_decay", ">= 0 (0 = constant)"),
        (all(0 <= b < 1 for b in config.train.betas), "train.betas", "two values in [0, 1)"),
        (config.train.log_every >= 1, "train.log_every", ">= 1"),
        (config.train.sample_every >= 0, "train.sample_every", ">= 0 (0 = never)"),
        (config.train.checkpoint_every >= 0, "train.checkpoint_every", ">= 0 (0 = only at the end)"),
        (config.train.keep_checkpoints >= 1, "train.keep_checkpoints", ">= 1"),
    ]
    for ok, key, constraint in checks:
        if not ok:
            section, name = key.split(".")
            value = getattr(getattr(config, section), name)
            raise InputError(f"config key {key}: expected {constraint}, got {value!r}")


#: deformgan 0.1 run folders: (old section, old key) -> (new section, new key).
_LEGACY_KEYS = {
    ("model", "warp_skip"): ("generator", "warp_skip"),
    ("model", "warp_agg"): ("generator", "warp_agg"),
    ("model", "warp_mode"): ("generator", "warp_mode"),
    ("model", "norm"): ("generator", "norm"),
    ("model", "width"): ("generator", "width"),
    ("model", "dropout"): ("generator", "dropout"),
    ("model", "disc_norm"): ("discriminator", "norm"),
    ("model", "disc_width"): ("discriminator", "width"),
    ("loss", "gan_weight"): ("objective", "adversarial_weight"),
    ("loss", "kind"): ("objective", "reconstruction"),
    ("loss", "weight"): ("objective", "reconstruction_weight"),
    ("loss", "features"): ("objective", "features"),
    ("loss", "neighborhood"): ("objective", "neighborhood"),
    ("loss", "vgg_weights"): ("objective", "vgg_weights"),
}


def upgrade_legacy(values: Mapping[str, Any]) -> dict[str, Any]:
    """A config dict saved by deformgan 0.1 (sections ``model``, ``loss``) in today's layout.

    ``model.image_size`` is dropped (the data preset gives it; a disagreement is an error), and
    ``warp_skip: full`` (one global affine) is now called ``global``.
    """
    old = {section: dict(values.get(section) or {}) for section in ("model", "loss")}
    upgraded: dict[str, Any] = {k: v for k, v in values.items() if k not in old}
    for (old_section, old_key), (section, key) in _LEGACY_KEYS.items():
        if old_key in old[old_section]:
            upgraded.setdefault(section, {})[key] = old[old_section].pop(old_key)
    upgraded.setdefault("conditioning", {"heatmaps": "gaussian"})  # 0.1 computed smooth heatmaps only
    generator = upgraded.get("generator", {})
    if generator.get("warp_skip") == "full":
        generator["warp_skip"] = "global"
    image_size = old["model"].pop("image_size", None)
    leftover = [f"{s}.{k}" for s, keys in old.items() for k in keys]
    if leftover:
        raise InputError(f"config: unknown deformgan 0.1 key(s) {', '.join(leftover)}")
    config = config_from_dict(upgraded)
    if image_size is not None and tuple(image_size) != config.image_size:
        raise InputError(
            f"config: model.image_size {list(image_size)} differs from the {config.data.preset!r} preset's "
            f"{list(config.image_size)}"
        )
    return upgraded


def apply_overrides(values: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (value parsed by ``yaml.safe_load``) to a nested dict."""
    values = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in values.items()}
    for override in overrides:
        path, sep, text = override.partition("=")
        if not sep or not path.strip():
            raise InputError(f"override {override!r}: expected section.key=value (e.g. train.iterations=100)")
        keys = path.strip().split(".")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise InputError(f"override {override!r}: the value is not valid YAML") from None
        if len(keys) == 1 and keys[0] == "name":
            values["name"] = value
            continue
        if len(keys) != 2:
            raise InputError(
                f"override {override!r}: expected section.key=value with section in {list(SECTIONS)}"
            )
        section, key = keys
        if section not in SECTIONS:
            raise _unknown_key_error(section, ["name", *SECTIONS], None)
        current = values.get(section)
        values[section] = {**(current or {}), key: value}
    return values


def load_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> Config:
    """Load a YAML config strictly, apply ``section.key=value`` overrides, validate ranges.

    Raises InputError for a missing file, invalid YAML, an unknown key (listing the valid keys and the
    closest match) or a wrong type (naming the key, the expected type and the value).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: config file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise InputError(f"{path}: line {line}: not UTF-8 text (byte {raw[error.start]:#04x})") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        line = getattr(getattr(error, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise InputError(f"{path}: not valid YAML{where}") from None
    except (RecursionError, ValueError) as error:  # nesting too deep, or a number YAML cannot hold
        raise InputError(f"{path}: not a readable config ({type(error).__name__})") from None
    if values is None:
        raise InputError(f"{path}: empty config (expected sections {', '.join(SECTIONS)})")
    if not isinstance(values, Mapping):
        raise InputError(f"{path}: expected a mapping with sections {', '.join(SECTIONS)}")
    try:
        return config_from_dict(apply_overrides(dict(values), overrides))
    except InputError as error:
        raise InputError(f"{path}: {error}") from None


class _ConfigDumper(yaml.SafeDumper):
    """Block style for sections, flow style for short lists (``betas: [0.5, 0.999]``)."""


_ConfigDumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


def config_to_yaml(config: Config) -> str:
    """The resolved config as YAML text (every key explicit, sections in order)."""
    return yaml.dump(config.to_dict(), Dumper=_ConfigDumper, sort_keys=False)


def save_config(config: Config, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML, atomically."""
    return atomic_write_text(Path(path), config_to_yaml(config))


def configs_dir() -> Path:
    """The configs shipped inside the package (``deformgan/configs``; ``configs/`` in the repository links
    there), so that a wheel install finds them as an editable one does."""
    return Path(__file__).resolve().parent / "configs"


def find_config(name_or_path: str | os.PathLike) -> Path:
    """A config path: an existing file, or the name of a shipped config (``market-full`` -> configs/...)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = configs_dir() / f"{path.name.removesuffix('.yaml')}.yaml"
    if shipped.is_file():
        return shipped
    available = sorted(p.stem for p in configs_dir().glob("*.yaml")) if configs_dir().is_dir() else []
    hint = f"; shipped configs: {', '.join(available)}" if available else ""
    raise InputError(f"config {str(name_or_path)!r} not found (not a file, not a shipped config){hint}")
