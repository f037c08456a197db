"""Import the authors' Keras 2.0.8 HDF5 weight files (Siarohin et al., CVPR 2018) into deformgan's networks.

The authors released trained generators (``generator-warp-mask-nn3-cl12.h5`` = Market Full,
``generator-warp-mask-nn5-cl12.h5`` = DeepFashion Full, ``generator-warp-mask.h5`` = DeepFashion DSC) and
discriminators, written by ``model.save`` in their ``gan/train.py`` (AliaksandrSiarohin/pose-gan, networks
built by ``conditional_gan.py``: ``make_generator``, ``make_discriminator``). This module reads such files --
both Keras layouts: ``model.save`` (weights under the ``model_weights`` group, plus ``model_config``) and
``save_weights`` (weights at the file root) -- infers the architecture from the weights alone, and returns
a state dict of :class:`deformgan.models.Generator` / :class:`deformgan.models.Discriminator`. Keras'
VGG-19 (``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``) converts to torchvision's
``vgg19().features`` layout.

How the layers are matched. A Keras file lists its layers (``layer_names``) in graph-depth order, in which
the appearance and the pose encoders are interleaved and, below their first level, have identical shapes.
What separates them is the creation order: Keras numbers auto-named layers per class as they are created
(``conv2d_1`` ... ``conv2d_6`` = appearance encoder, ``conv2d_7`` ... ``conv2d_12`` = pose encoder,
``conv2d_13`` = the decoder's last conv at 128x64), and the authors create the appearance encoder, then the
pose encoder, then the decoder. Layers are therefore sorted per class by their integer suffix (``conv2d_10``
after ``conv2d_2``; a name without suffix, tf.keras' first layer, counts as 0). Only the order matters, so
files whose numbering does not start at 1 (a discriminator built after a generator in the same session, as
in the authors' ``train.py``) convert too. When the file holds its ``model_config``, the assignment is checked
against the graph: each encoder's layers must descend from that encoder's inputs only.

Weights are taken in each layer's ``weight_names`` order (kernel, bias; gamma, beta), never by parsing
names. Kernel layouts: Conv2D ``(kh, kw, in, out)`` -> torch ``(out, in, kh, kw)``; Conv2DTranspose
``(kh, kw, out, in)`` -> torch ``(in, out, kh, kw)``, both by the same axis permutation and without a
spatial flip (TensorFlow's and PyTorch's transposed convolutions are both the adjoint of a cross-correlation).

What the weights cannot tell: the image size (the networks are fully convolutional; 6 encoder levels is the
authors' table for max(H, W) = 128, 7 levels for 256x256), ``warp_skip`` "mask" vs "global" (same weights)
and ``warp_agg``; they are read from ``model_config`` when the file has one and otherwise assumed as the
paper's (mask, max) and reported as assumed by :func:`describe`.

Inputs must be prepared as the authors' code did for the outputs to match theirs: images
``(I / 255 - 0.5) * 2``; heatmaps from integer keypoints, which under Python 2 made
``-(d^2) / (2 * 6^2)`` a floor division (maps ``exp(floor(-d^2 / 72))``); part affines and masks as
``pose_transform.affine_transforms`` / ``pose_masks``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deformgan.errors import InputError
from deformgan.models import Discriminator, Generator, ReferenceInstanceNorm, encoder_levels

__all__ = [
    "KerasArchitecture",
    "check_architecture",
    "convert_keras_model",
    "convert_keras_vgg19",
    "describe",
    "inspect_keras_file",
]

CONV = "Conv2D"
TRANSPOSE = "Conv2DTranspose"
NORM = "InstanceNormalization"
_CLASS_OF_PREFIX = {"conv2d": CONV, "conv2d_transpose": TRANSPOSE, "instance_normalization": NORM}
_NAME = re.compile(r"^(?P<prefix>[a-z0-9_]+?)(?:_(?P<index>\d+))?$")

IMAGE_CHANNELS = 3
JOINTS = 18
#: The authors' filter tables by number of encoder levels, and the image size each was used at.
_IMPLIED_SIZE = {6: (128, 64), 7: (256, 256)}
_IMPLIED_TEXT = {
    6: "the authors' table for max(H, W) = 128: Market 128x64, or their 128x128 option",
    7: "the authors' table for 256x256: DeepFashion",
}
# The authors' filters before the width multiplier (conditional_gan.make_generator / make_discriminator).
_DISC_FILTERS = (64, 128, 256, 512)


def _encoder_filters(levels: int) -> tuple[int, ...]:
    """(64, 128, 256, 512, 512, 512) for 6 levels, one more 512 for 7 (the authors' tables)."""
    return (64, 128, 256) + (512,) * (levels - 3)


def _scaled(filters: int, width: float) -> int:
    """deformgan's width rule (``Generator(width=...)``): max(1, round(filters * width))."""
    return max(1, int(round(filters * width)))


@dataclass(frozen=True)
class KerasArchitecture:
    """What a Keras file holds, inferred from its weights (and its ``model_config`` when present).

    kind: "generator" | "discriminator".
    warp_skip: "mask" | "global" | "none" for a generator (None for a discriminator). "mask" vs "global"
        is only known from ``model_config`` (``warp_skip_from_config``); otherwise "mask" is assumed.
    warp_agg: "max" | "avg" (from ``model_config``, else "max" assumed); None for "none" / discriminator.
    levels: encoder levels of a generator (6 at 128x64, 7 at 256x256); None for a discriminator.
    width: the filter multiplier relative to the paper's filters (1.0 for the released files).
    filters: encoder filters (generator) or the four conv filters before the 1-channel output (discriminator).
    image_size: (H, W) from ``model_config``'s inputs, or None when the file does not record it.
    implied_image_size: ``image_size`` if known, else the size the authors used with this many levels
        (generator); None for a discriminator without config (its weights fit any size >= 48x48).
    layout: "model_weights" (``model.save``) | "root" (``save_weights``).
    keras_version, backend: the file's attributes (None when absent).
    """

    kind: str
    warp_skip: str | None
    warp_agg: str | None
    levels: int | None
    width: float
    filters: tuple[int, ...]
    image_size: tuple[int, int] | None
    implied_image_size: tuple[int, int] | None
    layout: str
    keras_version: str | None
    backend: str | None
    warp_skip_from_config: bool = False
    source: str = ""
    notes: tuple[str, ...] = field(default=())

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`Generator` / :class:`Discriminator` that reproduce this file's network
        (``image_size`` = ``implied_image_size``; dropout stays the paper's 0.5, inactive in eval mode)."""
        size = self.implied_image_size or (128, 64)
        if self.kind == "discriminator":
            return {"image_size": size, "norm": "reference", "width": self.width}
        kwargs: dict[str, Any] = {"image_size": size, "warp_skip": self.warp_skip, "norm": "reference"}
        kwargs["width"] = self.width
        if self.warp_skip != "none":
            kwargs.update(warp_agg=self.warp_agg, warp_mode="nearest")
        return kwargs

    def build(self, image_size: tuple[int, int] | None = None) -> nn.Module:
        """A fresh deformgan network of this architecture (random weights; load the converted state dict)."""
        kwargs = self.model_kwargs()
        if image_size is not None:
            kwargs["image_size"] = (int(image_size[0]), int(image_size[1]))
        return Discriminator(**kwargs) if self.kind == "discriminator" else Generator(**kwargs)


# ------------------------------------------------------------------------------------------------------
# Reading the HDF5 file


def _text(value: Any) -> str:
    """An HDF5 string attribute (bytes, numpy bytes or str, depending on h5py and the writer) as str."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf8")
    return str(value)


def _text_list(group: Any, name: str, where: str) -> list[str]:
    """A list-of-strings attribute, also when Keras (>= 2.2) split it into ``name0``, ``name1``, ... because
    of HDF5's 64 KiB attribute limit."""
    attrs = group.attrs
    if name in attrs:
        chunks = [attrs[name]]
    else:
        chunks = []
        while f"{name}{len(chunks)}" in attrs:
            chunks.append(attrs[f"{name}{len(chunks)}"])
        if not chunks:
            raise InputError(f"{where}: no '{name}' attribute: not a Keras weights file")
    return [_text(v) for chunk in chunks for v in np.atleast_1d(np.asarray(chunk, dtype=object))]


@dataclass
class _Layer:
    name: str
    klass: str | None  # Keras class name (from model_config, else from the auto-name prefix)
    order: int | None  # the per-class creation index (auto-name suffix)
    weights: list[np.ndarray]
    weight_names: list[str]


@dataclass
class _KerasFile:
    path: str
    layout: str
    layers: list[_Layer]  # weight-bearing layers, in the file's layer_names order
    config: dict[str, Any] | None
    keras_version: str | None
    backend: str | None


def _open_h5(path: str | Path):
    try:
        import h5py
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise InputError(
            f"{path}: reading Keras .h5 files needs the h5py package (pip install h5py)"
        ) from err
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file (expected a Keras .h5 weights file)")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{path}: not an HDF5 file ({str(err).splitlines()[0]})") from err


def _read(path: str | Path) -> _KerasFile:
    """Every weight-bearing layer of a Keras HDF5 file, both layouts, with attributes decoded."""
    with _open_h5(path) as f:
        if "model_weights" in f:
            group, layout = f["model_weights"], "model_weights"
        else:
            group, layout = f, "root"
        names = _text_list(group, "layer_names", f"{path}")
        attrs = {k: _text(f.attrs[k]) for k in ("keras_version", "backend") if k in f.attrs}
        for k in ("keras_version", "backend"):
            if k not in attrs and k in group.attrs:
                attrs[k] = _text(group.attrs[k])
        config = None
        if "model_config" in f.attrs:
            try:
                config = json.loads(_text(f.attrs["model_config"]))
            except json.JSONDecodeError as err:
                raise InputError(f"{path}: its model_config attribute is not JSON ({err})") from err
        classes = _config_classes(config)
        layers = []
        for name in names:
            if name not in group:
                raise InputError(f"{path}: layer '{name}' is listed in layer_names but has no weights group")
            weight_names = _text_list(group[name], "weight_names", f"{path}: layer '{name}'")
            if not weight_names:
                continue
            weights = []
            for wname in weight_names:
                if wname not in group[name]:
                    raise InputError(f"{path}: layer '{name}' lists weight '{wname}' but has no such dataset")
                weights.append(np.asarray(group[name][wname][()], dtype=np.float32))
            match = _NAME.match(name)
            prefix = match.group("prefix") if match else name
            index = int(match.group("index")) if match and match.group("index") is not None else 0
            klass = classes.get(name) or _CLASS_OF_PREFIX.get(prefix)
            auto_named = match is not None and _CLASS_OF_PREFIX.get(prefix) == klass
            layers.append(_Layer(name, klass, index if auto_named else None, weights, weight_names))
    backend = attrs.get("backend")
    if backend is not None and backend != "tensorflow":
        raise InputError(
            f"{path}: saved with the Keras backend {backend!r}; only 'tensorflow' files are supported "
            "(other backends store flipped or transposed kernels)"
        )
    version = attrs.get("keras_version")
    if version is not None and version.split(".")[0] not in ("2", "3"):
        raise InputError(f"{path}: saved by Keras {version}; only Keras 2 files are supported")
    return _KerasFile(str(path), layout, layers, config, version, backend)


def _config_classes(config: dict[str, Any] | None) -> dict[str, str]:
    """Layer name -> Keras class name, from a model_config (empty without one)."""
    if not config:
        return {}
    return {layer["name"]: layer["class_name"] for layer in config.get("config", {}).get("layers", [])}


# ------------------------------------------------------------------------------------------------------
# Architecture inference


def _by_class(kfile: _KerasFile) -> dict[str, list[_Layer]]:
    """Weight layers grouped by class and sorted by creation order; any other weight layer is an error."""
    groups: dict[str, list[_Layer]] = {CONV: [], TRANSPOSE: [], NORM: []}
    for layer in kfile.layers:
        if layer.klass not in groups:
            raise InputError(
                f"{kfile.path}: layer '{layer.name}' ({layer.klass or 'unknown class'}) has weights, but the "
                "authors' generator and discriminator only have Conv2D, Conv2DTranspose and "
                "InstanceNormalization weights (other --warp_skip/--disc_type variants are not supported)"
            )
        if layer.order is None:
            raise InputError(
                f"{kfile.path}: layer '{layer.name}' is not auto-named (<class>_<n>): the creation order "
                "that tells the two encoders apart is unknown"
            )
        groups[layer.klass].append(layer)
    for layers in groups.values():
        layers.sort(key=lambda item: item.order)
        orders = [item.order for item in layers]
        if len(set(orders)) != len(orders):
            raise InputError(f"{kfile.path}: two layers of one class share a creation index: {orders}")
    return groups


def _infer_width(observed: Sequence[int], paper: Sequence[int], what: str, path: str) -> float:
    """The multiplier w with max(1, round(f * w)) == observed for every paper filter count f (deformgan's
    ``scaled``), tried from each observed/paper ratio; the largest filters first (least rounding)."""
    candidates = sorted({o / p for o, p in zip(observed, paper, strict=True)}, key=lambda w: -w)
    ranked = sorted(zip(observed, paper, strict=True), key=lambda item: -item[1])
    for width in [ranked[0][0] / ranked[0][1], *candidates]:
        if all(_scaled(p, width) == o for o, p in zip(observed, paper, strict=True)):
            return width
    raise InputError(
        f"{path}: {what} filters {tuple(observed)} are not the paper's {tuple(paper)} times one "
        "width multiplier"
    )


def _shape(layer: _Layer, index: int) -> tuple[int, ...]:
    return tuple(layer.weights[index].shape)


def _expect_weights(layer: _Layer, count: int, path: str, what: str) -> None:
    if len(layer.weights) != count:
        raise InputError(
            f"{path}: layer '{layer.name}' ({what}) has {len(layer.weights)} weights "
            f"{[list(w.shape) for w in layer.weights]}, expected {count}"
        )


def _input_sizes(config: dict[str, Any] | None) -> list[tuple[int, ...]]:
    """batch_input_shape (without the batch axis) of every InputLayer of a model_config."""
    sizes = []
    for layer in (config or {}).get("config", {}).get("layers", []):
        if layer.get("class_name") == "InputLayer":
            shape = layer.get("config", {}).get("batch_input_shape")
            if shape:
                sizes.append(tuple(shape[1:]))
    return sizes


def _config_image_size(config: dict[str, Any] | None) -> tuple[int, int] | None:
    """(H, W) of the image inputs (H, W, 3) recorded in a model_config, if any."""
    for shape in _input_sizes(config):
        if len(shape) == 3 and shape[2] == IMAGE_CHANNELS and shape[0] and shape[1]:
            return int(shape[0]), int(shape[1])
    return None


def _config_warp(config: dict[str, Any] | None) -> tuple[str, str] | None:
    """(warp_skip, warp_agg) from the AffineTransformLayers of a model_config, or None if it has none."""
    found = set()
    for layer in (config or {}).get("config", {}).get("layers", []):
        if layer.get("class_name") == "AffineTransformLayer":
            cfg = layer.get("config", {})
            found.add((cfg.get("number_of_transforms"), cfg.get("aggregation_fn")))
    if not found:
        return None
    if len(found) != 1:
        raise InputError(f"model_config: AffineTransformLayers disagree: {sorted(found, key=str)}")
    transforms, aggregation = found.pop()
    if transforms not in (1, 10) or aggregation not in ("max", "avg"):
        raise InputError(
            f"model_config: AffineTransformLayer(number_of_transforms={transforms}, aggregation_fn="
            f"{aggregation!r}) is not supported (10 or 1 transforms, 'max' or 'avg')"
        )
    return ("mask" if transforms == 10 else "global"), aggregation


def _ancestor_inputs(config: dict[str, Any]) -> dict[str, frozenset[str]]:
    """Layer name -> the InputLayers it depends on, from the model_config graph (inbound_nodes)."""
    layers = {layer["name"]: layer for layer in config.get("config", {}).get("layers", [])}
    memo: dict[str, frozenset[str]] = {}

    def visit(name: str, depth: int = 0) -> frozenset[str]:
        if name in memo:
            return memo[name]
        if depth > len(layers):
            raise InputError("model_config: the layer graph has a cycle")
        layer = layers.get(name)
        if layer is None:
            raise InputError(f"model_config: inbound layer '{name}' is not defined")
        if layer.get("class_name") == "InputLayer":
            result = frozenset([name])
        else:
            parents = [node[0] for nodes in layer.get("inbound_nodes", []) for node in nodes]
            result = frozenset().union(*(visit(p, depth + 1) for p in parents)) if parents else frozenset()
        memo[name] = result
        return result

    for name in layers:
        visit(name)
    return memo


def _check_encoders_against_graph(kfile: _KerasFile, encoders: list[list[_Layer]]) -> None:
    """With a model_config: every layer assigned to one encoder must depend on the same model inputs, and
    the two encoders on disjoint inputs (appearance: x_a and H_a; pose: H_b)."""
    if kfile.config is None:
        return
    ancestors = _ancestor_inputs(kfile.config)
    seen: list[frozenset[str]] = []
    for encoder in encoders:
        sets = {layer.name: ancestors.get(layer.name) for layer in encoder}
        first = sets[encoder[0].name]
        wrong = [name for name, s in sets.items() if s != first]
        if wrong or not first:
            raise InputError(
                f"{kfile.path}: the creation order assigns {wrong or [encoder[0].name]} to the encoder of "
                f"'{encoder[0].name}', but the model_config graph connects them to other inputs"
            )
        seen.append(first)
    if len(seen) == 2 and seen[0] & seen[1]:
        raise InputError(f"{kfile.path}: the model_config graph feeds both encoders from the same inputs")


def _variant_hint(streams: int, label: str, channels: int) -> str:
    """Which of the authors' unsupported options gives an encoder ``channels`` input channels."""
    if streams == 1:
        known = {IMAGE_CHANNELS + JOINTS: "--use_input_pose 0", 2 * IMAGE_CHANNELS + 2 * JOINTS: "--use_bg 1"}
    elif label.startswith("appearance"):
        known = {IMAGE_CHANNELS: "--use_input_pose 0", 2 * IMAGE_CHANNELS: "--pose_rep_type stickman"}
    else:
        known = {IMAGE_CHANNELS + JOINTS: "--use_bg 1", IMAGE_CHANNELS: "--pose_rep_type stickman"}
    return f" (a {known[channels]} model? not supported)" if channels in known else ""


@dataclass
class _Plan:
    """The inferred architecture plus the Keras layers in deformgan's order."""

    arch: KerasArchitecture
    encoders: list[list[_Layer]]  # generator: 1 or 2 encoders, shallowest level first
    encoder_norms: list[list[_Layer]]
    decoder: list[_Layer]  # generator: up-block transposes, deepest first, then the final conv
    decoder_norms: list[_Layer]
    disc_convs: list[_Layer]
    disc_norms: list[_Layer]


def _plan(kfile: _KerasFile) -> _Plan:
    groups = _by_class(kfile)
    convs, transposes, norms = groups[CONV], groups[TRANSPOSE], groups[NORM]
    path = kfile.path
    for layer in norms:
        _expect_weights(layer, 2, path, "InstanceNormalization: gamma, beta")
        if _shape(layer, 0) != (1,) or _shape(layer, 1) != (1,):
            raise InputError(
                f"{path}: layer '{layer.name}' has gamma/beta of shapes {_shape(layer, 0)}/"
                f"{_shape(layer, 1)}; keras-contrib InstanceNormalization() with axis=None has one scalar "
                "each (norm='reference')"
            )
    for layer in convs + transposes:
        if len(layer.weights) not in (1, 2) or layer.weights[0].ndim != 4:
            raise InputError(f"{path}: layer '{layer.name}' does not hold a 4-D convolution kernel")
    common = {
        "layout": kfile.layout,
        "keras_version": kfile.keras_version,
        "backend": kfile.backend,
        "source": path,
    }
    config_size = _config_image_size(kfile.config)
    if not transposes:
        return _plan_discriminator(kfile, convs, norms, config_size, common)
    return _plan_generator(kfile, convs, transposes, norms, config_size, common)


def _plan_discriminator(kfile, convs, norms, config_size, common) -> _Plan:
    path = kfile.path
    if len(convs) != 5 or len(norms) != 3:
        raise InputError(
            f"{path}: {len(convs)} Conv2D and {len(norms)} InstanceNormalization layers and no "
            "Conv2DTranspose; the authors' discriminator (--disc_type call) has 5 and 3"
        )
    first = convs[0]
    _expect_weights(first, 2, path, "first discriminator conv: kernel, bias")
    kh, kw, cin, f0 = _shape(first, 0)
    if (kh, kw) != (4, 4) or cin != 2 * (IMAGE_CHANNELS + JOINTS):
        raise InputError(
            f"{path}: the discriminator's first conv '{first.name}' has kernel {_shape(first, 0)}, expected "
            f"(4, 4, {2 * (IMAGE_CHANNELS + JOINTS)}, f): inputs x_a, H_a, y, H_b (--use_input_pose 1, no "
            "background)"
        )
    filters = [f0]
    previous = f0
    for i, layer in enumerate(convs[1:], start=1):
        _expect_weights(layer, 1, path, "discriminator down block: kernel without bias")
        shape = _shape(layer, 0)
        if shape[:3] != (4, 4, previous):
            raise InputError(
                f"{path}: layer '{layer.name}' has kernel {shape}, expected (4, 4, {previous}, f)"
            )
        previous = shape[3]
        if i < 4:
            filters.append(previous)
    if previous != 1:
        raise InputError(f"{path}: the discriminator's last conv has {previous} filters, expected 1")
    width = _infer_width(filters, _DISC_FILTERS, "discriminator", path)
    notes = () if config_size else ("image size not recorded: the weights fit any size >= 48x48",)
    arch = KerasArchitecture(
        kind="discriminator",
        warp_skip=None,
        warp_agg=None,
        levels=None,
        width=width,
        filters=tuple(filters),
        image_size=config_size,
        implied_image_size=config_size,
        notes=notes,
        **common,
    )
    return _Plan(arch, [], [], [], [], convs, norms)


def _plan_generator(kfile, convs, transposes, norms, config_size, common) -> _Plan:
    path = kfile.path
    levels = len(transposes) + 1
    two = 2 * levels + 1
    if len(convs) == two:
        streams = 2
    elif len(convs) == levels + 1:
        streams = 1
    else:
        raise InputError(
            f"{path}: {len(convs)} Conv2D and {len(transposes)} Conv2DTranspose layers: a {levels}-level "
            f"generator has {two} Conv2D (two encoders, --warp_skip mask) or {levels + 1} (--warp_skip none)"
        )
    expected_norms = streams * (levels - 2) + (levels - 1)
    if len(norms) != expected_norms:
        raise InputError(
            f"{path}: {len(norms)} InstanceNormalization layers; a {levels}-level generator with {streams} "
            f"encoder(s) has {expected_norms}"
        )
    encoders = [convs[s * levels : (s + 1) * levels] for s in range(streams)]
    final = convs[-1]
    encoder_norms = [norms[s * (levels - 2) : (s + 1) * (levels - 2)] for s in range(streams)]
    decoder_norms = norms[streams * (levels - 2) :]

    expected_in = [IMAGE_CHANNELS + JOINTS, JOINTS] if streams == 2 else [IMAGE_CHANNELS + 2 * JOINTS]
    labels = ["appearance encoder (x_a, H_a)", "pose encoder (H_b)"] if streams == 2 else ["encoder"]
    enc_filters: list[list[int]] = []
    for encoder, cin, label in zip(encoders, expected_in, labels, strict=True):
        level0 = encoder[0]
        _expect_weights(level0, 2, path, f"{label} level 0: kernel, bias")
        kh, kw, got_in, f0 = _shape(level0, 0)
        if (kh, kw) != (3, 3) or got_in != cin:
            hint = _variant_hint(streams, label, got_in)
            raise InputError(
                f"{path}: {label} level 0 '{level0.name}' has kernel {_shape(level0, 0)}, expected "
                f"(3, 3, {cin}, f){hint}"
            )
        filters = [f0]
        for layer in encoder[1:]:
            _expect_weights(layer, 1, path, f"{label} down block: kernel without bias")
            shape = _shape(layer, 0)
            if shape[:3] != (4, 4, filters[-1]):
                raise InputError(
                    f"{path}: {label} layer '{layer.name}' has kernel {shape}, "
                    f"expected (4, 4, {filters[-1]}, f)"
                )
            filters.append(shape[3])
        enc_filters.append(filters)
    if streams == 2 and enc_filters[0] != enc_filters[1]:
        raise InputError(
            f"{path}: the two encoders have different filters {enc_filters[0]} / {enc_filters[1]}"
        )
    filters = enc_filters[0]
    _check_encoders_against_graph(kfile, encoders)

    width = _infer_width(filters, _encoder_filters(levels), "encoder", path)
    if levels not in _IMPLIED_SIZE and config_size is None:
        raise InputError(
            f"{path}: a {levels}-level generator: the authors' code builds 6 (128x64) or 7 (256x256) levels"
        )
    implied = config_size or _IMPLIED_SIZE[levels]
    try:
        deformgan_levels = encoder_levels(implied)
    except InputError as err:
        raise InputError(f"{path}: image size {implied} from the file: {err}") from err
    if deformgan_levels != levels:
        raise InputError(
            f"{path}: the file's generator has {levels} encoder levels, but deformgan builds "
            f"{deformgan_levels} "
            f"at its image size {implied[0]}x{implied[1]}"
        )
    decoder = [*transposes, final]
    skip = [streams * f for f in filters][::-1]  # deepest first
    previous = 0
    for i, layer in enumerate(decoder):
        last = i == len(decoder) - 1
        _expect_weights(
            layer, 2 if last else 1, path, "decoder final conv: kernel, bias" if last else "up block"
        )
        shape = _shape(layer, 0)
        kin = shape[2] if last else shape[3]  # Conv2D (kh, kw, in, out); Conv2DTranspose (kh, kw, out, in)
        if shape[:2] != ((3, 3) if last else (4, 4)) or kin != previous + skip[i]:
            raise InputError(
                f"{path}: decoder layer '{layer.name}' has kernel {shape}, expected {previous + skip[i]} "
                "input "
                f"channels (previous {previous} + skip {skip[i]})"
            )
        previous = shape[3] if last else shape[2]
    if previous != IMAGE_CHANNELS:
        raise InputError(f"{path}: the generator's last conv has {previous} filters, expected 3 (RGB)")

    notes = []
    warp = _config_warp(kfile.config)
    if streams == 1:
        warp_skip, warp_agg, from_config = "none", None, kfile.config is not None
        if warp is not None:
            raise InputError(f"{path}: one encoder but AffineTransformLayers in model_config")
    elif warp is not None:
        (warp_skip, warp_agg), from_config = warp, True
    else:
        warp_skip, warp_agg, from_config = "mask", "max", False
        notes.append(
            "warp_skip 'mask' and warp_agg 'max' assumed (the paper's): the file has no model_config, and "
            "'global' (--warp_skip full) has the same weights"
        )
    if config_size is None:
        notes.append(f"image size not recorded; {levels} encoder levels = {_IMPLIED_TEXT[levels]}")
    arch = KerasArchitecture(
        kind="generator",
        warp_skip=warp_skip,
        warp_agg=warp_agg,
        levels=levels,
        width=width,
        filters=tuple(filters),
        image_size=config_size,
        implied_image_size=implied,
        warp_skip_from_config=from_config,
        notes=tuple(notes),
        **common,
    )
    return _Plan(arch, encoders, encoder_norms, decoder, decoder_norms, [], [])


# ------------------------------------------------------------------------------------------------------
# Public API


def inspect_keras_file(path: str | Path) -> KerasArchitecture:
    """The architecture of a Keras generator/discriminator file (see :class:`KerasArchitecture`).
    Raises :class:`InputError` (one line) for anything that is not one of the authors' networks."""
    return _plan(_read(path)).arch


def check_architecture(
    arch: KerasArchitecture,
    *,
    kind: str | None = None,
    image_size: tuple[int, int] | None = None,
    warp_skip: str | None = None,
    width: float | None = None,
) -> None:
    """Raise one :class:`InputError` line naming both sides when ``arch`` differs from what is expected.

    kind: "generator" | "discriminator". image_size: (H, W) the network will run at: must equal the file's
    recorded size, or (generator without a recorded size) give the file's number of encoder levels in
    deformgan. warp_skip: "mask" | "global" | "none" (an assumed "mask" matches "global" too). width:
    filter multiplier (compared to 1e-6).
    """
    where = arch.source or "Keras file"
    if kind is not None and kind != arch.kind:
        raise InputError(f"{where}: holds a {arch.kind}, expected a {kind}")
    if warp_skip is not None and arch.kind == "generator" and warp_skip != arch.warp_skip:
        ambiguous = not arch.warp_skip_from_config and {warp_skip, arch.warp_skip} == {"mask", "global"}
        if not ambiguous:
            raise InputError(
                f"{where}: the generator is warp_skip={arch.warp_skip!r}, expected {warp_skip!r}"
            )
    if width is not None and abs(width - arch.width) > 1e-6:
        raise InputError(f"{where}: filters {arch.filters} = width {arch.width:g}, expected width {width:g}")
    if image_size is not None:
        size = (int(image_size[0]), int(image_size[1]))
        if arch.image_size is not None and size != arch.image_size:
            raise InputError(
                f"{where}: the {arch.kind} was built for {arch.image_size[0]}x{arch.image_size[1]}, expected "
                f"{size[0]}x{size[1]}"
            )
        if arch.kind == "generator":
            try:
                levels = encoder_levels(size)
            except InputError as err:
                raise InputError(f"{where}: expected image size {size[0]}x{size[1]}: {err}") from err
            if levels != arch.levels:
                raise InputError(
                    f"{where}: the generator has {arch.levels} encoder levels "
                    f"({_IMPLIED_TEXT.get(arch.levels or 0, 'unusual')}), but {size[0]}x{size[1]} needs "
                    f"{levels}"
                )


def _conv_weight(kernel: np.ndarray) -> torch.Tensor:
    """Keras Conv2D (kh, kw, in, out) -> torch (out, in, kh, kw); Conv2DTranspose (kh, kw, out, in) ->
    torch (in, out, kh, kw): the same permutation, no spatial flip."""
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


def _only(module: nn.Module, kind: type) -> nn.Module:
    found = [m for m in module.modules() if isinstance(m, kind)]
    if len(found) != 1:
        raise RuntimeError(f"deformgan module {type(module).__name__} has {len(found)} {kind.__name__}")
    return found[0]


def _assign(target: torch.Tensor, value: np.ndarray | torch.Tensor, name: str, path: str) -> None:
    value = torch.as_tensor(value) if not isinstance(value, torch.Tensor) else value
    if tuple(target.shape) != tuple(value.shape):
        raise InputError(
            f"{path}: Keras weight '{name}' has torch shape {tuple(value.shape)}, deformgan's is "
            f"{tuple(target.shape)}"
        )
    with torch.no_grad():
        target.copy_(value.to(target.dtype))


def _fill_conv(conv: nn.Module, layer: _Layer, path: str) -> None:
    _assign(conv.weight, _conv_weight(layer.weights[0]), layer.weight_names[0], path)
    if conv.bias is not None:
        _assign(conv.bias, layer.weights[1], layer.weight_names[1], path)


def _fill_norm(norm: nn.Module, layer: _Layer, path: str) -> None:
    _assign(norm.gamma, layer.weights[0], layer.weight_names[0], path)
    _assign(norm.beta, layer.weights[1], layer.weight_names[1], path)


def convert_keras_model(
    path: str | Path,
    *,
    kind: str | None = None,
    image_size: tuple[int, int] | None = None,
    warp_skip: str | None = None,
    width: float | None = None,
) -> tuple[dict[str, torch.Tensor], KerasArchitecture]:
    """Convert an authors' Keras generator or discriminator file to a deformgan state dict.

    Returns (state_dict, architecture): load the state dict into ``architecture.build(image_size)`` (its
    keys are that network's ``state_dict()`` keys; ``strict=True`` loading works). The optional
    expectations are checked first with :func:`check_architecture` (one-line :class:`InputError`).
    """
    kfile = _read(path)
    plan = _plan(kfile)
    arch = plan.arch
    check_architecture(arch, kind=kind, image_size=image_size, warp_skip=warp_skip, width=width)
    model = arch.build(image_size)
    if isinstance(model, Discriminator):
        stages = list(model.layers)
        _fill_conv(stages[0], plan.disc_convs[0], kfile.path)
        for stage, conv_layer in zip(stages[1:], plan.disc_convs[1:], strict=True):
            _fill_conv(_only(stage, nn.Conv2d), conv_layer, kfile.path)
        for stage, norm_layer in zip(stages[1:4], plan.disc_norms, strict=True):
            _fill_norm(_only(stage, ReferenceInstanceNorm), norm_layer, kfile.path)
    else:
        assert isinstance(model, Generator)
        encoders = (
            [model.encoder] if arch.warp_skip == "none" else [model.appearance_encoder, model.pose_encoder]
        )
        for encoder, conv_layers, norm_layers in zip(
            encoders, plan.encoders, plan.encoder_norms, strict=True
        ):
            levels = list(encoder.levels)
            _fill_conv(levels[0], conv_layers[0], kfile.path)
            for level, conv_layer in zip(levels[1:], conv_layers[1:], strict=True):
                _fill_conv(_only(level, nn.Conv2d), conv_layer, kfile.path)
            for level, norm_layer in zip(levels[1:-1], norm_layers, strict=True):
                _fill_norm(_only(level, ReferenceInstanceNorm), norm_layer, kfile.path)
        stages = list(model.decoder.stages)
        for stage, layer in zip(stages[:-1], plan.decoder[:-1], strict=True):
            _fill_conv(_only(stage, nn.ConvTranspose2d), layer, kfile.path)
        _fill_conv(_only(stages[-1], nn.Conv2d), plan.decoder[-1], kfile.path)
        for stage, norm_layer in zip(stages[:-1], plan.decoder_norms, strict=True):
            _fill_norm(_only(stage, ReferenceInstanceNorm), norm_layer, kfile.path)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, arch


# VGG-19 ------------------------------------------------------------------------------------------------

_VGG19_BLOCKS = (2, 2, 4, 4, 4)
_VGG19_FILTERS = (64, 128, 256, 512, 512)


def _vgg19_layout() -> dict[str, tuple[int, int, int]]:
    """Keras name block{b}_conv{i} -> (torchvision ``vgg19().features`` index, in, out channels)."""
    layout = {}
    index, channels = 0, 3
    for block, (size, filters) in enumerate(zip(_VGG19_BLOCKS, _VGG19_FILTERS, strict=True), start=1):
        for i in range(1, size + 1):
            layout[f"block{block}_conv{i}"] = (index, channels, filters)
            channels = filters
            index += 2  # conv, ReLU
        index += 1  # max-pool
    return layout


VGG19_KERAS_LAYERS = tuple(_vgg19_layout())


def convert_keras_vgg19(
    path: str | Path, *, require: Sequence[str] | None = None, prefix: str = ""
) -> dict[str, torch.Tensor]:
    """Keras VGG-19 weights (``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``, or any Keras file holding
    its ``block{b}_conv{i}`` layers) -> torchvision ``vgg19().features`` state dict keys
    (``"0.weight"``, ``"0.bias"``, ``"2.weight"``, ...; ``prefix="features."`` gives full-model keys).

    require: Keras layer names that must be present (default: all 16 convolutions; a real notop file has
    them). The kernels keep their input-channel order: Keras' weights expect caffe-style BGR input, so use
    them with the reference preprocessing (x*127.5+127.5, subtract [103.939, 116.779, 123.68] from R, G, B,
    then flip to BGR), not torchvision's.
    """
    kfile = _read(path)
    layout = _vgg19_layout()
    required = list(VGG19_KERAS_LAYERS if require is None else require)
    unknown = [name for name in required if name not in layout]
    if unknown:
        raise InputError(
            f"convert_keras_vgg19: require names {unknown} are not VGG-19 layers ({', '.join(layout)})"
        )
    found = {layer.name: layer for layer in kfile.layers if layer.name in layout}
    missing = [name for name in required if name not in found]
    if missing:
        raise InputError(f"{kfile.path}: VGG-19 layers {missing} are missing (has {sorted(found) or 'none'})")
    state: dict[str, torch.Tensor] = {}
    for name, layer in found.items():
        index, cin, cout = layout[name]
        if len(layer.weights) != 2:
            raise InputError(
                f"{kfile.path}: VGG-19 layer '{name}' has {len(layer.weights)} weights, expected 2"
            )
        kernel, bias = layer.weights
        if kernel.shape != (3, 3, cin, cout) or bias.shape != (cout,):
            raise InputError(
                f"{kfile.path}: VGG-19 layer '{name}' has kernel {kernel.shape} / bias {bias.shape}, "
                "expected "
                f"(3, 3, {cin}, {cout}) / ({cout},)"
            )
        state[f"{prefix}{index}.weight"] = _conv_weight(kernel)
        state[f"{prefix}{index}.bias"] = torch.from_numpy(bias.copy())
    return state


def describe(arch: KerasArchitecture) -> str:
    """A few lines describing the architecture found (for ``deformgan import-keras --check``)."""
    lines = [f"{arch.source or 'Keras file'}: {arch.kind}"]
    version = (
        f"Keras {arch.keras_version or '(version not recorded)'}, backend {arch.backend or '(not recorded)'}"
    )
    layout = (
        "model.save (model_weights + model_config)"
        if arch.layout == "model_weights"
        else "save_weights (root)"
    )
    lines.append(f"  file: {layout}; {version}")
    if arch.kind == "generator":
        variant = {
            "none": "Baseline (one encoder, plain skips)",
            "mask": "DSC (deformable skips, 10 parts)",
            "global": "global affine skips (--warp_skip full)",
        }[arch.warp_skip or "none"]
        lines.append(
            f"  variant: warp_skip={arch.warp_skip!r} = {variant}"
            + ("" if arch.warp_skip == "none" else f", warp_agg={arch.warp_agg!r}")
        )
        lines.append(f"  encoder levels: {arch.levels}; encoder filters {arch.filters}; width {arch.width:g}")
    else:
        lines.append(f"  filters {arch.filters} -> 1; width {arch.width:g}")
    if arch.image_size is not None:
        lines.append(f"  image size: {arch.image_size[0]}x{arch.image_size[1]} (from model_config)")
    elif arch.implied_image_size is not None:
        size = arch.implied_image_size
        lines.append(f"  image size: not recorded; {size[0]}x{size[1]} assumed")
    lines.extend(f"  note: {note}" for note in arch.notes)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------
# A run folder from the authors' files


def import_run(
    generator_file: str | Path,
    config: Any,
    out: str | Path,
    discriminator_file: str | Path | None = None,
    data_dir: str | Path | None = None,
) -> Path:
    """Write a deformgan run folder (safetensors checkpoint + config + state) from the authors' Keras files.

    config: a :class:`deformgan.config.Config` (normally a paper config, e.g. ``market-full``: the
    authors' heatmaps, warp and VGG settings). The generator file must match it (variant, image size,
    width: one clear line otherwise). Without ``discriminator_file`` the discriminator starts from Keras'
    initialisation, which only matters for fine-tuning (``train --resume``) and is recorded in the state.
    The checkpoint is step 0 with fresh Adam states. ``out`` must be new or empty.
    """
    import dataclasses

    from deformgan.checkpoint import save_checkpoint
    from deformgan.config import CONFIG_FILE, save_config
    from deformgan.models import build_discriminator, build_generator, load_weights

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: not empty; import into a new folder")
    g_state, g_arch = convert_keras_model(
        generator_file, kind="generator", image_size=config.image_size, warp_skip=config.generator.warp_skip
    )
    if g_arch.warp_agg is not None:
        config = config.replace(generator=dataclasses.replace(config.generator, warp_agg=g_arch.warp_agg))
    config = config.replace(generator=dataclasses.replace(config.generator, width=g_arch.width))
    generator = build_generator(config)
    load_weights(generator, g_state, f"{generator_file}: generator")
    source = {"generator": str(Path(generator_file).resolve()), "notes": list(g_arch.notes)}
    torch.manual_seed(0)
    if discriminator_file is not None:
        d_state, d_arch = convert_keras_model(
            discriminator_file, kind="discriminator", image_size=config.image_size
        )
        config = config.replace(discriminator=dataclasses.replace(config.discriminator, width=d_arch.width))
        discriminator = build_discriminator(config)
        load_weights(discriminator, d_state, f"{discriminator_file}: discriminator")
        source["discriminator"] = str(Path(discriminator_file).resolve())
    else:
        discriminator = build_discriminator(config)
        source["discriminator"] = None  # Keras initialisation: trained from scratch if fine-tuned
    optimizers = {
        name: torch.optim.Adam(net.parameters(), lr=config.train.lr, betas=config.train.betas).state_dict()
        for name, net in (("generator", generator), ("discriminator", discriminator))
    }
    save_checkpoint(
        out, 0, generator=generator.state_dict(), discriminator=discriminator.state_dict(),
        optimizers=optimizers, config=config.to_dict(), data_dir=data_dir,
        extra={"imported_from_keras": source},
    )  # fmt: skip
    save_config(config, out / CONFIG_FILE)
    return out
