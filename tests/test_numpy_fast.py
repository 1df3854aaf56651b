"""NumPy's fast forward path against the generic one it stands in for."""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
import time
import warnings

import numpy as np
import pytest
import reference
from realdata import BOOK_CORRECT, MNIST_DIR, needs_mnist

import xpnet
from xpnet import _blas, _numba_kernels, _numpy_fast
from xpnet.inference import _forward

ROWS = 3 * _numpy_fast.BLOCK_ROWS + 300  # several blocks and a partial one

needs_the_pool = pytest.mark.skipif(
    len(_numpy_fast.usable_core_ids()) < 2,
    reason="the pool of block workers needs an OS that reports this process's cores, and two",
)


def network(activations, dtype="float32", sizes=(30, 17, 9, 6)):
    return xpnet.init_network(
        sizes[: len(activations) + 1], activations=activations, seed=5, dtype=dtype
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "activations",
    [
        ("sigmoid", "sigmoid", "softmax"),
        ("relu", "identity", "identity"),
        ("relu", "sigmoid", "step"),
        ("sigmoid", "sigmoid"),
    ],
)
@pytest.mark.parametrize("rows", [0, 5, ROWS])
def test_fast_path_matches_generic_path(activations, dtype, rows):
    net = network(activations, dtype)
    x = np.random.default_rng(1).normal(scale=3.0, size=(rows, 30)).astype(dtype)
    assert _numpy_fast.applies(net, x)
    fast = xpnet.predict(net, x)
    assert fast.dtype == np.dtype(dtype) and fast.shape == (rows, net.sizes[-1])
    # Float32 sums in another order (blocks, another BLAS kernel) differ by a few ulps of
    # their terms (up to about 7 here), which a sum that cancels to near 0 keeps in full:
    # 1.5e-6 on a value of 0.03 with NumPy 2.0's OpenBLAS.
    rtol, atol = (1e-5, 1e-5) if dtype == "float32" else (1e-13, 1e-14)
    np.testing.assert_allclose(fast, _forward(net, x, labels=False), rtol=rtol, atol=atol)
    expected = reference.forward(net.to_mapping(), list(activations), x)
    np.testing.assert_allclose(fast, expected, rtol=0, atol=1e-5 if dtype == "float32" else 1e-12)
    labels = xpnet.predict_labels(net, x)
    np.testing.assert_array_equal(labels, np.argmax(expected, axis=-1))


needs_numba = pytest.mark.skipif(
    _numba_kernels.logistic(np.dtype(np.float32)) is None,
    reason="numba is not installed here, or switched off (pip install 'xpnet[jit]')",
)

KERNEL_CASES = [
    pytest.param("numba", "float32", marks=needs_numba),
    *((kernel, dtype) for kernel in ("tanh", "exp") for dtype in ("float32", "float64")),
]
"""Every sigmoid kernel with each dtype it serves: numba's serves float32 only."""


@pytest.mark.parametrize(("kernel", "dtype"), KERNEL_CASES)
def test_each_sigmoid_kernel_matches_the_reference_without_warnings(kernel, dtype, monkeypatch):
    monkeypatch.setattr(_numpy_fast, "sigmoid_kernel", lambda dtype: kernel)
    net = network(("sigmoid", "sigmoid", "softmax"), dtype)
    rng = np.random.default_rng(4)
    x = rng.normal(scale=3.0, size=(ROWS, 30))
    x[:50] *= 1e4  # pre-activations far beyond where exp overflows: the sigmoid saturates
    x = x.astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast = xpnet.predict(net, x)
    expected = reference.forward(net.to_mapping(), ["sigmoid", "sigmoid", "softmax"], x)
    np.testing.assert_allclose(fast, expected, rtol=0, atol=1e-5 if dtype == "float32" else 1e-12)


