"""Atomic file writes: a temporary file in the same folder, then ``os.replace``.

A crash or Ctrl-C mid-write leaves the previous file intact (or no file), never half a file. The result
gets the permissions an ordinary ``open()`` would give it (0666 minus the umask), not ``mkstemp``'s 0600.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The mode a new file (0666) or folder (0777) gets under the current umask."""
    return (0o777 if directory else 0o666) & ~_umask()


def temporary_dir(parent: Path, name: str) -> Path:
    """A hidden temporary folder ``.<name>.*.tmp`` in ``parent`` with the umask's folder permissions."""
    path = Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=".tmp"))
    os.chmod(path, default_mode(directory=True))
    return path


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, fsync: bool = False) -> Iterator[BinaryIO]:
    """Open a binary temporary file beside ``path``; on success it replaces ``path`` atomically.

    ``fsync=True`` also flushes the data to disk before the rename (checkpoints: survives a power cut).
    Parent folders are created. On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, default_mode())
        with os.fdopen(fd, "wb") as handle:
            yield handle
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically -> the path."""
    with atomic_writer(path, fsync=fsync) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, fsync: bool = False) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically -> the path."""
    return atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)
