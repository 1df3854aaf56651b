"""One memory budget for every file xpnet reads, whichever library parses it.

The rule: what a file *declares* (array shapes and element counts, decompressed sizes of
zip members and compressed chunks, a model config's layer sizes, a pickle's opcodes) may
ask for at most :data:`MAX_INFLATION` times the bytes the file really holds, plus
:data:`INFLATION_SLACK`, and it is checked before anything of that size is allocated or
inflated. Real weights compress little, so an honest file is far inside the bound; a small
file declaring gigabytes is refused in one line. Where a library reads the file itself
(Keras, skops, PyTorch, zarr), xpnet reads what the file declares first and calls the
library only once it fits.

Counts that cost memory without bytes to match (a pickle's opcodes, a zip's directory
entries, the text of a JSON config) have fixed bounds, far above what any network needs.
"""

from __future__ import annotations

import math
import os
import pickletools
import struct
import zipfile
from collections.abc import Sequence
from typing import Any, BinaryIO

MAX_INFLATION = 64
"""How many times the bytes a file holds it may declare. Weights compress little, so
only a hostile file needs more."""

INFLATION_SLACK = 1 << 20
"""Bytes a file may declare beyond ``MAX_INFLATION`` times its size: small arrays (zero
biases, blank images) compress far better than real weights."""

MAX_ZIP_DIRECTORY_BYTES = 1 << 21
"""The largest zip central directory read: room for tens of thousands of entries, read
before :mod:`zipfile` builds an object for each."""

MAX_ZIP_MEMBERS = 8192
"""The most entries a zip archive may hold: a PyTorch file of two thousand layers has
about four thousand."""

MAX_PICKLE_OPS = 1 << 20
"""The most opcodes a pickle may hold: each can make a Python object (a ``MARK`` a list,
a ``MEMOIZE`` a memo entry) without bytes to match; a state dict needs about 35 a tensor."""

MAX_METADATA_BYTES = 1 << 22
"""The longest JSON config or schema read (``config.json`` of a ``.keras`` file, a skops
``schema.json``): a chain of dense layers describes itself in far less."""


class OverBudget(ValueError):
    """A file declares more than :func:`allowance` of its size; the message says what."""


def allowance(held: int) -> int:
    """The most bytes a file that holds ``held`` bytes may declare."""
    return MAX_INFLATION * max(held, 0) + INFLATION_SLACK


def check(declared: int, held: int, what: str) -> None:
    """Refuse ``declared`` bytes asked for by ``what``, a file (or part) of ``held`` bytes."""
    if declared > allowance(held):
        raise OverBudget(
            f"{what} declares {declared} bytes from {held}; xpnet reads nothing that asks "
            f"for more than {MAX_INFLATION} times the bytes it holds (plus {INFLATION_SLACK})"
        )


def check_metadata(declared: int, what: str) -> None:
    """Refuse a config, schema or header (``what``) that declares more than
    :data:`MAX_METADATA_BYTES`, before it is read."""
    if declared > MAX_METADATA_BYTES:
        raise OverBudget(
            f"{what} declares {declared} bytes; xpnet reads at most {MAX_METADATA_BYTES} "
            "(a network describes itself in far less)"
        )


def array_bytes(shape: Sequence[Any], itemsize: int, what: str) -> int:
    """The bytes of an array of ``shape``; :class:`OverBudget` for a shape that is no shape."""
    dims = [n for n in shape if type(n) is int and n >= 0]
    if len(dims) != len(list(shape)):
        raise OverBudget(f"{what} has the shape {list(shape)!r}, not a tuple of sizes")
    return math.prod(dims) * itemsize


def open_zip(file: str | os.PathLike[str] | BinaryIO, what: str) -> zipfile.ZipFile:
    """A zip archive whose directory and every member fit the budget, checked before any
    member is inflated: the directory's size is read from its end record before
    :mod:`zipfile` parses it, then each member's declared size is checked against its
    compressed size and all of them together against the archive's size."""
    size = check_zip_directory(file, what)
    archive = zipfile.ZipFile(file)
    try:
        infos = archive.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise OverBudget(f"{what} holds {len(infos)} zip entries; xpnet reads fewer")
        for info in infos:
            check(info.file_size, info.compress_size, f"{what}'s entry {info.filename!r}")
        check(sum(info.file_size for info in infos), size, what)
    except BaseException:
        archive.close()
        raise
    return archive


def check_zip_directory(file: str | os.PathLike[str] | BinaryIO, what: str) -> int:
    """Refuse a zip archive whose central directory (read from its end record) is larger
    than :data:`MAX_ZIP_DIRECTORY_BYTES` or lists more than :data:`MAX_ZIP_MEMBERS`
    entries, before :mod:`zipfile` builds an object for each entry; the archive's size."""
    if not isinstance(file, (str, os.PathLike)):
        start = file.tell()
        size = file.seek(0, os.SEEK_END)
        entries, directory = _directory_size(file, size)
        file.seek(start)
    else:
        with open(file, "rb") as stream:
            size = stream.seek(0, os.SEEK_END)
            entries, directory = _directory_size(stream, size)
    if directory > min(MAX_ZIP_DIRECTORY_BYTES, size) or entries > MAX_ZIP_MEMBERS:
        raise OverBudget(
            f"{what} declares a zip directory of {entries} entries in {directory} bytes; "
            f"xpnet reads at most {MAX_ZIP_MEMBERS} entries in {MAX_ZIP_DIRECTORY_BYTES} bytes"
        )
    return size


