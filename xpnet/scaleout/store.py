"""Labelled images in a chunked Zarr store: written chunk by chunk, read lazily or whole.

A store is a Zarr (v3) group holding ``images``, uint8 rows of pixels ``(N, pixels)``, and
``labels``, uint8 class indices ``(N,)``, chunked alike along the rows, with metadata in the
group's attributes: ``{"xpnet": "labelled-images/2", "dataset", "split", "image_shape",
"classes", ...}``. Beside them, ``xpnet-manifest.json`` records what was written: each
array's shape, chunks and dtype, the group's attributes, every file of the store, and a
digest of each chunk's decoded values bound to the array and the chunk's position. Reading
checks the metadata against the manifest when the store is opened and each chunk against
its digest as it is read (whole or lazily, on any worker), so a missing, damaged, swapped
or resized piece is a one-line :class:`DataError` naming it, never zeros or another answer.

Writing builds the new store beside its path under a name xpnet owns
(``.NAME.xpnet-<token>``, marked as xpnet's and locked by its writer until it is in place)
and swaps it into place in one step, so ``path`` holds the complete old store or the
complete new one. ``overwrite`` replaces only an xpnet store, recognised by its own
metadata, and deletes of the old one only the files its manifest lists. What a killed
writer left beside ``path`` under xpnet's names is cleaned up by the next write.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import math
import os
import re
import secrets
import signal
import stat
import sys
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xpnet._temporaries import abandoned, create_locked
from xpnet._typing import Array
from xpnet.errors import DataError

FORMAT = "labelled-images/2"
"""The value of the ``xpnet`` attribute that marks a store this module writes."""

OLD_FORMATS = ("labelled-images/1",)
"""Formats of earlier xpnet stores: ``overwrite`` may replace them; reading needs a manifest."""

DEFAULT_CHUNK_ROWS = 65_536
"""Rows per chunk: 51 MB of MNIST pixels, a task's worth of work that fits any worker."""

MANIFEST = "xpnet-manifest.json"
"""The store's manifest, beside the group's ``zarr.json``."""

STAGING_MARKER = "xpnet-staging.json"
"""The file that marks a folder as a store xpnet is still building; its builder holds its
lock (``flock``) until the store is swapped into place (and removes it then) or removed,
so one whose lock is free was left by a dead process and is swept
(:mod:`xpnet._temporaries`)."""

MAX_METADATA_BYTES = 1 << 20
"""The largest ``zarr.json`` read: far above what a store's group or arrays need."""

MAX_MANIFEST_BYTES = 1 << 26
"""The largest manifest read: room for the digests of millions of chunks."""

ARRAYS = ("images", "labels")

_STAGING_NAME = re.compile(r"\.(?P<name>.+)\.xpnet-[0-9a-f]{16}")
"""The names of the folders a write builds in (and of an old store being removed)."""

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class ImageStore:
    """An opened, checked store: its Zarr arrays, metadata and manifest (no chunk read yet)."""

    path: str
    images: Any
    labels: Any
    metadata: dict[str, Any]
    manifest: dict[str, Any]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def chunk_rows(self) -> int:
        """Rows per chunk."""
        return int(self.images.chunks[0])

    def read(self, *, lazy: bool = False) -> tuple[Array, Array]:
        """The uint8 images ``(N, pixels)`` and int64 labels ``(N,)``.

        ``lazy`` gives dask arrays with the store's chunks, read on demand by whichever
        worker computes them; otherwise NumPy arrays, read whole. Every chunk is checked
        against the manifest as it is read: a missing, damaged or misplaced one raises a
        one-line :class:`~xpnet.DataError` naming the store, the chunk and its rows.
        """
        verified = [
            _VerifiedArray(self.path, name, array, self.manifest["arrays"][name]["digests"])
            for name, array in ((n, getattr(self, n)) for n in ARRAYS)
        ]
        if not lazy:
            images, labels = (v.read_all() for v in verified)
            return images, labels.astype(np.int64)
        import dask.array as da

        # Keys from the store's path and manifest: another store, or another content, gets others.
        place = os.fsencode(os.path.abspath(self.path))  # any name, UTF-8 or not
        seed = place + b"\n" + self.manifest["digest"].encode()
        token = hashlib.blake2b(seed, digest_size=16).hexdigest()
        images, labels = (
            da.from_array(
                v,
                chunks=v.chunks,
                name=f"xpnet-store-{v.name}-{token}",
                meta=np.empty((0,) * v.ndim, np.uint8),
                asarray=False,
            )
            for v in verified
        )
        return images, labels.astype(np.int64)


