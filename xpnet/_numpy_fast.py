"""The forward pass for NumPy arrays, fast: the generic math in cache-sized row blocks.

Same API and results as the generic path (to float32 rounding); it exists because NumPy
runs each elementwise operation on one core and materializes every temporary. Here
each block of rows goes through the network in one cache-resident buffer per layer,
activations are applied in place on those buffers (never on the caller's arrays), and
blocks run on a thread pool with the BLAS held to one thread per block, so both the
GEMMs and the elementwise work use every core. Integer input (raw uint8 pixels) is
converted block by block, so it is never copied whole.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from typing import Any

import array_api_compat as compat
import numpy as np

from xpnet._system import usable_cores
from xpnet.activations import ACTIVATIONS

BLOCK_ROWS = 1024
"""Rows per block: a 784-wide float32 block (3 MiB) and its activations stay in cache."""

MIN_PARALLEL_ROWS = 4 * BLOCK_ROWS
"""Below this many rows the pool's hand-off costs more than it saves."""


def _sigmoid_(z: np.ndarray) -> None:
    # sigmoid(z) = (1 + tanh(z/2)) / 2: one transcendental, no overflow, no temporaries.
    np.multiply(z, 0.5, out=z)
    np.tanh(z, out=z)
    np.multiply(z, 0.5, out=z)
    np.add(z, 0.5, out=z)


def _relu_(z: np.ndarray) -> None:
    np.maximum(z, 0, out=z)


def _identity_(z: np.ndarray) -> None:
    """Nothing to do."""


IN_PLACE: dict[str, Callable[[np.ndarray], None]] = {
    "sigmoid": _sigmoid_,
    "relu": _relu_,
    "identity": _identity_,
}
"""Hidden-layer activations applied in place on a block's own buffer."""

ORDER_PRESERVING = frozenset({"softmax", "identity"})
"""Output activations whose argmax is the argmax of their input: labels skip them."""


def applies(network: Any, x: Any) -> bool:
    """Whether this path can run ``network`` on ``x``: NumPy arrays, in-place activations."""
    return (
        compat.is_numpy_namespace(compat.array_namespace(x))
        and x.ndim == 2
        and all(layer.activation in IN_PLACE for layer in network.layers[:-1])
    )


def forward(network: Any, x: np.ndarray, *, labels: bool) -> np.ndarray:
    """``predict`` (or, with ``labels``, ``predict_labels``) of ``network`` on NumPy ``x``."""
    starts = range(0, x.shape[0], BLOCK_ROWS)
    run = functools.partial(_block, network.layers, x, labels=labels)
    pool = _pool() if x.shape[0] >= MIN_PARALLEL_ROWS and _on_main_thread() else None
    if pool is None:
        parts = [run(start) for start in starts]
    else:
        with one_blas_thread():
            parts = list(pool.map(run, starts))
    if not parts:
        return _block(network.layers, x, 0, labels=labels)
    return np.concatenate(parts)


def _block(layers: tuple, x: np.ndarray, start: int, *, labels: bool) -> np.ndarray:
    *hidden, last = layers
    a = x[start : start + BLOCK_ROWS].astype(last.weight.dtype, copy=False)
    for layer in hidden:
        z = a @ layer.weight
        z += layer.bias
        IN_PLACE[layer.activation](z)
        a = z
    z = a @ last.weight
    z += last.bias
    if labels and last.activation in ORDER_PRESERVING:
        return np.argmax(z, axis=-1)
    out = ACTIVATIONS[last.activation](z)
    return np.argmax(out, axis=-1) if labels else out


def _on_main_thread() -> bool:
    """Blocks go to the pool only from the main thread: a caller on another thread (a dask
    worker, the caller's own pool) already keeps the cores busy, and nesting would
    oversubscribe them."""
    return threading.current_thread() is threading.main_thread()


@functools.cache
def _pool() -> ThreadPoolExecutor | None:
    """One worker per core, or ``None`` on one core."""
    cores = usable_cores()
    return ThreadPoolExecutor(cores, thread_name_prefix="xpnet") if cores > 1 else None


@functools.cache
def _blas_controller() -> Any:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


class _OneBlasThread:
    """Holds NumPy's BLAS to one thread while anyone is inside; counted and thread-safe.

    BLAS limits are process-wide, so concurrent holders (the fast path's pool, dask's
    chunk tasks, training) share one hold: the first in sets one thread, the last out
    restores the BLAS's own setting. Re-entrant from any thread.
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
    """Hold the BLAS to one thread while blocks run in parallel (else cores oversubscribe).

    Training uses it too: its small per-batch GEMMs gain nothing from BLAS threads, and
    on a shared machine threads waiting for a busy core make it several times slower.
    Needs threadpoolctl (``pip install 'xpnet[fast]'``); without it the blocks still run
    in parallel and the BLAS keeps its own threads.
    """
    return _ONE_BLAS_THREAD


def blas_threads() -> int | None:
    """How many threads NumPy's BLAS uses now; ``None`` where threadpoolctl is missing."""
    controller = _blas_controller()
    if controller is None:
        return None
    pools = controller.select(user_api="blas").info()
    return max((pool["num_threads"] for pool in pools), default=None)
