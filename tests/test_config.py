"""Config loading: the shipped configs, strictness (unknown keys, types), overrides, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from deformgan.config import (
    ConditioningConfig,
    Config,
    DiscriminatorConfig,
    GeneratorConfig,
    ObjectiveConfig,
    config_from_dict,
    configs_dir,
    find_config,
    load_config,
    save_config,
    upgrade_legacy,
)
from deformgan.errors import InputError

CONFIGS = sorted(configs_dir().glob("*.yaml"))
PAPER = {
    f"{dataset}-{variant}"
    for dataset in ("market", "fashion")
    for variant in ("baseline", "dsc", "percloss", "full")
}


def test_all_shipped_configs_present():
    names = {p.stem for p in CONFIGS}
    assert PAPER <= names
    assert {"synth-baseline", "synth-dsc", "synth-percloss", "synth-full", "demo"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_loads_and_round_trips(path: Path, tmp_path: Path):
    config = load_config(path)
    assert config.name == path.stem
    saved = save_config(config, tmp_path / "resolved.yaml")
    assert load_config(saved) == config


@pytest.mark.parametrize("dataset", ["market", "fashion"])
def test_paper_settings(dataset: str):
    """The authors' README flag sets of the four paper rows (Baseline, DSC, PercLoss, Full)."""
    configs = {
        v: load_config(configs_dir() / f"{dataset}-{v}.yaml") for v in ("baseline", "dsc", "percloss", "full")
    }
    expected = {
        "baseline": ("none", "l1", "pixel", 100.0, 1),
        "dsc": ("mask", "l1", "pixel", 100.0, 1),
        "percloss": ("mask", "l1", "conv2_1", 0.5, 1),
        "full": ("mask", "nn", "conv1_2", 0.01, 3 if dataset == "market" else 5),
    }
    for variant, config in configs.items():
        objective = config.objective
        got = (
            config.generator.warp_skip,
            objective.reconstruction,
            objective.features,
            objective.reconstruction_weight,
            objective.neighborhood,
        )
        assert got == expected[variant], variant
        assert config.train.iterations == 90_000
        assert config.train.lr == 2e-4 and config.train.betas == (0.5, 0.999)
        assert config.generator.warp_agg == "max" and config.generator.warp_mode == "nearest"
        assert objective.adversarial_weight == 1.0
        batch = 2 if (dataset, variant) == ("fashion", "full") else 4
        assert config.train.batch_size == batch
        assert config.image_size == ((128, 64) if dataset == "market" else (256, 256))


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_configs_use_the_authors_heatmaps_and_warp_gradient(name: str):
    """The eight paper configs are faithful where the authors' code differs from the paper's text: heatmaps
    as their Python 2 code computed them (floor division, ``reference``) and TF 1.x's warp backward
    (``tf``), the computation their published numbers and released checkpoints came from
    (docs/faithfulness.md). Listed by name, so a renamed or missing paper config fails here too."""
    config = load_config(find_config(name))
    assert config.conditioning.heatmaps == "reference"
    assert config.generator.warp_gradient == "tf"


@pytest.mark.parametrize(
    ("section", "constructor"),
    [
        (ConditioningConfig, "deformgan.conditioning.pose_conditioning"),
        (GeneratorConfig, "deformgan.models.Generator"),
        (DiscriminatorConfig, "deformgan.models.Discriminator"),
        (ObjectiveConfig, "deformgan.objective.GeneratorObjective"),
    ],
)
def test_each_section_is_exactly_its_constructors_arguments(section, constructor):
    """YAML section = keyword arguments (image_size comes from the data preset; the poses and the skip type
    are per call): the same names, and the same defaults but where a section's default is the faithful
    one (heatmaps), so a key can neither be forgotten nor mean something else in the code."""
    import dataclasses
    import importlib
    import inspect

    module, name = constructor.rsplit(".", 1)
    parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    per_call = {"image_size", "source_kp", "target_kp", "size"}
    if section is ConditioningConfig:
        per_call.add("warp_skip")  # the generator section's warp_skip decides it
    wanted = {k for k in parameters if k not in per_call}
    assert {f.name for f in dataclasses.fields(section)} == wanted
    faithful = {"heatmaps": "reference"}  # the library function keeps the smooth maps; configs are faithful
    for f in dataclasses.fields(section):
        assert f.default == faithful.get(f.name, parameters[f.name].default), f.name


def test_unknown_key_lists_valid_keys_and_close_match(tmp_path: Path):
    path = tmp_path / "typo.yaml"
    path.write_text("generator:\n  warp_skp: mask\n")
    with pytest.raises(InputError) as error:
        load_config(path)
    message = str(error.value)
    assert "warp_skp" in message and "did you mean 'warp_skip'" in message
    for key in ("warp_agg", "warp_mode", "norm", "width", "dropout"):
        assert key in message
    assert "\n" not in message


