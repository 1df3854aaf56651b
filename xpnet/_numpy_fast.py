"""The forward pass for NumPy arrays, fast: the generic math in cache-sized row blocks.

Same API and results as the generic path (to float32 rounding); it exists because NumPy
materializes every temporary of every elementwise operation in main memory. Here each
block of rows goes through the network in one cache-resident buffer per layer, and the
hidden activations are applied in place on those buffers (never on the caller's arrays),
each with its bias in the same call; a hidden sigmoid by the fastest kernel here (NumPy's,
or numba's compiled one where the ``jit`` extra is installed).
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

from xpnet import _numba_kernels
from xpnet._blas import can_hold_blas, one_blas_thread
from xpnet.activations import ACTIVATIONS

BLOCK_ROWS = 1024
"""Rows per block: a 784-wide float32 block (3 MiB) and its activations stay in cache."""

PARALLEL_BLOCKS = 2
"""From this many blocks on, blocks run on every core, each with a one-thread BLAS. One
block alone runs on the calling thread, its GEMMs on the BLAS's threads."""


InPlace = Callable[[np.ndarray, np.ndarray], None]
"""Adds a bias to a block's pre-activations and applies a hidden activation, in place."""


def _tanh_(z: np.ndarray, bias: np.ndarray) -> None:
    z += bias
    np.tanh(z, out=z)


def _logistic_of_negated_(z: np.ndarray, bias: np.ndarray) -> None:
    """``1 / (1 + exp(z + bias))``: the sigmoid of ``-(z + bias)``, in four passes.

    ``exp`` overflows to ``inf`` for ``z`` above about 88 (float32), and ``1 / inf`` is the
    right limit, 0: the overflow is expected, so it is not warned about. ``divide`` rather
    than ``reciprocal``: NumPy 2.4 has AVX2 code only for the former (same bits; ``exp``
    and the two passes after it 7% faster on an AVX2 EPYC).
    """
    z += bias
    with np.errstate(over="ignore"):
        np.exp(z, out=z)
    z += 1.0
    np.divide(1.0, z, out=z)


def _relu_(z: np.ndarray, bias: np.ndarray) -> None:
    z += bias
    np.maximum(z, 0, out=z)


def _identity_(z: np.ndarray, bias: np.ndarray) -> None:
    z += bias


IN_PLACE: dict[str, InPlace] = {"relu": _relu_, "identity": _identity_}
"""Hidden activations other than the sigmoid, applied in place on a block's own buffer."""

HIDDEN = frozenset({"sigmoid", *IN_PLACE})
"""Hidden-layer activations this path runs in place."""

FACTORS = {"tanh": 0.5, "exp": -1.0, "numba": 1.0}
"""What each sigmoid kernel takes of ``z``, folded into the layer's weight and bias: half
for ``tanh`` (then ``0.5 h + 0.5`` goes into the next layer), the sign for ``exp``."""

SIGMOID_KERNELS = tuple(FACTORS)
"""The ways to apply a hidden sigmoid in place: NumPy's ``tanh`` pass, NumPy's ``exp`` and
its cheap passes, or one compiled pass (float32, where numba is installed: see
:mod:`xpnet._numba_kernels`). :func:`sigmoid_kernel` picks the fastest here."""


ORDER_PRESERVING = frozenset({"softmax", "identity"})
"""Output activations whose argmax is the argmax of their input: labels skip them."""


def applies(network: Any, x: Any) -> bool:
    """Whether this path can run ``network`` on ``x``: NumPy arrays, in-place activations."""
    return (
        compat.is_numpy_namespace(compat.array_namespace(x))
        and x.ndim == 2
        and all(layer.activation in HIDDEN for layer in network.layers[:-1])
    )


def forward(network: Any, x: np.ndarray, *, labels: bool, sigmoid: str | None = None) -> np.ndarray:
    """``predict`` (or, with ``labels``, ``predict_labels``) of ``network`` on NumPy ``x``.

    ``sigmoid`` names the kernel of the hidden sigmoids, one of :func:`sigmoid_kernels`;
    by default :func:`sigmoid_kernel`, the fastest here.
    """
    hidden, output = _fold(network.layers, sigmoid)
    weight = output[0]
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
        buffers = _Buffers([w for w, _, _ in (*hidden, output)], x)
        while not abandoned.is_set():
            with lock:
                index = next(claimed, None)
            if index is None:
                return
            rows = slice(index * BLOCK_ROWS, (index + 1) * BLOCK_ROWS)
            _block(hidden, output, x[rows], result[rows], buffers, labels=labels)

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


Hidden = tuple[np.ndarray, np.ndarray, InPlace]
"""A hidden layer rewritten by :func:`_fold`: weight, bias and the activation's kernel."""

Output = tuple[np.ndarray, np.ndarray, str]
"""The output layer rewritten by :func:`_fold`: weight, bias and the activation's name."""