class _VerifiedArray:
    """A stored array read only in whole chunks, each checked against its manifest digest.

    Dask slices it (one chunk per task, or any rows after dask fuses a slice into the
    read); it pickles to workers as the zarr array and the digests.
    """

    def __init__(self, store: str, name: str, array: Any, digests: list[str]) -> None:
        self.store, self.name, self.array, self.digests = store, name, array, digests
        self.shape = tuple(int(n) for n in array.shape)
        self.dtype = np.dtype(np.uint8)
        self.ndim = len(self.shape)
        self.rows = int(array.chunks[0])
        self.chunks = array.chunks
        self.chunks_shape = tuple(int(n) for n in array.chunks)

    def __getitem__(self, index: Any) -> np.ndarray:
        if not isinstance(index, tuple):
            index = (index,)
        rows, rest = index[0], index[1:]
        if isinstance(rows, slice):
            start, stop, step = rows.indices(self.shape[0])
            if start >= stop:
                return np.empty((0, *self.shape[1:]), np.uint8)[(slice(None), *rest)]
            first, last = start // self.rows, (stop - 1) // self.rows
            blocks = [self.chunk(number) for number in range(first, last + 1)]
            whole = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
            offset = first * self.rows
            return whole[(slice(start - offset, stop - offset, step), *rest)]
        # Any other row index (an int, a list of rows): the chunks that hold those rows.
        wanted = np.arange(self.shape[0])[rows]
        flat = wanted.ravel()
        out = np.empty((flat.size, *self.shape[1:]), np.uint8)
        for number in np.unique(flat // self.rows).tolist():
            inside = flat // self.rows == number
            out[inside] = self.chunk(number)[flat[inside] - number * self.rows]
        return out.reshape(wanted.shape + self.shape[1:])[(Ellipsis, *rest)]

    def read_all(self) -> np.ndarray:
        out = np.empty(self.shape, np.uint8)
        for number in range(len(self.digests)):
            out[number * self.rows : (number + 1) * self.rows] = self.chunk(number)
        return out

    def chunk(self, number: int) -> np.ndarray:
        """Chunk ``number``, read whole and checked against its digest."""
        start = number * self.rows
        rows = slice(start, min(start + self.rows, self.shape[0]))
        key = f"{self.name}/{_chunk_key(self.array, number)}"
        where = f"chunk {key} (rows {rows.start}:{rows.stop}) of the image store {self.store}"
        file, width = os.path.join(self.store, *key.split("/")), math.prod(self.chunks_shape[1:])
        _check_chunk_budget(
            file, where, math.prod(self.chunks_shape), (rows.stop - rows.start) * width
        )
        try:
            with interrupts_deferred():
                block = np.asarray(self.array[rows])
        except Exception as exc:  # zarr and its codecs raise many types for damaged chunks
            raise DataError(f"cannot read {where}: {_reason(exc)}") from exc
        if _digest(self.name, number, block) != self.digests[number]:
            missing = not os.path.lexists(file)
            what = "is missing" if missing else "does not match the manifest (damaged or moved)"
            raise DataError(f"{where} {what}")
        return block


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
    may be far larger than memory. The store is built beside ``path`` under a name xpnet
    owns and swapped into place at the end, so ``path`` holds the complete old store or the
    complete new one, and an interrupted write (Ctrl-C included) leaves nothing behind.

    ``path``'s folder must exist. An existing ``path`` is refused unless ``overwrite``, and
    even then only an xpnet image store (recognised by its own metadata) is replaced: any
    other folder or file is refused with a one-line :class:`~xpnet.DataError`.
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
    replacing = check_store_target(target, overwrite=overwrite)
    _zarr()  # the install hint before anything is made
    _clean_leftovers(target)
    rows = np.arange(len(images)) if order is None else np.asarray(order)
    pixels = math.prod(images.shape[1:])
    attrs = {
        "image_shape": list(images.shape[1:]),
        "classes": int(labels.max()) + 1 if labels.size else 0,
        **(metadata or {}),
        "xpnet": FORMAT,
    }
    staging = target.with_name(f".{target.name}.xpnet-{secrets.token_hex(8)}")
    made = False
    # The staging marker stays locked until the new store is in place or removed: another
    # writer to ``target`` sweeps a staging folder only once no process holds its marker.
    marker: int | None = None
    folder: int | None = None  # the new store's folder, wherever the swap moves it
    try:
        with interrupts_deferred():
            staging.mkdir()
            made = True
            folder = _open_folder(staging)
            marker, _ = create_locked(staging, lambda: STAGING_MARKER)
            os.write(marker, json.dumps({"xpnet": "staging", "pid": os.getpid()}).encode())
        _build(staging, images.reshape(len(images), pixels), labels, rows, chunk_rows, attrs)
        with interrupts_deferred():
            if replacing:
                _exchange(staging, target)
            else:
                _rename_new(staging, target)
            _unmark(folder, target)
    except BaseException:
        if made:
            with interrupts_deferred():
                _remove_xpnet_folder(staging)
        raise
    finally:
        for fd in (marker, folder):
            if fd is not None:
                os.close(fd)
    if replacing:
        with interrupts_deferred():
            _remove_xpnet_folder(staging)  # now the old store
    return open_store(target)


def check_store_target(path: PathLike, *, overwrite: bool = False) -> bool:
    """Whether :func:`write_store` would replace a store at ``path``; DataError if it may not.

    ``path``'s folder must exist (it is not created). Where ``path`` exists, it is refused
    unless ``overwrite``, and then unless it is an xpnet image store: another folder, a
    file, a symlink or anything else stays as it is. Callers check before a long job.
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise DataError(f"cannot write the image store {target}: {target.parent} is not a folder")
    return _existing_store(target, overwrite)


def _existing_store(target: Path, overwrite: bool) -> bool:
    """Whether ``target`` is an xpnet store to replace; refuses anything else that exists."""
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise DataError(f"cannot write the image store {target}: {exc.strerror}") from None
    if not overwrite:
        raise DataError(f"{target} exists; choose another path, or overwrite it (--overwrite)")
    kind = "a symlink" if stat.S_ISLNK(info.st_mode) else "a file"
    if stat.S_ISDIR(info.st_mode):  # a folder itself (lstat), not a symlink to one
        try:
            group = _read_json(target / "zarr.json", MAX_METADATA_BYTES)
            marked = _attributes(group).get("xpnet") in (FORMAT, *OLD_FORMATS)
        except DataError:
            marked = False
        if marked:
            return True
        kind = "a folder without xpnet's store metadata"
    raise DataError(
        f"{target} is {kind}, not an xpnet image store; --overwrite replaces only those "
        "(choose another path, or remove it yourself)"
    )


def _build(
    path: Path,
    images: np.ndarray,
    labels: np.ndarray,
    rows: np.ndarray,
    chunk_rows: int,
    attrs: dict[str, Any],
) -> None:
    """Write the store into ``path``, a new folder marked as xpnet's (the marker stays: the
    caller removes it once the store is in place)."""
    zarr = _zarr()
    from zarr.codecs import ZstdCodec

    with interrupts_deferred():
        group = zarr.open_group(path, mode="a", attributes=attrs)
        options: dict[str, Any] = {
            "dtype": "uint8",
            "compressors": ZstdCodec(checksum=True),
            "config": {"write_empty_chunks": True},
        }
        stored = {
            "images": group.create_array(
                "images",
                shape=(len(rows), images.shape[1]),
                chunks=(chunk_rows, images.shape[1]),
                **options,
            ),
            "labels": group.create_array(
                "labels", shape=(len(rows),), chunks=(chunk_rows,), **options
            ),
        }
    digests: dict[str, list[str]] = {name: [] for name in ARRAYS}
    for number, start in enumerate(range(0, len(rows), chunk_rows)):
        chunk = rows[start : start + chunk_rows]
        for name, source in (("images", images), ("labels", labels)):
            block = np.ascontiguousarray(source[chunk], dtype=np.uint8)
            digests[name].append(_digest(name, number, block))
            write_chunk(stored[name], start, block)
    manifest = {
        "xpnet": f"{FORMAT} manifest",
        "hash": "blake2b-128 of (array, chunk number, shape, decoded uint8 values)",
        "attributes": attrs,
        "arrays": {
            name: {
                "shape": list(array.shape),
                "chunks": list(array.chunks),
                "dtype": "uint8",
                "digests": digests[name],
            }
            for name, array in stored.items()
        },
        "files": ["zarr.json", MANIFEST]
        + [
            f"{name}/{key}"
            for name, array in stored.items()
            for key in ["zarr.json"] + [_chunk_key(array, i) for i in range(array.nchunks)]
        ],
    }
    with interrupts_deferred():
        _write_json(path / MANIFEST, manifest)
        _fsync_tree(path)


def write_chunk(array: Any, start: int, block: np.ndarray) -> None:
    """Write ``block`` as the rows from ``start`` of a zarr ``array``, uninterrupted."""
    with interrupts_deferred():
        array[start : start + len(block)] = block


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) until the block ends, then deliver it.

    Zarr does its I/O on an event loop in another thread; an interrupt that stopped the
    main thread part-way would leave that loop's tasks pending (asyncio then complains
    at exit) and still writing into a folder being removed. Only the main thread can
    handle signals; elsewhere, and where SIGINT is ignored, the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, None):
        yield
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda number, frame: received.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            signal.raise_signal(signal.SIGINT)  # to the handler the caller had


def _exchange(new: Path, old: Path) -> None:
    """Swap the folders ``new`` and ``old`` in one step (``renameat2(RENAME_EXCHANGE)``).

    Where the system lacks it, ``old`` moves to ``new``'s name and then ``new`` into
    place; a crash between the two leaves both complete stores under xpnet's names,
    and the next write moves one back (see :func:`_clean_leftovers`).
    """
    if _rename_exchange(new, old):
        return
    parked = new.with_name(f"{new.name}-")  # an xpnet name that leftovers' cleanup knows
    os.rename(old, parked)
    try:
        os.rename(new, old)
    except BaseException:
        os.rename(parked, old)
        raise
    os.rename(parked, new)


def _rename_exchange(a: Path, b: Path) -> bool:
    """``renameat2(a, b, RENAME_EXCHANGE)`` on Linux; False where it is not available."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False  # the kernel or the file system cannot exchange
    raise OSError(error, os.strerror(error), os.fspath(b))


