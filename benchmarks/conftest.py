"""What the benchmarks' tests share with the test suite: its real-data helpers
(``tests/realdata.py``) and a private cache folder. ``nox -s benchmarks`` runs them
(``pytest benchmarks``); the test suite under ``tests/`` never imports the benchmarks."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from realdata import require_book_weights  # tests/ is on the path from here


@pytest.fixture(autouse=True, scope="session")
def private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep every test's parsed-data and download cache out of the user's real cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("XPNET_CACHE_DIR", str(tmp_path_factory.mktemp("xpnet-cache")))
    yield
    patch.undo()


@pytest.fixture
def book_weights() -> Path:
    """The textbook's ``sample_weight.pkl``; the test skips, saying why, where it is absent."""
    return require_book_weights()
