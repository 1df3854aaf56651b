"""API edges, the same on every backend: empty softmax axes, labels checked like ``x``,
``batch_size`` checked alike, input that cannot be pixels, the size of ``init_network``."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet.backends import to_host
from xpnet.errors import BackendMismatchError, NetworkError

lazy_xp_modules = [xpnet]


def textbook_on(backend, dtype="float32") -> xpnet.Network:
    host = xpnet.init_network((784, 50, 100, 10), dtype=dtype)
    if backend.name == "numpy":
        return host
    return xpnet.to_backend(host, backend.name, backend.device_name)


def pixels(backend, rows=12, seed=0):
    rng = np.random.default_rng(seed)
    return backend.asarray(rng.integers(0, 256, (rows, 784)), "uint8")


# --- softmax along a zero-length axis ----------------------------------------------------------


@pytest.mark.parametrize(("shape", "axis"), [((3, 0), -1), ((0,), 0), ((2, 0, 4), 1), ((0, 5), 0)])
def test_softmax_over_an_empty_axis_is_empty(backend, shape, axis):
    x = backend.asarray(np.zeros(shape), "float32")
    y = xpnet.softmax(x, axis=axis)
    assert tuple(y.shape) == shape and y.dtype == x.dtype
    assert to_host(y).size == 0
    torch = pytest.importorskip("torch")  # the behaviour torch and jax have
    assert tuple(torch.softmax(torch.zeros(shape), dim=axis).shape) == shape


def test_softmax_refuses_an_axis_out_of_range(backend):
    x = backend.asarray(np.zeros((2, 3)), "float32")
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        xpnet.softmax(x, axis=2)


# --- labels are checked as x is -----------------------------------------------------------------


def test_labels_on_another_backend_or_device_are_a_mismatch(backend):
    network = textbook_on(backend)
    x = pixels(backend)
    elsewhere = (
        xpnet.get_backend("array_api_strict", "device1")
        if backend.name == "array_api_strict"
        and str(backend.device) != "device1"
        and "device1" not in str(backend.device)
        else xpnet.get_backend("numpy" if backend.name != "numpy" else "array_api_strict")
    )
    t = elsewhere.asarray(np.arange(12) % 10)
    with pytest.raises(BackendMismatchError, match="the labels t is on"):
        xpnet.count_correct(network, x, t)
    with pytest.raises(BackendMismatchError):
        xpnet.accuracy(network, x, [1] * 12)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([0] * 11 + [10]), "1 label\\(s\\) lie outside the network's classes 0..9"),
        (np.array([-1] * 3 + [0] * 9), "3 label\\(s\\) lie outside"),
        (np.array([255, 10] + [9] * 10, dtype=np.uint8), "2 label\\(s\\) lie outside"),
        (np.arange(12).astype("float64") % 10, "integer class indices"),
        (np.zeros((12, 9)), r"one-hot rows \(N, 10\)"),
        (np.zeros(11, dtype="int64"), "12 rows but t has 11 labels"),
        (np.array(3), "t has no labels"),
    ],
)
def test_bad_labels_are_refused_not_counted_wrong(backend, labels, message):
    network = textbook_on(backend)
    x = pixels(backend)
    t = backend.asarray(labels)
    with pytest.raises(NetworkError, match=message) as caught:
        xpnet.count_correct(network, x, t)
    assert "\n" not in str(caught.value)


def test_good_labels_count_alike_as_indices_and_one_hot(backend):
    network = textbook_on(backend)
    x = pixels(backend, rows=30)
    predicted = to_host(xpnet.predict_labels(network, x))
    labels = np.where(np.arange(30) % 3 == 0, predicted, (predicted + 1) % 10)
    expected = int(np.count_nonzero(labels == predicted))
    assert xpnet.count_correct(network, x, backend.asarray(labels)) == expected
    one_hot = backend.asarray(np.eye(10)[labels], "float32")
    assert xpnet.count_correct(network, x, one_hot, batch_size=7) == expected


# --- batch_size is checked alike everywhere -----------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
def test_batch_size_is_checked_on_every_backend(backend, bad):
    network = textbook_on(backend)
    x = pixels(backend)
    t = backend.asarray(np.arange(12) % 10)
    for call in (
        lambda: xpnet.count_correct(network, x, t, batch_size=bad),
        lambda: xpnet.accuracy(network, x, t, batch_size=bad),
        lambda: xpnet.predict(network, x, batch_size=bad),
        lambda: xpnet.predict_labels(network, x, batch_size=bad),
    ):
        with pytest.raises(ValueError, match="batch_size must be a positive integer") as caught:
            call()
        assert "\n" not in str(caught.value)


def test_numpy_integers_are_batch_sizes():
    network = textbook_on(xpnet.get_backend("numpy"))
    x = pixels(xpnet.get_backend("numpy"))
    assert xpnet.predict(network, x, batch_size=np.int64(5)).shape == (12, 10)


# --- input that cannot be pixels ----------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.ma.masked_array(np.ones((4, 784)), mask=np.eye(4, 784, dtype=bool)),
        lambda: np.full((4, 784), "255"),
        lambda: np.full((4, 784), b"1"),
        lambda: np.full((4, 784), 1, dtype=object),
        lambda: np.ones((4, 784), dtype=np.complex64),
    ],
    ids=["masked", "str", "bytes", "object", "complex"],
)
def test_input_that_cannot_be_pixels_is_one_line(make):
    network = textbook_on(xpnet.get_backend("numpy"))
    x = make()
    for call in (
        lambda: xpnet.predict(network, x),
        lambda: xpnet.predict_labels(network, x),
        lambda: xpnet.count_correct(network, x, np.zeros(4, dtype=np.int64)),
    ):
        with pytest.raises(NetworkError, match=r"masked array|must hold real numbers") as caught:
            call()
        assert "\n" not in str(caught.value)


def test_masked_labels_are_refused():
    network = textbook_on(xpnet.get_backend("numpy"))
    t = np.ma.masked_array(np.zeros(4, dtype=np.int64), mask=[0, 1, 0, 0])
    with pytest.raises(NetworkError, match="the labels t is a NumPy masked array"):
        xpnet.count_correct(network, np.ones((4, 784)), t)


def test_refused_dtypes_are_not_remembered():
    """The checks remember the number kind of each array type and dtype they accept; a stream
    of ever new refused dtypes (strings of every length) must not grow that memory."""
    from xpnet import network as network_module

    network = textbook_on(xpnet.get_backend("numpy"))
    xpnet.predict(network, np.zeros((1, 784), np.uint8))
    remembered = len(network_module._kind_of)
    for length in range(1, 200):
        with pytest.raises(NetworkError, match="must hold real numbers"):
            xpnet.predict(network, np.full((1, 784), "1" * length))
    assert len(network_module._kind_of) == remembered


@pytest.mark.filterwarnings("error")  # array-api-strict warns when its dtypes meet NumPy's
def test_the_same_dtypes_on_two_libraries_are_each_judged_by_their_own():
    strict = xpnet.get_backend("array_api_strict")
    for backend in (xpnet.get_backend("numpy"), strict, xpnet.get_backend("numpy"), strict):
        network = textbook_on(backend)
        x = backend.asarray(np.zeros((3, 784)), "float32")
        assert xpnet.count_correct(network, x, backend.asarray([0, 1, 2], "int64")) >= 0
        with pytest.raises(NetworkError, match="integer class indices"):
            xpnet.count_correct(network, x, backend.asarray([0.0, 1.0, 2.0], "float32"))
        with pytest.raises(NetworkError, match="must hold real numbers"):
            xpnet.predict(network, backend.asarray(np.zeros((3, 784)), "complex64"))


@pytest.mark.needs_session("jax", reason="jax is the jax session's")
def test_numpy_arrays_of_jax_float0_are_refused_as_input():
    """array-api-compat counts NumPy arrays of JAX's float0 dtype as JAX arrays: the only
    arrays whose type does not decide their namespace. As input they hold no numbers."""
    from jax import dtypes

    network = textbook_on(xpnet.get_backend("numpy"))
    with pytest.raises(xpnet.XpnetError):
        xpnet.predict(network, np.zeros((2, 784), dtype=dtypes.float0))


def test_memmaps_are_still_input(tmp_path):
    network = textbook_on(xpnet.get_backend("numpy"))
    data = np.lib.format.open_memmap(tmp_path / "x.npy", "w+", dtype=np.uint8, shape=(5, 784))
    data[:] = 7
    assert xpnet.predict_labels(network, data).shape == (5,)


# --- init_network checks its size before allocating --------------------------------------------


def test_init_network_bytes_are_counted():
    sizes = (784, 50, 10)
    params = 784 * 50 + 50 + 50 * 10 + 10
    assert xpnet.network.init_bytes(sizes, "float32") == 4 * params + 8 * 784 * 50
    needed = xpnet.network.init_bytes(sizes, "float64")
    assert xpnet.init_network(sizes, dtype="float64", max_bytes=needed).sizes == sizes
    with pytest.raises(NetworkError, match=f"needs {needed:,} bytes to create") as caught:
        xpnet.init_network(sizes, dtype="float64", max_bytes=needed - 1)
    assert "\n" not in str(caught.value)


def test_a_huge_network_is_refused_before_allocating():
    # 784 x 100,000,000 float32 weights: hundreds of gigabytes, refused by arithmetic alone.
    with pytest.raises(NetworkError, match="784-100000000-10 network in float32 needs"):
        xpnet.init_network((784, 100_000_000, 10))


def test_train_cli_refuses_a_huge_layer_in_one_line(capsys, tmp_path, monkeypatch):
    import xpnet.cli.train as train_command
    from xpnet.cli import main

    def few_images(**options):  # the command's data, small: the layer is what is refused
        x = np.zeros((20, 784), dtype=options["dtype"])
        t = np.arange(20) % 10
        return (x[:10], t[:10]), (x[10:], t[10:])

    monkeypatch.setattr(train_command, "load_mnist", few_images)
    status = main(["train", "--layers", "784-100000000-10", "--out", str(tmp_path / "w.npz")])
    err = capsys.readouterr().err
    assert status == 1
    (line,) = [line for line in err.splitlines() if line.startswith("xpnet")]
    # The command refuses before loading data; init_network's own bound is tested above.
    assert line.startswith("xpnet: error: --layers 784-100000000-10: ")
    assert "Traceback" not in err and "MemoryError" not in err
    assert not list(tmp_path.iterdir())
