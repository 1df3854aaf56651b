"""Forward pass, batching and accuracy on every backend, against a float64 NumPy oracle."""

from __future__ import annotations

import numpy as np
import pytest
import reference
from array_api_extra.testing import assert_close, assert_equal

import xpnet
from xpnet.backends import to_host

lazy_xp_modules = [xpnet]

SIZES = (20, 8, 6, 4)


def host_params(sizes=SIZES, seed=3) -> dict[str, np.ndarray]:
    return reference.random_params(sizes, seed)


def on(backend, params, dtype):
    return {key: backend.asarray(value, dtype=dtype) for key, value in params.items()}


@pytest.mark.parametrize("batch_size", [None, 1, 7, 64])
def test_textbook_dict_matches_reference(backend, dtype, batch_size):
    params = host_params()
    x = np.random.default_rng(0).random((23, SIZES[0]))
    result = xpnet.predict(
        on(backend, params, dtype), backend.asarray(x, dtype=dtype), batch_size=batch_size
    )
    expected = reference.forward(params, ["sigmoid", "sigmoid", "softmax"], x)
    assert_close(
        result,
        backend.asarray(expected, dtype=dtype),
        rtol={"float16": 1e-2, "float32": 2e-5, "float64": 1e-12}[dtype],
        atol={"float16": 1e-4, "float32": 1e-7, "float64": 0}[dtype],
    )


@pytest.mark.parametrize(
    "activations", [["relu", "identity"], ["relu", "sigmoid", "step", "softmax"]]
)
def test_general_network_of_any_depth(backend, activations):
    sizes = (12, 9, 7, 5, 3)[: len(activations) + 1]
    params = host_params(sizes, seed=11)
    network = xpnet.Network.from_mapping(on(backend, params, "float64"), activations)
    x = np.random.default_rng(1).normal(size=(10, sizes[0]))
    assert network.sizes == sizes
    assert network.activations == tuple(activations)
    expected = reference.forward(params, activations, x)
    assert_close(xpnet.predict(network, backend.asarray(x)), backend.asarray(expected), rtol=1e-12)


def test_single_sample_like_the_textbook(backend):
    params = host_params()
    x = np.random.default_rng(2).random(SIZES[0])
    result = xpnet.predict(on(backend, params, "float64"), backend.asarray(x))
    assert tuple(result.shape) == (SIZES[-1],)
    expected = reference.forward(params, ["sigmoid", "sigmoid", "softmax"], x)
    assert_close(result, backend.asarray(expected), rtol=1e-12)


def test_input_is_cast_to_network_dtype(backend):
    network = on(backend, host_params(), "float32")
    x = backend.asarray(np.random.default_rng(4).integers(0, 255, (5, SIZES[0])), dtype="uint8")
    assert xpnet.predict(network, x).dtype == backend.xp.float32


@pytest.mark.parametrize("batch_size", [1, 3, 10, 16, 100])
@pytest.mark.parametrize("one_hot", [False, True])
def test_accuracy_any_batch_size_and_label_form(backend, batch_size, one_hot):
    params = host_params()
    x = np.random.default_rng(5).random((16, SIZES[0]))
    labels = np.random.default_rng(6).integers(0, SIZES[-1], 16)
    expected = int(
        np.count_nonzero(
            reference.forward(params, ["sigmoid", "sigmoid", "softmax"], x).argmax(axis=1) == labels
        )
    )
    t = np.eye(SIZES[-1])[labels] if one_hot else labels
    network = on(backend, params, "float64")
    xs, ts = backend.asarray(x), backend.asarray(t)
    assert xpnet.count_correct(network, xs, ts, batch_size=batch_size) == expected
    assert xpnet.accuracy(network, xs, ts, batch_size=batch_size) == expected / 16


def test_empty_input(backend):
    network = on(backend, host_params(), "float32")
    x = backend.asarray(np.zeros((0, SIZES[0])), dtype="float32")
    t = backend.asarray(np.zeros(0, dtype=np.int64))
    assert tuple(xpnet.predict(network, x).shape) == (0, SIZES[-1])
    assert tuple(xpnet.predict(network, x, batch_size=8).shape) == (0, SIZES[-1])
    assert xpnet.count_correct(network, x, t) == 0
    assert np.isnan(xpnet.accuracy(network, x, t))
    assert list(xpnet.iter_batches(x, t, batch_size=4)) == []


def test_predict_labels_stay_on_device(backend):
    params = host_params()
    x = np.random.default_rng(7).random((9, SIZES[0]))
    labels = xpnet.predict_labels(
        on(backend, params, "float32"), backend.asarray(x, dtype="float32")
    )
    expected = reference.forward(params, ["sigmoid", "sigmoid", "softmax"], x).argmax(axis=1)
    assert_equal(labels, backend.xp.asarray(expected, dtype=labels.dtype, device=backend.device))


def test_iter_batches_covers_every_row_once(backend):
    x = backend.asarray(np.arange(23 * 2).reshape(23, 2))
    t = backend.asarray(np.arange(23))
    batches = list(xpnet.iter_batches(x, t, batch_size=5))
    assert [b[0].shape[0] for b in batches] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(np.concatenate([to_host(tb) for _, tb in batches]), np.arange(23))


def test_iter_batches_rejects_bad_arguments(backend):
    x = backend.asarray(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="positive integer"):
        list(xpnet.iter_batches(x, batch_size=0))
    with pytest.raises(ValueError, match="same length"):
        list(xpnet.iter_batches(x, backend.asarray(np.zeros(3)), batch_size=2))


def test_labels_must_match_rows(backend):
    network = on(backend, host_params(), "float32")
    with pytest.raises(ValueError, match="5 rows but t has 4 labels"):
        xpnet.accuracy(
            network,
            backend.asarray(np.zeros((5, SIZES[0]))),
            backend.asarray(np.zeros(4, dtype=np.int64)),
        )


def test_streaming_labels_equal_whole_array_labels(backend):
    network = on(backend, host_params(), "float32")
    x = np.random.default_rng(8).random((45, SIZES[0]))
    blocks = (backend.asarray(x[i : i + 10], dtype="float32") for i in range(0, 45, 10))
    streamed = xpnet.predict_labels_streaming(network, blocks)
    assert_equal(streamed, xpnet.predict_labels(network, backend.asarray(x, dtype="float32")))
    with pytest.raises(ValueError, match="at least one block"):
        xpnet.predict_labels_streaming(network, [])


@pytest.mark.only_backends("jax", reason="jax.jit compiles JAX code only; the others run eagerly")
def test_predict_compiles_under_jax_jit(backend):
    import jax

    params = host_params()
    network = xpnet.Network.from_mapping(on(backend, params, "float32"))
    x = backend.asarray(np.random.default_rng(4).random((23, SIZES[0])), dtype="float32")
    compiled = jax.jit(lambda rows: xpnet.predict(network, rows))
    compiled_labels = jax.jit(lambda rows: xpnet.predict_labels(network, rows))
    assert_close(compiled(x), xpnet.predict(network, x), rtol=1e-6, atol=1e-7)
    assert_equal(compiled_labels(x), xpnet.predict_labels(network, x))
