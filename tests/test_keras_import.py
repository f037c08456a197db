"""deformgan.keras_import against Keras 2.0.8 / TensorFlow 1.5 itself.

The fixtures in tests/fixtures/keras/ were written by ``make_fixtures.py`` there (its README gives the
commands): a Keras re-creation of the authors' generator and discriminator (``conditional_gan.py``,
``pose_transform.AffineTransformLayer``) at reduced width with seeded random weights, saved by Keras, plus
inputs and the outputs Keras computed. A converted deformgan network must reproduce those outputs: the
tolerance 2e-4 is float32 round-off between two implementations of the same network (measured: ~1e-6 at
128x64, ~2e-5 at 256x256), far below what any mapping error gives (the negative controls: > 1e-2).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from deformgan.conditioning import PoseConditioning
from deformgan.errors import InputError

h5py = pytest.importorskip("h5py", reason="deformgan.keras_import reads Keras .h5 files with h5py")

from deformgan.keras_import import (  # noqa: E402
    VGG19_KERAS_LAYERS,
    check_architecture,
    convert_keras_model,
    convert_keras_vgg19,
    describe,
    inspect_keras_file,
)

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "keras"
MARKET_DSC = FIXTURES / "generator_dsc_market_w32.h5"  # model.save layout, with model_config
MARKET_BASELINE = FIXTURES / "generator_baseline_market_w32_weights.h5"  # save_weights layout
FASHION_DSC = FIXTURES / "generator_dsc_fashion_w64_weights.h5"  # save_weights, 256x256, 7 levels
DISCRIMINATOR = FIXTURES / "discriminator_market_w16.h5"
VGG19 = FIXTURES / "vgg19_notop_block1_block2conv1.h5"
TOL = 2e-4
NO_POINT = 1000.0


def load_io(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / name) as z:
        return {k: z[k] for k in z.files}


def unit_image(u8: np.ndarray) -> torch.Tensor:
    """The authors' loader, as the oracle fed Keras: (I / 255 - 0.5) * 2 in float64, then float32."""
    return torch.from_numpy(((u8.astype(np.float64) / 255 - 0.5) * 2).astype(np.float32))


def heatmaps(k: np.ndarray) -> torch.Tensor:
    """Reference heatmaps exp(-k) from the stored exponents (255 = missing joint -> 0)."""
    return torch.from_numpy(np.where(k == 255, 0.0, np.exp(-k.astype(np.int64))).astype(np.float32))


