"""Read and write IDX files, the format of MNIST and Fashion-MNIST, gzipped or raw.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the rank), one
big-endian uint32 per dimension, then the array's bytes in C order, big-endian. Readers
here accept nothing else: a short file, bytes after the array, a broken gzip stream or an
unknown type code is a :class:`~xpnet.errors.DataError` that names the file.

What a header may ask for is bounded before anything is allocated or inflated: a rank of
1 to :data:`MAX_RANK`; every dimension after the first (the item count) at least 1; and a
size the file can hold (exactly the bytes after the header of a raw file, at most
:data:`MAX_INFLATE_RATIO` times the size of a gzipped one). Data are inflated in bounded
pieces, and reading stops at the first byte beyond what the header declares.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import math
import os
import stat
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from xpnet._atomic import atomic_write
from xpnet.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
"""The first two bytes of every gzip stream; gzip is detected by these, not by a name."""

MAX_RANK = 4
"""The most dimensions an IDX header may declare here (MNIST-like files have 1 or 3)."""

MAX_INFLATE_RATIO = 1032
"""The most bytes deflate can produce per compressed byte: a gzip file of n bytes holds at
most this times n bytes, so a header that declares more is refused before any inflating."""

_TYPES = {0x08: "u1", 0x09: "i1", 0x0B: "i2", 0x0C: "i4", 0x0D: "f4", 0x0E: "f8"}
"""IDX type codes and the NumPy dtype (kind and size) each stands for."""
_CODES = {kind: code for code, kind in _TYPES.items()}
_CHUNK = 1 << 20
"""The most bytes read (inflated) from a stream at once."""


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read the IDX file at ``path`` (gzipped or raw) into a native-endian NumPy array.

    Raises a one-line :class:`~xpnet.errors.DataError` naming the file for anything but a
    well-formed IDX file (see the module's notes for the bounds a header must keep).
    """
    with open_payload(path) as stream:
        header = read_header(stream, path)
        return read_array(stream, path, header)


def write_idx(path: str | os.PathLike[str], array: npt.ArrayLike) -> None:
    """Write ``array`` as an IDX file, gzipped when ``path`` ends in ``.gz``, atomically."""
    payload = idx_bytes(array)
    target = Path(path)
    if target.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    with atomic_write(target) as stream:
        stream.write(payload)


def idx_bytes(array: npt.ArrayLike) -> bytes:
    """The IDX encoding of ``array`` (uncompressed).

    Raises ValueError for what the readers would refuse: a dtype IDX has no code for, a
    rank outside 1..MAX_RANK, a zero-length dimension after the first, a side of 2**32.
    """
    array = np.asarray(array)
    kind = f"{array.dtype.kind}{array.dtype.itemsize}"
    if kind not in _CODES:
        raise ValueError(
            f"IDX cannot hold {array.dtype} arrays; use one of uint8, int8, "
            "int16, int32, float32, float64"
        )
    if (
        not 1 <= array.ndim <= MAX_RANK
        or any(n >= 1 << 32 for n in array.shape)
        or 0 in array.shape[1:]
    ):
        raise ValueError(f"IDX cannot hold an array of shape {array.shape}")
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, _CODES[kind], array.ndim, *array.shape)
    return header + np.ascontiguousarray(array, dtype=f">{kind}").tobytes()