def _open_folder(path: Path) -> int | None:
    """A descriptor of the folder ``path`` (following it through renames), or None where
    the system cannot remove a file relative to one."""
    if os.unlink not in os.supports_dir_fd:
        return None
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
    return os.open(path, flags | getattr(os, "O_CLOEXEC", 0))


def _unmark(folder: int | None, target: Path) -> None:
    """Remove the staging marker from the new store now at ``target``: through ``folder``,
    its own folder's descriptor, so that a store another writer has meanwhile put at
    ``target`` keeps its marker; by path where there is no descriptor."""
    with contextlib.suppress(FileNotFoundError):  # a later writer replaced and removed it
        if folder is None:
            os.unlink(target / STAGING_MARKER)
        else:
            os.unlink(STAGING_MARKER, dir_fd=folder)


def _rename_new(staging: Path, target: Path) -> None:
    """Move a new store into place where nothing is; refuses if something appeared there."""
    if os.path.lexists(target):
        raise DataError(f"{target} appeared while the store was written; it was left as it is")
    os.rename(staging, target)


def _clean_leftovers(target: Path) -> None:
    """Remove what a killed write to ``target`` left beside it, only under xpnet's names.

    A folder still marked as being built by a process that is gone is removed; a complete
    store under xpnet's name is an old store swapped out (removed) or, where ``target`` is
    missing, the store a crash left half-swapped (moved back into place).
    """
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return
    for entry in entries:
        match = _STAGING_NAME.fullmatch(entry.name.rstrip("-"))
        if not (match and match["name"] == target.name and entry.is_dir(follow_symlinks=False)):
            continue
        folder = Path(entry.path)
        marker = folder / STAGING_MARKER
        if os.path.lexists(marker):
            # xpnet._temporaries' rule: its builder's lock on the marker is gone.
            with abandoned(marker) as gone:
                if gone:
                    _remove_xpnet_folder(folder)
        elif _is_complete_store(folder):
            if os.path.lexists(target):
                _remove_xpnet_folder(folder)
            else:
                os.rename(folder, target)


