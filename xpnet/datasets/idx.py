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


def _parse(stream: io.BufferedIOBase, path: str | os.PathLike[str]) -> np.ndarray:
    def fail(what: str) -> DataError:
        return DataError(f"{path} is not a valid IDX file: {what}")

    head = _read_upto(stream, 4)
    if len(head) < 4:
        raise fail(f"it has {len(head)} bytes, shorter than the 4-byte magic number")
    zero, code, ndim = head[:2], head[2], head[3]
    if zero != b"\0\0":
        raise fail(f"its magic number starts with 0x{zero.hex()}, not 0x0000")
    if code not in _TYPES:
        raise fail(f"unknown type code 0x{code:02x}")
    if ndim == 0:
        raise fail("its header declares no dimensions")
    dims_bytes = _read_upto(stream, 4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise fail(f"truncated in the header ({ndim} dimensions need {4 * ndim} bytes)")
    shape = struct.unpack(f">{ndim}I", dims_bytes)
    dtype = np.dtype(f">{_TYPES[code]}")
    expected = math.prod(shape) * dtype.itemsize
    data = _read_upto(stream, expected)
    if len(data) < expected:
        raise fail(
            f"truncated: the header {shape} promises {expected} data bytes, "
            f"the file has {len(data)}"
        )
    if stream.read(1):
        raise fail(f"bytes follow the {expected} data bytes its header {shape} promises")
    try:
        array = np.frombuffer(data, dtype=dtype).reshape(shape)
    except ValueError as exc:  # e.g. more dimensions than NumPy supports
        raise fail(f"NumPy cannot hold shape {shape} ({exc})") from None
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