@needs_numba
def test_the_numba_sigmoid_is_within_2e_7_of_the_exact_one_and_keeps_nan():
    kernel = _numba_kernels.logistic(np.dtype(np.float32))
    z = np.linspace(-60.0, 60.0, 400_000, dtype=np.float32).reshape(-1, 100)
    bias = np.linspace(-3.0, 3.0, 100, dtype=np.float32)
    block = z.copy()
    kernel(block, bias)
    exact = 1.0 / (1.0 + np.exp(-(z.astype(np.float64) + bias)))
    assert np.abs(block - exact).max() < 2e-7
    edges = np.array([[np.nan, np.inf, -np.inf, 0.0]], dtype=np.float32)
    kernel(edges, np.zeros(4, dtype=np.float32))
    assert np.isnan(edges[0, 0])
    np.testing.assert_allclose(edges[0, 1:], [1.0, 0.0, 0.5], rtol=0, atol=2e-7)
    assert kernel.targetoptions["nogil"]  # the block workers run it at once


def test_the_numba_kernel_serves_float32_only():
    assert _numba_kernels.logistic(np.dtype(np.float64)) is None
    assert "numba" not in _numpy_fast.sigmoid_kernels(np.dtype(np.float64))
    with pytest.raises(ValueError, match="no sigmoid kernel 'numba' for float64 here"):
        _numpy_fast.forward(
            network(("sigmoid", "softmax"), "float64"),
            np.zeros((2, 30)),
            labels=True,
            sigmoid="numba",
        )


@pytest.fixture
def fresh_kernel_choice():
    """The cached kernel choice cleared before and after, so a test can change what runs."""
    caches = (
        _numba_kernels.logistic,
        _numpy_fast._sigmoid_kernels,
        _numpy_fast._kernel_seconds,
    )
    for cache in caches:
        cache.cache_clear()
    yield
    for cache in caches:
        cache.cache_clear()


@pytest.mark.parametrize("numba_state", ["missing", "switched off"])
def test_without_numba_numpys_own_kernels_run(numba_state, fresh_kernel_choice, monkeypatch):
    if numba_state == "missing":
        monkeypatch.setitem(sys.modules, "numba", None)  # its import raises ImportError
    else:
        numba = pytest.importorskip("numba", reason="switching numba off needs numba")
        monkeypatch.setattr(numba.config, "DISABLE_JIT", True)
    float32 = np.dtype(np.float32)
    assert list(_numpy_fast.sigmoid_kernels(float32)) == ["tanh", "exp"]
    assert _numpy_fast.sigmoid_kernel(float32) in ("tanh", "exp")
    net = network(("sigmoid", "sigmoid", "softmax"))
    x = np.random.default_rng(3).normal(scale=3.0, size=(ROWS, 30)).astype(np.float32)
    expected = reference.forward(net.to_mapping(), ["sigmoid", "sigmoid", "softmax"], x)
    np.testing.assert_allclose(xpnet.predict(net, x), expected, rtol=0, atol=1e-5)


@needs_numba
def test_where_numba_has_no_folder_to_cache_in_it_compiles_anew(fresh_kernel_choice, monkeypatch):
    from numba.core import caching

    # No locator finds a writable folder (read-only site-packages, no home): numba raises
    # "cannot cache function ...: no locator available" for cache=True.
    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])
    kernel = _numba_kernels.logistic(np.dtype(np.float32))
    assert kernel is not None  # with cache=True alone, numba would have raised
    block = np.array([[0.0, 2.0]], dtype=np.float32)
    kernel(block, np.zeros(2, dtype=np.float32))
    np.testing.assert_allclose(block, [[0.5, 1 / (1 + np.exp(-2.0))]], rtol=0, atol=2e-7)


