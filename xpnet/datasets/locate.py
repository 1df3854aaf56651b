"""Find a dataset's files on disk, in a fixed order of folders, or download them.

Folders, in order (docs/data.md): the ``data_dir`` argument, then ``$XPNET_DATA_DIR``,
each itself and its subfolders named after the dataset (``mnist/``, ``fashion-mnist/``;
the 5k subset also ``mnist/``, where it sits beside the MNIST files), so either may name
the folder of the files or a data root with one folder per dataset; then the dataset's
system folders (Debian's ``/usr/share/datasets/fashion-mnist``); then the cache folder;
last, the copy shipped inside the package (MNIST's test split), so the main job runs
offline on a fresh install.
In each, a file may be gzipped or not. The first copy that passes the checks (see
:mod:`xpnet.datasets.verify`) is used. A copy that is another dataset's file (MNIST and
Fashion-MNIST share file names) is passed over quietly; one that fails the checks is
skipped with a warning where another copy is found, and named in the error otherwise.

The core install (without platformdirs, and no ``$XPNET_CACHE_DIR``) has no cache folder:
local files still load, parsed on every load, and only a download needs one.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from xpnet.datasets.download import LOCAL_FILES_HINT, fetch
from xpnet.datasets.parsed import load_parsed
from xpnet.datasets.registry import DataFile, Dataset
from xpnet.datasets.verify import ForeignFileError
from xpnet.errors import DataError


def cache_dir(dataset: Dataset) -> Path:
    """The dataset's cache folder: ``<cache root>/<name>``."""
    return cache_root() / dataset.name


NO_CACHE_FOLDER = (
    "xpnet needs platformdirs to find its cache folder (pip install 'xpnet[data]'), "
    "or set XPNET_CACHE_DIR"
)
"""Why there is no cache folder, and the two ways to have one."""


def cache_root() -> Path:
    """xpnet's cache folder: ``$XPNET_CACHE_DIR``, else the user cache's.

    The user cache is ``platformdirs.user_cache_dir("xpnet")``, e.g. ``~/.cache/xpnet``.
    Raises :class:`DataError` where neither names one (the core install, without
    platformdirs).
    """
    root = _known_cache_root()
    if root is None:
        raise DataError(NO_CACHE_FOLDER)
    return root


def _known_cache_root() -> Path | None:
    """:func:`cache_root`, or ``None`` where it is unknown: local files still load then."""
    root = os.environ.get("XPNET_CACHE_DIR")
    if root:
        return Path(root)
    try:
        import platformdirs
    except ImportError:
        return None
    return Path(platformdirs.user_cache_dir("xpnet"))


def _known_cache_dir(dataset: Dataset) -> Path | None:
    """:func:`cache_dir`, or ``None`` where the cache folder is unknown."""
    root = _known_cache_root()
    return None if root is None else root / dataset.name


def search_dirs(dataset: Dataset, data_dir: str | os.PathLike[str] | None) -> list[Path]:
    """The folders searched for the dataset's files, in order, without repeats (the cache
    folder, where there is one, then the package's own copies, where it ships some).

    ``data_dir`` and ``$XPNET_DATA_DIR`` are searched with their subfolders named in
    ``dataset.folders`` (see :func:`lookup_dirs`).
    """
    env = os.environ.get("XPNET_DATA_DIR")
    dirs = [Path(d) for d in (data_dir, env) if d]
    return _in_order(dataset, dirs)


def _in_order(dataset: Dataset, dirs: list[Path]) -> list[Path]:
    """``dirs``, the system folders, the cache folder and the embedded folder, without repeats."""
    cache = _known_cache_dir(dataset)
    last = [folder for folder in (cache, dataset.embedded) if folder is not None]
    return list(dict.fromkeys([*dirs, *dataset.system_dirs, *last]))


def lookup_dirs(dataset: Dataset, data_dir: str | os.PathLike[str] | None) -> list[Path]:
    """Every folder that may hold the dataset's files, in the order they are searched."""
    env = os.environ.get("XPNET_DATA_DIR")
    roots = [Path(d) for d in (data_dir, env) if d]
    dirs = [folder for root in roots for folder in (root, *(root / f for f in dataset.folders))]
    return _in_order(dataset, dirs)


def load_files(
    dataset: Dataset,
    files: Sequence[DataFile],
    data_dir: str | os.PathLike[str] | None,
    download: bool,
) -> list[np.ndarray]:
    """The arrays of ``files``: local copies first, then (if allowed) downloads.

    Raises a one-line DataError naming the missing files, the folders searched, the
    copies skipped and why, where to get files xpnet cannot download, and how to point
    at local files.
    """
    dirs = lookup_dirs(dataset, data_dir)
    cache = _known_cache_dir(dataset)
    found: dict[str, np.ndarray] = {}
    skipped: list[str] = []
    foreign: dict[Path, str] = {}
    for spec in files:
        for path in _candidates(dirs, spec):
            try:
                found[spec.name] = load_parsed(path, spec, cache, dataset.name)
                break
            except ForeignFileError as exc:
                foreign[path.parent] = exc.owner
            except DataError as exc:
                skipped.append(str(exc))
    missing = [spec for spec in files if spec.name not in found]
    if missing:
        where = _not_found(dataset, missing, dirs, skipped, foreign)
        if not dataset.mirrors:
            raise DataError(f"{where}; {dataset.where_to_get}; {LOCAL_FILES_HINT}")
        if not download:
            raise DataError(f"{where} and download=False; {LOCAL_FILES_HINT}")
        if cache is None:
            raise DataError(f"{where}; to download them, {NO_CACHE_FOLDER}; {LOCAL_FILES_HINT}")
        for spec in missing:
            try:
                path = fetch(spec.gz_name, spec.md5, dataset.mirrors, cache, size=spec.size)
            except DataError as exc:
                raise DataError(f"{where}, and {exc}") from None
            found[spec.name] = load_parsed(path, spec, cache, dataset.name)
    if skipped:
        warnings.warn(f"xpnet skipped {'; '.join(skipped)}; used another copy", stacklevel=4)
    return [found[spec.name] for spec in files]


def _not_found(
    dataset: Dataset,
    missing: Sequence[DataFile],
    dirs: Sequence[Path],
    skipped: Sequence[str],
    foreign: dict[Path, str],
) -> str:
    """``<dataset>: <files> not found in <folders> (<why copies were passed over>)``."""
    looked = f"in {', '.join(map(str, dirs))}" if dirs else "(no folder to look in)"
    notes = [f"{folder} holds {owner}'s files" for folder, owner in foreign.items()]
    if skipped:
        notes.append(f"skipped {'; '.join(skipped)}")
    return f"{dataset.name}: {', '.join(spec.gz_name for spec in missing)} not found {looked}" + (
        f" ({'; '.join(notes)})" if notes else ""
    )


def _candidates(dirs: Sequence[Path], spec: DataFile) -> Iterator[Path]:
    """The existing files that may be ``spec``, in search order."""
    for folder in dirs:
        for name in (spec.gz_name, spec.name):
            if (folder / name).is_file():
                yield folder / name