def _is_complete_store(folder: Path) -> bool:
    try:
        _read_layout(str(folder))
    except DataError:
        return False
    return True


def _remove_xpnet_folder(folder: Path) -> None:
    """Delete from ``folder`` only the files an xpnet store has, then its empty folders.

    The files are those its manifest lists; for a store still being built (no manifest
    yet) or one of an earlier format, those of the layout its zarr metadata gives. Nothing
    is followed out of ``folder`` (symlinks are left as they are), and a folder that still
    holds something xpnet did not write stays, with a warning.
    """
    if not os.path.lexists(folder):
        return
    owned = _owned_files(folder)
    for root, dirs, files in os.walk(folder, topdown=False, followlinks=False):
        here = Path(root)
        for name in files:
            relative = (here / name).relative_to(folder).as_posix()
            with contextlib.suppress(FileNotFoundError):  # removed by another process
                if _owned(relative, owned) and stat.S_ISREG(os.lstat(here / name).st_mode):
                    os.unlink(here / name)
        for name in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(here / name)
    try:
        os.rmdir(folder)
    except FileNotFoundError:
        pass
    except OSError:
        warnings.warn(
            f"left {folder}: it holds files that xpnet did not write", RuntimeWarning, stacklevel=3
        )


_PARTIAL = re.compile(r"(?P<stem>.+)\.[0-9a-f]{32}\.partial")
"""The temporary file zarr writes each of its files as (its suffix replaced by a token and
``.partial``) before renaming it into place: a writer killed mid-chunk leaves one."""


