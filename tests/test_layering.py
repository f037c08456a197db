"""Imports point one way: every module of src/deformgan imports only modules below it in :data:`LAYERS`.

The chain is the README's "What is inside" table, read bottom-up, with the shared helpers (errors, files,
images, devices, weights files, configs, checkpoints) underneath everything. Each module is parsed with
:mod:`ast`, so lazy imports inside functions count as much as top-level ones, and so does a module named in
a string (what ``importlib.import_module`` is given).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "deformgan"

#: Top-level modules and packages of deformgan, bottom first: each may import only those before it (and
#: itself: a package's submodules import each other freely).
LAYERS: tuple[str, ...] = (
    # shared helpers
    "errors",
    "atomic",
    "images",
    "runtime",
    "pretrained",
    "config",
    "checkpoint",
    # the pipeline, in the README's order
    "keypoints",
    "pose",
    "parts",
    "conditioning",
    "warp",
    "models",
    # The README lists keras_import near the end, but it needs only models, config and checkpoint, and vgg
    # reads Keras' VGG-19 file through it (keras_import.convert_keras_vgg19): its place is here.
    "keras_import",
    "losses",
    "vgg",
    "objective",
    "data",
    "synth",
    "train",
    "generate",
    "transfer",
    "evaluation",
    "reid",
    "editor",
    "demo",
    "cli",
    # the package itself: ``deformgan.PoseTransfer`` is a lazy re-export of transfer's
    "__init__",
)

#: Imports that point up the chain, each with the reason it is kept.
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("config", "data"): (
        "Config.image_size and validate() read the dataset presets (data.layout.PRESETS: the image size "
        "comes from the preset); imported lazily, so importing config does not import data"
    ),
}


def _module_name(path: Path) -> str:
    """src/deformgan/a/b.py -> "deformgan.a.b"; a package's __init__.py -> the package."""
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top(module: str) -> str:
    """ "deformgan.evaluation.scores" -> "evaluation"; the package itself -> "__init__"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_submodule(name: str) -> bool:
    return (SOURCE / f"{name}.py").exists() or (SOURCE / name / "__init__.py").exists()


def imported_modules(path: Path) -> set[str]:
    """Every deformgan module the file imports, anywhere in it (full dotted names)."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base == "deformgan":  # from deformgan import parts: the submodule, not the package
                found.update(f"deformgan.{a.name}" if _is_submodule(a.name) else base for a in node.names)
            else:
                found.add(base)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if re.fullmatch(r"deformgan(\.\w+)+", node.value):
                found.add(node.value)
    return {name for name in found if name == "deformgan" or name.startswith("deformgan.")}


def _edges() -> dict[tuple[str, str], list[str]]:
    """(importer layer, imported layer) -> "file: module" lines, across layers only."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        importer = _top(_module_name(path))
        for module in sorted(imported_modules(path)):
            if _top(module) != importer:
                where = f"{path.relative_to(SOURCE.parent)}: {module}"
                edges.setdefault((importer, _top(module)), []).append(where)
    return edges


EDGES = _edges()


def test_every_module_has_a_layer():
    # A new top-level module must be placed in the chain, or the other checks would pass without it.
    modules = {_top(_module_name(path)) for path in SOURCE.rglob("*.py")}
    assert modules - set(LAYERS) == set()
    assert set(LAYERS) - modules == set()  # no stale names either
    assert len(set(LAYERS)) == len(LAYERS)


def test_the_parser_sees_lazy_and_package_level_imports():
    # Known imports, from the source: vgg imports keras_import inside VGGFeatures.__init__ (lazy),
    # conditioning does "from deformgan import parts", and the package's __getattr__ imports transfer.
    assert ("vgg", "keras_import") in EDGES
    assert ("conditioning", "parts") in EDGES
    assert ("__init__", "transfer") in EDGES


@pytest.mark.parametrize("importer", LAYERS)
def test_imports_point_down_the_chain(importer):
    rank = LAYERS.index(importer)
    upward = {
        f"{importer} -> {imported}": where
        for (source, imported), where in EDGES.items()
        if source == importer and LAYERS.index(imported) > rank and (source, imported) not in EXCEPTIONS
    }
    assert upward == {}


@pytest.mark.parametrize("edge", list(EXCEPTIONS))
def test_each_exception_is_still_needed(edge):
    # An exception whose import is gone must be deleted, so that the list stays the true list.
    assert edge in EDGES
    assert LAYERS.index(edge[1]) > LAYERS.index(edge[0])  # it does point up (else it needs no exception)
