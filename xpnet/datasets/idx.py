"""Read and write IDX files, the format of MNIST and Fashion-MNIST, gzipped or raw.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the rank), one
big-endian uint32 per dimension, then the array's bytes in C order, big-endian. Readers
here accept nothing else: a short file, bytes after the array, a broken gzip stream or an
unknown type code is a :class:`~xpnet.errors.DataError` that names the file.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from xpnet._atomic import atomic_write
from xpnet.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
"""The first two bytes of every gzip stream; gzip is detected by these, not by a name."""

_TYPES = {0x08: "u1", 0x09: "i1", 0x0B: "i2", 0x0C: "i4", 0x0D: "f4", 0x0E: "f8"}
"""IDX type codes and the NumPy dtype (kind and size) each stands for."""
_CODES = {kind: code for code, kind in _TYPES.items()}
_CHUNK = 1 << 20


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read the IDX file at ``path`` (gzipped or raw) into a native-endian NumPy array."""
    with open_payload(path) as stream:
        return _parse(stream, path)


def write_idx(path: str | os.PathLike[str], array: npt.ArrayLike) -> None:
    """Write ``array`` as an IDX file, gzipped when ``path`` ends in ``.gz``, atomically."""
    payload = idx_bytes(array)
    target = Path(path)
    if target.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    with atomic_write(target) as stream:
        stream.write(payload)


def idx_bytes(array: npt.ArrayLike) -> bytes:
    """The IDX encoding of ``array`` (uncompressed)."""
    array = np.asarray(array)
    kind = f"{array.dtype.kind}{array.dtype.itemsize}"
    if kind not in _CODES:
        raise ValueError(
            f"IDX cannot hold {array.dtype} arrays; use one of uint8, int8, "
            "int16, int32, float32, float64"
        )
    if not 1 <= array.ndim <= 255 or any(n >= 1 << 32 for n in array.shape):
        raise ValueError(f"IDX cannot hold an array of shape {array.shape}")
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, _CODES[kind], array.ndim, *array.shape)
    return header + np.ascontiguousarray(array, dtype=f">{kind}").tobytes()


@contextlib.contextmanager
def open_payload(path: str | os.PathLike[str]) -> Iterator[io.BufferedIOBase]:
    """Open ``path`` for reading its decompressed bytes; turn read errors into DataError.

    Gzip is recognised by its magic bytes. Any ``OSError`` (missing file, bad gzip
    header, CRC mismatch), ``EOFError`` (stream cut short) or ``zlib.error`` raised inside
    the ``with`` block becomes one :class:`DataError` naming the file (see read_errors).
    """
    with read_errors(path), open(path, "rb") as raw:
        if raw.read(2) == GZIP_MAGIC:
            raw.seek(0)
            with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                yield unzipped
                return
        raw.seek(0)
        yield raw


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
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def iter_idx(path: str | os.PathLike[str], rows: int) -> Iterator[np.ndarray]:
    """Yield the IDX file at ``path`` in blocks of ``rows`` along its first axis.

    Memory stays bounded by one block, however large the file: this is how xpnet streams
    millions of images from disk. The checks are those of :func:`read_idx`; a truncated
    file raises :class:`DataError` at the block where its data runs out.
    """
    if rows < 1:
        raise ValueError(f"rows must be a positive integer, got {rows}")
    with open_payload(path) as stream:
        shape, dtype = _header(stream, path)
        for start in range(0, shape[0], rows):
            count = min(rows, shape[0] - start)
            block = np.empty((count, *shape[1:]), dtype=dtype)
            if _read_into(stream, block) < block.nbytes:
                raise _invalid(path, f"truncated: the header {shape} promises more data bytes")
            yield block.astype(dtype.newbyteorder("="), copy=False)
        if stream.read(1):
            raise _invalid(path, f"bytes follow the data its header {shape} promises")


def _invalid(path: str | os.PathLike[str], what: str) -> DataError:
    return DataError(f"{path} is not a valid IDX file: {what}")


def _header(
    stream: io.BufferedIOBase, path: str | os.PathLike[str]
) -> tuple[tuple[int, ...], np.dtype]:
    """Read and check an IDX header: the array's shape and big-endian dtype."""
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
    dims_bytes = _read_upto(stream, 4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise _invalid(path, f"truncated in the header ({ndim} dimensions need {4 * ndim} bytes)")
    return struct.unpack(f">{ndim}I", dims_bytes), np.dtype(f">{_TYPES[code]}")


def _parse(stream: io.BufferedIOBase, path: str | os.PathLike[str]) -> np.ndarray:
    shape, dtype = _header(stream, path)
    expected = math.prod(shape) * dtype.itemsize
    data = _read_upto(stream, expected)
    if len(data) < expected:
        raise _invalid(
            path,
            f"truncated: the header {shape} promises {expected} data bytes, "
            f"the file has {len(data)}",
        )
    if stream.read(1):
        raise _invalid(path, f"bytes follow the {expected} data bytes its header {shape} promises")
    try:
        array = np.frombuffer(data, dtype=dtype).reshape(shape)
    except ValueError as exc:  # e.g. more dimensions than NumPy supports
        raise _invalid(path, f"NumPy cannot hold shape {shape} ({exc})") from None
    return array.astype(dtype.newbyteorder("="), copy=False)


def _read_upto(stream: io.BufferedIOBase, size: int) -> bytearray:
    """Read ``size`` bytes or up to the end; memory grows with the data, not the claim."""
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(min(_CHUNK, size - len(data)))
        if not chunk:
            break
        data += chunk
    return data


def _read_into(stream: io.BufferedIOBase, array: np.ndarray) -> int:
    """Fill ``array``'s bytes from ``stream`` (no intermediate copies); return bytes read.

    One buffer per block, reused by nothing: large blocks come from and go back to the
    operating system whole, so streaming a file of any size keeps memory flat.
    """
    view = array.data.cast("B")
    filled = 0
    while filled < len(view):
        got = stream.readinto(view[filled:])
        if not got:
            break
        filled += got
    return filled
