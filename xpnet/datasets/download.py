"""Download a data file from a list of mirrors with pooch, checked against its md5.

Each try downloads into a private temporary folder inside the cache folder; only a file
whose md5 matches is renamed into place (one atomic ``os.replace``), so a failed, cut
or wrong download leaves nothing behind and two processes fetching the same file both
end up with the whole file. pooch, requests and tqdm (``pip install 'xpnet[data]'``) are
imported only when a download starts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from xpnet.errors import DataError

LOCAL_FILES_HINT = (
    "to use files you already have, pass data_dir=..., set XPNET_DATA_DIR or use --data-dir"
)
"""How a user points xpnet at local copies; every 'not found' message ends with it."""

DEFAULT_TIMEOUT = 30.0
"""Seconds to wait for a connection or for the next bytes of a download."""


def fetch(
    filename: str,
    md5: str,
    mirrors: Sequence[str],
    cache_dir: str | os.PathLike[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    progressbar: bool | None = None,
    offline_hint: str = LOCAL_FILES_HINT,
) -> Path:
    """Return ``cache_dir/filename``, downloading it from the first mirror that serves it.

    A copy already in ``cache_dir`` with the right md5 is returned as is. ``timeout``
    bounds each connection attempt and each wait for data. ``progressbar=None`` shows a
    tqdm bar only when stderr is a terminal. Raises a one-line :class:`DataError` naming
    the file, the folder and every mirror tried with its reason when all mirrors fail,
    ending with ``offline_hint``: how to use a copy the user already has.
    """
    target = Path(cache_dir) / filename
    if target.is_file() and file_md5(target) == md5:
        return target
    try:
        import pooch
        import requests
    except ImportError as exc:
        raise DataError(
            f"downloading {filename} needs {exc.name} (pip install 'xpnet[data]'); {offline_hint}"
        ) from None
    if progressbar is None:
        progressbar = sys.stderr.isatty() and importlib.util.find_spec("tqdm") is not None
    pooch.get_logger().setLevel("WARNING")  # its "Downloading ... to file ..." notes are noise
    downloader = pooch.HTTPDownloader(progressbar=progressbar, timeout=timeout)
    failures = []
    for mirror in mirrors:
        url = f"{mirror.rstrip('/')}/{filename}"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as staging:
                fetched = pooch.retrieve(
                    url,
                    known_hash=f"md5:{md5}",
                    fname=filename,
                    path=staging,
                    downloader=downloader,
                )
                os.replace(fetched, target)
            return target
        except (requests.RequestException, ValueError, OSError) as exc:
            failures.append(f"{url} ({_reason(exc, timeout)})")
    raise DataError(
        f"could not download {filename} into {target.parent}: tried "
        f"{'; '.join(failures) or 'no mirror'}; {offline_hint}"
    )


def _reason(exc: Exception, timeout: float) -> str:
    """A few words on why one download failed."""
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, requests.Timeout) or "timed out" in str(exc):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection cut mid-file"
    if isinstance(exc, requests.ConnectionError):
        return "cannot connect"
    if isinstance(exc, ValueError) and "hash" in str(exc).lower():
        return "md5 mismatch"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


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
