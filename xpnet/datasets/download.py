"""Download a data file from a list of mirrors with requests, checked against its md5.

Each try downloads into a private staging folder (``.download-*``) inside the cache
folder; only a file whose size and md5 match is renamed into place (one atomic
``os.replace``), so a failed, cut, wrong or interrupted (Ctrl-C) download leaves nothing
behind, and two processes fetching the same file both end up with the whole file.

Bounds: each try ends within ``deadline`` seconds from its start, plus at most one wait
of ``timeout`` for the next bytes (a mirror that trickles is cut off); no more bytes
than the file's known ``size`` are written (an endless or lying body is cut off); https
mirrors are tried before plain-http ones, whose files, like every file, are used only
once their md5 matches. A staging folder that a killed process left behind is removed on
the next download into the same folder: only a folder xpnet marked as its own (a lock
file it holds for as long as it downloads), and only once no process holds that lock.

requests and tqdm (``pip install 'xpnet[data]'``) are imported only when a download starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from xpnet._temporaries import ATTEMPTS, abandoned, create_locked
from xpnet.errors import DataError

LOCAL_FILES_HINT = (
    "to use files you already have, pass data_dir=..., set XPNET_DATA_DIR or use --data-dir"
)
"""How a user points xpnet at local copies; every 'not found' message ends with it."""

DEFAULT_TIMEOUT = 30.0
"""Seconds to wait for a connection or for the next bytes of a download."""

DEFAULT_DEADLINE = 900.0
"""Seconds one try at one mirror may take in all (then the next mirror is tried)."""

MAX_UNKNOWN_SIZE = 1 << 30
"""The most bytes written for a file whose size the caller does not know."""

STAGING_PREFIX = ".download-"
"""How xpnet's staging folders start; only those that also hold its lock are swept."""
_LOCK = "xpnet-download.lock"
"""The lock file in a staging folder: JSON naming the file, held (flock) while in use."""


class _Failed(Exception):
    """One try failed; the message is the reason, in a few words."""


def fetch(
    filename: str,
    md5: str,
    mirrors: Sequence[str],
    cache_dir: str | os.PathLike[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    progressbar: bool | None = None,
    offline_hint: str = LOCAL_FILES_HINT,
    size: int | None = None,
    deadline: float = DEFAULT_DEADLINE,
) -> Path:
    """Return ``cache_dir/filename``, downloading it from the first mirror that serves it.

    A copy already in ``cache_dir`` with the right md5 is returned as is. ``timeout``
    bounds each connection attempt and each wait for data; ``deadline`` each try as a
    whole (a try ends at the first wait that ends after it). ``size``, the file's size
    in bytes where known, is the most a try writes (else MAX_UNKNOWN_SIZE), and a
    mirror that announces another size is not read. https mirrors are tried first, in
    their order, then the others. ``progressbar=None`` shows a tqdm bar only when stderr
    is a terminal. Raises a one-line :class:`DataError` naming the file, the folder and
    every mirror tried with its reason when all mirrors fail, ending with
    ``offline_hint``: how to use a copy the user already has.
    """
    target = Path(cache_dir) / filename
    if target.is_file() and file_md5(target) == md5:
        return target
    try:
        import requests
        import urllib3
    except ImportError as exc:
        raise DataError(
            f"downloading {filename} needs {exc.name} (pip install 'xpnet[data]'); {offline_hint}"
        ) from None
    if progressbar is None:
        progressbar = sys.stderr.isatty() and importlib.util.find_spec("tqdm") is not None
    failures = []
    for mirror in sorted(mirrors, key=lambda url: not url.lower().startswith("https://")):
        url = f"{mirror.rstrip('/')}/{filename}"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with staging_folder(target.parent, filename) as staging:
                partial = staging / filename
                _download(url, partial, md5, size, timeout, deadline, progressbar)
                os.replace(partial, target)
            return target
        except _Failed as exc:
            failures.append(f"{url} ({exc})")
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            failures.append(f"{url} ({_reason(exc, timeout)})")
    raise DataError(
        f"could not download {filename} into {target.parent}: tried "
        f"{'; '.join(failures) or 'no mirror'}; {offline_hint}"
    )


def _download(
    url: str,
    partial: Path,
    md5: str,
    size: int | None,
    timeout: float,
    deadline: float,
    progressbar: bool,
) -> None:
    """Download ``url`` into ``partial``, within the bounds; _Failed says why not."""
    import requests

    began = time.monotonic()
    cap = MAX_UNKNOWN_SIZE if size is None else size
    # identity: the bytes as the mirror stores them, which is what the md5 sums
    headers = {"Accept-Encoding": "identity"}
    with requests.get(url, stream=True, timeout=timeout, headers=headers) as response:
        response.raise_for_status()
        announced = response.headers.get("Content-Length", "")
        if announced.isdigit() and int(announced) > cap:
            raise _Failed(f"announces {int(announced)} bytes, more than the {cap} expected")
        if announced.isdigit() and size is not None and int(announced) != size:
            raise _Failed(f"announces {int(announced)} bytes, not the {size} expected")
        digest = hashlib.md5(usedforsecurity=False)  # a checksum against corruption, not a MAC
        written = 0
        read = _reader(response.raw)
        with open(partial, "wb") as out, _progress(progressbar, size, partial.name) as bar:
            while chunk := read(1 << 16):
                written += len(chunk)
                if written > cap:
                    raise _Failed(f"sends more than the {cap} bytes expected")
                digest.update(chunk)
                out.write(chunk)
                bar(len(chunk))
                if time.monotonic() - began > deadline:
                    raise _Failed(f"not complete within {deadline:g} s")
    if size is not None and written < size:
        raise _Failed(f"connection cut mid-file ({written} of {size} bytes)")
    if digest.hexdigest() != md5:
        raise _Failed("md5 mismatch")


def _reader(raw: Any) -> Any:
    """``read(n)``: the bytes that one wait brings (at most n), as the mirror sent them.

    One wait, not n bytes: a mirror that trickles must reach the deadline check
    (urllib3's public ``read1``, from 2.3, which the ``data`` extra requires).
    """
    return lambda n: raw.read1(n, decode_content=False)


@contextlib.contextmanager
def _progress(show: bool, total: int | None, name: str) -> Iterator[Any]:
    """A callable that advances a tqdm bar by n bytes, or does nothing."""
    if not show:
        yield lambda n: None
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="B", unit_scale=True, desc=name, file=sys.stderr) as bar:
        yield bar.update


