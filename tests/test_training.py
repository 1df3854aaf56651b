"""Training: backprop against numerical gradients, the optimizers, and the training loop.

The gradient checks run in float64 on NumPy and on array-api-strict's ``device1``; the
cross-backend tests compare each backend with NumPy and check where results and state live.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import numpy as np
import pytest
import reference
from array_api_extra.testing import assert_close, assert_equal

import xpnet
from xpnet.backends import backend_of, to_host
from xpnet.errors import BackendMismatchError, NetworkError
from xpnet.gradients import cross_entropy, log_softmax, loss_and_gradients
from xpnet.optimizers import SGD, Adam, Momentum, make_optimizer
from xpnet.training import History, evaluate, shift_images, train

SIZES = (6, 5, 4, 3)
HIDDEN = [("sigmoid", "sigmoid"), ("relu", "identity"), ("softmax", "relu"), ("tanh", "tanh")]


def host_params(sizes=SIZES, seed=0) -> dict[str, np.ndarray]:
    return reference.random_params(sizes, seed, weight_scale=0.8)


def network_on(backend, params, activations, dtype="float64") -> xpnet.Network:
    arrays = {key: backend.asarray(value, dtype=dtype) for key, value in params.items()}
    return xpnet.Network.from_mapping(arrays, activations)


def batch(rows=7, sizes=SIZES, seed=1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, sizes[0])), rng.integers(0, sizes[-1], rows)


def blobs(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated Gaussian classes in 8 dimensions."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, rows)
    centres = np.random.default_rng(99).normal(scale=3.0, size=(3, 8))
    return centres[labels] + rng.normal(size=(rows, 8)), labels


def params_of(network: xpnet.Network) -> list:
    return [a for layer in network.layers for a in (layer.weight, layer.bias)]


def weights_on_host(network: xpnet.Network) -> list[np.ndarray]:
    return [to_host(a) for a in params_of(network)]


# --- gradients -------------------------------------------------------------------------------


@pytest.mark.parametrize("place", [("numpy", None), ("array_api_strict", "device1")])
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("one_hot", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_gradients_match_centred_differences(place, hidden, one_hot, weight_decay):
    backend = xpnet.get_backend(*place)
    activations = [*hidden, "softmax"]
    params = host_params()
    x, labels = batch()
    t = np.eye(SIZES[-1])[labels] if one_hot else labels
    xs, ts = backend.asarray(x), backend.asarray(t)

    def loss_at(p: dict[str, np.ndarray]) -> float:
        loss, _ = loss_and_gradients(
            network_on(backend, p, activations), xs, ts, weight_decay=weight_decay
        )
        return float(to_host(loss))

    loss, grads = loss_and_gradients(
        network_on(backend, params, activations), xs, ts, weight_decay=weight_decay
    )
    probs = reference.forward(params, activations, x)
    penalty = 0.5 * weight_decay * sum(np.sum(params[f"W{n}"] ** 2) for n in (1, 2, 3))
    expected_loss = -np.mean(np.log(probs[np.arange(len(labels)), labels])) + penalty
    assert float(to_host(loss)) == pytest.approx(expected_loss, rel=1e-12)
    eps = 1e-6
    for n, grad in enumerate(grads, start=1):
        for key, analytic in ((f"W{n}", grad.weight), (f"b{n}", grad.bias)):
            numeric = np.zeros_like(params[key])
            for index in np.ndindex(params[key].shape):
                up = {**params, key: params[key].copy()}
                down = {**params, key: params[key].copy()}
                up[key][index] += eps
                down[key][index] -= eps
                numeric[index] = (loss_at(up) - loss_at(down)) / (2 * eps)
            assert str(backend_of(analytic)) == str(backend_of(xs))
            np.testing.assert_allclose(to_host(analytic), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("hidden", HIDDEN)
def test_gradients_agree_with_numpy_on_every_backend(backend, dtype, hidden):
    activations = [*hidden, "softmax"]
    params = host_params(seed=4)
    x, labels = batch(rows=9, seed=5)
    oracle = xpnet.get_backend("numpy")
    expected_loss, expected = loss_and_gradients(
        network_on(oracle, params, activations), oracle.asarray(x), oracle.asarray(labels)
    )
    network = network_on(backend, params, activations, dtype)
    loss, grads = loss_and_gradients(
        network, backend.asarray(x, dtype=dtype), backend.asarray(labels)
    )
    rtol, atol = {"float16": (2e-2, 1e-3), "float32": (1e-4, 1e-6), "float64": (1e-10, 1e-14)}[
        dtype
    ]
    assert float(to_host(loss)) == pytest.approx(float(expected_loss), rel=rtol)
    for mine, theirs in zip(grads, expected):
        for a, b in ((mine.weight, theirs.weight), (mine.bias, theirs.bias)):
            assert a.dtype == network.dtype
            assert_close(a, backend.asarray(to_host(b), dtype=dtype), rtol=rtol, atol=atol)


def test_loss_is_stable_for_extreme_logits(backend, dtype):
    logits = backend.asarray(np.array([[1000.0, 0.0, -1000.0], [-50.0, -50.0, 50.0]]), dtype)
    targets = backend.asarray(np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]), dtype)
    expected = np.array([[0.0, -1000.0, -2000.0], [-100.0, -100.0, 0.0]])
    assert_close(log_softmax(logits), backend.asarray(expected, dtype), atol=1e-12)
    loss = cross_entropy(logits, targets)
    assert loss.dtype == logits.dtype
    assert float(to_host(loss)) == pytest.approx(1000.0)


def test_labels_are_checked(backend):
    network = network_on(backend, host_params(), ["sigmoid", "sigmoid", "softmax"])
    x = backend.asarray(batch(rows=3)[0])
    with pytest.raises(ValueError, match=r"outside the network's classes 0\.\.2"):
        loss_and_gradients(network, x, backend.asarray(np.array([0, 3, 1])))
    with pytest.raises(ValueError, match="integer class indices"):
        loss_and_gradients(network, x, backend.asarray(np.array([0.0, 1.0, 1.0])))
    with pytest.raises(ValueError, match="3 rows but t has 2 labels"):
        loss_and_gradients(network, x, backend.asarray(np.array([0, 1])))


def test_labels_must_share_the_device():
    backend = xpnet.get_backend("array_api_strict", "device1")
    network = network_on(backend, host_params(), ["sigmoid", "sigmoid", "softmax"])
    x, labels = batch(rows=3)
    t = xpnet.get_backend("array_api_strict").asarray(labels)
    with pytest.raises(BackendMismatchError, match="labels t are on array_api_strict on CPU"):
        loss_and_gradients(network, backend.asarray(x), t)


@pytest.mark.parametrize(
    ("activations", "message"),
    [
        (["step", "sigmoid", "softmax"], "'step' activation"),
        (["relu", "relu", "identity"], "softmax"),
    ],
)
def test_untrainable_networks_are_refused(activations, message):
    backend = xpnet.get_backend("numpy")
    network = network_on(backend, host_params(), activations)
    x, labels = batch()
    with pytest.raises(NetworkError, match=message):
        loss_and_gradients(network, backend.asarray(x), backend.asarray(labels))
    with pytest.raises(NetworkError, match=message):
        train(network, backend.asarray(x), backend.asarray(labels), epochs=1)


# --- optimizers ------------------------------------------------------------------------------


def test_optimizers_follow_their_formulas(backend, dtype):
    rng = np.random.default_rng(8)
    # Values the dtype holds exactly, so the reference starts where the optimizer does.
    p0, g1, g2 = (rng.normal(size=(3, 2)).astype(dtype).astype(np.float64) for _ in range(3))
    rtol = {"float16": 1e-2, "float32": 1e-5, "float64": 1e-12}[dtype]

    def steps(optimizer, grads):  # type: ignore[no-untyped-def]
        current = [backend.asarray(p0, dtype)]
        for step in grads:
            current = optimizer.step(current, [backend.asarray(g, dtype) for g in step])
        return current[0]

    # assert_close also holds each result to the parameters' dtype, which a NumPy scalar
    # in an update would widen.
    sgd = steps(SGD(0.5), [[g1]])
    assert_close(sgd, backend.asarray(p0 - 0.5 * g1, dtype), rtol=rtol)
    momentum = steps(Momentum(0.1, momentum=0.8), [[g1], [g2]])
    v2 = 0.8 * (-0.1 * g1) - 0.1 * g2
    assert_close(momentum, backend.asarray(p0 - 0.1 * g1 + v2, dtype), rtol=rtol)
    adam = steps(Adam(0.01, eps=0.0), [[g1], [g2]])
    m_hat = (0.9 * 0.1 * g1 + 0.1 * g2) / (1 - 0.9**2)
    v_hat = (0.999 * 0.001 * g1**2 + 0.001 * g2**2) / (1 - 0.999**2)
    p1 = p0 - 0.01 * np.sign(g1)  # Adam's first step has size lr along the gradient's sign
    expected = p1 - 0.01 * m_hat / np.sqrt(v_hat)
    assert_close(adam, backend.asarray(expected, dtype), rtol=rtol)


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_optimizer_state_lives_with_the_parameters(backend, name):
    network = network_on(backend, host_params((8, 6, 3)), ["relu", "softmax"], "float32")
    x, t = blobs(40, seed=0)
    xs = backend.asarray(x, "float32")
    optimizer = make_optimizer(name)
    trained, _ = train(
        network, xs, backend.asarray(t), epochs=1, batch_size=10, optimizer=optimizer
    )
    assert optimizer.steps == 4
    assert set(optimizer.state) == set(optimizer.slots)
    for arrays in optimizer.state.values():
        assert len(arrays) == 4
        for array, param in zip(arrays, params_of(trained)):
            assert str(backend_of(array)) == str(backend_of(param)) == str(backend_of(xs))
            assert array.dtype == param.dtype


def test_optimizers_write_into_nothing():
    params = [np.ones((2, 2)), np.zeros(2)]
    grads = [np.full((2, 2), 0.5), np.ones(2)]
    for array in (*params, *grads):
        array.flags.writeable = False
    for optimizer in (SGD(), Momentum(), Adam()):
        new = optimizer.step(params, grads)
        new = optimizer.step(new, grads)
        assert not np.shares_memory(new[0], params[0])
    np.testing.assert_array_equal(params[0], np.ones((2, 2)))
    np.testing.assert_array_equal(grads[1], np.ones(2))


def test_optimizer_arguments_are_checked():
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer("rmsprop")
    with pytest.raises(ValueError, match="pass lr to the optimizer object"):
        make_optimizer(Adam(), lr=0.1)
    with pytest.raises(ValueError, match="positive"):
        SGD(0.0)
    assert make_optimizer("momentum").lr == Momentum.default_lr
    assert make_optimizer("sgd", 0.5).lr == 0.5
    optimizer = Momentum()
    optimizer.step([np.ones(3)], [np.ones(3)])
    with pytest.raises(ValueError, match="other parameter shapes"):
        optimizer.step([np.ones(4)], [np.ones(4)])


# --- the training loop -----------------------------------------------------------------------


@pytest.mark.parametrize(("optimizer", "lr"), [("sgd", 0.1), ("momentum", 0.01), ("adam", 0.01)])
def test_loss_falls_and_blobs_are_learned(backend, optimizer, lr):
    x, t = blobs(120, seed=1)
    x_val, t_val = blobs(60, seed=2)
    network = xpnet.init_network((8, 16, 3), activations=("relu", "softmax"), seed=3)
    network = network_on(backend, network.to_mapping(), ["relu", "softmax"], "float32")
    trained, history = train(
        network,
        backend.asarray(x, "float32"),
        backend.asarray(t),
        epochs=8,
        batch_size=16,
        optimizer=optimizer,
        lr=lr,
        seed=0,
        x_val=backend.asarray(x_val, "float32"),
        t_val=backend.asarray(np.eye(3)[t_val]),
    )
    losses = [stats.loss for stats in history.epochs]
    assert len(losses) == 8 and not history.interrupted
    assert losses[-1] < 0.1 * losses[0]
    assert history.epochs[-1].accuracy > 0.95
    assert history.epochs[-1].val_accuracy > 0.95
    assert isinstance(history.epochs[-1].val_loss, float)
    assert str(trained.backend) == str(backend)
    assert trained.dtype == backend.xp.float32


def test_training_is_deterministic_for_a_seed():
    backend = xpnet.get_backend("numpy")
    x, t = blobs(50, seed=4)
    network = xpnet.init_network((8, 7, 3), activations=("sigmoid", "softmax"), seed=1)
    xs, ts = backend.asarray(x), backend.asarray(t)
    runs = [
        train(network, xs, ts, epochs=3, batch_size=8, seed=s, optimizer="adam")[0]
        for s in (5, 5, 6)
    ]
    first, again, other = (weights_on_host(run) for run in runs)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_weight_decay_shrinks_weights(backend):
    x, t = blobs(48, seed=5)
    network = network_on(backend, host_params((8, 6, 3), seed=6), ["sigmoid", "softmax"])
    norms = {}
    for decay in (0.0, 0.5):
        trained, _ = train(
            network, backend.asarray(x), backend.asarray(t), epochs=3, weight_decay=decay
        )
        norms[decay] = sum(float(np.sum(to_host(layer.weight) ** 2)) for layer in trained.layers)
    before = sum(float(np.sum(to_host(layer.weight) ** 2)) for layer in network.layers)
    assert norms[0.5] < norms[0.0]
    assert norms[0.5] < before


def test_interrupt_returns_the_network_so_far():
    backend = xpnet.get_backend("numpy")
    x, t = (backend.asarray(a) for a in blobs(40, seed=7))
    network = network_on(backend, host_params((8, 5, 3)), ["relu", "softmax"])
    two_epochs, _ = train(network, x, t, epochs=2, batch_size=10)

    def stop_after_two(stats, net):
        if stats.epoch == 2:
            raise KeyboardInterrupt

    stopped, history = train(network, x, t, epochs=5, batch_size=10, on_epoch=stop_after_two)
    assert history.interrupted and [s.epoch for s in history.epochs] == [1, 2]
    for a, b in zip(weights_on_host(stopped), weights_on_host(two_epochs)):
        np.testing.assert_array_equal(a, b)

    def stop_mid_epoch(stats):
        if stats.batch == 3:
            raise KeyboardInterrupt

    partial, history = train(network, x, t, epochs=5, batch_size=10, on_batch=stop_mid_epoch)
    assert history == History(epochs=[], interrupted=True)
    assert not np.array_equal(weights_on_host(partial)[0], weights_on_host(network)[0])


def test_callbacks_get_scalars_per_epoch_and_device_arrays_per_batch(backend):
    x, t = blobs(30, seed=8)
    network = network_on(backend, host_params((8, 5, 3)), ["relu", "softmax"])
    seen_batches, seen_epochs = [], []
    _, history = train(
        network,
        backend.asarray(x),
        backend.asarray(t),
        epochs=2,
        batch_size=8,
        on_batch=seen_batches.append,
        on_epoch=lambda stats, net: seen_epochs.append((stats, net)),
    )
    assert [(b.epoch, b.batch, b.batches) for b in seen_batches] == [
        (e, b, 4) for e in (1, 2) for b in (1, 2, 3, 4)
    ]
    assert all(
        str(backend_of(b.loss)) == str(backend_of(network.layers[0].weight)) for b in seen_batches
    )
    assert [stats for stats, _ in seen_epochs] == history.epochs
    assert all(isinstance(s.loss, float) and s.val_loss is None for s in history.epochs)
    assert all(0.0 <= s.accuracy <= 1.0 and s.seconds >= 0 for s in history.epochs)


def test_evaluate_matches_the_reference(backend):
    params = host_params((8, 5, 3), seed=9)
    x, t = blobs(25, seed=9)
    probs = reference.forward(params, ["sigmoid", "softmax"], x)
    network = network_on(backend, params, ["sigmoid", "softmax"])
    loss, accuracy = evaluate(network, backend.asarray(x), backend.asarray(t), batch_size=7)
    assert loss == pytest.approx(-np.mean(np.log(probs[np.arange(25), t])), rel=1e-12)
    assert accuracy == np.mean(probs.argmax(axis=1) == t)


def test_train_takes_the_textbook_dict_and_read_only_arrays():
    x, t = blobs(20, seed=10)
    params = host_params((8, 5, 3), seed=10)
    for array in (x, t, *params.values()):
        array.flags.writeable = False
    trained, history = train(params, x, t, epochs=1, batch_size=5, optimizer="momentum")
    assert trained.activations == ("sigmoid", "softmax")
    assert len(history.epochs) == 1
    untouched, empty = train(params, x, t, epochs=0)
    assert empty == History() and untouched.layers[0].weight is params["W1"]


def test_train_arguments_are_checked():
    backend = xpnet.get_backend("numpy")
    x, t = blobs(10, seed=11)
    network = network_on(backend, host_params((8, 5, 3)), ["relu", "softmax"])
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            train(network, x, t, epochs=1, batch_size=bad)
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            evaluate(network, x, t, batch_size=bad)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="epochs must be an integer >= 0"):
            train(network, x, t, epochs=bad)
    assert len(train(network, x, t, epochs=np.int64(1))[1].epochs) == 1
    with pytest.raises(ValueError, match="both x_val and t_val"):
        train(network, x, t, epochs=1, x_val=x)
    with pytest.raises(ValueError, match="outside the network's classes"):
        train(network, x, t, epochs=1, x_val=x, t_val=t + 3, on_epoch=pytest.fail)
    with pytest.raises(ValueError, match="square images"):
        train(network, x, t, epochs=1, augment_shift=1)
    with pytest.raises(ValueError, match="non-empty batch"):
        train(network, x[:0], t[:0], epochs=1)


# --- augmentation ----------------------------------------------------------------------------


def shifted_reference(image: np.ndarray, down: int, right: int) -> np.ndarray:
    rows, cols = image.shape
    out = np.zeros_like(image)
    out[max(down, 0) : rows + min(down, 0), max(right, 0) : cols + min(right, 0)] = image[
        max(-down, 0) : rows + min(-down, 0), max(-right, 0) : cols + min(-right, 0)
    ]
    return out


@pytest.mark.parametrize("kind", ["float32", "uint8"])
def test_shift_images_moves_content_on_the_device(backend, kind):
    shape = (5, 6)
    rng = np.random.default_rng(12)
    images = rng.integers(1, 200, (9, *shape))
    shifts = np.array(
        [[0, 0], [1, 0], [0, 1], [-2, 0], [0, -2], [2, -1], [-1, 2], [2, 2], [-2, -2]]
    )
    x = backend.asarray(images.reshape(9, -1), kind)
    result = shift_images(x, backend.asarray(shifts), max_shift=2, image_shape=shape)
    expected = np.stack([shifted_reference(i, *s) for i, s in zip(images, shifts)])
    assert result.dtype == x.dtype and tuple(result.shape) == (9, 30)
    assert str(backend_of(result)) == str(backend_of(x))
    assert_equal(result, backend.asarray(expected.reshape(9, -1), kind))


def test_training_with_shifts(backend):
    rng = np.random.default_rng(13)
    x, t = rng.random((24, 16)), rng.integers(0, 3, 24)
    xs, ts = backend.asarray(x, "float32"), backend.asarray(t)
    network = network_on(backend, host_params((16, 5, 3), seed=13), ["relu", "softmax"], "float32")
    plain, _ = train(network, xs, ts, epochs=2, batch_size=6)
    shifted, history = train(network, xs, ts, epochs=2, batch_size=6, augment_shift=1)
    assert len(history.epochs) == 2 and str(shifted.backend) == str(backend)
    assert not np.array_equal(weights_on_host(plain)[0], weights_on_host(shifted)[0])
    with pytest.raises(ValueError, match="wider than the shift"):
        train(network, xs, ts, epochs=1, augment_shift=4)


def test_training_in_memory_loads_neither_dask_nor_its_training_module():
    # The loop reaches the dask module only when a dask array arrives: training and
    # evaluating NumPy arrays, callbacks and validation included, never import it.
    code = (
        "import sys, numpy as np, xpnet\n"
        "x, t = np.eye(4, dtype=np.float32)[[0, 1, 2, 3] * 5], np.array([0, 1, 2, 3] * 5)\n"
        "net = xpnet.init_network((4, 3, 4), seed=0)\n"
        "seen = []\n"
        "trained, history = xpnet.train(net, x, t, epochs=2, batch_size=6, optimizer='adam',\n"
        "    x_val=x, t_val=t, on_batch=lambda s: seen.append(float(s.loss)),\n"
        "    on_epoch=lambda s, n: seen.append(n))\n"
        "xpnet.evaluate(trained, x, t)\n"
        "assert len(history.epochs) == 2 and len(seen) == 2 * 4 + 2\n"
        "print(sorted(m for m in sys.modules if m == 'dask' or m.startswith(('dask.', "
        "'xpnet.scaleout'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # at most inference's chunk engine (imported lazily or not): no dask, and no training,
    # store or scheduler module of the scale-out package
    loaded = set(ast.literal_eval(out.stdout.strip()))
    assert loaded <= {"xpnet.scaleout", "xpnet.scaleout.chunk_engine"}, loaded