class Payload(io.RawIOBase):
    """The decompressed bytes of a data file, counted, optionally hashed and capped.

    ``packed_size`` is the size of the file on disk and ``gzipped`` whether it is a gzip
    stream: together they bound what its header may declare. ``limit`` (if given) is
    the most bytes the stream may produce: the first read beyond it raises a one-line
    DataError naming the file, ``why`` saying what the limit is.
    """

    def __init__(
        self,
        source: io.BufferedIOBase,
        path: str | os.PathLike[str],
        *,
        packed_size: int,
        gzipped: bool,
    ) -> None:
        super().__init__()
        self._source = source
        self.path = path
        self.packed_size = packed_size
        self.gzipped = gzipped
        self.count = 0
        self.limit: int | None = None
        self.why = ""
        self.digest: Any = None

    def readable(self) -> bool:
        return True

    def hash_with(self, name: str) -> None:
        """Hash every byte read from now on with ``hashlib.new(name)`` (see :attr:`digest`)."""
        self.digest = hashlib.new(name, usedforsecurity=False)

    def cap(self, limit: int, why: str) -> None:
        """Refuse to produce more than ``limit`` bytes in all; ``why`` ends the message."""
        self.limit, self.why = limit, why

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")[:_CHUNK]
        if self.limit is not None:  # never more than one byte past the limit (count <= limit)
            view = view[: self.limit + 1 - self.count]
        got = self._source.readinto(view)
        if not got:
            return 0
        self.count += got
        if self.limit is not None and self.count > self.limit:
            raise DataError(
                f"{self.path} holds more than {self.limit} bytes once decompressed; {self.why}"
            )
        if self.digest is not None:
            self.digest.update(view[:got])
        return got

    def max_payload(self) -> int:
        """The most decompressed bytes this file can hold, whatever its header says."""
        return self.packed_size * MAX_INFLATE_RATIO if self.gzipped else self.packed_size


@contextlib.contextmanager
def open_payload(path: str | os.PathLike[str]) -> Iterator[Payload]:
    """Open ``path`` for reading its decompressed bytes; turn read errors into DataError.

    Gzip is recognised by its magic bytes; it is inflated in bounded pieces as the
    stream is read. Only a regular file is opened (a pipe or a device node is refused
    without waiting on it). Any ``OSError`` (missing file, bad gzip header, CRC
    mismatch), ``EOFError`` (stream cut short) or ``zlib.error`` raised inside the
    ``with`` block becomes one :class:`DataError` naming the file (see read_errors).
    """
    with read_errors(path), open_regular(path) as raw:
        size = os.fstat(raw.fileno()).st_size
        if raw.read(2) == GZIP_MAGIC:
            raw.seek(0)
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield Payload(unzipped, path, packed_size=size, gzipped=True)
                return
        raw.seek(0)
        yield Payload(raw, path, packed_size=size, gzipped=False)


@contextlib.contextmanager
def open_regular(path: str | os.PathLike[str]) -> Iterator[io.BufferedReader]:
    """Open a regular file for reading; a FIFO or device is refused before any read."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
            raise DataError(f"cannot read {path}: it is {kind}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        stream = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with stream:
        yield stream


@contextlib.contextmanager
def read_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn the errors of reading ``path`` (I/O, gzip, zlib) into one DataError naming it."""
    try:
        yield
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read {path}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "the gzip stream ends early (truncated file)"
    if isinstance(exc, (zlib.error, gzip.BadGzipFile)):
        return f"corrupt gzip data ({exc})"
    if isinstance(exc, IsADirectoryError):
        return "it is a folder"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def iter_idx(path: str | os.PathLike[str], rows: int) -> Iterator[np.ndarray]:
    """Yield the IDX file at ``path`` in blocks of ``rows`` along its first axis.

    Memory stays bounded by one block, however large the file: this is how xpnet streams
    millions of images from disk. The checks are those of :func:`read_idx`, the header's
    before the first block; a file cut short raises :class:`~xpnet.DataError` at the block where
    its data run out, bytes after the data at the end.
    """
    if rows < 1:
        raise ValueError(f"rows must be a positive integer, got {rows}")
    with open_payload(path) as stream:
        header = read_header(stream, path)
        shape, dtype = header
        for start in range(0, shape[0], rows):
            count = min(rows, shape[0] - start)
            block = _allocate(path, (count, *shape[1:]), dtype)
            if _read_into(stream, block) < block.nbytes:
                raise _invalid(path, f"truncated: the header {shape} promises more data bytes")
            yield block.astype(dtype.newbyteorder("="), copy=False)
        if stream.read(1):
            raise _invalid(path, f"bytes follow the data its header {shape} promises")


Header = tuple[tuple[int, ...], np.dtype]
"""An IDX header: the array's shape and its big-endian dtype."""


def _invalid(path: str | os.PathLike[str], what: str) -> DataError:
    return DataError(f"{path} is not a valid IDX file: {what}")


