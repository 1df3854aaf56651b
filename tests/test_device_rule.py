"""The device rule, proven on the CPU with a stand-in for CuPy's current device.

CuPy launches kernels on its *current* device, and array-api-compat's CuPy ``zeros``,
``arange`` and ``zeros_like`` ignore ``device=``. The stand-in reproduces both on
array-api-strict: its creation functions are patched to ignore ``device=`` and use a
"current device" (and ``concat``/``stack`` put their result there), which only the rule's
context changes (registered for array_api_strict as the real one is for cupy).
array-api-strict refuses to combine arrays of two devices, so any computation on
``device1`` that creates an array outside the rule fails, and every result must come back
on ``device1``.
"""

from __future__ import annotations

import types

import array_api_strict as strict
import numpy as np
import pytest

import xpnet
from xpnet import _device
from xpnet.backends import to_host
from xpnet.optimizers import Adam, Momentum
from xpnet.plotting import confusion_matrix, misclassified_indices, plot_activations
from xpnet.training import shift_images

CREATORS = ("zeros", "ones", "empty", "full", "arange", "linspace", "eye")
LIKE = ("zeros_like", "ones_like", "empty_like", "full_like")
JOINS = ("concat", "stack")


def name_of(device: object) -> str:
    """An array-api-strict device's name (``'device1'``)."""
    return xpnet.Backend("array_api_strict", strict, device).device_name