def test_threads_arriving_at_once_compile_and_time_the_kernels_once(
    fresh_kernel_choice, monkeypatch
):
    # As dask's first chunk tasks do: without a lock each would compile numba's kernel
    # (half a second or more) and time the kernels while the other thread runs.
    compiles = []

    def slow_compile(dtype):
        compiles.append(threading.current_thread().name)
        time.sleep(0.2)

    monkeypatch.setattr(_numba_kernels, "logistic", slow_compile)
    float32 = np.dtype(np.float32)
    barrier = threading.Barrier(3)

    def choose():
        barrier.wait()
        return _numpy_fast.sigmoid_kernel(float32)

    threads = [threading.Thread(target=choose) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(compiles) == 1
    assert list(_numpy_fast.sigmoid_kernels(float32)) == ["tanh", "exp"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_measured_sigmoid_kernel_is_a_known_one(dtype):
    kernels = _numpy_fast.sigmoid_kernels(np.dtype(dtype))
    assert _numpy_fast.sigmoid_kernel(np.dtype(dtype)) in kernels
    assert _numpy_fast.sigmoid_kernel(np.dtype(dtype), compiled=False) in ("tanh", "exp")


def test_raw_pixels_read_only_and_untouched():
    net = network(("sigmoid", "sigmoid", "softmax"), sizes=(30, 17, 9, 6)).scale_input(1 / 255)
    pixels = np.random.default_rng(2).integers(0, 256, (ROWS, 30), dtype=np.uint8)
    pixels.flags.writeable = False
    before = pixels.copy()
    result = xpnet.predict(net, pixels)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(pixels, before)
    generic = _forward(net, pixels, labels=False)
    np.testing.assert_allclose(result, generic, atol=1e-6)


def test_other_namespaces_and_single_samples_take_the_generic_path():
    net = network(("sigmoid", "sigmoid", "softmax"))
    assert not _numpy_fast.applies(net, np.zeros(30, np.float32))
    assert not _numpy_fast.applies(network(("step", "sigmoid", "softmax")), np.zeros((2, 30)))
    strict = xpnet.to_backend(net, "array_api_strict")
    assert not _numpy_fast.applies(strict, strict.backend.asarray(np.zeros((2, 30)), "float32"))


@needs_mnist
def test_book_weights_on_raw_pixels_get_the_books_count(book_weights):
    from xpnet.datasets import load_mnist

    x, t = load_mnist(normalize=False, split="test", data_dir=MNIST_DIR)
    net = xpnet.load_weights(book_weights).scale_input(1 / 255)
    assert xpnet.count_correct(net, x, t) == BOOK_CORRECT
    x01, _ = load_mnist(split="test", data_dir=MNIST_DIR)
    generic = _forward(xpnet.load_weights(book_weights), x01, labels=True)
    np.testing.assert_array_equal(xpnet.predict_labels(net, x), generic)


@pytest.mark.parametrize("on_main_thread", [True, False])
def test_many_blocks_run_on_every_core_with_the_same_results(on_main_thread):
    from concurrent.futures import ThreadPoolExecutor

    net = network(("sigmoid", "relu", "softmax"))
    rows = _numpy_fast.PARALLEL_BLOCKS * _numpy_fast.BLOCK_ROWS + 77
    x = np.random.default_rng(9).normal(size=(rows, 30)).astype(np.float32)
    if on_main_thread:
        result = xpnet.predict(net, x)
    else:  # as from a dask task: the blocks stay on the calling thread
        with ThreadPoolExecutor(1) as caller:
            result = caller.submit(xpnet.predict, net, x).result()
    np.testing.assert_allclose(result, _forward(net, x, labels=False), rtol=0, atol=1e-6)


@needs_the_pool
@pytest.mark.parametrize("threadpoolctl", [True, False])
def test_blocks_go_to_the_workers_only_where_the_blas_can_be_held(threadpoolctl, monkeypatch):
    # Without threadpoolctl (the core install) each worker's GEMMs would start the BLAS's
    # threads too, on cores the other workers already use: four times as long in all.
    if threadpoolctl:
        pytest.importorskip("threadpoolctl")
    else:
        monkeypatch.setattr(_blas, "_blas_controller", lambda: None)
    threads_used = set()
    real_block = _numpy_fast._block

    def recorded_block(*args, **kwargs):
        threads_used.add(threading.current_thread().name)
        return real_block(*args, **kwargs)

    monkeypatch.setattr(_numpy_fast, "_block", recorded_block)
    net = network(("sigmoid", "sigmoid", "softmax"))
    x = np.random.default_rng(11).normal(size=(ROWS, 30)).astype(np.float32)
    result = xpnet.predict(net, x)
    np.testing.assert_allclose(result, _forward(net, x, labels=False), rtol=0, atol=1e-6)
    if threadpoolctl:
        assert threads_used and all(name.startswith("xpnet") for name in threads_used)
    else:
        assert threads_used == {threading.current_thread().name}


def affinity_of_each_worker(pool) -> list[set[int]]:
    """The cores each of ``pool``'s workers may run on, asked of every worker at once."""
    workers = pool._max_workers
    everyone_here = threading.Barrier(workers)

    def own_affinity() -> set[int]:
        everyone_here.wait(timeout=30)  # so that each worker answers exactly once
        return os.sched_getaffinity(0)

    return [job.result() for job in [pool.submit(own_affinity) for _ in range(workers)]]


@needs_the_pool
def test_block_workers_are_pinned_one_to_each_core():
    net = network(("sigmoid", "sigmoid", "softmax"))
    x = np.random.default_rng(2).normal(size=(ROWS, 30)).astype(np.float32)
    xpnet.predict_labels(net, x)
    pool = _numpy_fast._pool()
    assert pool is not None
    cores = _numpy_fast.usable_core_ids()
    assert sorted(affinity_of_each_worker(pool), key=min) == [{core} for core in cores]


@needs_the_pool
def test_blocks_run_unpinned_where_the_os_refuses_to_pin(monkeypatch):
    def refuse(pid: int, cores: object) -> None:
        raise PermissionError("not allowed here")

    net = network(("sigmoid", "relu", "softmax"))
    x = np.random.default_rng(3).normal(size=(ROWS, 30)).astype(np.float32)
    monkeypatch.setattr(os, "sched_setaffinity", refuse)
    _numpy_fast._pool.cache_clear()
    try:
        result = xpnet.predict(net, x)
        unpinned = _numpy_fast._pool()
        assert unpinned is not None
        everywhere = set(_numpy_fast.usable_core_ids())
        assert affinity_of_each_worker(unpinned) == [everywhere] * unpinned._max_workers
        unpinned.shutdown()
    finally:
        _numpy_fast._pool.cache_clear()
    np.testing.assert_allclose(result, _forward(net, x, labels=False), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called")  # JAX's, where it is loaded
def test_a_forked_child_runs_blocks_on_workers_of_its_own():
    net = network(("sigmoid", "sigmoid", "softmax"))
    x = np.random.default_rng(4).normal(size=(ROWS, 30)).astype(np.float32)
    expected = xpnet.predict_labels(net, x)  # the parent's workers exist from here on
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (runs in the child)
        signal.alarm(60)  # a child waiting on its parent's workers would wait forever
        os.write(write_end, xpnet.predict_labels(net, x).astype(np.int64).tobytes())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        labels = np.frombuffer(answer.read(), dtype=np.int64)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    np.testing.assert_array_equal(labels, expected)


@needs_the_pool
@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_a_failure_or_ctrl_c_stops_every_block_worker(failure, monkeypatch):
    net = network(("sigmoid", "sigmoid", "softmax"))
    blocks = 40
    x = np.zeros((blocks * _numpy_fast.BLOCK_ROWS, 30), dtype=np.float32)
    xpnet.predict(net, x)  # the pool exists: the interrupt lands in the wait, not its making
    calls = itertools.count()
    completed = []
    real_block = _numpy_fast._block

    def first_block_fails(*args, **kwargs):
        if next(calls) == 0:
            if failure is RuntimeError:
                raise RuntimeError("block failed")
            time.sleep(0.005)  # the main thread waits on the workers by now
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # as Ctrl-C
        time.sleep(0.02)  # longer than the failure takes to reach every worker
        real_block(*args, **kwargs)
        completed.append(1)

    monkeypatch.setattr(_numpy_fast, "_block", first_block_fails)
    with pytest.raises(failure):
        xpnet.predict(net, x)
    pool = _numpy_fast._pool()
    affinity_of_each_worker(pool)  # returns once every worker is free
    assert len(completed) <= pool._max_workers  # at most the blocks under way, of 40


INTERRUPTED_AS_A_WORKER_STARTS = """
import threading
import numpy as np
import xpnet

net = xpnet.init_network((30, 17, 9, 6), seed=5)
x = np.zeros((8 * 1024, 30), dtype=np.float32)
start = threading.Thread.start

def start_then_interrupt(thread):
    start(thread)
    if thread.name.startswith("xpnet"):  # Ctrl-C lands just as the first worker starts
        threading.Thread.start = start
        raise KeyboardInterrupt

threading.Thread.start = start_then_interrupt
try:
    xpnet.predict(net, x)
except KeyboardInterrupt:
    print("interrupted")
"""


@needs_the_pool
def test_ctrl_c_as_the_workers_start_lets_the_process_exit():
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_AS_A_WORKER_STARTS],
        capture_output=True,
        text=True,
        timeout=60,  # a worker the pool lost track of would hold the exit forever
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["interrupted"]