def read_header(stream: Payload, path: str | os.PathLike[str]) -> Header:
    """Read and check the IDX header at the start of ``stream``: the shape and dtype.

    Checks the magic number, type code and rank (1 to MAX_RANK), that no dimension after
    the first is 0, and that the file can hold what the header declares: a raw file
    exactly, a gzipped one within MAX_INFLATE_RATIO. Reads nothing past the header.
    """
    head = _read_upto(stream, 4)
    if len(head) < 4:
        raise _invalid(path, f"it has {len(head)} bytes, shorter than the 4-byte magic number")
    zero, code, ndim = head[:2], head[2], head[3]
    if zero != b"\0\0":
        raise _invalid(path, f"its magic number starts with 0x{zero.hex()}, not 0x0000")
    if code not in _TYPES:
        raise _invalid(path, f"unknown type code 0x{code:02x}")
    if ndim == 0:
        raise _invalid(path, "its header declares no dimensions")
    if ndim > MAX_RANK:
        raise _invalid(path, f"its header declares {ndim} dimensions, more than {MAX_RANK}")
    dims_bytes = _read_upto(stream, 4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise _invalid(path, f"truncated in the header ({ndim} dimensions need {4 * ndim} bytes)")
    shape: tuple[int, ...] = struct.unpack(f">{ndim}I", dims_bytes)
    if 0 in shape[1:]:
        raise _invalid(path, f"its header {shape} declares items of no bytes")
    dtype = np.dtype(f">{_TYPES[code]}")
    size = math.prod(shape) * dtype.itemsize
    header_size = 4 + 4 * ndim
    if not stream.gzipped and size != stream.packed_size - header_size:
        have = stream.packed_size - header_size
        if have < size:
            raise _invalid(
                path,
                f"truncated: the header {shape} promises {size} data bytes, the file has {have}",
            )
        raise _invalid(path, f"bytes follow the {size} data bytes its header {shape} promises")
    if stream.gzipped and header_size + size > stream.max_payload():
        raise _invalid(
            path,
            f"its header {shape} declares {size} data bytes, more than its "
            f"{stream.packed_size} gzipped bytes can hold",
        )
    return shape, dtype


def read_array(stream: Payload, path: str | os.PathLike[str], header: Header) -> np.ndarray:
    """The array that ``header`` (just read from ``stream``) declares, and nothing more.

    The array is allocated once at its declared size (bounded by the header's checks)
    and filled in bounded pieces; a stream that ends early or goes on is a DataError.
    """
    shape, dtype = header
    array = _allocate(path, shape, dtype)
    got = _read_into(stream, array)
    if got < array.nbytes:
        raise _invalid(
            path,
            f"truncated: the header {shape} promises {array.nbytes} data bytes, the file has {got}",
        )
    if stream.read(1):
        raise _invalid(
            path, f"bytes follow the {array.nbytes} data bytes its header {shape} promises"
        )
    return array.astype(dtype.newbyteorder("="), copy=False)


def _allocate(path: str | os.PathLike[str], shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An empty array, or a DataError where this machine cannot allocate it."""
    try:
        return np.empty(shape, dtype=dtype)
    except (MemoryError, ValueError):
        size = math.prod(shape) * dtype.itemsize
        raise _invalid(
            path, f"its header {shape} declares {size} bytes, more than can be allocated here"
        ) from None


def _read_upto(stream: io.RawIOBase, size: int) -> bytearray:
    """Read ``size`` bytes or up to the end; memory grows with the data, not the claim."""
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(min(_CHUNK, size - len(data)))
        if not chunk:
            break
        data += chunk
    return data


def _read_into(stream: io.RawIOBase, array: np.ndarray) -> int:
    """Fill ``array``'s bytes from ``stream`` in bounded pieces; return the bytes read.

    One buffer per block, reused by nothing: large blocks come from and go back to the
    operating system whole, so streaming a file of any size keeps memory flat.
    """
    if array.nbytes == 0:
        return 0
    view = array.reshape(-1).view(np.uint8).data
    filled = 0
    while filled < len(view):
        got = stream.readinto(view[filled : filled + _CHUNK])
        if not got:
            break
        filled += got
    return filled