def test_unknown_section(tmp_path: Path):
    path = tmp_path / "typo.yaml"
    path.write_text("trian:\n  iterations: 3\n")
    with pytest.raises(
        InputError,
        match="did you mean 'train'.*valid keys: name, conditioning, generator, discriminator, objective, "
        "data",
    ):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("train:\n  iterations: many\n", "train.iterations: expected int, got 'many'"),
        ("train:\n  iterations: 1.5\n", "train.iterations: expected int, got 1.5"),
        (
            "generator:\n  warp_skip: stn\n",
            "generator.warp_skip: expected 'none' | 'mask' | 'global', got 'stn'",
        ),
        ("train:\n  betas: [0.5]\n", "train.betas: expected [float, float], got [0.5]"),
        ("train:\n  channels_last: 1\n", "train.channels_last: expected bool, got 1"),
        ("objective:\n  vgg_weights: 3\n", "objective.vgg_weights: expected str | null, got 3"),
        (
            "objective:\n  reconstruction: l1\n  neighborhood: 3\n",
            "objective.neighborhood: expected 1 unless reconstruction is nn",
        ),
        ("data:\n  preset: market2\n", "data.preset: expected one of market, deepfashion"),
        ("train:\n  lr: .inf\n", "train.lr: expected a finite number, got inf"),
        ("train:\n  lr: .nan\n", "train.lr: expected a finite number, got nan"),
        ("train:\n  seed: 99999999999999999999\n", "train.seed: 99999999999999999999 is out of range"),
        ("train: 5\n", "section 'train': expected a mapping"),
    ],
)
def test_wrong_types_name_key_type_and_value(tmp_path: Path, text: str, fragment: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as error:
        load_config(path)
    assert fragment in str(error.value)
    assert str(path) in str(error.value)


def test_float_accepts_int_and_yaml_exponent_strings(tmp_path: Path):
    # PyYAML (YAML 1.1) reads "2e-4" without a dot as a string: accept it where a float is expected.
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 2e-4\nobjective:\n  reconstruction_weight: 100\n")
    config = load_config(path)
    assert config.train.lr == 2e-4 and config.objective.reconstruction_weight == 100.0


def test_overrides(tmp_path: Path):
    config = load_config(
        configs_dir() / "market-full.yaml",
        [
            "train.iterations=7",
            "generator.width=0.25",
            "objective.vgg_weights=/w/vgg.pth",
            "name=x",
            "train.betas=[0.9, 0.99]",
        ],
    )
    assert config.train.iterations == 7 and config.generator.width == 0.25
    assert config.objective.vgg_weights == "/w/vgg.pth" and config.name == "x"
    assert config.train.betas == (0.9, 0.99)
    with pytest.raises(InputError, match="valid keys"):
        load_config(configs_dir() / "market-full.yaml", ["train.iters=7"])
    with pytest.raises(InputError, match="expected section.key=value"):
        load_config(configs_dir() / "market-full.yaml", ["train.iterations"])


def test_defaults_and_frozen():
    config = config_from_dict({})
    assert config == Config()
    assert config.objective == ObjectiveConfig(
        adversarial_weight=1.0, reconstruction="l1", features="pixel", reconstruction_weight=100.0
    )
    with pytest.raises(AttributeError):
        config.train.iterations = 3  # type: ignore[misc]


def test_missing_file_and_find_config(tmp_path: Path):
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    assert find_config("market-full") == configs_dir() / "market-full.yaml"
    with pytest.raises(InputError, match="shipped configs: .*market-full"):
        find_config("market-ful")


def test_legacy_run_config_is_upgraded():
    """A config saved by deformgan 0.1 (sections model/loss; ``warp_skip: full``) reads as today's."""
    legacy = {
        "name": "old",
        "model": {"image_size": [128, 64], "warp_skip": "full", "width": 0.125, "disc_width": 0.25},
        "loss": {"gan_weight": 2.0, "kind": "nn", "weight": 33.3, "neighborhood": 3},
        "data": {"preset": "market"},
    }
    config = config_from_dict(upgrade_legacy(legacy))
    assert config.generator == GeneratorConfig(warp_skip="global", width=0.125)
    assert config.discriminator == DiscriminatorConfig(width=0.25)
    assert config.objective == ObjectiveConfig(
        adversarial_weight=2.0, reconstruction="nn", reconstruction_weight=33.3, neighborhood=3
    )
    with pytest.raises(InputError, match=r"model.image_size \[256, 256\] differs from the 'market' preset"):
        upgrade_legacy({**legacy, "model": {"image_size": [256, 256]}})
    with pytest.raises(InputError, match="unknown deformgan 0.1 key.*model.colour"):
        upgrade_legacy({**legacy, "model": {"colour": 1}})
