"""Holding NumPy's BLAS to one thread while work that is already parallel runs.

Dask's chunk tasks and training's small per-batch GEMMs keep the cores busy (or gain
nothing from BLAS threads); OpenBLAS threads on top of them oversubscribe the cores, and
its waiting threads spin, several times slower on a shared machine. Needs threadpoolctl
(``pip install 'xpnet[fast]'``); without it nothing is held and the BLAS keeps its threads.
"""

from __future__ import annotations

import functools
import threading
from contextlib import AbstractContextManager, ExitStack
from typing import Any


@functools.cache
def _blas_controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


class _OneBlasThread:
    """Holds NumPy's BLAS to one thread while anyone is inside; counted and thread-safe.

    BLAS limits are process-wide, so concurrent holders (dask's chunk tasks, training)
    share one hold: the first in sets one thread, the last out restores the BLAS's own
    setting. Re-entrant from any thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._limit = ExitStack()

    def __enter__(self) -> None:
        with self._lock:
            controller = _blas_controller()
            if self._holders == 0 and controller is not None:
                self._limit.enter_context(controller.limit(limits=1, user_api="blas"))
            self._holders += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0:
                self._limit.close()


_ONE_BLAS_THREAD = _OneBlasThread()


def one_blas_thread() -> AbstractContextManager[None]:
    """A context in which NumPy's BLAS runs on one thread (shared, counted, re-entrant)."""
    return _ONE_BLAS_THREAD


def can_hold_blas() -> bool:
    """Whether :func:`one_blas_thread` holds the BLAS at all (threadpoolctl is installed)."""
    return _blas_controller() is not None


def blas_threads() -> int | None:
    """How many threads NumPy's BLAS uses now; ``None`` where threadpoolctl is missing."""
    controller = _blas_controller()
    if controller is None:
        return None
    pools = controller.select(user_api="blas").info()
    return max((pool["num_threads"] for pool in pools), default=None)
