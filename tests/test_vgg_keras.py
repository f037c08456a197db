"""VGG-19 with Keras' weights and the authors' preprocessing; which network a loss uses (auto, mismatches).

The Keras file used here is the fixture ``tests/fixtures/keras/vgg19_notop_block1_block2conv1.h5``: Keras
2.0.8's own ``VGG19(weights=None, include_top=False)`` with seeded random weights, truncated to
``block1_conv1``, ``block1_conv2``, ``block2_conv1`` (enough for conv1_2 and conv2_1), and
``vgg19_io.npz`` holds what Keras computed with it after the authors' ``content_features_model``
preprocessing (fixture README). No real weights file is on this machine: torchvision's file is written by
the test with random weights.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from deformgan.errors import InputError
from deformgan.objective import GeneratorObjective
from deformgan.pretrained import MissingWeightsError
from deformgan.vgg import KERAS_VGG19_WEIGHTS_FILE, VGG19_WEIGHTS_FILE, VGG19Features, resolve_vgg19

pytest.importorskip("h5py", reason="Keras' VGG-19 file is HDF5 (h5py)")
pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "keras"
KERAS_FIXTURE = FIXTURES / "vgg19_notop_block1_block2conv1.h5"


@pytest.fixture(autouse=True)
def no_standard_lookup(monkeypatch, tmp_path):
    """No weights from this machine's $DEFORMGAN_WEIGHTS / torch hub leak into a test."""
    monkeypatch.delenv("DEFORMGAN_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory) -> Path:
    """A torchvision vgg19 state dict with random features (the classifier as expanded zeros: small file)."""
    torch.manual_seed(0)
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"], batch_norm=False)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in torchvision.models.vgg19(weights=None).state_dict().items()}
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state |= {k: torch.zeros(1).expand(shape) for k, shape in shapes.items() if k.startswith("classifier.")}
    path = tmp_path_factory.mktemp("tv") / VGG19_WEIGHTS_FILE
    torch.save(state, path)
    return path


def keras_copy(folder: Path) -> Path:
    """The Keras fixture under the real file's name (as it would sit in $DEFORMGAN_WEIGHTS)."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(KERAS_FIXTURE, folder / KERAS_VGG19_WEIGHTS_FILE))


def unit_image(u8: np.ndarray) -> torch.Tensor:
    """The authors' loader: (I / 255 - 0.5) * 2 in float64, then float32 (as the oracle fed Keras)."""
    return torch.from_numpy(((u8.astype(np.float64) / 255 - 0.5) * 2).astype(np.float32))


def test_keras_weights_with_the_reference_preprocessing_reproduce_keras():
    """conv1_2 and conv2_1 from the Keras file equal Keras' own block1_conv2 / block2_conv1 outputs: 2e-4 of
    the largest activation (~70), float32 round-off of two implementations of the same convolutions (the
    tolerance of tests/test_keras_import.py); a channel-order or mean mix-up is off by > 1e-1 of it."""
    with np.load(FIXTURES / "vgg19_io.npz") as z:
        io = {k: z[k] for k in z.files}
    vgg = VGG19Features(["conv1_2", "conv2_1"], weights=KERAS_FIXTURE, preprocess="keras-reference")
    with torch.no_grad():
        conv1_2, conv2_1 = (t.numpy() for t in vgg(unit_image(io["images"])))
    for ours, keras in ((conv1_2, io["block1_conv2"]), (conv2_1, io["block2_conv1"])):
        assert ours.shape == keras.shape
        assert np.abs(ours - keras).max() < 2e-4 * np.abs(keras).max()
    # Negative control: the same input without the RGB -> BGR flip is far off.
    with torch.no_grad():
        wrong = vgg.features[:4](vgg.normalize(unit_image(io["images"])).flip(1)).numpy()
    assert np.abs(wrong - io["block1_conv2"]).max() > 0.1 * np.abs(io["block1_conv2"]).max()


def test_keras_file_needs_only_the_layers_up_to_the_deepest_requested():
    vgg = VGG19Features(["conv1_2"], weights=KERAS_FIXTURE, preprocess="keras-reference")
    assert len(vgg.features) == 4  # conv1_1, relu, conv1_2, relu
    with pytest.raises(InputError) as error:  # conv3_1 needs block2_conv2 and block3_conv1: not in the file
        VGG19Features(["conv3_1"], weights=KERAS_FIXTURE, preprocess="keras-reference")
    message = str(error.value)
    assert "block2_conv2" in message and "\n" not in message


def test_auto_prefers_keras_and_falls_back_to_torchvision(tmp_path, monkeypatch, torchvision_file):
    both = tmp_path / "both"
    keras_copy(both)
    shutil.copyfile(torchvision_file, both / VGG19_WEIGHTS_FILE)
    # explicit files: their content decides (any name)
    renamed = Path(shutil.copyfile(KERAS_FIXTURE, tmp_path / "mine.weights"))
    assert resolve_vgg19(renamed, "auto") == (renamed, "keras-reference")
    assert resolve_vgg19(torchvision_file, "auto") == (torchvision_file, "torchvision")
    # a folder: Keras' file first
    assert resolve_vgg19(both, "auto") == (both / KERAS_VGG19_WEIGHTS_FILE, "keras-reference")
    assert resolve_vgg19(torchvision_file.parent, "auto") == (torchvision_file, "torchvision")
    # the standard lookup ($DEFORMGAN_WEIGHTS, then the torch hub checkpoints)
    monkeypatch.setenv("DEFORMGAN_WEIGHTS", str(both))
    assert resolve_vgg19(None, "auto")[1] == "keras-reference"
    assert resolve_vgg19(None, "torchvision") == (both / VGG19_WEIGHTS_FILE, "torchvision")
    monkeypatch.setenv("DEFORMGAN_WEIGHTS", str(torchvision_file.parent))
    assert resolve_vgg19(None, "auto") == (torchvision_file, "torchvision")
    hub = tmp_path / "home" / "hub" / "checkpoints"
    keras_copy(hub)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DEFORMGAN_WEIGHTS")
    assert resolve_vgg19(None, "auto") == (hub / KERAS_VGG19_WEIGHTS_FILE, "keras-reference")
    vgg = VGG19Features(["conv1_2"], preprocess="auto")
    assert vgg.preprocess == "keras-reference"


def test_auto_without_either_file_names_both(tmp_path):
    with pytest.raises(MissingWeightsError) as error:
        VGG19Features(["conv1_2"], preprocess="auto")
    message = str(error.value)
    assert KERAS_VGG19_WEIGHTS_FILE in message and VGG19_WEIGHTS_FILE in message and "\n" not in message
    with pytest.raises(MissingWeightsError, match=KERAS_VGG19_WEIGHTS_FILE):
        VGG19Features(["conv1_2"], preprocess="keras-reference")
    with pytest.raises(MissingWeightsError, match=KERAS_VGG19_WEIGHTS_FILE):
        VGG19Features(["conv1_2"], weights=tmp_path, preprocess="keras-reference")


def test_mismatched_weights_and_preprocessing_are_refused(torchvision_file):
    with pytest.raises(InputError) as error:
        VGG19Features(["conv1_2"], weights=KERAS_FIXTURE, preprocess="torchvision")
    message = str(error.value)
    assert "Keras" in message and "'keras-reference'" in message and "\n" not in message
    with pytest.raises(InputError, match="torch state dict.*'torchvision'"):
        VGG19Features(["conv1_2"], weights=torchvision_file, preprocess="keras-reference")
    with pytest.raises(InputError, match="preprocess must be one of"):
        VGG19Features(["conv1_2"], weights=torchvision_file, preprocess="caffe")


def test_what_was_loaded_is_described(torchvision_file):
    keras = VGG19Features(["conv1_2"], weights=KERAS_FIXTURE, preprocess="auto")
    assert keras.source == {
        "weights": str(KERAS_FIXTURE),
        "weights_kind": "keras",
        "preprocess": "keras-reference",
        "layers": ["conv1_2"],
    }
    assert str(KERAS_FIXTURE) in keras.describe() and "keras-reference" in keras.describe()
    tv = VGG19Features(["conv2_1"], weights=torchvision_file)
    assert tv.source["weights_kind"] == "torchvision" and tv.source["preprocess"] == "torchvision"
    assert "torchvision ImageNet weights" in tv.describe() and "\n" not in tv.describe()


def test_objective_selects_and_reports_the_network(torchvision_file):
    pixels = GeneratorObjective()
    assert pixels.feature_source is None and pixels.describe_features() == "pixels (no VGG)"
    full = GeneratorObjective(
        reconstruction="nn",
        reconstruction_weight=0.01,
        features="conv1_2",
        neighborhood=3,
        vgg_weights=str(KERAS_FIXTURE),
        vgg_preprocess="auto",
    )
    assert full.feature_source["preprocess"] == "keras-reference"
    assert full.describe_features() == full.vgg.describe()
    gen = torch.Generator().manual_seed(0)
    generated, target = (torch.rand(1, 3, 16, 8, generator=gen) * 2 - 1 for _ in range(2))
    value = full.reconstruction_loss(generated, target)
    assert torch.isfinite(value) and value > 0
    default = GeneratorObjective(features="conv2_1", reconstruction_weight=0.5, vgg_weights=torchvision_file)
    assert default.feature_source["preprocess"] == "torchvision"  # the constructor's default
    with pytest.raises(InputError, match="vgg_preprocess"):
        GeneratorObjective(vgg_preprocess="keras")
    with pytest.raises(InputError, match="does not match"):
        GeneratorObjective(features="conv1_2", vgg_weights=str(KERAS_FIXTURE), vgg_preprocess="torchvision")


def test_paper_configs_use_auto():
    from deformgan.config import configs_dir, load_config

    for path in sorted(configs_dir().glob("*.yaml")):
        paper = path.stem.split("-")[0] in ("market", "fashion")
        expected = "auto" if paper else "torchvision"
        assert load_config(path).objective.vgg_preprocess == expected, path.stem


# ----------------------------------------------------------------------------------------------
# benchmarks/faithful_modes.py --vgg-calibration: the formula


@pytest.fixture(scope="module")
def faithful_modes():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "faithful_modes.py"
    sys.path.insert(0, str(script.parent))
    spec = importlib.util.spec_from_file_location("faithful_modes_benchmark", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)
        sys.path.remove(str(script.parent))


def test_calibration_ratio_is_the_ratio_of_mean_losses(faithful_modes, torchvision_file):
    """r = mean L_keras / mean L_torchvision over the pairs, lambda_tv = r * lambda_keras, checked against
    the losses computed here directly (random images; the networks are the test files, so the number
    itself means nothing)."""
    from deformgan.losses import l1_loss, nn_loss

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 3, 16, 8, 3), dtype=np.uint8)
    triplets = {"market": (images[0], images[1])}
    rows = faithful_modes.calibration_rows(triplets, KERAS_FIXTURE, torchvision_file)
    assert [(r["loss"].split(":")[0], r["dataset"], r["n"]) for r in rows] == [
        ("Full", "market", 3),
        ("PercLoss", "market", 1),
    ]
    for row, layer, loss in ((rows[0], "conv1_2", "nn"), (rows[1], "conv2_1", "l1")):
        means = []
        for weights, preprocess in ((KERAS_FIXTURE, "keras-reference"), (torchvision_file, "torchvision")):
            vgg = VGG19Features([layer], weights=weights, preprocess=preprocess)
            values = []
            for g8, t8 in zip(*triplets["market"], strict=True):
                g, t = (torch.from_numpy(x).permute(2, 0, 1)[None].float() / 127.5 - 1 for x in (g8, t8))
                with torch.no_grad():
                    fg, ft = vgg(g)[0], vgg(t)[0]
                values.append(float(l1_loss(fg, ft) if loss == "l1" else nn_loss(fg, ft, 3, "mean")))
            means.append(np.mean(values))
        assert row["r_loss"] == pytest.approx(means[0] / means[1], rel=1e-5)
        assert row["lambda_tv_loss"] == pytest.approx(row["lambda_keras"] * means[0] / means[1], rel=1e-5)
        assert row["keras_source"].startswith("VGG-19") and "keras-reference" in row["keras_source"]
