"""The textbook's trained weights, fetched from the book's support repository on request.

``sample_weight.pkl`` (MIT licence, (c) 2016 Koki Saitoh) is what the book's chapter 3
scripts load; it gives accuracy 0.9352 on the MNIST test split. It is a pickle, so xpnet
reads it with its restricted unpickler, never with ``pickle.load``.
"""

from __future__ import annotations

from pathlib import Path

from xpnet.errors import DataError

BOOK_WEIGHTS_FILE = "sample_weight.pkl"
BOOK_WEIGHTS_MD5 = "6aaf4fbaa5b675aae4fc669115b10e4f"
BOOK_WEIGHTS_SIZE = 181_853
BOOK_WEIGHTS_MIRRORS = (
    "https://raw.githubusercontent.com/oreilly-japan/deep-learning-from-scratch/master/ch03/",
    "https://raw.githubusercontent.com/WegraLee/deep-learning-from-scratch/master/ch03/",
)


OFFLINE_HINT = "to use a copy you already have, pass its path: --weights PATH"


def fetch_book_weights() -> Path:
    """The path of the textbook's ``sample_weight.pkl``, downloaded once into the cache.

    A copy in ``book/`` under xpnet's cache folder (``$XPNET_CACHE_DIR``, else the user's
    cache) with the book's md5 is used as is; otherwise the file is downloaded from the
    book's repository (needs ``pip install 'xpnet[data]'``), its size and md5 checked
    before it is used, as the datasets' files are.

    Returns
    -------
    pathlib.Path
        The cached ``sample_weight.pkl``: load it with :func:`xpnet.load_weights`.

    Raises
    ------
    xpnet.DataError
        Where there is no cache folder, or no mirror serves the book's file; the message
        ends with how to use a copy the user already has (``--weights PATH``).
    """
    # The datasets' downloader is imported here, not with xpnet: ``import xpnet`` stays light.
    from xpnet.datasets.download import fetch
    from xpnet.datasets.locate import cache_root

    try:
        folder = cache_root() / "book"
    except DataError as exc:
        raise DataError(f"to download the book's weights, {exc}; {OFFLINE_HINT}") from None
    return fetch(
        BOOK_WEIGHTS_FILE,
        BOOK_WEIGHTS_MD5,
        BOOK_WEIGHTS_MIRRORS,
        folder,
        offline_hint=OFFLINE_HINT,
        size=BOOK_WEIGHTS_SIZE,
    )