def _fold(layers: Sequence[Any], sigmoid: str | None) -> tuple[list[Hidden], Output]:
    """The layers rewritten so that a hidden sigmoid costs as few passes as it can here.

    By its kernel (``sigmoid``, or the fastest here). ``"tanh"``: ``sigmoid(z) = 0.5 *
    tanh(z / 2) + 0.5``. The halving moves into the layer's own weight and bias, and the
    outer ``0.5 * h + 0.5`` into the next layer's (see :func:`_taking`): one pass,
    ``tanh``. ``"exp"``: ``sigmoid(z) = 1 / (1 + exp(-z))``, the sign moved into the weight
    and bias. ``"numba"`` takes ``z`` as it is. Each equals the plain formula to float
    rounding (numba's to 2e-7).
    """
    *inner, last = layers
    hidden: list[Hidden] = []
    scale, shift = 1.0, 0.0  # the previous layer's output is scale * h + shift
    for layer in inner:
        weight, bias = _taking(layer, scale, shift)
        scale, shift = 1.0, 0.0
        if layer.activation != "sigmoid":
            hidden.append((weight, bias, IN_PLACE[layer.activation]))
            continue
        kernel = sigmoid or sigmoid_kernel(weight.dtype)
        kernels = sigmoid_kernels(weight.dtype)
        if kernel not in kernels:
            raise ValueError(
                f"no sigmoid kernel {kernel!r} for {weight.dtype} here; "
                f"there are {', '.join(kernels)}"
            )
        factor = FACTORS[kernel]
        if factor != 1.0:
            weight, bias = weight * factor, bias * factor
        hidden.append((weight, np.ascontiguousarray(bias), kernels[kernel]))
        if kernel == "tanh":
            scale, shift = 0.5, 0.5
    return hidden, (*_taking(last, scale, shift), last.activation)


def _taking(layer: Any, scale: float, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """``layer``'s weight and bias rewritten for the input ``scale * h + shift``, since
    ``(scale h + shift) W + b = h (scale W) + (b + shift * sum(W, axis=0))``."""
    weight, bias = layer.weight, layer.bias
    if shift:
        column_sums = np.sum(weight, axis=0, dtype=np.float64)
        bias = (bias + shift * column_sums).astype(bias.dtype)
    if scale != 1.0:
        weight = weight * scale
    return weight, bias


_FIRST_USE = threading.RLock()
"""Held while a dtype's kernels are first compiled and timed: dask's first chunk tasks call
at once, and each would compile numba's kernel again and time the kernels while another
thread computes."""


def sigmoid_kernels(dtype: np.dtype) -> dict[str, InPlace]:
    """The :data:`SIGMOID_KERNELS` that run here on ``dtype``, by name."""
    with _FIRST_USE:
        return _sigmoid_kernels(dtype)


@functools.cache
def _sigmoid_kernels(dtype: np.dtype) -> dict[str, InPlace]:
    kernels: dict[str, InPlace] = {"tanh": _tanh_, "exp": _logistic_of_negated_}
    compiled = _numba_kernels.logistic(dtype)
    if compiled is not None:
        kernels["numba"] = compiled
    return kernels


def sigmoid_kernel(dtype: np.dtype, *, compiled: bool = True) -> str:
    """The fastest of :func:`sigmoid_kernels` for ``dtype`` on this CPU; without
    ``compiled``, the fastest of NumPy's own.

    Which one wins depends on the SIMD code NumPy has for the CPU (on an AVX2 EPYC, tanh
    takes twice as long as exp and its cheap passes together) and on numba's, so it is
    measured, not guessed.
    """
    with _FIRST_USE:
        seconds = _kernel_seconds(dtype)
    return min((k for k in seconds if compiled or k != "numba"), key=seconds.__getitem__)


@functools.cache
def _kernel_seconds(dtype: np.dtype) -> dict[str, float]:
    """Each sigmoid kernel's time here, once per process: best of five interleaved runs on
    a block of values over the sigmoid's range, its bias added too."""
    sample = np.linspace(-12.0, 12.0, BLOCK_ROWS * 64, dtype=dtype).reshape(BLOCK_ROWS, 64)
    bias = np.linspace(-1.0, 1.0, 64, dtype=dtype)
    block = np.empty_like(sample)
    kernels = sigmoid_kernels(dtype)
    best = dict.fromkeys(kernels, float("inf"))
    for _ in range(5):
        for name, kernel in kernels.items():
            np.copyto(block, sample)
            start = time.perf_counter()
            kernel(block, bias)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


class _Buffers:
    """One thread's working memory for a block: each layer's output, and the input converted
    to the network's dtype where it differs (raw uint8 pixels). Reused block after block."""

    def __init__(self, weights: list[np.ndarray], x: np.ndarray) -> None:
        dtype = weights[0].dtype
        self.outputs = [np.empty((BLOCK_ROWS, w.shape[1]), dtype=dtype) for w in weights]
        self.converted = (
            None if x.dtype == dtype else np.empty((BLOCK_ROWS, x.shape[1]), dtype=dtype)
        )


def _block(
    hidden: list[Hidden],
    output: Output,
    rows: np.ndarray,
    out: np.ndarray,
    buffers: _Buffers,
    *,
    labels: bool,
) -> None:
    """The network over one block of ``rows``, written into ``out`` (its rows of the result)."""
    count = rows.shape[0]
    a = rows
    if buffers.converted is not None:
        a = buffers.converted[:count]
        np.copyto(a, rows, casting="unsafe")
    *hidden_buffers, last_buffer = buffers.outputs
    for (weight, bias, activation), buffer in zip(hidden, hidden_buffers):
        z = buffer[:count]
        np.matmul(a, weight, out=z)
        activation(z, bias)
        a = z
    weight, bias, name = output
    z = last_buffer[:count]
    np.matmul(a, weight, out=z)
    z += bias
    if labels and name in ORDER_PRESERVING:
        np.argmax(z, axis=-1, out=out)
    elif labels:
        np.argmax(ACTIVATIONS[name](z), axis=-1, out=out)
    else:
        out[...] = ACTIVATIONS[name](z)
