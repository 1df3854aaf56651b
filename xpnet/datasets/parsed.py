"""A parsed copy of each data file in the cache, so a repeat load skips gunzip and checks.

A copy's name holds a digest of its source's path (its bytes, whatever their encoding),
size and modification time and of the registry's facts about the file: an edited or
replaced source is parsed and checked again. A copy is one file: a magic line, a line of
JSON (the checksums that vouched for the source, the array's shape, the name's digest,
the CRC-32 of the array's bytes), then the array's bytes. It is read whole, and its CRC
is checked as it is read, every time: a copy that is damaged, cut short, renamed or
altered (even with the same shape) is never used. xpnet then parses the verified source
again, replaces the copy and warns once (one line naming the copy).

The source files are checked by their md5 against the registry: they may come from
anywhere. The copy lies in the user's own cache folder, which xpnet trusts as pip trusts
its cache (whoever can write there can as well write the user's installed packages), so
its check is against accidents (a disk error, a writer cut short, another version's
format), which a CRC catches at a tenth of a cryptographic hash's cost, not against a
forger; docs/performance.md weighs the two.

Copies are written atomically (a temporary file in the same folder, then ``os.replace``),
so two processes writing the same copy at once each leave a whole file, and a reader
sees the old copy or the new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from xpnet._atomic import atomic_write, temp_pattern
from xpnet._temporaries import sweep_files
from xpnet.datasets.idx import read_errors
from xpnet.datasets.registry import DataFile
from xpnet.datasets.verify import Verified, parse_verified

_FORMAT = 3
"""Bump to orphan every copy written before a change of what a copy holds."""
_MAGIC = b"XPNET PARSED COPY 3\n"
_MAX_HEADER = 4096
"""The most bytes the JSON line of a copy may take."""
_CHUNK = 1 << 20


class _Damaged(Exception):
    """A parsed copy that must not be used; the message says why."""


def load_parsed(
    path: Path, spec: DataFile, cache_dir: Path | None, dataset: str | None = None
) -> np.ndarray:
    """``spec``'s array from the file at ``path``: its parsed copy, else parsed, checked, kept.

    The array is the caller's own: read whole from the copy (one read, no memory map
    whose pages would fault in again on every load), or freshly parsed. Without a
    ``cache_dir`` (no cache folder) it is parsed and checked every time. ``dataset`` names
    the dataset wanted, for the message about a file that is another dataset's.
    """
    if cache_dir is None:
        return parse_verified(path, spec, dataset).array
    copy = parsed_copy_path(path, spec, cache_dir)
    try:
        array = _load_copy(copy, spec)
    except _Damaged as exc:
        warnings.warn(
            f"xpnet's parsed copy {copy} is damaged ({exc}); parsed {path} again and replaced it",
            stacklevel=4,
        )
        array = None
    if array is None:
        verified = parse_verified(path, spec, dataset)
        _store(copy, spec, verified, path)
        array = verified.array
    return array


def parsed_copy_path(path: Path, spec: DataFile, cache_dir: Path) -> Path:
    """Where the parsed copy of the file at ``path`` lives, keyed by its path, size and mtime."""
    return cache_dir / "parsed" / f"{spec.name}-{_key(path, spec)}.parsed"


def _key(path: Path, spec: DataFile) -> str:
    """The digest that names a copy: of the source's path bytes, size, mtime and spec."""
    with read_errors(path):
        source = path.resolve()
        facts = source.stat()
    parts = [
        str(_FORMAT).encode(),
        os.fsencode(source),  # any bytes the file system allows, UTF-8 or not
        str(facts.st_size).encode(),
        str(facts.st_mtime_ns).encode(),
        json.dumps([spec.name, spec.md5, spec.payload_md5, list(spec.shape), spec.format]).encode(),
    ]
    return hashlib.blake2b(b"\0".join(parts), digest_size=16).hexdigest()


def _load_copy(copy: Path, spec: DataFile) -> np.ndarray | None:
    """The copy's array; None if there is no copy; _Damaged if it must not be used."""
    try:
        stream = open(copy, "rb")  # noqa: SIM115 (closed below, after the type check)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _Damaged(exc.strerror or str(exc)) from None
    with stream:
        try:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                raise _Damaged("not a regular file")
            return _read_copy(stream, copy, spec)
        except OSError as exc:
            raise _Damaged(exc.strerror or str(exc)) from None


def _read_copy(stream: Any, copy: Path, spec: DataFile) -> np.ndarray:
    if stream.read(len(_MAGIC)) != _MAGIC:
        raise _Damaged("not an xpnet parsed copy")
    line = stream.readline(_MAX_HEADER)
    if not line.endswith(b"\n"):
        raise _Damaged("its header line is cut short or too long")
    try:
        meta = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: arrays nested past the stack
        raise _Damaged("its header is not JSON") from None
    expected_key = copy.name.removesuffix(".parsed").rsplit("-", 1)[-1]
    if (
        not isinstance(meta, dict)
        or meta.get("key") != expected_key
        or meta.get("file") != spec.name
        or meta.get("dtype") != "uint8"
        or meta.get("shape") != list(spec.shape)
        or not isinstance(meta.get("crc32"), int)
    ):
        raise _Damaged("its header does not describe this file")
    array = np.empty(spec.shape, dtype=np.uint8)
    view = array.reshape(-1).data
    crc = 0
    filled = 0
    while filled < len(view):
        got = stream.readinto(view[filled : filled + _CHUNK])
        if not got:
            raise _Damaged(f"cut short: {filled} of {len(view)} data bytes")
        crc = zlib.crc32(view[filled : filled + got], crc)
        filled += got
    if stream.read(1):
        raise _Damaged(f"bytes follow its {len(view)} data bytes")
    if crc != meta["crc32"]:
        raise _Damaged("its data do not match the checksum in its header")
    return array


def _store(copy: Path, spec: DataFile, verified: Verified, source: Path) -> None:
    array = np.ascontiguousarray(verified.array, dtype=np.uint8)
    meta = {
        "key": copy.name.removesuffix(".parsed").rsplit("-", 1)[-1],
        "file": spec.name,
        "dtype": "uint8",
        "shape": list(array.shape),
        "crc32": zlib.crc32(array.reshape(-1).data),
        "source": {
            "md5": verified.md5,
            "payload_md5": verified.payload_md5,
            "accepted_by": verified.accepted_by,
        },
    }
    try:
        _sweep_temporaries(copy.parent)
        # No wait for the disk: a copy a crash tears fails its checksum and is parsed again.
        with atomic_write(copy, make_folders=True, flush_to_disk=False) as stream:
            stream.write(_MAGIC)
            stream.write(json.dumps(meta, sort_keys=True).encode() + b"\n")
            stream.write(array.reshape(-1).data)
    except OSError as exc:
        warnings.warn(
            f"xpnet cannot keep a parsed copy of {source} in {copy.parent} "
            f"({exc.strerror or exc}); every load will parse it again",
            stacklevel=4,
        )


def _sweep_temporaries(folder: Path) -> None:
    """Remove the temporary files of copies whose writer died mid-write: the names
    :func:`xpnet._atomic.atomic_write` gives, by :mod:`xpnet._temporaries`' rule (only
    those whose writer's lock is gone)."""
    sweep_files(folder, temp_pattern())
