"""The forward pass for NumPy arrays, fast: the generic math in cache-sized row blocks.

Same API and results as the generic path (to float32 rounding); it exists because NumPy
materializes every temporary of every elementwise operation in main memory. Here each
block of rows goes through the network in one cache-resident buffer per layer, and the
hidden activations are applied in place on those buffers (never on the caller's arrays).
A lone block's GEMMs use the BLAS's own threads; from ``PARALLEL_BLOCKS`` blocks on,
whole blocks run at once on every core, one worker thread pinned to each with a
one-thread BLAS, so the activations run in parallel too. That needs threadpoolctl (the
``fast`` extra) to hold the BLAS to one thread: without it every block runs on the calling
thread, since workers each running a many-threaded BLAS took four times as long (10,000
images on 2 cores: 75 ms against 17-18 ms; 12 ms with threadpoolctl). Integer input (raw
uint8 pixels) is converted block by block, so it is never copied whole.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

import array_api_compat as compat
import numpy as np

from xpnet._blas import can_hold_blas, one_blas_thread
from xpnet.activations import ACTIVATIONS

BLOCK_ROWS = 1024
"""Rows per block: a 784-wide float32 block (3 MiB) and its activations stay in cache."""

PARALLEL_BLOCKS = 2
"""From this many blocks on, blocks run on every core, each with a one-thread BLAS. One
block alone runs on the calling thread, its GEMMs on the BLAS's threads."""


def _tanh_(z: np.ndarray) -> None:
    np.tanh(z, out=z)


def _logistic_of_negated_(z: np.ndarray) -> None:
    """``1 / (1 + exp(z))``: the sigmoid of ``-z``, in three passes (no temporary).

    ``exp`` overflows to ``inf`` for ``z`` above about 88 (float32), and ``1 / inf`` is the
    right limit, 0: the overflow is expected, so it is not warned about. ``divide`` rather
    than ``reciprocal``: NumPy 2.4 has AVX2 code only for the former (same bits; these
    three passes 7% faster on an AVX2 EPYC).
    """
    with np.errstate(over="ignore"):
        np.exp(z, out=z)
    z += 1.0
    np.divide(1.0, z, out=z)


def _relu_(z: np.ndarray) -> None:
    np.maximum(z, 0, out=z)


def _identity_(z: np.ndarray) -> None:
    """Nothing to do."""


IN_PLACE: dict[str, Callable[[np.ndarray], None]] = {
    "sigmoid:tanh": _tanh_,  # with the affine parts folded into the weights: see _fold
    "sigmoid:exp": _logistic_of_negated_,  # with the sign folded into the weights
    "relu": _relu_,
    "identity": _identity_,
}
"""Hidden-layer activations applied in place on a block's own buffer."""

HIDDEN = frozenset({"sigmoid", "relu", "identity"})
"""Hidden-layer activations this path runs in place."""

SIGMOID_KERNELS = ("tanh", "exp")
"""The two ways to apply a hidden sigmoid in place: one ``tanh`` pass, or ``exp`` and two
cheap passes; :func:`sigmoid_kernel` picks the faster on this CPU."""


ORDER_PRESERVING = frozenset({"softmax", "identity"})
"""Output activations whose argmax is the argmax of their input: labels skip them."""


def applies(network: Any, x: Any) -> bool:
    """Whether this path can run ``network`` on ``x``: NumPy arrays, in-place activations."""
    return (
        compat.is_numpy_namespace(compat.array_namespace(x))
        and x.ndim == 2
        and all(layer.activation in HIDDEN for layer in network.layers[:-1])
    )


