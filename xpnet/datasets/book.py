"""The textbook's trained weights, fetched from the book's support repository on request.

``sample_weight.pkl`` (MIT licence, (c) 2016 Koki Saitoh) is what the book's chapter 3
scripts load; it gives accuracy 0.9352 on the MNIST test split. It is a pickle, so xpnet
reads it with its restricted unpickler, never with ``pickle.load``.
"""

from __future__ import annotations

from pathlib import Path

from xpnet.datasets.download import fetch
from xpnet.datasets.locate import cache_root

BOOK_WEIGHTS_FILE = "sample_weight.pkl"
BOOK_WEIGHTS_MD5 = "6aaf4fbaa5b675aae4fc669115b10e4f"
BOOK_WEIGHTS_MIRRORS = (
    "https://raw.githubusercontent.com/oreilly-japan/deep-learning-from-scratch/master/ch03/",
    "https://raw.githubusercontent.com/WegraLee/deep-learning-from-scratch/master/ch03/",
)


def fetch_book_weights() -> Path:
    """The path of the textbook's ``sample_weight.pkl``, downloaded once into the cache."""
    return fetch(
        BOOK_WEIGHTS_FILE,
        BOOK_WEIGHTS_MD5,
        BOOK_WEIGHTS_MIRRORS,
        cache_root() / "book",
        offline_hint="to use a copy you already have, pass its path: --weights PATH",
    )