def part_geometry(
    io: dict[str, np.ndarray], deformgan_invalid: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(theta (B,10,2,3), valid (B,10), masks (B,10,H,W)) for deformgan from the authors' affines8/masks.

    The authors mark a part without an affine with the "no-point" transform (identity + 1000 px): fed as
    is (valid=True) it reads only outside the map. ``deformgan_invalid`` instead uses deformgan's own
    convention (identity theta, valid=False); both must give Keras' output.
    """
    affines = io["affines8"]
    batch = affines.shape[0]
    theta = affines[..., :6].reshape(batch, -1, 2, 3).astype(np.float32)
    valid = np.ones(theta.shape[:2], dtype=bool)
    if deformgan_invalid:
        no_point = (affines[..., 2] == NO_POINT) & (affines[..., 5] == NO_POINT)
        assert no_point.any(), "the fixture should hold parts without an affine"
        theta[no_point] = np.eye(2, 3, dtype=np.float32)
        valid = ~no_point
    masks = torch.from_numpy(io["masks"].astype(np.float32))
    return torch.from_numpy(theta), torch.from_numpy(valid), masks


def conditioning(io: dict[str, np.ndarray], deformgan_invalid: bool = False) -> PoseConditioning:
    """The generator's conditioning from a fixture's heatmap exponents, affines and masks."""
    theta, valid, masks = part_geometry(io, deformgan_invalid)
    return PoseConditioning(
        source_heatmaps=heatmaps(io["source_heatmap_k"]),
        target_heatmaps=heatmaps(io["target_heatmap_k"]),
        theta=theta,
        valid=valid,
        masks=masks,
    )


def run_generator(path: Path, io: dict[str, np.ndarray], state=None, **cond_kwargs) -> np.ndarray:
    converted, arch = convert_keras_model(path)
    model = arch.build()
    model.load_state_dict(converted if state is None else state, strict=True)
    model.eval()
    with torch.no_grad():
        return model(unit_image(io["source_image"]), conditioning(io, **cond_kwargs)).numpy()


def max_diff(ours: np.ndarray, keras: np.ndarray) -> float:
    assert ours.shape == keras.shape
    return float(np.abs(ours - keras).max())


def to_root_layout(src: Path, dst: Path, keep_config: bool = False) -> Path:
    """What Keras' save_weights writes for the same model: the model_weights group's layers and attributes
    at the file root (and no model_config)."""
    with h5py.File(src, "r") as s, h5py.File(dst, "w") as d:
        group = s["model_weights"]
        for name in group:
            s.copy(group[name], d, name=name)
        for key, value in group.attrs.items():
            d.attrs[key] = value
        if keep_config:
            d.attrs["model_config"] = s.attrs["model_config"]
    return dst


def copy_of(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copyfile(src, dst)
    return dst


# ---------------------------------------------------------------------------------------------------
# Equivalence with Keras


def test_dsc_generator_matches_keras():
    """Market DSC (model.save file): real pair with 4 no-point parts + the nearest-tie case."""
    io = load_io("market_io.npz")
    ours = run_generator(MARKET_DSC, io)
    assert max_diff(ours, io["generator_dsc"]) < TOL
    # deformgan's own convention for parts without an affine gives the same output.
    assert max_diff(run_generator(MARKET_DSC, io, deformgan_invalid=True), io["generator_dsc"]) < TOL


def test_dsc_from_keypoints_with_deformgan_geometry():
    """The real pair end to end: deformgan's own part affines and masks from the keypoints (instead of the
    authors' stored ones) give Keras' output too. Heatmaps stay the fixture's (see the module docstring
    of deformgan.keras_import: the authors' maps are exp(floor(-d^2/72)))."""
    from deformgan import parts

    io = {k: v[:1] for k, v in load_io("market_io.npz").items()}  # sample 0 = the real pair
    source = torch.from_numpy(io["source_yx"][..., ::-1].astype(np.float64).copy())  # (row, col) -> (x, y)
    target = torch.from_numpy(io["target_yx"][..., ::-1].astype(np.float64).copy())
    theta, valid = parts.part_affines(source, target)
    cond = PoseConditioning(
        source_heatmaps=heatmaps(io["source_heatmap_k"]),
        target_heatmaps=heatmaps(io["target_heatmap_k"]),
        theta=theta.to(torch.float32),
        valid=valid.to(torch.bool),
        masks=parts.part_masks(target, (128, 64)).to(torch.float32),
    )
    state, arch = convert_keras_model(MARKET_DSC)
    model = arch.build()
    model.load_state_dict(state, strict=True)
    model.eval()
    with torch.no_grad():
        ours = model(unit_image(io["source_image"]), cond).numpy()
    assert max_diff(ours, io["generator_dsc"][:1]) < TOL


def test_dsc_architecture_is_inferred_from_the_file():
    arch = inspect_keras_file(MARKET_DSC)
    assert (arch.kind, arch.warp_skip, arch.warp_agg, arch.levels) == ("generator", "mask", "max", 6)
    assert arch.width == 1 / 32 and arch.filters == (2, 4, 8, 16, 16, 16)
    assert arch.image_size == (128, 64) and arch.layout == "model_weights" and arch.warp_skip_from_config
    assert (arch.keras_version, arch.backend) == ("2.0.8", "tensorflow")
    text = describe(arch)
    assert "DSC" in text and "128x64 (from model_config)" in text and "width 0.03125" in text


def test_root_layout_converts_identically(tmp_path):
    """The same weights at the file root (save_weights layout, no model_config) give the same state dict:
    with the graph check (config kept) and without it (creation order only)."""
    reference, _ = convert_keras_model(MARKET_DSC)
    for keep in (False, True):
        root = to_root_layout(MARKET_DSC, tmp_path / f"root-{keep}.h5", keep_config=keep)
        state, arch = convert_keras_model(root, image_size=(128, 64))
        assert arch.layout == "root" and (arch.image_size is not None) == keep
        assert state.keys() == reference.keys()
        assert all(torch.equal(state[k], reference[k]) for k in state)
    assert "assumed" in describe(arch) or keep


def test_baseline_generator_matches_keras():
    io = load_io("market_io.npz")
    keras = io["generator_baseline"]
    arch = inspect_keras_file(MARKET_BASELINE)
    assert (arch.warp_skip, arch.levels, arch.layout, arch.image_size) == ("none", 6, "root", None)
    assert arch.implied_image_size == (128, 64)
    ours = run_generator(MARKET_BASELINE, {k: v[: len(keras)] for k, v in io.items()})
    assert max_diff(ours, keras) < TOL


def test_fashion_seven_level_generator_matches_keras():
    """256x256 DSC with 7 encoder levels, save_weights layout; Keras' output stored at every 4th pixel."""
    io = load_io("fashion_io.npz")
    arch = inspect_keras_file(FASHION_DSC)
    assert (arch.levels, arch.width, arch.implied_image_size) == (7, 1 / 64, (256, 256))
    ours = run_generator(FASHION_DSC, io)[:, :, ::4, ::4]
    assert max_diff(ours, io["generator_dsc_sub4"]) < TOL


def test_discriminator_matches_keras():
    """Built after a generator in the same Keras session (as the authors' train.py): its layer numbering
    does not start at 1, only the order counts."""
    io = load_io("market_io.npz")
    with h5py.File(DISCRIMINATOR, "r") as f:
        convs = [n for n in f["model_weights"].attrs["layer_names"] if n.startswith(b"conv2d_")]
    assert min(int(n.rsplit(b"_", 1)[1]) for n in convs) > 1
    state, arch = convert_keras_model(DISCRIMINATOR, kind="discriminator", image_size=(128, 64))
    assert (arch.kind, arch.width, arch.filters, arch.image_size) == (
        "discriminator",
        1 / 16,
        (4, 8, 16, 32),
        (128, 64),
    )
    model = arch.build()
    model.load_state_dict(state, strict=True)
    model.eval()
    cond = conditioning(io)
    with torch.no_grad():
        logits = model(
            unit_image(io["source_image"]),
            cond.source_heatmaps,
            unit_image(io["target_image"]),
            cond.target_heatmaps,
        )
    assert max_diff(logits.numpy(), io["discriminator_logits"]) < TOL
    assert max_diff(torch.sigmoid(logits).flatten(1).numpy(), io["discriminator_prob"]) < TOL


def test_negative_controls_are_caught():
    """Mapping errors the comparison must catch: the appearance and pose encoders' level 2 swapped (same
    shapes: what ordering by layer_names would do), and a spatially flipped transposed-conv kernel."""
    io = load_io("market_io.npz")
    keras = io["generator_dsc"]
    state, _ = convert_keras_model(MARKET_DSC)

    swapped = dict(state)
    a, p = "appearance_encoder.levels.2", "pose_encoder.levels.2"
    for key in [k for k in state if k.startswith(a + ".")]:
        other = p + key[len(a) :]
        swapped[key], swapped[other] = state[other], state[key]
    assert max_diff(run_generator(MARKET_DSC, io, state=swapped), keras) > 1e-2

    flipped = dict(state)
    key = next(k for k, v in state.items() if k.startswith("decoder.stages.1.") and v.dim() == 4)
    flipped[key] = state[key].flip(2, 3)
    assert max_diff(run_generator(MARKET_DSC, io, state=flipped), keras) > 1e-2


# ---------------------------------------------------------------------------------------------------
# File format variants


def test_chunked_and_str_attributes(tmp_path):
    """Keras >= 2.2 splits long layer_names into layer_names0, layer_names1, ...; h5py writers may store
    attributes as str instead of bytes. Both convert to the same state dict."""
    reference, _ = convert_keras_model(MARKET_DSC)
    path = copy_of(MARKET_DSC, tmp_path)
    with h5py.File(path, "r+") as f:
        group = f["model_weights"]
        names = [n.decode() for n in group.attrs["layer_names"]]
        del group.attrs["layer_names"]
        half = len(names) // 2
        group.attrs["layer_names0"] = names[:half]  # variable-length str
        group.attrs["layer_names1"] = names[half:]
        f.attrs["backend"] = "tensorflow"
        config = f.attrs["model_config"]  # h5py 3 reads Keras 2.0.8's string as str: store it as bytes
        f.attrs["model_config"] = np.bytes_(config.encode() if isinstance(config, str) else config)
    state, arch = convert_keras_model(path)
    assert arch.image_size == (128, 64)
    assert all(torch.equal(state[k], reference[k]) for k in reference)


def test_graph_check_rejects_a_wrong_creation_order(tmp_path):
    """A file whose numbering does not follow the authors' creation order (here conv2d_3 and conv2d_9, the
    two encoders' level 2, renamed into each other everywhere: weights, layer_names and model_config) is
    refused when the model_config graph shows the mismatch, instead of being silently mis-mapped."""
    path = copy_of(MARKET_DSC, tmp_path)
    with h5py.File(path, "r+") as f:
        group = f["model_weights"]
        names = [n.decode() for n in group.attrs["layer_names"]]
        swap = {"conv2d_3": "conv2d_9", "conv2d_9": "conv2d_3"}
        group.move("conv2d_3", "tmp")
        group.move("conv2d_9", "conv2d_3")
        group.move("tmp", "conv2d_9")
        group.attrs["layer_names"] = [swap.get(n, n).encode() for n in names]
        config = f.attrs["model_config"]
        config = config.decode() if isinstance(config, bytes) else config
        config = (
            config.replace('"conv2d_3"', '"@"')
            .replace('"conv2d_9"', '"conv2d_3"')
            .replace('"@"', '"conv2d_9"')
        )
        f.attrs["model_config"] = config.encode()
    with pytest.raises(InputError, match="model_config graph") as err:
        convert_keras_model(path)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------------
# Bad files and expectations: one-line InputErrors naming both sides


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_not_hdf5_and_missing_file(tmp_path):
    text = tmp_path / "weights.h5"
    text.write_text("not a weights file\n")
    with pytest.raises(InputError) as err:
        convert_keras_model(text)
    assert "not an HDF5 file" in one_line(err) and "weights.h5" in one_line(err)
    with pytest.raises(InputError) as err:
        inspect_keras_file(tmp_path / "absent.h5")
    assert "no such file" in one_line(err)


def test_wrong_backend(tmp_path):
    path = copy_of(MARKET_DSC, tmp_path)
    with h5py.File(path, "r+") as f:
        f.attrs["backend"] = b"theano"
    with pytest.raises(InputError) as err:
        convert_keras_model(path)
    assert "'theano'" in one_line(err) and "'tensorflow'" in one_line(err)


def test_missing_layers(tmp_path):
    path = copy_of(MARKET_DSC, tmp_path)
    with h5py.File(path, "r+") as f:
        group = f["model_weights"]
        names = list(group.attrs["layer_names"])
        del group["conv2d_5"]
    with pytest.raises(InputError) as err:  # listed but absent
        convert_keras_model(path)
    assert "conv2d_5" in one_line(err)
    with h5py.File(path, "r+") as f:
        f["model_weights"].attrs["layer_names"] = [n for n in names if n != b"conv2d_5"]
    with pytest.raises(InputError) as err:  # removed altogether: the layer counts no longer fit
        convert_keras_model(path)
    assert "12 Conv2D" in one_line(err) and "13 Conv2D" in one_line(err)


def test_expectation_mismatches():
    with pytest.raises(InputError) as err:
        convert_keras_model(MARKET_DSC, width=1 / 16)
    assert "width 0.03125" in one_line(err) and "expected width 0.0625" in one_line(err)
    with pytest.raises(InputError) as err:
        convert_keras_model(MARKET_DSC, image_size=(256, 256))
    assert "128x64" in one_line(err) and "256x256" in one_line(err)
    with pytest.raises(InputError) as err:  # no recorded size: the number of levels decides
        convert_keras_model(MARKET_BASELINE, image_size=(256, 256))
    assert "6 encoder levels" in one_line(err) and "256x256 needs 7" in one_line(err)
    with pytest.raises(InputError) as err:
        convert_keras_model(MARKET_BASELINE, warp_skip="mask")
    assert "'none'" in one_line(err) and "'mask'" in one_line(err)
    with pytest.raises(InputError) as err:
        convert_keras_model(DISCRIMINATOR, kind="generator")
    assert "discriminator" in one_line(err) and "generator" in one_line(err)
    # An assumed 'mask' (no model_config) also accepts 'global', which has the same weights.
    check_architecture(inspect_keras_file(FASHION_DSC), warp_skip="global", image_size=(256, 256))


def test_vgg19_file_is_not_a_generator():
    with pytest.raises(InputError) as err:
        inspect_keras_file(VGG19)
    assert "block1_conv1" in one_line(err)


# ---------------------------------------------------------------------------------------------------
# VGG-19


def vgg_features(state: dict[str, torch.Tensor], images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's VGG-19 features with the converted weights, after the authors' preprocessing
    (x*127.5+127.5, subtract [103.939, 116.779, 123.68] from R, G, B, then RGB -> BGR; deformgan's
    ``VGG19Features(preprocess="keras-reference")``): conv1_2 and conv2_1, post-ReLU."""
    import torchvision

    with torch.device("meta"):  # no time spent initialising the 143M parameters that are not used
        features = torchvision.models.vgg19(weights=None).features[:7]
    features = features.to_empty(device="cpu")
    features.load_state_dict(state, strict=True)
    features.eval()
    mean = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    x = ((images * 127.5 + 127.5) - mean).flip(1)
    with torch.no_grad():
        return features[:4](x).numpy(), features(x).numpy()


def test_vgg19_matches_keras():
    io = load_io("vgg19_io.npz")
    needed = ("block1_conv1", "block1_conv2", "block2_conv1")
    state = convert_keras_vgg19(VGG19, require=needed)
    assert sorted(state) == ["0.bias", "0.weight", "2.bias", "2.weight", "5.bias", "5.weight"]
    conv1_2, conv2_1 = vgg_features(state, unit_image(io["images"]))
    # Activations reach ~70 here: 2e-4 relative to the largest one.
    assert max_diff(conv1_2, io["block1_conv2"]) < TOL * np.abs(io["block1_conv2"]).max()
    assert max_diff(conv2_1, io["block2_conv1"]) < TOL * np.abs(io["block2_conv1"]).max()
    with pytest.raises(InputError) as err:  # a real notop file has all 16 convolutions
        convert_keras_vgg19(VGG19)
    assert "block2_conv2" in one_line(err)
    assert convert_keras_vgg19(VGG19, require=needed, prefix="features.").keys() == {
        f"features.{k}" for k in state
    }
    assert len(VGG19_KERAS_LAYERS) == 16


def test_vgg19_keras1_names(tmp_path):
    """The released notop file (Keras 1 era) names its weights block1_conv1_W_1:0 / block1_conv1_b_1:0 and
    has only a layer_names root attribute: same conversion, since weights are read in weight_names order."""
    reference = convert_keras_vgg19(VGG19, require=("block1_conv1", "block1_conv2", "block2_conv1"))
    path = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(VGG19, "r") as s, h5py.File(path, "w") as d:
        d.attrs["layer_names"] = s.attrs["layer_names"]
        for name in s.attrs["layer_names"]:
            name = name.decode()
            group = d.create_group(name)
            new_names = []
            weight_names = list(s[name].attrs["weight_names"])  # empty for the input and pooling layers
            for wname, letter in zip(weight_names, "Wb"[: len(weight_names)], strict=True):
                new = f"{name}_{letter}_1:0"
                group.create_dataset(new, data=s[name][wname.decode()][()])
                new_names.append(new.encode())
            group.attrs["weight_names"] = new_names
    state = convert_keras_vgg19(path, require=("block1_conv1", "block1_conv2", "block2_conv1"))
    assert all(torch.equal(state[k], reference[k]) for k in reference)


# ---------------------------------------------------------------------------------------------------
# The warp layer alone (forward exactly; what the TF 1.5 gradient fixture means)


def test_warp_forward_matches_tf_including_ties():
    """deformgan.warp.deform vs TF 1.5's AffineTransformLayer at strides 1-8: nearest sampling is an exact
    gather, so the outputs are equal bit for bit, on a fixture with hundreds of exact half-pixel ties."""
    from deformgan.warp import deform

    io = load_io("warp_grad.npz")
    theta, valid, masks = part_geometry(io)
    for stride in (1, 2, 4, 8):
        scaled = io[f"scaled8_s{stride}"]  # the transforms TF sampled with (translations / stride)
        h, w = 128 // stride, 64 // stride
        xs, ys = np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)[:, None]
        sx = (scaled[..., 0, None, None] * xs + scaled[..., 1, None, None] * ys) + scaled[..., 2, None, None]
        sy = (scaled[..., 3, None, None] * xs + scaled[..., 4, None, None] * ys) + scaled[..., 5, None, None]
        covered = io["masks"][:, :, ::stride, ::stride]
        tie = (np.abs(sx - np.trunc(sx)) == 0.5) | (np.abs(sy - np.trunc(sy)) == 0.5)
        assert (tie & covered).sum() > 40, stride
        features = torch.from_numpy(io[f"features_s{stride}"])
        ours = deform(features, theta, valid, masks, "max", "nearest")
        assert np.array_equal(ours.numpy(), io[f"warped_s{stride}"]), stride


def test_warp_forward_tie_control(monkeypatch):
    """Negative control for the tie case: rounding half to even (torch.round, grid_sample's rule) instead of
    half away from zero (TF's std::round) changes the output."""
    import deformgan.warp as warp

    if not hasattr(warp, "_round_half_away_from_zero"):
        pytest.skip("deformgan.warp no longer has _round_half_away_from_zero to swap")
    io = load_io("warp_grad.npz")
    theta, valid, masks = part_geometry(io)
    monkeypatch.setattr(warp, "_round_half_away_from_zero", torch.round)
    ours = warp.deform(torch.from_numpy(io["features_s2"]), theta, valid, masks)
    assert not np.array_equal(ours.numpy(), io["warped_s2"])


def nearest_transform(image: np.ndarray, t: np.ndarray) -> np.ndarray:
    """tf.contrib.image.transform(NEAREST) of one (C, h, w) image in float32, as TF 1.5's kernel computes it:
    output (x, y) reads input (round((a0 x + a1 y + a2) / k), round((b0 x + b1 y + b2) / k)),
    k = c0 x + c1 y + 1, round = half away from zero, zero outside."""
    _, h, w = image.shape
    t = t.astype(np.float32)
    xs, ys = np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)[:, None]
    k = (t[6] * xs + t[7] * ys) + np.float32(1)
    x = ((t[0] * xs + t[1] * ys) + t[2]) / k
    y = ((t[3] * xs + t[4] * ys) + t[5]) / k

    def rnd(v):
        whole = np.trunc(v)
        return np.where(np.abs(v - whole) >= 0.5, whole + np.sign(v), whole).astype(np.int64)

    ix, iy = rnd(x), rnd(y)
    inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    out = np.zeros_like(image)
    out[:, inside] = image[:, iy[inside], ix[inside]]
    return out


def test_warp_gradient_fixture_is_tf_resampling():
    """Documents warp_grad.npz for the TF-style backward: TF 1.5 back-propagates through ``transform`` by
    resampling each part's output gradient (``part_grad``: upstream x mask x max-tie share) with the
    inverted transform (``inverse8``), nearest, and summing over parts -- not the exact adjoint."""
    io = load_io("warp_grad.npz")
    for stride in (2, 4, 8):
        part_grad, inverse = io[f"part_grad_s{stride}"], io[f"inverse8_s{stride}"]
        grad = np.zeros_like(io[f"grad_s{stride}"])
        for b in range(part_grad.shape[0]):
            for p in range(part_grad.shape[1]):
                grad[b] += nearest_transform(part_grad[b, p], inverse[b, p])
        assert np.array_equal(grad, io[f"grad_s{stride}"]), stride


def test_fixture_heatmaps_are_python2_floor_division():
    """The stored exponents are -floor(-d^2 / 72) of the integer keypoints (capped at 104, where exp(-k)
    underflows to 0 in float32): the authors' cords_to_map under Python 2."""
    io = load_io("market_io.npz")
    rows, cols = np.arange(128)[:, None], np.arange(64)[None, :]
    for yx, k in zip(io["target_yx"], io["target_heatmap_k"], strict=True):
        for (y, x), kj in zip(yx, k, strict=True):
            if y == -1:
                assert (kj == 255).all()
                continue
            expected = np.minimum(-((-((rows - y) ** 2 + (cols - x) ** 2)) // 72), 104)
            assert np.array_equal(kj, expected)


# ------------------------------------------------------------------------------------------------------
# The whole path a user takes: import-keras -> run folder -> PoseTransfer from keypoints


def test_import_keras_run_folder_reproduces_keras_from_keypoints(tmp_path, monkeypatch, capsys):
    """`deformgan import-keras FILE --config market-dsc --out RUN`, then PoseTransfer on the real pair's image
    and keypoints (deformgan computes the authors' heatmaps, part affines and masks itself): the image equals
    the one Keras generated from the authors' inputs within 1 grey level (the only difference is float
    rounding, ~1e-6, crossing a .5 boundary at most once in a while)."""
    from deformgan import cli
    from deformgan.images import to_uint8
    from deformgan.transfer import PoseTransfer

    run = tmp_path / "run"
    monkeypatch.setattr(
        sys, "argv", ["deformgan", "import-keras", str(FIXTURES / "generator_dsc_market_w32.h5"),
                      "--config", "market-dsc", "--out", str(run)],
    )  # fmt: skip
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code == 0 and "run folder" in capsys.readouterr().out
    io = np.load(FIXTURES / "market_io.npz")
    model = PoseTransfer.from_checkpoint(run)
    assert (
        model.config.conditioning.heatmaps == "reference"
        and model.config.generator.width == pytest.approx(1 / 32)
    )

    def xy(yx):
        return np.where(yx >= 0, yx[..., ::-1], -1)

    image = io["source_image"][0].transpose(1, 2, 0)
    ours = model.render(image, xy(io["source_yx"][0]), xy(io["target_yx"][0])[None])[0]
    keras = to_uint8(torch.from_numpy(io["generator_dsc"][:1]))[0]
    difference = np.abs(ours.astype(int) - keras.astype(int))
    assert difference.max() <= 1, difference.max()
    # A file that does not match the config is one line naming both sides.
    monkeypatch.setattr(
        sys, "argv", ["deformgan", "import-keras", str(FIXTURES / "generator_dsc_market_w32.h5"),
                      "--config", "fashion-dsc", "--out", str(tmp_path / "bad")],
    )  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "built for 128x64, expected 256x256" in err
    assert not (tmp_path / "bad").exists()
    monkeypatch.setattr(
        sys, "argv", ["deformgan", "import-keras", str(FIXTURES / "generator_dsc_market_w32.h5"), "--check"]
    )
    with pytest.raises(SystemExit):
        cli.main()
    assert "generator" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------------
# An imported run folder is an ordinary run folder: generate, evaluate, train --resume


def deformgan(monkeypatch, capsys, *args: object) -> tuple[int, str, str]:
    """Run `deformgan ARGS...` in this process through the console script's entry point -> (exit status,
    stdout, stderr)."""
    from deformgan import cli

    monkeypatch.setattr(sys, "argv", ["deformgan", *map(str, args)])
    with pytest.raises(SystemExit) as done:
        cli.main()
    captured = capsys.readouterr()
    return done.value.code, captured.out, captured.err


@pytest.fixture(scope="module")
def market_data(tmp_path_factory) -> Path:
    """test_train's tiny 128x64 stick-people dataset (2 identities x 3 images per split, 12 test pairs)
    under the prefix the Market configs read (``market``)."""
    from test_train import make_tiny_dataset

    root = make_tiny_dataset(tmp_path_factory.mktemp("market"))
    for entry in list(root.iterdir()):
        entry.rename(root / entry.name.replace("synth-", "market-", 1))
    return root


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    """`deformgan import-keras GENERATOR --config market-dsc --discriminator D --out RUN` (module scope: the
    tests below only read it)."""
    run = tmp_path_factory.mktemp("imported") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            sys, "argv", ["deformgan", "import-keras", str(MARKET_DSC), "--config", "market-dsc",
                          "--discriminator", str(DISCRIMINATOR), "--out", str(run)],
        )  # fmt: skip
        from deformgan import cli

        with pytest.raises(SystemExit) as done:
            cli.main()
    assert done.value.code == 0
    return run


def test_import_keras_with_the_discriminator_through_the_cli(imported):
    """--discriminator: the run's discriminator holds exactly the converted Keras weights (converted alone,
    they reproduce Keras' logits: test_discriminator_matches_keras), at the file's width 1/16 beside the
    generator's 1/32, and the state names both source files; the run is step 0."""
    from deformgan.checkpoint import load_checkpoint
    from deformgan.config import load_config

    checkpoint = load_checkpoint(imported)
    d_state, _ = convert_keras_model(DISCRIMINATOR, kind="discriminator", image_size=(128, 64))
    assert checkpoint.step == 0 and checkpoint.discriminator.keys() == d_state.keys()
    assert all(torch.equal(checkpoint.discriminator[k], d_state[k]) for k in d_state)
    source = checkpoint.extra["imported_from_keras"]
    assert source["generator"] == str(MARKET_DSC.resolve())
    assert source["discriminator"] == str(DISCRIMINATOR.resolve())
    config = load_config(imported / "config.yaml")
    assert config.discriminator.width == pytest.approx(1 / 16)
    assert config.generator.width == pytest.approx(1 / 32)


def test_imported_run_generates_and_evaluates(imported, market_data, tmp_path, monkeypatch, capsys):
    """`generate` on an imported run writes one image per test pair, each equal (within 1 grey level: batch
    composition may move float round-off across a .5) to PoseTransfer on the same image and keypoints, the
    path whose match with Keras is proven above (test_import_keras_run_folder_reproduces_keras_from_...).
    `evaluate` scores them: its L1 is the mean over pairs of mean |target - generated| / 127.5, computed
    here from the files. `transfer` on the run gives the image of a pair that `generate` wrote."""
    import json

    from deformgan.images import read_image
    from deformgan.keypoints import read_annotations, read_pairs
    from deformgan.transfer import PoseTransfer

    out = tmp_path / "generated"
    code, _, stderr = deformgan(
        monkeypatch, capsys, "generate", "--checkpoint", imported, "--data", market_data, "--out", out
    )
    assert code == 0, stderr
    pairs = read_pairs(market_data / "market-pairs-test.csv")
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"{a}_{b}.png" for a, b in pairs)
    keypoints = read_annotations(market_data / "market-annotation-test.csv")
    images = market_data / "market-dataset" / "test"
    model = PoseTransfer.from_checkpoint(imported)
    for source, target in pairs[:3]:
        expected = model.render(images / source, keypoints[source], keypoints[target][None])[0]
        written = read_image(out / f"{source}_{target}.png")
        assert np.abs(written.astype(int) - expected).max() <= 1
    # `transfer` on the same run and pair gives the image `generate` wrote (both render it alone).
    source, target = pairs[0]
    csv = market_data / "market-annotation-test.csv"
    moved = tmp_path / "moved.png"
    code, _, stderr = deformgan(
        monkeypatch, capsys, "transfer", "--checkpoint", imported, "--image", images / source,
        "--annotations", csv, "--source", source, "--pose", csv, "--row", target, "--out", moved,
    )  # fmt: skip
    assert code == 0, stderr
    generated = read_image(out / f"{source}_{target}.png").astype(int)
    assert np.abs(read_image(moved) - generated).max() <= 1

    scores = tmp_path / "scores.json"
    code, _, stderr = deformgan(
        monkeypatch, capsys, "evaluate", "--generated", out, "--data", market_data, "--out", scores
    )
    assert code == 0, stderr
    by_hand = np.mean(
        [
            np.abs(read_image(out / f"{a}_{b}.png").astype(float) - read_image(images / b)).mean() / 127.5
            for a, b in pairs
        ]
    )
    assert json.loads(scores.read_text())["l1"]["value"] == pytest.approx(by_hand, rel=1e-9)


def test_imported_run_fine_tunes_with_train_resume(imported, market_data, tmp_path, monkeypatch, capsys):
    """`train --resume IMPORTED --out NEW --iterations 1`: one iteration of fine-tuning from the Keras
    weights, in a new folder (the imported one is left as it was). The new checkpoint is step 1 and keeps
    the imported config (the authors' heatmaps and warp gradient, the files' widths); both networks took
    one Adam step from the imported weights with fresh moments, which moves each weight by lr g / (|g| +
    eps), so the largest change is lr = 2e-4 (any weight with a gradient above eps); the imported run
    still holds only its step 0."""
    from deformgan.checkpoint import list_checkpoints, load_checkpoint
    from deformgan.config import config_from_dict, load_config

    out = tmp_path / "fine-tuned"
    code, _, stderr = deformgan(
        monkeypatch, capsys, "train", "--resume", imported, "--data", market_data, "--out", out,
        "--iterations", "1",
    )  # fmt: skip
    assert code == 0, stderr
    tuned, start = load_checkpoint(out), load_checkpoint(imported)
    assert tuned.step == 1 and [p.name for p in list_checkpoints(imported)] == ["ckpt-00000000"]
    assert config_from_dict(tuned.config) == load_config(imported / "config.yaml")
    config = config_from_dict(tuned.config)
    assert config.conditioning.heatmaps == "reference" and config.generator.warp_gradient == "tf"
    for net in ("generator", "discriminator"):
        before, after = getattr(start, net), getattr(tuned, net)
        assert before.keys() == after.keys()
        change = max(float((after[k] - before[k]).abs().max()) for k in before)
        assert change == pytest.approx(config.train.lr, rel=1e-3), net
