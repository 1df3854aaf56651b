"""Training on the CPU with its math on one thread, whatever the backend.

A batch's GEMMs are too small to gain from threads, and on a shared machine threads that
spin-wait for a busy core slow training down several times (measured on two shared cores:
2-5x beside one other busy process, PyTorch up to 100x under heavier load; on an idle
machine one thread costs at most 20%).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from xpnet._array_api import device_name
from xpnet._blas import blas_threads, one_blas_thread
from xpnet.backends import Backend


@contextlib.contextmanager
def single_threaded(target: Backend) -> Iterator[int | None]:
    """Hold ``target``'s CPU math to one thread; yield its thread count (``None``: not known).

    NumPy, array-api-strict and dask compute with NumPy's BLAS (held through threadpoolctl,
    extra ``fast``); PyTorch on the CPU with its intra-op threads, restored afterwards.
    GPUs and JAX are left as they are.
    """
    if target.name in ("numpy", "array_api_strict", "dask"):
        with one_blas_thread():
            yield blas_threads()
    elif target.name == "torch" and device_name(target.device) == "cpu":
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield torch.get_num_threads()
        finally:
            torch.set_num_threads(before)
    else:
        yield None
