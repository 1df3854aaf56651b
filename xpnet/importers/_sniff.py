"""Tell weight and model files apart by their content, reading only a few bytes of each.

Zip archives are told apart by the names they hold (xpnet's ``.npz``, a PyTorch file, a
``.keras`` file, a skops file); a safetensors file by its length-prefixed JSON header; an
ONNX file by walking the top-level fields of its protobuf message; a pickle by its
protocol opcode. A damaged zip falls back on the file's extension, so a truncated
``model.keras`` is still reported as a damaged ``.keras`` file.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
from pathlib import Path
from typing import BinaryIO

from xpnet._budget import check_zip_directory

NPZ = "npz"
PICKLE = "pickle"
TORCH = "torch"
KERAS = "keras"
SKOPS = "skops"
ONNX = "onnx"
SAFETENSORS = "safetensors"
COMPRESSED = "compressed"
UNKNOWN = "unknown"

_TORCH_LEGACY = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
"""How ``torch.save(..., _use_new_zipfile_serialization=False)`` starts: a pickled magic number."""

_COMPRESSED = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x5d\x00\x00", "lzma"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"\x78\x01", "zlib"),
    (b"\x78\x5e", "zlib"),
    (b"\x78\x9c", "zlib"),
    (b"\x78\xda", "zlib"),
)
"""Magic numbers of the compressions ``joblib.dump(..., compress=...)`` writes."""

_BY_SUFFIX = {".keras": KERAS, ".skops": SKOPS, ".pt": TORCH, ".pth": TORCH}

_MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
"""ONNX ``ModelProto``'s field numbers and their protobuf wire types (0 varint, 2 bytes)."""

MAX_ONNX_FIELDS = 100_000
"""Top-level fields walked before a file is taken to be no ONNX model."""


class NotRegularFile(OSError):
    """The path names a folder, a device, a FIFO or a socket, not a file of bytes."""


def sniff(path: Path) -> tuple[str, str]:
    """``(kind, detail)`` for the file at ``path``: one of the kinds above; ``detail`` names the
    compression of a compressed file. Raises ``OSError`` if it cannot be read."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise NotRegularFile(f"{path} is not a regular file")
        head = file.read(16)
        size = os.fstat(file.fileno()).st_size
        if head[:2] == b"PK":
            return _zip_kind(path, file), ""
        if len(head) >= 9 and head[8:9] == b"{" and head[4:8] == b"\0\0\0\0":
            return SAFETENSORS, ""
        if head.startswith(_TORCH_LEGACY):
            return TORCH, ""
        if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            return PICKLE, ""
        for magic, name in _COMPRESSED:
            if head.startswith(magic):
                return COMPRESSED, name
        if _is_onnx(file, size) or (head[:1] == b"\x08" and path.suffix == ".onnx"):
            return ONNX, ""
    return UNKNOWN, ""


def _zip_kind(path: Path, file: BinaryIO) -> str:
    try:
        check_zip_directory(file, str(path))  # before zipfile reads every entry
        names = zipfile.ZipFile(file).namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        # OverBudget is a ValueError; NotImplementedError: a directory entry claims a zip
        # version zipfile lacks
        return _BY_SUFFIX.get(path.suffix.lower(), NPZ)
    if any(re.fullmatch(r"[^/]+/data\.pkl", name) for name in names):
        return TORCH
    if "config.json" in names and ("model.weights.h5" in names or "metadata.json" in names):
        return KERAS
    if "schema.json" in names:
        return SKOPS
    return NPZ


def _is_onnx(file: BinaryIO, size: int) -> bool:
    """Whether the file is one protobuf ``ModelProto``: its top-level fields have ModelProto's
    numbers and wire types, end exactly at the end of the file and include a graph."""
    file.seek(0)
    position, seen = 0, set()
    for _ in range(MAX_ONNX_FIELDS):
        if position == size:
            return 7 in seen
        key, position = _varint(file, position)
        if key is None:
            return False
        number, wire = key >> 3, key & 7
        if _MODEL_FIELDS.get(number) != wire:
            return False
        value, position = _varint(file, position)
        if value is None:
            return False
        if wire == 2:
            position += value
            if position > size:
                return False
            file.seek(position)
        seen.add(number)
    return False


def _varint(file: BinaryIO, position: int) -> tuple[int | None, int]:
    value, shift = 0, 0
    while shift < 64:
        byte = file.read(1)
        if not byte:
            return None, position
        position += 1
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value, position
        shift += 7
    return None, position
