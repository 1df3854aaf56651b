"""A parsed copy of each data file as .npy, so a repeat load skips gunzip and checks.

A copy's name holds a digest of its source's resolved path, size and modification time:
an edited or replaced source is parsed and checked again. Copies are written atomically
(temporary file, then ``os.replace``) and read whole with ``allow_pickle=False``; a copy
that does not load or has the wrong shape is ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np

from xpnet._atomic import atomic_write
from xpnet.datasets.idx import read_errors
from xpnet.datasets.registry import DataFile
from xpnet.datasets.verify import read_verified

_FORMAT = 1
"""Bump to orphan every copy written before a change of what a copy holds."""


def load_parsed(path: Path, spec: DataFile, cache_dir: Path | None) -> np.ndarray:
    """``spec``'s array from the file at ``path``: its parsed copy, else parsed, checked, kept.

    The array is the caller's own: read whole from the copy (one read, no memory map
    whose pages would fault in again on every load), or freshly parsed. Without a
    ``cache_dir`` (no cache folder) it is parsed and checked every time.
    """
    if cache_dir is None:
        return read_verified(path, spec)
    copy = parsed_copy_path(path, spec, cache_dir)
    array = _load_copy(copy, spec)
    if array is None:
        array = read_verified(path, spec)
        _store(copy, array, path)
    return array


def parsed_copy_path(path: Path, spec: DataFile, cache_dir: Path) -> Path:
    """Where the parsed copy of the file at ``path`` lives, keyed by its path, size and mtime."""
    with read_errors(path):
        stat = path.stat()
    key = f"{_FORMAT}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir / "parsed" / f"{spec.name}-{digest}.npy"


def _load_copy(copy: Path, spec: DataFile) -> np.ndarray | None:
    if not copy.is_file():
        return None
    try:
        array = np.load(copy, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if array.dtype != np.uint8 or array.shape != spec.shape:
        return None
    return np.asarray(array)


def _store(copy: Path, array: np.ndarray, source: Path) -> None:
    try:
        with atomic_write(copy) as stream:
            np.save(stream, array, allow_pickle=False)
    except OSError as exc:
        warnings.warn(
            f"xpnet cannot keep a parsed copy of {source} in {copy.parent} "
            f"({exc.strerror or exc}); every load will parse it again",
            stacklevel=4,
        )
