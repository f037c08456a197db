"""Reading the output folder of a pose-transfer method, in the formats the field publishes its results in.

Formats (:data:`FORMATS`), detected from the file names and the image size:

===============  =====================================================  ===================================
format           files                                                  panels, left to right
===============  =====================================================  ===================================
``generated``    ``<from>_<to>.png`` (``deformgan generate``)            generated
``strips``       ``<from>_<to>.png`` (the authors' ``test.py``,          source | target | generated
                 ``deformgan generate --strips``)
``vis``          ``<from>___<to>_vis.jpg`` / ``.png`` (PATN's            source | source pose | target |
                 ``test.py``; the field's VUNet/PATN result folders)     target pose | generated (5 panels)
                                                                        or source | target | generated
``numbered``     ``00145.png`` (no pair names)                          source | target | generated
                                                                        (or generated only)
``named``        generated images named by pair otherwise:              generated
                 ``<from>___<to>.jpg``, ``<from>_<to>.jpg``, or stems
                 without the names' extensions (resolved with the
                 annotated names)
===============  =====================================================  ===================================

Image names contain underscores (``0007_c2s3_070952_01.jpg``), so a ``_`` separator is found at an
``.<ext>_`` boundary, or by matching both halves against the annotated image names. The number of panels of
a strip follows from its size: the panel frame must be one of the field's frames (:data:`FRAMES`) unless
``frame=`` names it. A folder mixing naming formats or image sizes is rejected in one line (one method per
folder); files that are not images (``metrics.json``, ``.txt`` logs) are ignored.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deformgan.errors import InputError
from deformgan.images import read_image
from deformgan.keypoints import read_pairs

#: Person frames (H, W) of the field's datasets: Market-1501, DeepFashion as Def-GAN generates it, and
#: DeepFashion in PATN's 256x176 crop. A strip's panel count is the one that makes its panels one of these.
FRAMES: tuple[tuple[int, int], ...] = ((128, 64), (256, 256), (256, 176))

#: Suffixes of the image files a method folder may hold (JPEG inputs are allowed).
SUFFIXES = (".png", ".jpg", ".jpeg")

#: The formats, with the one-line description reports print.
FORMATS: dict[str, str] = {
    "generated": "generated images named <from>_<to>.png (deformgan generate)",
    "strips": "[source | target | generated] strips named <from>_<to>.png (the authors' test.py, "
    "deformgan generate --strips)",
    "vis": "<from>___<to>_vis strips (PATN's test.py layout, used for VUNet/PATN results)",
    "numbered": "numbered strips without pair names (e.g. 00145.png)",
    "named": "generated images named by pair (<from><separator><to>)",
}

#: Panel layouts by (format, number of panels).
PANELS: dict[tuple[str, int], tuple[str, ...]] = {
    ("generated", 1): ("generated",),
    ("named", 1): ("generated",),
    ("strips", 3): ("source", "target", "generated"),
    ("vis", 3): ("source", "target", "generated"),
    ("vis", 5): ("source", "source_pose", "target", "target_pose", "generated"),
    ("numbered", 3): ("source", "target", "generated"),
    ("numbered", 1): ("generated",),
}

_EXT = r"\.(?:jpg|jpeg|png)"
_VIS = re.compile(rf"^(?P<a>.+)___(?P<b>.+)_vis{_EXT}$", re.IGNORECASE)
_NUMBERED = re.compile(rf"^(?P<n>\d+){_EXT}$", re.IGNORECASE)
_EXT_BOUNDARY = re.compile(rf"{_EXT}_", re.IGNORECASE)
_ENDS_WITH_EXT = re.compile(rf"{_EXT}$", re.IGNORECASE)


# ----------------------------------------------------------------------------------------------
# File names


@dataclass(frozen=True)
class ParsedName:
    """What a file name says: its naming ``kind`` ("vis", "numbered", "pair"), the pair or the number,
    and ``separator`` ("_" or "___") for pair names."""

    kind: str
    pair: tuple[str, str] | None = None
    number: int | None = None
    separator: str | None = None


def _strip_suffix(filename: str) -> str:
    stem, suffix = os.path.splitext(filename)
    return stem if suffix.lower() in SUFFIXES else filename


def _stem_index(known: Iterable[str]) -> dict[str, str]:
    """{name without its image extension: name} for the annotated names (stems that collide are dropped)."""
    index: dict[str, str] = {}
    clashes = set()
    for name in known:
        stem = _ENDS_WITH_EXT.sub("", name)
        if stem in index and index[stem] != name:
            clashes.add(stem)
        index[stem] = name
    for stem in clashes:
        del index[stem]
    return index


def _resolve(name: str, known: set[str] | None, stems: dict[str, str] | None) -> str:
    """An annotated name for ``name``: itself if known, else the known name it is the stem of."""
    if known is None or name in known or not stems:
        return name
    return stems.get(name, name)


def split_pair(
    stem: str, separator: str, known: set[str] | None = None, stems: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    """The candidate (from, to) splits of a file stem (no file suffix).

    ``separator="___"`` splits there. ``"_"`` splits at every ``.<ext>_`` boundary whose halves both end
    in an image extension (narrowed to the splits whose halves are both ``known`` when several fit); with
    no such boundary, at every ``_`` whose halves are both annotated names with or without their extension
    (``stems``: {stem: name} of the known names). Halves are mapped to the annotated names they stand for.
    """
    if separator == "___":
        parts = stem.split("___")
        if len(parts) != 2 or not all(parts):
            return []
        return [(_resolve(parts[0], known, stems), _resolve(parts[1], known, stems))]
    candidates = [(stem[: m.end() - 1], stem[m.end() :]) for m in _EXT_BOUNDARY.finditer(stem)]
    candidates = [c for c in candidates if _ENDS_WITH_EXT.search(c[1])]
    if known is not None and len(candidates) > 1:
        candidates = [c for c in candidates if c[0] in known and c[1] in known] or candidates
    if candidates or known is None:
        return candidates
    found = []
    for i, char in enumerate(stem):
        if char == "_":
            a, b = _resolve(stem[:i], known, stems), _resolve(stem[i + 1 :], known, stems)
            if a in known and b in known:
                found.append((a, b))
    return found


def parse_name(
    filename: str, known: set[str] | None = None, stems: dict[str, str] | None = None
) -> ParsedName | None:
    """Classify one file name -> :class:`ParsedName`, or None if no format's naming fits it.

    Raises :class:`InputError` for a pair name that splits in more than one way.
    """
    if (m := _NUMBERED.match(filename)) is not None:
        return ParsedName("numbered", number=int(m["n"]))
    if (m := _VIS.match(filename)) is not None:
        pair = (_resolve(m["a"], known, stems), _resolve(m["b"], known, stems))
        return ParsedName("vis", pair=pair, separator="___")
    stem = _strip_suffix(filename)
    separator = "___" if "___" in stem else "_"
    candidates = split_pair(stem, separator, known, stems)
    if len(candidates) > 1:
        raise InputError(
            f"{filename}: an ambiguous pair name ({len(candidates)} ways to split it into <from>_<to>); "
            "pass the annotation CSVs so the known image names decide"
        )
    if not candidates:
        return None
    return ParsedName("pair", pair=candidates[0], separator=separator)


# ----------------------------------------------------------------------------------------------
# Folders


@dataclass
class MethodImages:
    """One method's images, in file-name order.

    ``keys`` identify the images across methods: (from, to) for named pairs, ``("#<number>", "")`` for
    numbered strips without pair names. ``pairs`` is None for unnamed numbered strips. Images are uint8
    (N, H, W, 3) RGB in the panel frame ``frame`` (H, W); ``source`` and ``target`` are None for formats
    without those panels.
    """

    folder: Path
    format: str
    panels: tuple[str, ...]
    frame: tuple[int, int]
    files: list[Path]
    keys: list[tuple[str, str]]
    pairs: list[tuple[str, str]] | None
    generated: np.ndarray
    source: np.ndarray | None
    target: np.ndarray | None

    @property
    def description(self) -> str:
        """One line: folder, count, detected format and panel layout."""
        layout = " | ".join(self.panels)
        return (
            f"{self.folder}: {len(self.files)} images, format {self.format!r} ({FORMATS[self.format]}); "
            f"panels [{layout}] of {self.frame[0]}x{self.frame[1]}"
        )

    def subset(self, index: Sequence[int]) -> MethodImages:
        """The images at ``index`` (a new object; arrays are copied by fancy indexing)."""
        index = list(index)

        def take(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else array[index]

        return MethodImages(
            folder=self.folder,
            format=self.format,
            panels=self.panels,
            frame=self.frame,
            files=[self.files[i] for i in index],
            keys=[self.keys[i] for i in index],
            pairs=None if self.pairs is None else [self.pairs[i] for i in index],
            generated=self.generated[index],
            source=take(self.source),
            target=take(self.target),
        )

    def crop_columns(self, left: int, width: int) -> MethodImages:
        """The same images cut to columns [left, left + width) of every panel (e.g. 256x256 -> 256x176)."""

        def cut(array: np.ndarray | None) -> np.ndarray | None:
            return None if array is None else np.ascontiguousarray(array[:, :, left : left + width])

        return MethodImages(
            folder=self.folder,
            format=self.format,
            panels=self.panels,
            frame=(self.frame[0], width),
            files=self.files,
            keys=self.keys,
            pairs=self.pairs,
            generated=cut(self.generated),
            source=cut(self.source),
            target=cut(self.target),
        )


def _describe_kind(kind: str, parsed: ParsedName, name: str) -> str:
    if kind == "pair":
        pattern = "<from>___<to>" if parsed.separator == "___" else "<from>_<to>"
        return f"pair-named files ({pattern}, e.g. {name})"
    if kind == "vis":
        return f"<from>___<to>_vis files (e.g. {name})"
    return f"numbered files (e.g. {name})"


def panel_count(
    size: tuple[int, int],
    allowed: Sequence[int],
    frame: tuple[int, int] | None,
    where: str,
    prefer: int | None = None,
) -> int:
    """How many panels a (H, W) image holds: the count in ``allowed`` whose panels have the frame
    ``frame`` (or one of :data:`FRAMES`). For a frame of no known dataset (``frame`` not given), the only
    count that divides the width, or ``prefer`` (``--triplets``: 3) when it does. Raises
    :class:`InputError` when none or several fit."""
    height, width = size
    frames = [tuple(frame)] if frame is not None else list(FRAMES)
    fits = [k for k in allowed if width % k == 0 and (height, width // k) in frames]
    if prefer is not None and prefer in fits:
        return prefer
    if len(fits) == 1:
        return fits[0]
    if not fits and frame is None:
        divisible = [k for k in allowed if width % k == 0]
        if prefer in divisible:
            return prefer
        if len(divisible) == 1:
            return divisible[0]
    counts = " or ".join(str(k) for k in allowed)
    shown = ", ".join(f"{h}x{w}" for h, w in frames)
    if not fits:
        raise InputError(
            f"{where}: a {height}x{width} (HxW) image is not {counts} panels of a known frame ({shown}); "
            "pass frame=HxW for another dataset"
        )
    raise InputError(
        f"{where}: a {height}x{width} image splits into {fits} panels of {shown}; pass frame=HxW"
    )


def _number_pairs(
    numbers: Sequence[int], pairs: Sequence[tuple[str, str]], first_number: int, folder: Path
) -> list[tuple[str, str]]:
    named = []
    for number in numbers:
        row = number - first_number
        if not 0 <= row < len(pairs):
            raise InputError(
                f"{folder}: numbered file {number} has no pair: the pairs list has {len(pairs)} rows "
                f"numbered from {first_number}"
            )
        named.append(tuple(pairs[row]))
    return named


def read_method(
    folder: str | os.PathLike,
    *,
    known: Iterable[str] | None = None,
    pairs: str | os.PathLike | Sequence[tuple[str, str]] | None = None,
    first_number: int = 0,
    frame: tuple[int, int] | None = None,
    progress: bool = False,
    strips: bool = False,
) -> MethodImages:
    """Read a method's folder in any of :data:`FORMATS` (detected) -> :class:`MethodImages`.

    strips: the user says the images are [source | target | generated] strips (``--triplets``), which
    decides the panel count where the image size alone cannot.

    known: annotated image names (resolve ambiguous pair names and names without extensions).
    pairs: a pairs CSV or list; it names numbered strips (file number ``first_number + i`` is row i, the
    order test scripts iterate the pairs in) and is ignored for named formats. frame: the panel size
    (H, W) when it is none of :data:`FRAMES`. Raises :class:`InputError` for a missing or empty folder, an
    image file no format names, a folder mixing formats or image sizes, or a strip of the wrong width.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: folder of generated images not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    files = [p for p in files if not p.name.startswith(".")]
    if not files:
        raise InputError(
            f"{folder}: no .png/.jpg images (expected one method's outputs: <from>_<to>.png, "
            "<from>___<to>_vis.jpg or numbered strips)"
        )
    known_set = set(known) if known is not None else None
    stems = _stem_index(known_set) if known_set else None

    parsed: list[ParsedName] = []
    for path in files:
        name = parse_name(path.name, known_set, stems)
        if name is None:
            raise InputError(
                f"{path}: unknown file name, expected <from>_<to>.png, <from>___<to>_vis.jpg or 00145.png "
                "(names with their .jpg/.png extension, or annotated names)"
            )
        parsed.append(name)
    kinds = Counter((p.kind, p.separator if p.kind == "pair" else None) for p in parsed)
    if len(kinds) > 1:
        first = {}
        for path, p in zip(files, parsed, strict=True):
            first.setdefault((p.kind, p.separator if p.kind == "pair" else None), (p, path.name))
        parts = [f"{n} {_describe_kind(k[0], *first[k])}" for k, n in kinds.most_common()]
        raise InputError(f"{folder}: mixes file-name formats: {'; '.join(parts)}; one method per folder")
    kind = parsed[0].kind

    if kind == "numbered":
        numbers = [p.number for p in parsed]
        if len(set(numbers)) != len(numbers):
            repeated = next(n for n, c in Counter(numbers).items() if c > 1)
            raise InputError(f"{folder}: number {repeated} appears twice (e.g. 0012.png and 12.png)")
        named = None
        if pairs is not None:
            listed = read_pairs(pairs) if isinstance(pairs, (str, os.PathLike)) else list(pairs)
            named = _number_pairs(numbers, listed, first_number, folder)
        keys = named if named is not None else [(f"#{n}", "") for n in numbers]
    else:
        named = [p.pair for p in parsed]
        if len(set(named)) != len(named):
            repeated = next(n for n, c in Counter(named).items() if c > 1)
            raise InputError(f"{folder}: pair {repeated[0]} -> {repeated[1]} appears in two files")
        keys = named

    # The first image decides the layout; every panel is cut while reading (no full-strip copy is kept).
    first = read_image(files[0])
    shape = first.shape
    allowed = {"pair": (1, 3), "vis": (3, 5), "numbered": (3, 1)}[kind]
    count = panel_count(shape[:2], allowed, frame, str(files[0]), prefer=3 if strips else None)
    if kind == "pair":
        # deformgan generate's (and the authors') exact naming: <from>_<to>.png with both full names.
        plain_png = all(f.name == f"{p.pair[0]}_{p.pair[1]}.png" for f, p in zip(files, parsed, strict=True))
        fmt = "strips" if count == 3 else ("generated" if plain_png else "named")
    else:
        fmt = kind
    panels = PANELS[(fmt, count)]
    width = shape[1] // count
    kept = {name: i for i, name in enumerate(panels) if name in ("source", "target", "generated")}
    arrays = {name: np.empty((len(files), shape[0], width, 3), np.uint8) for name in kept}
    iterator = enumerate(files)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(files), desc=f"read {folder.name}", unit="img", leave=False)
    for index, path in iterator:
        image = first if index == 0 else read_image(path)
        if image.shape != shape:
            raise InputError(
                f"{path}: size {image.shape[0]}x{image.shape[1]} (HxW) differs from {files[0].name}'s "
                f"{shape[0]}x{shape[1]}: the folder mixes image sizes (one method and format per folder)"
            )
        for name, i in kept.items():
            arrays[name][index] = image[:, i * width : (i + 1) * width]
    return MethodImages(
        folder=folder,
        format=fmt,
        panels=panels,
        frame=(shape[0], width),
        files=files,
        keys=list(keys),
        pairs=None if named is None else list(named),
        generated=arrays["generated"],
        source=arrays.get("source"),
        target=arrays.get("target"),
    )