def _owned(relative: str, owned: set[str]) -> bool:
    """Whether the file at ``relative`` is one of the ``owned`` files or zarr's partial
    copy of one."""
    if relative in owned:
        return True
    match = _PARTIAL.fullmatch(relative)
    return match is not None and any(os.path.splitext(name)[0] == match["stem"] for name in owned)


def _owned_files(folder: Path) -> set[str]:
    """The files of the xpnet store (or store being built) in ``folder``, relative to it."""
    owned = {STAGING_MARKER, "zarr.json", MANIFEST}
    with contextlib.suppress(DataError):
        manifest = _read_json(folder / MANIFEST, MAX_MANIFEST_BYTES)
        files = manifest.get("files")
        if isinstance(files, list) and all(isinstance(f, str) for f in files):
            return owned | set(files)
    for name in ARRAYS:
        owned.add(f"{name}/zarr.json")
        with contextlib.suppress(DataError):
            shape, chunks = _shape_and_chunks(_read_json(folder / name / "zarr.json"), name)
            grid = [range(-(-n // c)) for n, c in zip(shape, chunks)]
            owned.update(f"{name}/c/" + "/".join(map(str, i)) for i in itertools.product(*grid))
    return owned


def open_store(path: PathLike) -> ImageStore:
    """Open the store at ``path`` and check it against its manifest.

    Reads each metadata file (bounded in size and depth) before zarr does, checks that
    ``images`` and ``labels`` are arrays of the shapes, chunks and dtype the manifest
    records and that every chunk is present; raises a one-line DataError if not. The
    chunks' values are checked as they are read.

    Parameters
    ----------
    path : str or os.PathLike
        The store's folder, as :func:`write_store` made it.

    Returns
    -------
    ImageStore
        The opened store; :meth:`ImageStore.read` reads its images and labels.

    Raises
    ------
    DataError
        If there is no store at ``path`` or it does not match its manifest.

    Examples
    --------
    Needs zarr (``pip install 'xpnet[dask]'``):

    >>> import pathlib, tempfile
    >>> import numpy as np
    >>> from xpnet.scaleout import open_store, write_store
    >>> images = np.arange(6 * 4, dtype=np.uint8).reshape(6, 4)
    >>> labels = np.array([0, 1, 2, 3, 4, 5])
    >>> with tempfile.TemporaryDirectory() as folder:  # doctest: +SKIP
    ...     path = pathlib.Path(folder) / "store"
    ...     _ = write_store(path, images, labels, chunk_rows=4)
    ...     store = open_store(path)
    ...     x, t = store.read()
    ...     print(len(store), store.chunk_rows, x.shape, t.tolist())
    6 4 (6, 4) [0, 1, 2, 3, 4, 5]
    """
    zarr = _zarr()
    name = os.fspath(path)
    attrs, manifest = _read_layout(name)
    try:
        with interrupts_deferred():  # zarr's loop left with no task pending
            group = zarr.open_group(name, mode="r")
            images, labels = group["images"], group["labels"]
    except FileNotFoundError:
        raise DataError(f"no image store at {name}") from None
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise DataError(f"cannot open the image store {name}: {_reason(exc)}") from exc
    store = ImageStore(name, images, labels, attrs, manifest)
    _check(store)
    return store


def _read_layout(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The group's attributes and the manifest of the store at ``name``, checked together."""
    folder = Path(name)
    if not os.path.lexists(folder):
        raise DataError(f"no image store at {name}")
    group = _read_json(folder / "zarr.json", MAX_METADATA_BYTES, store=name)
    if group.get("node_type") != "group":
        raise DataError(f"cannot open the image store {name}: zarr.json is not a group's")
    attrs = _attributes(group)
    if attrs.get("xpnet") in OLD_FORMATS:
        raise DataError(
            f"{name} is an image store of an earlier xpnet, without a manifest to check it "
            "against; write it again with xpnet convert"
        )
    if attrs.get("xpnet") != FORMAT:
        raise DataError(f"{name} is not an xpnet image store (write one with xpnet convert)")
    manifest_file = folder / MANIFEST
    if not os.path.lexists(manifest_file):
        raise DataError(f"the image store {name} is damaged: its {MANIFEST} is missing")
    manifest = _read_json(manifest_file, MAX_MANIFEST_BYTES, store=name)
    manifest["digest"] = hashlib.blake2b(
        json.dumps(manifest, sort_keys=True).encode(), digest_size=16
    ).hexdigest()
    if manifest.get("attributes") != attrs:
        raise DataError(
            f"the image store {name} is damaged: the group's attributes in zarr.json differ "
            "from those its manifest records"
        )
    arrays = manifest.get("arrays")
    if not (isinstance(arrays, dict) and set(arrays) == set(ARRAYS)):
        raise DataError(f"the image store {name} is damaged: its manifest lists no arrays")
    for array in ARRAYS:
        meta = _read_json(folder / array / "zarr.json", MAX_METADATA_BYTES, store=name)
        if meta.get("node_type") != "array":
            raise DataError(
                f"the image store {name} is damaged: {array} is a "
                f"{_kind(meta.get('node_type'))}, not an array"
            )
        found = _shape_and_chunks(meta, f"{name}/{array}")
        entry = arrays[array]
        recorded = (entry.get("shape"), entry.get("chunks")) if isinstance(entry, dict) else None
        if recorded != tuple(map(list, found)) or meta.get("data_type") != "uint8":
            raise DataError(
                f"the image store {name} is damaged: {array}/zarr.json gives shape "
                f"{found[0]}, chunks {found[1]} and dtype {meta.get('data_type')!r} but the "
                f"manifest records {recorded} and uint8"
            )
        digests = entry.get("digests")
        count = -(-found[0][0] // found[1][0]) if found[1][0] else 0
        if not (
            isinstance(digests, list)
            and len(digests) == count
            and all(isinstance(d, str) for d in digests)
        ):
            raise DataError(
                f"the image store {name} is damaged: its manifest has no digest for each of "
                f"the {count} chunks of {array}"
            )
    images, labels = arrays["images"]["shape"], arrays["labels"]["shape"]
    if images[:1] != labels or arrays["images"]["chunks"][:1] != arrays["labels"]["chunks"]:
        raise DataError(f"the image store {name} is damaged: images and labels do not pair up")
    return attrs, manifest


def _kind(node_type: object) -> str:
    return node_type if isinstance(node_type, str) and node_type.isalpha() else "non-array"


def _shape_and_chunks(meta: dict[str, Any], where: str) -> tuple[list[int], list[int]]:
    """An array's shape and regular chunk shape from its ``zarr.json``, checked for types."""
    shape = meta.get("shape")
    grid = meta.get("chunk_grid")
    config = grid.get("configuration") if isinstance(grid, dict) else None
    chunks = config.get("chunk_shape") if isinstance(config, dict) else None
    for values in (shape, chunks):
        if not (
            isinstance(values, list)
            and values
            and all(type(v) is int and v >= 0 for v in values)
            and len(values) == len(shape or [])
        ):
            raise DataError(f"{where}/zarr.json has no valid shape and chunk shape")
    assert isinstance(shape, list) and isinstance(chunks, list)
    if not all(chunks):
        raise DataError(f"{where}/zarr.json has an empty chunk shape")
    return shape, chunks


def _read_json(
    file: Path, limit: int = MAX_METADATA_BYTES, *, store: str | None = None
) -> dict[str, Any]:
    """A JSON object from a regular file of at most ``limit`` bytes; DataError if not."""
    where = f"{file}" if store is None else f"the image store {store}: {file.name}"
    try:
        info = os.lstat(file)
        if not stat.S_ISREG(info.st_mode):
            raise DataError(f"cannot open {where}: it is not a regular file")
        if info.st_size > limit:
            raise DataError(
                f"cannot open {where}: {info.st_size} bytes is more than metadata needs "
                f"(at most {limit})"
            )
        with open(file, "rb") as stream:
            text = stream.read(limit + 1)
    except FileNotFoundError:
        raise DataError(f"cannot open {where}: it is missing") from None
    except OSError as exc:
        raise DataError(f"cannot open {where}: {exc.strerror or exc}") from None
    if len(text) > limit:
        raise DataError(f"cannot open {where}: it grew past {limit} bytes while read")
    try:
        value = json.loads(text)
    except RecursionError:
        raise DataError(f"cannot open {where}: its JSON is nested too deeply") from None
    except ValueError as exc:
        raise DataError(f"cannot open {where}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise DataError(f"cannot open {where}: it holds a JSON {type(value).__name__}")
    return value


def _attributes(group: dict[str, Any]) -> dict[str, Any]:
    attrs = group.get("attributes", {})
    return attrs if isinstance(attrs, dict) else {}


def _write_json(file: Path, value: object) -> None:
    with open(file, "x", encoding="utf-8") as stream:
        json.dump(value, stream)
        stream.flush()
        os.fsync(stream.fileno())


def _fsync_tree(folder: Path) -> None:
    """Flush every file and folder of a newly written store to disk before it is swapped in."""
    for root, _, files in os.walk(folder):
        for name in [*files, "."]:
            fd = os.open(os.path.join(root, name), os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _zarr() -> Any:
    """The zarr module; ImportError with the install hint where it (extra ``dask``) is missing."""
    try:
        import zarr
    except ImportError:
        raise ImportError("xpnet's image stores need zarr 3: pip install 'xpnet[dask]'") from None
    return zarr


def _check(store: ImageStore) -> None:
    images, labels = store.images, store.labels
    image_shape = store.metadata.get("image_shape")
    pixels = (
        math.prod(image_shape)
        if isinstance(image_shape, list) and all(type(n) is int for n in image_shape)
        else -1
    )
    problem = None
    if images.ndim != 2 or labels.ndim != 1 or images.shape[1] != pixels:
        problem = f"images {images.shape} and labels {labels.shape} do not fit image_shape"
    elif images.dtype != np.uint8 or labels.dtype != np.uint8:
        problem = f"expected uint8 images and labels, got {images.dtype} and {labels.dtype}"
    elif images.shape[0] != labels.shape[0] or images.chunks[0] != labels.chunks[0]:
        problem = f"{images.shape[0]} images but {labels.shape[0]} labels, or unaligned chunks"
    elif images.chunks[1] != images.shape[1]:
        problem = "images are chunked across the pixels of a row"
    else:
        missing = sum(a.nchunks - a.nchunks_initialized for a in (images, labels))
        if missing:
            problem = f"{missing} chunk(s) are missing"
    if problem:
        raise DataError(f"the image store {store.path} is damaged: {problem}")


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


PADDED_CHUNK_BYTES = DEFAULT_CHUNK_ROWS * 28 * 28
"""The largest chunk that may hold fewer rows than it declares (zarr pads a store's last
chunk to its full shape, with zeros that compress to nothing) beyond the budget of the
rows it holds: a default chunk of MNIST images."""


def _check_chunk_budget(file: str, where: str, chunk_bytes: int, data_bytes: int) -> None:
    """Refuse a chunk file before zarr inflates it when its zstd frame does not declare the
    ``chunk_bytes`` of a whole chunk, or when the ``data_bytes`` of its rows inside the
    array (or a padded chunk past :data:`PADDED_CHUNK_BYTES`) do not fit the budget of
    :mod:`xpnet._budget` for the file's size. A missing chunk is left to the digest check."""
    from xpnet import _budget as budget

    try:
        with open(file, "rb") as stream:
            held = os.fstat(stream.fileno()).st_size
            head = stream.read(18)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise DataError(f"cannot read {where}: {exc.strerror or exc}") from None
    content = _frame_content_size(head)
    if content != chunk_bytes:
        declared = "no size" if content is None else f"{content} bytes"
        raise DataError(
            f"cannot read {where}: its zstd frame declares {declared} where a chunk holds "
            f"{chunk_bytes} (damaged or hostile)"
        )
    try:
        budget.check(data_bytes, held, f"{where}: its data")
        if chunk_bytes > max(PADDED_CHUNK_BYTES, budget.allowance(held)):
            budget.check(chunk_bytes, held, f"{where}: its padded chunk")
    except budget.OverBudget as exc:
        raise DataError(f"cannot read {exc}") from None


def _frame_content_size(head: bytes) -> int | None:
    """The decompressed size a zstd frame's header declares; ``None`` if it declares none
    (or is no zstd frame). Zarr's zstd codec writes the size in every frame."""
    if len(head) < 6 or head[:4] != _ZSTD_MAGIC:
        return None
    descriptor = head[4]
    single, flag = descriptor >> 5 & 1, descriptor >> 6
    start = 5 + (0 if single else 1) + (0, 1, 2, 4)[descriptor & 3]
    width = (1 if single else 0, 2, 4, 8)[flag]
    if width == 0 or len(head) < start + width:
        return None
    value = int.from_bytes(head[start : start + width], "little")
    return value + 256 if width == 2 else value


def _chunk_key(array: Any, number: int) -> str:
    """The store key of row chunk ``number`` of a zarr array, relative to the array."""
    return str(
        array.metadata.chunk_key_encoding.encode_chunk_key((number,) + (0,) * (array.ndim - 1))
    )


def _digest(name: str, number: int, block: np.ndarray) -> str:
    """The manifest's digest of chunk ``number`` of array ``name``: bound to both."""
    hasher = hashlib.blake2b(digest_size=16)
    hasher.update(f"{name}/{number}/{list(block.shape)}/uint8\n".encode())
    hasher.update(np.ascontiguousarray(block, dtype=np.uint8).data)
    return hasher.hexdigest()


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
