"""The shared hold that keeps NumPy's BLAS to one thread while parallel work runs."""

from __future__ import annotations

import pytest

from xpnet import _blas


def test_one_blas_thread_is_shared_and_counted():
    before = _blas.blas_threads()
    if before is None:
        pytest.skip("needs threadpoolctl to read the BLAS's threads (pip install 'xpnet[fast]')")
    first, second = _blas.one_blas_thread(), _blas.one_blas_thread()
    first.__enter__()
    second.__enter__()  # as a second thread would, while the first still holds
    first.__exit__(None, None, None)
    assert _blas.blas_threads() == 1  # the second holder still runs with one thread
    second.__exit__(None, None, None)
    assert _blas.blas_threads() == before