class StandInDevice:
    """What ``cupy.cuda.Device`` is to the rule: a context that makes a device current."""

    def __init__(self, device: object, log: list[tuple[str, str]], current: list) -> None:
        self.device, self.log, self.current = device, log, current

    def __enter__(self) -> StandInDevice:
        self.log.append(("enter", name_of(self.device)))
        self.current.append(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        self.current.pop()
        self.log.append(("exit", name_of(self.device)))


@pytest.fixture
def cupy_like(monkeypatch):
    """array-api-strict made to create arrays as CuPy does; returns the enter/exit log."""
    log: list[tuple[str, str]] = []
    current = [strict.Device("CPU_DEVICE")]  # as CuPy starts on device 0

    def on_current(function):
        def create(*args, device=None, **kwargs):  # device= ignored, as compat's CuPy does
            return function(*args, device=current[-1], **kwargs)

        return create

    def onto_current(function):
        def join(*args, **kwargs):  # CuPy allocates a join's result on the current device
            return function(*args, **kwargs).to_device(current[-1])

        return join

    for name in CREATORS + LIKE:
        monkeypatch.setattr(strict, name, on_current(getattr(strict, name)))
    for name in JOINS:
        monkeypatch.setattr(strict, name, onto_current(getattr(strict, name)))
    monkeypatch.setitem(
        _device._ENTER, "array_api_strict", lambda device: StandInDevice(device, log, current)
    )
    return log


@pytest.fixture
def device1():
    return xpnet.get_backend("array_api_strict", "device1")


def textbook_on(backend, sizes=(784, 50, 100, 10)) -> xpnet.Network:
    return xpnet.init_network(sizes, backend=backend.name, device=backend.device_name)


def blobs(backend, rows=40, features=16, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, classes, rows)
    x = rng.standard_normal((rows, features)) + 3.0 * np.eye(classes, features)[t]
    return backend.asarray(x, dtype="float32"), backend.asarray(t)


def on_device1(*arrays) -> bool:
    return all(name_of(a.device) == "device1" for a in arrays)


def test_the_stand_in_breaks_code_outside_the_rule(cupy_like, device1, monkeypatch):
    # The control: without the rule's context, the stand-in's creation lands on the
    # current device (CPU_DEVICE) and mixing it with device1 fails, as it would on CuPy.
    monkeypatch.delitem(_device._ENTER, "array_api_strict")
    x, _ = blobs(device1, rows=8)
    params = [x[:4, :]]
    with pytest.raises(ValueError, match="two different devices"):
        Momentum(lr=0.1).step(params, params)


def test_the_rule_enters_the_inputs_device(cupy_like, device1):
    x, _ = blobs(device1, rows=4)
    assert cupy_like == [("enter", "device1"), ("exit", "device1")] * 2  # Backend.asarray
    cupy_like.clear()
    with _device.on_device_of(x):
        inside = strict.zeros((2,))
    assert name_of(inside.device) == "device1"
    assert cupy_like == [("enter", "device1"), ("exit", "device1")]


def test_cupy_enters_its_device_object():
    log: list[tuple[str, str]] = []
    current: list = []
    stand_in = StandInDevice(strict.Device("device2"), log, current)
    with _device.on_backend("cupy", stand_in):
        assert current == [stand_in.device]
    assert log == [("enter", "device2"), ("exit", "device2")]
    with _device.on_backend("numpy", "cpu"):  # elsewhere a no-op
        pass


def test_forward_pass_and_counting(cupy_like, device1):
    network = textbook_on(device1)
    assert ("enter", "device1") in cupy_like  # init_network created its arrays under it
    images = device1.asarray(np.random.default_rng(1).integers(0, 256, (30, 784)), "uint8")
    labels = device1.asarray(np.arange(30) % 10)
    results = {}
    for name, call in {
        "predict": lambda: xpnet.predict(network, images, batch_size=7),
        "predict_labels": lambda: xpnet.predict_labels(network, images),
        "count_correct": lambda: xpnet.count_correct(network, images, labels, batch_size=8),
        "accuracy": lambda: xpnet.accuracy(network, images, labels),
        "streaming": lambda: xpnet.predict_labels_streaming(
            network, [images[:10, ...], images[10:, ...]]
        ),
    }.items():
        cupy_like.clear()
        results[name] = call()
        # Each entry point enters the rule itself, first, and leaves it last.
        assert cupy_like[0] == ("enter", "device1") and cupy_like[-1] == ("exit", "device1"), name
        assert all(entry[1] == "device1" for entry in cupy_like), name
    predicted = to_host(results["predict_labels"])
    assert on_device1(results["predict"], results["predict_labels"], results["streaming"])
    assert to_host(results["streaming"]).tolist() == predicted.tolist()
    expected = int(np.count_nonzero(predicted == np.arange(30) % 10))
    assert results["count_correct"] == expected and results["accuracy"] == expected / 30


def test_optimizer_state_is_made_on_the_parameters_device(cupy_like, device1):
    x, _ = blobs(device1, rows=6)
    params, grads = [x[:3, :], x[3:, :]], [x[3:, :], x[:3, :]]
    for optimizer in (Momentum(lr=0.1), Adam()):
        cupy_like.clear()
        new = optimizer.step(params, grads)
        assert cupy_like[0] == ("enter", "device1")
        assert on_device1(*new, *(a for arrays in optimizer.state.values() for a in arrays))


def test_training_steps_and_optimizer_state(cupy_like, device1):
    x, t = blobs(device1, rows=36, features=16)
    network = xpnet.init_network((16, 8, 3), backend="array_api_strict", device="device1")
    optimizer = Adam()
    cupy_like.clear()
    trained, history = xpnet.train(
        network, x, t, epochs=2, batch_size=9, optimizer=optimizer, x_val=x, t_val=t
    )
    assert on_device1(*(a for layer in trained.layers for a in (layer.weight, layer.bias)))
    assert on_device1(*optimizer.state["m"], *optimizer.state["v"])
    assert len(history.epochs) == 2 and cupy_like[0] == ("enter", "device1")
    loss, grads = xpnet.loss_and_gradients(trained, x, t)  # as_targets' arange
    assert on_device1(loss, *(g.weight for g in grads))
    loss, accuracy = xpnet.evaluate(trained, x, t, batch_size=10)
    on_host = xpnet.to_backend(trained, "numpy")
    expected = xpnet.evaluate(on_host, to_host(x), to_host(t), batch_size=10)
    assert accuracy == expected[1] and loss == pytest.approx(expected[0], rel=1e-5)


def test_augmented_training_and_shifts(cupy_like, device1):
    pixels = np.random.default_rng(2).random((12, 64))
    x, t = device1.asarray(pixels, "float32"), device1.asarray(np.arange(12) % 3)
    shifts = device1.asarray(np.random.default_rng(3).integers(-2, 3, (12, 2)))
    assert on_device1(shift_images(x, shifts, max_shift=2, image_shape=(8, 8)))
    network = xpnet.init_network((64, 5, 3), backend="array_api_strict", device="device1")
    trained, _ = xpnet.train(network, x, t, epochs=1, batch_size=4, augment_shift=2)
    assert on_device1(trained.layers[0].weight)


def test_plotting_helpers(cupy_like, device1):
    rng = np.random.default_rng(4)
    probabilities = device1.asarray(rng.dirichlet(np.ones(4), 25), "float32")
    labels = device1.asarray(rng.integers(0, 4, 25))
    predicted = device1.asarray(rng.integers(0, 4, 25))
    cupy_like.clear()
    worst = misclassified_indices(labels, probabilities)
    counts = confusion_matrix(labels, predicted, num_classes=4)
    assert on_device1(worst, counts)
    assert int(to_host(counts).sum()) == 25
    assert [entry for entry in cupy_like if entry[0] == "enter"] == [("enter", "device1")] * 2
    pytest.importorskip("matplotlib")
    cupy_like.clear()
    plot_activations(["sigmoid", "relu"], num=11, backend=device1)
    assert ("enter", "device1") in cupy_like


def test_moving_a_network_enters_the_target(cupy_like):
    host = xpnet.init_network((6, 4, 2))
    cupy_like.clear()
    moved = xpnet.to_backend(host, "array_api_strict", "device1")
    assert on_device1(moved.layers[0].weight)
    assert ("enter", "device1") in cupy_like
    assert on_device1(moved.scale_input(0.5).layers[0].weight)


def test_a_fake_namespace_object_is_not_entered():
    fake = types.SimpleNamespace()
    with pytest.raises(TypeError):
        _device.on_device_of(fake)