def forward(network: Any, x: np.ndarray, *, labels: bool) -> np.ndarray:
    """``predict`` (or, with ``labels``, ``predict_labels``) of ``network`` on NumPy ``x``."""
    layers = _fold(network.layers)
    weight = layers[-1][0]
    result = (
        np.empty(x.shape[0], dtype=np.intp)
        if labels
        else np.empty((x.shape[0], weight.shape[1]), dtype=weight.dtype)
    )
    count = -(-x.shape[0] // BLOCK_ROWS)
    claimed = iter(range(count))
    lock = threading.Lock()
    abandoned = threading.Event()

    def work() -> None:
        # Each thread keeps its own buffers for every block it does, and threads claim
        # blocks until none is left, so a worker that wakes late takes fewer.
        buffers = _Buffers(layers, x)
        while not abandoned.is_set():
            with lock:
                index = next(claimed, None)
            if index is None:
                return
            rows = slice(index * BLOCK_ROWS, (index + 1) * BLOCK_ROWS)
            _block(layers, x[rows], result[rows], buffers, labels=labels)

    pool = _pool() if count >= PARALLEL_BLOCKS and _on_main_thread() and can_hold_blas() else None
    if pool is None:
        work()
        return result
    # The calling thread only waits: it is not pinned, and would crowd a worker's core.
    # Should a worker fail or the wait be interrupted (Ctrl-C), every worker stops after
    # its current block rather than finish a result nobody will read.
    try:
        with one_blas_thread():
            workers = [pool.submit(work) for _ in range(pool._max_workers)]
            finished, _ = wait(workers, return_when=FIRST_EXCEPTION)  # all, or a failed one
            for worker in finished:
                worker.result()  # raises a worker's failure here
    except BaseException:
        abandoned.set()
        raise
    return result


def _on_main_thread() -> bool:
    """Blocks go to the pool only from the main thread: a caller on another thread (a dask
    task, the caller's own pool) already keeps the cores busy."""
    return threading.current_thread() is threading.main_thread()


def usable_cores() -> int:
    """How many cores this process may run on (its affinity mask where the OS has one)."""
    return len(usable_core_ids()) or os.cpu_count() or 1


def usable_core_ids() -> list[int]:
    """The ids of the cores this process may run on; empty where the OS does not say."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


@functools.cache
def _pool() -> ThreadPoolExecutor | None:
    """One worker thread per usable core, each pinned to its own; ``None`` on one core.

    Pinned, because Linux wakes a sleeping thread on the core of the thread that wakes it
    and moves it to an idle core only milliseconds later. Unpinned, after a pause, two
    workers shared one core for the first 5-10 ms, about as long as 10,000 images take in
    all (2 cores, 10 blocks: 21.5 ms, against 12.8 ms pinned). Where the OS cannot pin
    threads, they run unpinned.
    """
    count = usable_cores()
    if count < 2:
        return None
    cores = iter(usable_core_ids())
    lock = threading.Lock()

    def pin_to_a_core_of_its_own() -> None:
        with lock:
            core = next(cores, None)
        if core is not None:
            with contextlib.suppress(OSError):  # a container may refuse; unpinned still works
                os.sched_setaffinity(0, {core})  # 0: the calling thread, on Linux

    pool = ThreadPoolExecutor(
        count, thread_name_prefix="xpnet", initializer=pin_to_a_core_of_its_own
    )
    _start_every_worker(pool)
    return pool


def _start_every_worker(pool: ThreadPoolExecutor) -> None:
    """Start all of ``pool``'s threads now, each held at a barrier until all are running.

    Left to itself, the pool starts a thread inside ``submit``; a Ctrl-C landing there
    leaves that thread out of its books, and the interpreter waits for it forever at exit.
    Here such an interrupt shuts the half-made pool down (every thread it started exits)
    and is raised, and the pool is not kept; once made, its ``submit`` never starts one.
    """
    everyone = threading.Barrier(pool._max_workers)
    try:
        for started in [pool.submit(everyone.wait) for _ in range(pool._max_workers)]:
            started.result()
    except BaseException:
        everyone.abort()
        pool.shutdown(wait=False)
        raise


if hasattr(os, "register_at_fork"):  # a forked child has none of its parent's threads
    os.register_at_fork(after_in_child=_pool.cache_clear)


Folded = tuple[np.ndarray, np.ndarray, str]
"""A layer's weight, bias and activation, rewritten by :func:`_fold`."""


def _fold(layers: Sequence[Any]) -> list[Folded]:
    """The layers rewritten so that a hidden sigmoid costs as few passes as it can here.

    By the :func:`sigmoid_kernel` this CPU runs faster. ``"tanh"``: ``sigmoid(z) =
    0.5 * tanh(z / 2) + 0.5``. The halving moves into the layer's own weight and bias, and
    the outer ``0.5 * h + 0.5`` into the next layer's, since ``(0.5 h + 0.5) W + b =
    h (0.5 W) + (b + 0.5 * sum(W, axis=0))``: one pass, ``tanh``. ``"exp"``: ``sigmoid(z) =
    1 / (1 + exp(-z))``, the sign moved into the weight and bias. Either equals the plain
    formula to float rounding.
    """
    folded = []
    scale, shift = 1.0, 0.0  # the previous layer's output is scale * h + shift
    for number, layer in enumerate(layers, start=1):
        weight, bias, activation = layer.weight, layer.bias, layer.activation
        if shift:
            column_sums = np.sum(weight, axis=0, dtype=np.float64)
            bias = (bias + shift * column_sums).astype(bias.dtype)
        factor = 1.0
        if activation == "sigmoid" and number < len(layers):
            kernel = sigmoid_kernel(weight.dtype)
            factor = 0.5 if kernel == "tanh" else -1.0
            activation = f"sigmoid:{kernel}"
        if scale * factor != 1.0:
            weight = weight * (scale * factor)
        if factor != 1.0:
            bias = bias * factor
        scale, shift = (0.5, 0.5) if activation == "sigmoid:tanh" else (1.0, 0.0)
        folded.append((weight, bias, activation))
    return folded


@functools.cache
def sigmoid_kernel(dtype: np.dtype) -> str:
    """The faster :data:`SIGMOID_KERNELS` entry for ``dtype`` on this CPU, timed once.

    Which one wins depends on the SIMD code NumPy has for the CPU (on an AVX2 EPYC, tanh
    takes twice as long as exp and its two cheap passes together), so it is measured, not
    guessed: best of five interleaved runs on a block of values over the sigmoid's range.
    """
    sample = np.linspace(-12.0, 12.0, BLOCK_ROWS * 64, dtype=dtype).reshape(BLOCK_ROWS, 64)
    block = np.empty_like(sample)
    best = dict.fromkeys(SIGMOID_KERNELS, float("inf"))
    for _ in range(5):
        for kernel in SIGMOID_KERNELS:
            np.copyto(block, sample)
            start = time.perf_counter()
            IN_PLACE[f"sigmoid:{kernel}"](block)
            best[kernel] = min(best[kernel], time.perf_counter() - start)
    return min(best, key=best.__getitem__)


class _Buffers:
    """One thread's working memory for a block: each layer's output, and the input converted
    to the network's dtype where it differs (raw uint8 pixels). Reused block after block."""

    def __init__(self, layers: list[Folded], x: np.ndarray) -> None:
        dtype = layers[0][0].dtype
        self.outputs = [np.empty((BLOCK_ROWS, w.shape[1]), dtype=dtype) for w, _, _ in layers]
        self.converted = (
            None if x.dtype == dtype else np.empty((BLOCK_ROWS, x.shape[1]), dtype=dtype)
        )


def _block(
    layers: list[Folded], rows: np.ndarray, out: np.ndarray, buffers: _Buffers, *, labels: bool
) -> None:
    """The network over one block of ``rows``, written into ``out`` (its rows of the result)."""
    count = rows.shape[0]
    a = rows
    if buffers.converted is not None:
        a = buffers.converted[:count]
        np.copyto(a, rows, casting="unsafe")
    *hidden, (weight, bias, activation) = layers
    *hidden_buffers, last_buffer = buffers.outputs
    for (hidden_weight, hidden_bias, hidden_activation), buffer in zip(hidden, hidden_buffers):
        z = buffer[:count]
        np.matmul(a, hidden_weight, out=z)
        z += hidden_bias
        IN_PLACE[hidden_activation](z)
        a = z
    z = last_buffer[:count]
    np.matmul(a, weight, out=z)
    z += bias
    if labels and activation in ORDER_PRESERVING:
        np.argmax(z, axis=-1, out=out)
    elif labels:
        np.argmax(ACTIVATIONS[activation](z), axis=-1, out=out)
    else:
        out[...] = ACTIVATIONS[activation](z)
