"""Labelled images in a chunked Zarr store: written chunk by chunk, read lazily or whole.

A store is a Zarr (v3) group holding ``images``, uint8 rows of pixels ``(N, pixels)``, and
``labels``, uint8 class indices ``(N,)``, chunked alike along the rows, with metadata in the
group's attributes: ``{"xpnet": "labelled-images/1", "dataset", "split", "image_shape",
"classes", ...}``. Every chunk is written (none is left to a fill value) and carries a zstd
checksum, so a missing or damaged chunk is an error, never silent zeros. Reading for dask is
lazy, one task per chunk, so the images may be far larger than any worker's memory.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xpnet._typing import Array
from xpnet.errors import DataError

FORMAT = "labelled-images/1"
"""The value of the ``xpnet`` attribute that marks a store this module wrote."""

DEFAULT_CHUNK_ROWS = 65_536
"""Rows per chunk: 51 MB of MNIST pixels, a task's worth of work that fits any worker."""

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class ImageStore:
    """An opened, checked store: its Zarr arrays and metadata (nothing read yet)."""

    path: str
    images: Any
    labels: Any
    metadata: dict[str, Any]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def chunk_rows(self) -> int:
        """Rows per chunk."""
        return int(self.images.chunks[0])

    def read(self, *, lazy: bool = False) -> tuple[Array, Array]:
        """The uint8 images ``(N, pixels)`` and int64 labels ``(N,)``.

        ``lazy`` gives dask arrays with the store's chunks, read on demand by whichever
        worker computes them; otherwise NumPy arrays, read whole. A damaged chunk raises a
        one-line :class:`DataError` naming the store and the rows when it is read.
        """
        if not lazy:
            return _read_all(self.images), _read_all(self.labels).astype(np.int64)
        import dask.array as da

        images, labels = (
            da.from_array(a, chunks=a.chunks, getitem=_read, meta=np.empty((0,) * a.ndim, np.uint8))
            for a in (self.images, self.labels)
        )
        return images, labels.astype(np.int64)


def write_store(
    path: PathLike,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    order: np.ndarray | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> ImageStore:
    """Write ``images[order]`` and ``labels[order]`` (all rows when ``order`` is None) to ``path``.

    ``images`` are uint8, one image per row (any trailing shape, flattened in the store);
    ``labels`` class indices. Rows are gathered and written one chunk at a time, so the store
    may be far larger than memory. The store is built beside ``path`` and renamed into place
    at the end: an interrupted write never leaves a store that looks complete.
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim < 2 or labels.shape != images.shape[:1]:
        raise DataError(
            f"expected uint8 images (N, ...) and labels (N,); got {images.dtype} "
            f"{images.shape} and {labels.shape}"
        )
    if labels.size and not 0 <= labels.min() <= labels.max() <= 255:
        raise DataError("labels must be class indices from 0 to 255 to fit a uint8 store")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    target = Path(path)
    if target.exists() and not overwrite:
        raise DataError(f"{target} exists; choose another path, or overwrite it (--overwrite)")
    rows = np.arange(len(images)) if order is None else np.asarray(order)
    pixels = math.prod(images.shape[1:])
    attrs = {
        "image_shape": list(images.shape[1:]),
        "classes": int(labels.max()) + 1 if labels.size else 0,
        **(metadata or {}),
        "xpnet": FORMAT,
    }
    building = target.with_name(f".{target.name}.partial")
    shutil.rmtree(building, ignore_errors=True)
    _write(building, images.reshape(len(images), pixels), labels, rows, chunk_rows, attrs)
    if target.exists():
        shutil.rmtree(target)
    building.rename(target)
    return open_store(target)


def _write(
    path: Path,
    images: np.ndarray,
    labels: np.ndarray,
    rows: np.ndarray,
    chunk_rows: int,
    attrs: dict[str, Any],
) -> None:
    zarr = _zarr()
    from zarr.codecs import ZstdCodec

    group = zarr.open_group(path, mode="w", attributes=attrs)
    options: dict[str, Any] = {
        "dtype": "uint8",
        "compressors": ZstdCodec(checksum=True),
        "config": {"write_empty_chunks": True},
    }
    stored_images = group.create_array(
        "images",
        shape=(len(rows), images.shape[1]),
        chunks=(chunk_rows, images.shape[1]),
        **options,
    )
    stored_labels = group.create_array(
        "labels", shape=(len(rows),), chunks=(chunk_rows,), **options
    )
    for start in range(0, len(rows), chunk_rows):
        chunk = rows[start : start + chunk_rows]
        stored_images[start : start + len(chunk)] = images[chunk]
        stored_labels[start : start + len(chunk)] = labels[chunk]


def open_store(path: PathLike) -> ImageStore:
    """Open the store at ``path`` and check its layout; raises a one-line DataError if not."""
    zarr = _zarr()
    name = os.fspath(path)
    try:
        group = zarr.open_group(name, mode="r")
        attrs = dict(group.attrs)
        if attrs.get("xpnet") != FORMAT:
            raise DataError(f"{name} is not an xpnet image store (write one with xpnet convert)")
        images, labels = group["images"], group["labels"]
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"no image store at {name}") from None
    except (OSError, ValueError, KeyError) as exc:  # zarr's errors for damaged metadata
        raise DataError(f"cannot open the image store {name}: {_reason(exc)}") from exc
    store = ImageStore(name, images, labels, attrs)
    _check(store)
    return store


def _zarr() -> Any:
    """The zarr module; ImportError with the install hint where it (extra ``dask``) is missing."""
    try:
        import zarr
    except ImportError:
        raise ImportError("xpnet's image stores need zarr 3: pip install 'xpnet[dask]'") from None
    return zarr


def _check(store: ImageStore) -> None:
    images, labels = store.images, store.labels
    pixels = math.prod(store.metadata.get("image_shape", [-1]))
    problem = None
    if images.ndim != 2 or labels.ndim != 1 or images.shape[1] != pixels:
        problem = f"images {images.shape} and labels {labels.shape} do not fit image_shape"
    elif images.dtype != np.uint8 or labels.dtype != np.uint8:
        problem = f"expected uint8 images and labels, got {images.dtype} and {labels.dtype}"
    elif images.shape[0] != labels.shape[0] or images.chunks[0] != labels.chunks[0]:
        problem = f"{images.shape[0]} images but {labels.shape[0]} labels, or unaligned chunks"
    else:
        missing = sum(a.nchunks - a.nchunks_initialized for a in (images, labels))
        if missing:
            problem = f"{missing} chunk(s) are missing"
    if problem:
        raise DataError(f"the image store {store.path} is damaged: {problem}")


def _read_all(array: Any) -> np.ndarray:
    """The whole of a stored array, read chunk by chunk (so a failure names its rows)."""
    out = np.empty(array.shape, array.dtype)
    for start in range(0, len(out), array.chunks[0]):
        rows = slice(start, min(start + array.chunks[0], len(out)))
        out[rows] = _read(array, (rows,))
    return out


def _read(array: Any, index: tuple[slice, ...]) -> np.ndarray:
    """``array[index]``, with any failure to read or decode as a DataError naming the rows."""
    try:
        return np.asarray(array[index])
    except Exception as exc:  # zarr and its codecs raise many types for damaged chunks
        rows = index[0]
        raise DataError(
            f"cannot read rows {rows.start}:{rows.stop} of {array.store_path}: {_reason(exc)}"
        ) from exc


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