def _reason(exc: Exception, timeout: float) -> str:
    """A few words on why one download failed."""
    import requests
    import urllib3

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, (requests.Timeout, urllib3.exceptions.TimeoutError)) or "timed out" in str(
        exc
    ):
        return f"no answer within {timeout:g} s"
    if isinstance(
        exc, (requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError)
    ):
        return "connection cut mid-file"
    if isinstance(exc, requests.ConnectionError):
        return "cannot connect"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


@contextlib.contextmanager
def staging_folder(parent: Path, filename: str) -> Iterator[Path]:
    """A new staging folder in ``parent`` for downloading ``filename``, removed on exit.

    It holds a lock file, locked for as long as the folder is in use; stale folders
    (:func:`sweep_staging`) are swept first. Exit by any route (success, error, Ctrl-C)
    removes the partial file, the lock and the folder.
    """
    sweep_staging(parent)
    folder, lock = _new_staging(parent, filename)
    try:
        yield folder
    finally:
        with contextlib.suppress(FileNotFoundError):
            (folder / filename).unlink()
        with contextlib.suppress(FileNotFoundError):
            (folder / _LOCK).unlink()
        os.close(lock)
        with contextlib.suppress(OSError):
            folder.rmdir()


def _new_staging(parent: Path, filename: str) -> tuple[Path, int]:
    """A new staging folder and its lock file, held, naming ``filename``: the folder and
    the lock's descriptor. A sweeper that removes the folder while it is still empty (it
    holds nothing yet) makes this try again with another."""
    for _ in range(ATTEMPTS):
        folder = Path(tempfile.mkdtemp(dir=parent, prefix=STAGING_PREFIX))
        try:
            fd, _ = create_locked(folder, lambda: _LOCK)
        except (FileNotFoundError, FileExistsError):
            continue  # swept while empty
        try:
            os.write(fd, json.dumps({"file": filename, "pid": os.getpid()}).encode())
        except BaseException:
            os.close(fd)
            raise
        return folder, fd
    raise DataError(f"cannot make a staging folder in {parent} for {filename}")


def sweep_staging(parent: Path) -> list[Path]:
    """Remove the staging folders in ``parent`` that killed downloads left; return them.

    By :mod:`xpnet._temporaries`' rule: a folder is removed only if its name starts with
    ``.download-`` and it holds xpnet's lock file that no process holds (a live download
    holds it, until it ends); then its lock, the partial file the lock names and the
    folder go, and nothing else (a folder holding anything more stays, as does one whose
    lock file is not one xpnet wrote). An empty ``.download-*`` folder (a process killed
    before its lock) holds nothing to lose and is removed too.
    """
    removed = []
    try:
        entries = list(parent.glob(f"{STAGING_PREFIX}*"))
    except OSError:
        return []
    for folder in entries:
        with contextlib.suppress(OSError):
            if folder.is_symlink() or not folder.is_dir():
                continue
            if _sweep_one(folder):
                removed.append(folder)
    return removed


MAX_LOCK_BYTES = 4096
"""The most of a lock file read: xpnet's are one short JSON object."""


def _sweep_one(folder: Path) -> bool:
    if not os.path.lexists(folder / _LOCK):
        if not any(folder.iterdir()):
            folder.rmdir()
            return True
        return False
    with abandoned(folder / _LOCK) as gone:
        if not gone:
            return False  # a live download holds it (or it is not a file)
        with open(folder / _LOCK, "rb") as stream:
            text = stream.read(MAX_LOCK_BYTES + 1)
        try:
            meta = json.loads(text) if len(text) <= MAX_LOCK_BYTES else None
        except (ValueError, RecursionError):  # not a lock xpnet wrote: leave the folder
            return False
        name = meta.get("file") if isinstance(meta, dict) else None
        if not (isinstance(name, str) and name and os.path.basename(name) == name):
            return False
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
        (folder / _LOCK).unlink()
    folder.rmdir()  # OSError (kept) if anything else is in it
    return True


def file_md5(path: str | os.PathLike[str]) -> str:
    """The md5 hex digest of the file at ``path``."""
    with open(path, "rb") as stream:
        return stream_md5(stream)


def stream_md5(stream: io.BufferedIOBase) -> str:
    """The md5 hex digest of everything a binary stream still has to read."""
    digest = hashlib.md5(usedforsecurity=False)  # a checksum against corruption, not a MAC
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()