def check_npy_members(archive: zipfile.ZipFile, what: str) -> None:
    """Refuse an archive whose ``.npy`` members declare (in their headers) arrays larger
    than the bytes the members hold, reading only each header."""
    import numpy as np

    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            continue
        with archive.open(info) as stream:
            version = np.lib.format.read_magic(stream)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(stream)
            held = info.file_size - stream.tell()
        where = f"{what}'s entry {info.filename!r}"
        declared = array_bytes(shape, dtype.itemsize, where)
        if declared > held:
            raise OverBudget(
                f"{where} declares {shape} {dtype} ({declared} bytes) but holds {held}"
            )


_END = b"PK\x05\x06"
_END64_LOCATOR = b"PK\x06\x07"
_END64 = b"PK\x06\x06"


def _directory_size(stream: BinaryIO, size: int) -> tuple[int, int]:
    """``(entries, bytes)`` of the central directory, from the archive's end records;
    ``(0, 0)`` where there are none (:mod:`zipfile` then refuses the file itself)."""
    tail = min(size, 22 + 0xFFFF)  # the end record and the longest comment
    stream.seek(size - tail)
    data = stream.read(tail)
    at = data.rfind(_END)
    if at < 0 or len(data) - at < 22:
        return 0, 0
    _, _, _, _, entries, directory, _, _ = struct.unpack("<4sHHHHIIH", data[at : at + 22])
    locator = at - 20
    if locator >= 0 and data[locator : locator + 4] == _END64_LOCATOR:
        (offset,) = struct.unpack("<Q", data[locator + 8 : locator + 16])
        if offset + 56 <= size:
            stream.seek(offset)
            record = stream.read(56)
            if record[:4] == _END64:
                entries, directory = struct.unpack("<QQ", record[32:48])
    return entries, directory


def check_pickle(stream: Any, size: int, what: str, *, pickles: int = 1) -> None:
    """Refuse a pickle (or ``pickles`` of them, one after another, as PyTorch's legacy
    format writes) holding more than :data:`MAX_PICKLE_OPS` opcodes, reading from
    ``stream`` (``size`` bytes left in it) without building anything and without reading
    past its end. A damaged pickle is left to its reader to refuse; the stream is left
    where it was."""
    start = stream.tell()
    bounded = _Bounded(stream, size)
    count = 0
    try:
        for _ in range(pickles):
            for _op in pickletools.genops(bounded):  # type: ignore[arg-type]
                count += 1
                if count > MAX_PICKLE_OPS:
                    raise OverBudget(
                        f"{what} holds more than {MAX_PICKLE_OPS} pickle opcodes; a pickle of "
                        "arrays needs far fewer"
                    )
    except OverBudget:
        raise
    except Exception:  # pickletools, or a length past the end: the reader says what is wrong
        pass
    finally:
        stream.seek(start)


class _PastEnd(Exception):
    pass


class _Bounded:
    """A stream that refuses, before reading, to read past the bytes left in it."""

    def __init__(self, stream: Any, size: int) -> None:
        self._stream, self._left = stream, size

    def read(self, count: int = -1) -> bytes:
        if count < 0:
            count = self._left
        if count > self._left:
            raise _PastEnd(f"a pickle opcode asks for {count} bytes where {self._left} remain")
        data = self._stream.read(count)
        self._left -= len(data)
        return bytes(data)

    def readline(self) -> bytes:
        line = self._stream.readline(min(self._left, 1 << 16))
        self._left -= len(line)
        return bytes(line)


PROTOBUF_OBJECT_BYTES = 512
"""Bytes counted for each message or string a protobuf file holds: more than a parser
builds for one, with the Python object that reads it (an empty message is two bytes on
disk)."""


def check_protobuf(data: bytes, schema: dict[str, dict[int, str]], root: str, what: str) -> None:
    """Refuse a protobuf message whose sub-messages and strings, counted at
    :data:`PROTOBUF_OBJECT_BYTES` each, ask for more than the budget of its size, walking
    its wire format before any parser builds them. ``schema`` maps a message type to the
    fields (by number) that hold messages of another type; ``root`` is the top type.
    Malformed wire data ends the walk: the parser says what is wrong."""
    limit = allowance(len(data)) // PROTOBUF_OBJECT_BYTES
    count = 0
    # Depth first: the stack holds the messages being walked, one per level of nesting.
    stack = [(schema.get(root, {}), 0, len(data))]
    while stack:
        fields, position, end = stack.pop()
        while position < end:
            key = data[position]
            position += 1
            if key >= 0x80:
                key, position = _varint(data, position - 1, end)
                if key < 0:
                    break
            wire = key & 7
            if wire == 2:
                length = data[position] if position < end else 0x80
                position += 1
                if length >= 0x80:
                    length, position = _varint(data, position - 1, end)
                if length < 0 or position + length > end:
                    break
                count += 1
                if count > limit:
                    raise OverBudget(
                        f"{what} holds more than {limit} messages and strings in "
                        f"{len(data)} bytes; xpnet reads at most one per "
                        f"{PROTOBUF_OBJECT_BYTES // MAX_INFLATION} bytes"
                    )
                inner = fields.get(key >> 3)
                if inner is not None:
                    stack.append((fields, position + length, end))
                    stack.append((schema.get(inner, {}), position, position + length))
                    break
                position += length
            elif wire == 0:
                _, position = _varint(data, position, end)
            elif wire == 1:
                position += 8
            elif wire == 5:
                position += 4
            else:
                break


def _varint(data: bytes, position: int, end: int) -> tuple[int, int]:
    """The varint at ``position`` and the position after it; ``-1`` if it runs past ``end``."""
    value, shift = 0, 0
    while position < end and shift < 64:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
    return -1, position
