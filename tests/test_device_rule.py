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
import warnings
from pathlib import Path

import array_api_strict as strict
import numpy as np
import pytest

import xpnet
import xpnet.batching
import xpnet.forward_pass
import xpnet.gradients
import xpnet.network
import xpnet.onnx_export
import xpnet.plotting
from xpnet import _device
from xpnet.activations import logistic_formula
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
    entered = [entry for entry in cupy_like if entry[0] == "enter"]
    # each helper enters its inputs' device (a helper it calls may enter it again, nested)
    assert len(entered) >= 2 and set(entered) == {("enter", "device1")}
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


# --- every public function, on a CPU double of CuPy (tests/cupy_double.py) --------------------
#
# The double runs every operation on its current device and refuses an array from another
# device, converts nothing to NumPy behind the caller's back, and reports free memory per
# device. Each public function that computes is called with inputs on cuda:1 while cuda:0
# is current: it must succeed, leave every array it returns on cuda:1, and leave cuda:0
# current. The list of such functions is found by reading the package, so a new one fails
# test_every_public_function_is_proved_or_exempt until it is given a call below.

import importlib  # noqa: E402
import inspect  # noqa: E402
import pkgutil  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import cupy_double  # noqa: E402

OTHER = "cuda:1"
"""The device the inputs live on; cuda:0 stays current around every call."""


def public_functions() -> dict[str, Callable[..., Any]]:
    """Every public function and method of xpnet's public modules (the CLI's aside) that
    takes or returns arrays or networks, or takes a ``backend`` or ``device``."""
    found: dict[str, Callable[..., Any]] = {}
    for info in pkgutil.walk_packages(xpnet.__path__, "xpnet."):
        parts = info.name.split(".")
        if any(part.startswith("_") for part in parts) or parts[1] == "cli":
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if name.startswith("_") or getattr(value, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(value):
                found[f"{module.__name__}.{name}"] = value
            elif inspect.isclass(value):
                for member, attribute in vars(value).items():
                    function = (  # properties, cached properties, static and class methods
                        getattr(attribute, "fget", None)
                        or getattr(attribute, "func", None)
                        or getattr(attribute, "__func__", attribute)
                    )
                    if not member.startswith("_") and inspect.isfunction(function):
                        found[f"{module.__name__}.{name}.{member}"] = function
    return {name: f for name, f in found.items() if computes(f)}


def computes(function: Callable[..., Any]) -> bool:
    annotations = " ".join(map(str, inspect.get_annotations(function).values()))
    parameters = inspect.signature(function).parameters
    return (
        "Array" in annotations
        or "Network" in annotations
        or "backend" in parameters
        or "device" in parameters
    )


EXEMPT = {
    "xpnet.backends.get_backend": "makes no array",
    "xpnet.datasets.idx.write_idx": "host files: takes NumPy data (a device array is refused)",
    "xpnet.datasets.idx.idx_bytes": "host files: takes NumPy data (a device array is refused)",
    "xpnet.scaleout.store.ImageStore.read": "the image store reads to the host (NumPy, dask)",
    "xpnet.weights.read_npz": "reads a file into a host (NumPy) network",
    "xpnet.weights.read_textbook_pickle": "reads a file into a host (NumPy) network",
    "xpnet.weights.write_npz": "writes a host network's bytes",
    "xpnet.importers.keras.read_model": "reads a model into a host (NumPy) network",
    "xpnet.importers.keras.read_file": "reads a file into a host (NumPy) network",
    "xpnet.importers.onnx.read_file": "reads a file into a host (NumPy) network",
    "xpnet.importers.onnx.read_model": "reads a model into a host (NumPy) network",
    "xpnet.importers.safetensors.write": "writes a host network's bytes",
    "xpnet.importers.safetensors.read_file": "reads a file into a host (NumPy) network",
    "xpnet.importers.sklearn.read_mlp": "reads a model into a host (NumPy) network",
    "xpnet.importers.sklearn.read_skops": "reads a file into a host (NumPy) network",
    "xpnet.importers.torch.read_module": "reads a module into a host (NumPy) network",
    "xpnet.importers.torch.read_state_dict": "reads tensors into a host (NumPy) network",
    "xpnet.importers.torch.read_state_dict_arrays": "reads arrays into a host network",
    "xpnet.importers.torch.read_state_dict_file": "reads a file into a host (NumPy) network",
    "xpnet.importers.from_keras": "needs Keras and one of its backends; it places through "
    "the same importers._common.place as from_sklearn, which is proved",
    "xpnet.datasets.mnist.load_fashion_mnist": "load_mnist with another dataset name; "
    "load_mnist is proved",
    "xpnet.inference.choose_engine": "reads the input's type and shape only",
    # dask's engine builds graphs; each chunk's task runs inference._run_on_device, which
    # enters the chunk's device (dask with CuPy chunks: test_gpu_ready, on a GPU)
    "xpnet.scaleout.chunk_engine.accepts": "reads the input's type only",
    "xpnet.scaleout.chunk_engine.forward": "builds a dask graph; its tasks enter each "
    "chunk's device",
    "xpnet.scaleout.chunk_engine.from_host": "wraps host data in a dask array; no kernel runs",
    "xpnet.scaleout.schedulers.count_correct_and_unlabelled": "computes a dask graph whose "
    "chunk tasks enter their devices",
    "xpnet.scaleout.training.groups": "slices dask arrays lazily; no kernel runs",
}
"""Public functions that take or give arrays but need no device entered, and why."""

SAFE_WITHOUT_THE_RULE = {
    # read shapes, dtypes or devices, slice, or copy to the host: no kernel runs
    "xpnet.activations.identity_function",
    "xpnet.backends.backend_of",
    "xpnet.backends.free_device_memory",
    "xpnet.backends.to_host",
    "xpnet.batching.batch_size_for",
    "xpnet.batching.iter_batches",
    "xpnet.batching.working_set_per_row",
    "xpnet.gradients.check_trainable",
    "xpnet.network.Network.cast_input",
    "xpnet.network.Network.check_input",
    "xpnet.network.Network.from_mapping",
    "xpnet.network.Network.to_mapping",
    "xpnet.network.as_network",
    "xpnet.onnx_export.export_onnx",
    "xpnet.onnx_export.onnx_bytes",
    "xpnet.onnx_export.onnx_model",
    "xpnet.plotting.plot_first_layer_weights",
    "xpnet.plotting.plot_image_grid",
    "xpnet.weights.save_weights",
    # create their arrays with asarray(..., device=), which array-api-compat's CuPy
    # wrapper runs inside that device itself
    "xpnet.backends.Backend.asarray",
    "xpnet.datasets.mnist.load_mnist",
    "xpnet.importers.from_onnx",
    "xpnet.importers.from_sklearn",
    "xpnet.importers.from_torch",
    "xpnet.network.init_network",
    "xpnet.network.to_backend",
    "xpnet.network.to_backend from cuda:0",
    "xpnet.weights.load_weights",
    "xpnet.weights.load_weights_and_info",
}
"""Proved calls that still work with the rule taken out, because they launch no kernel on
the inputs' device or only create arrays through ``asarray(device=)``. The control checks
this both ways, so a function that starts computing must leave this set and be kept under
the rule. identity and cast_input are here for float input of the network's dtype; their
integer cases (``... int``) compute and are controlled."""


class Inputs:
    """Arrays and networks on cuda:1 of the double, made while cuda:0 is current."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.backend = xpnet.get_backend("cupy", OTHER)
        self.network = xpnet.init_network((16, 8, 3), backend="cupy", device=OTHER)
        self.x = self.backend.asarray(rng.standard_normal((12, 16)), "float32")
        self.pixels = self.backend.asarray(rng.integers(0, 256, (12, 16)), "uint8")
        self.labels = self.backend.asarray(np.arange(12) % 3)
        self.one_hot = self.backend.asarray(np.eye(3)[np.arange(12) % 3], "float32")
        self.square = self.backend.asarray(rng.standard_normal((4, 4)), "float32")
        with self.backend.device:  # not through the code under test
            self.probabilities = xpnet.softmax(self.x[:, :3])
            self.half = self.square * 0.5


def _grid_images(i: Inputs) -> Any:
    images = i.backend.asarray(np.random.default_rng(1).random((12, 784)), "float32")
    return images


def _export(i: Inputs, tmp_path: Path) -> Any:
    pytest.importorskip("onnx")
    from xpnet.onnx_export import export_onnx

    return export_onnx(i.network, tmp_path / "net.onnx")


def _from_onnx(i: Inputs, tmp_path: Path) -> Any:
    pytest.importorskip("onnx")
    path = xpnet.export_onnx(xpnet.to_backend(i.network, "numpy"), tmp_path / "host.onnx")
    model = pytest.importorskip("onnx").load(str(path))
    return xpnet.from_onnx(model, backend="cupy", device=OTHER)


def _from_sklearn(i: Inputs, tmp_path: Path) -> Any:
    neural_network = pytest.importorskip("sklearn.neural_network")
    model = neural_network.MLPClassifier((5,), max_iter=5, random_state=0)
    rng = np.random.default_rng(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # five iterations do not converge
        model.fit(rng.random((30, 4)), np.arange(30) % 3)
    return xpnet.from_sklearn(model, backend="cupy", device=OTHER)


def _from_torch(i: Inputs, tmp_path: Path) -> Any:
    torch = pytest.importorskip("torch")
    module = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Sigmoid(), torch.nn.Linear(5, 3))
    return xpnet.from_torch(module, activations=None, backend="cupy", device=OTHER)


def _load_mnist(i: Inputs, tmp_path: Path) -> Any:
    from realdata import MNIST_DIR, TEST_FILES

    if not all((MNIST_DIR / name).is_file() for name in TEST_FILES):
        pytest.skip(f"the MNIST test files are not in {MNIST_DIR}")
    from xpnet.datasets.mnist import load_mnist

    return load_mnist(
        split="test", data_dir=MNIST_DIR, download=False, backend="cupy", device=OTHER
    )


def _weights_round_trip(i: Inputs, tmp_path: Path, info: bool = False) -> Any:
    xpnet.save_weights(i.network, tmp_path / "w.npz")
    if info:
        network, _ = xpnet.weights.load_weights_and_info(
            tmp_path / "w.npz", backend="cupy", device=OTHER
        )
        return network
    return xpnet.load_weights(tmp_path / "w.npz", backend="cupy", device=OTHER)


def _plot(call: Callable[[], Any]) -> Any:
    pytest.importorskip("matplotlib")
    call()
    return None


def _batch_stats_loss(i: Inputs) -> Any:
    seen: list[Any] = []
    xpnet.train(i.network, i.x, i.labels, epochs=1, batch_size=6, on_batch=seen.append)
    return [stats.loss for stats in seen]


def _expected_batch_size(i: Inputs) -> int:
    from xpnet.batching import auto_batch_size, working_set_per_row

    free = cupy_double.FREE_BYTES[1] + cupy_double.POOL_FREE_BYTES[1]
    rows = i.pixels.shape[0]
    return auto_batch_size(rows, working_set_per_row(i.network), gpu=True, free_bytes=free)


CALLS: dict[str, Callable[[Inputs, Path], Any]] = {
    # activations, on float input and on integer input (converted on the device)
    "xpnet.activations.identity_function": lambda i, _: xpnet.identity_function(i.x),
    "xpnet.activations.identity_function int": lambda i, _: xpnet.identity_function(i.pixels),
    "xpnet.activations.step_function": lambda i, _: xpnet.step_function(i.x),
    "xpnet.activations.sigmoid": lambda i, _: xpnet.sigmoid(i.x),
    "xpnet.activations.sigmoid int": lambda i, _: xpnet.sigmoid(i.pixels),
    "xpnet.activations.logistic_formula": lambda i, _: logistic_formula(i.x, i.backend.xp),
    "xpnet.activations.relu": lambda i, _: xpnet.relu(i.x),
    "xpnet.activations.softmax": lambda i, _: xpnet.softmax(i.x),
    "xpnet.activations.tanh": lambda i, _: xpnet.tanh(i.x),
    # backends
    "xpnet.backends.Backend.asarray": lambda i, _: i.backend.asarray([[1, 2]], "float32"),
    "xpnet.backends.backend_of": lambda i, _: xpnet.backends.backend_of(i.x).asarray([1.0]),
    "xpnet.backends.to_host": lambda i, _: xpnet.to_host(i.x),
    "xpnet.backends.free_device_memory": lambda i, _: xpnet.backends.free_device_memory(i.backend),
    # batching
    "xpnet.batching.working_set_per_row": lambda i, _: xpnet.batching.working_set_per_row(
        i.network
    ),
    "xpnet.batching.batch_size_for": lambda i, _: xpnet.batching.batch_size_for(
        i.network, i.pixels
    ),
    "xpnet.batching.iter_batches": lambda i, _: list(
        xpnet.iter_batches(i.x, i.labels, batch_size=5)
    ),
    # the forward pass and inference
    "xpnet.forward_pass.forward": lambda i, _: xpnet.forward_pass.forward(
        i.network, i.x, labels=True
    ),
    "xpnet.inference.predict": lambda i, _: xpnet.predict(i.network, i.pixels, batch_size=5),
    "xpnet.inference.predict_labels": lambda i, _: xpnet.predict_labels(i.network, i.pixels),
    "xpnet.inference.count_correct": lambda i, _: xpnet.count_correct(
        i.network, i.pixels, i.labels, batch_size=5
    ),
    "xpnet.inference.count_correct_and_unlabelled": lambda i, _: (
        xpnet.inference.count_correct_and_unlabelled(i.network, i.pixels, i.labels, batch_size=5)
    ),
    "xpnet.forward_pass.labels_of": lambda i, _: xpnet.forward_pass.labels_of(
        i.backend.xp, i.x, i.x
    ),
    "xpnet.inference.accuracy": lambda i, _: xpnet.accuracy(i.network, i.pixels, i.labels),
    "xpnet.inference.predict_labels_streaming": lambda i, _: xpnet.predict_labels_streaming(
        i.network, [i.pixels[:5, ...], i.pixels[5:, ...]]
    ),
    # losses and gradients
    "xpnet.gradients.check_trainable": lambda i, _: xpnet.gradients.check_trainable(i.network),
    "xpnet.gradients.as_targets": lambda i, _: xpnet.gradients.as_targets(i.labels, 3, i.x.dtype),
    "xpnet.gradients.log_softmax": lambda i, _: xpnet.gradients.log_softmax(i.x),
    "xpnet.gradients.cross_entropy": lambda i, _: xpnet.gradients.cross_entropy(
        i.x[:, :3], i.one_hot
    ),
    "xpnet.gradients.forward_logits": lambda i, _: xpnet.gradients.forward_logits(i.network, i.x),
    "xpnet.gradients.backprop": lambda i, _: xpnet.gradients.backprop(
        i.network, i.x, i.one_hot, 0.01
    ),
    "xpnet.gradients.loss_and_gradients": lambda i, _: xpnet.loss_and_gradients(
        i.network, i.x, i.labels, weight_decay=0.01
    ),
    "xpnet.gradients.checked_training_input": lambda i, _: xpnet.gradients.checked_training_input(
        i.network, i.pixels, i.labels
    ),
    # the network
    "xpnet.network.Network.from_mapping": lambda i, _: xpnet.Network.from_mapping(
        i.network.to_mapping()
    ),
    "xpnet.network.Network.to_mapping": lambda i, _: i.network.to_mapping(),
    "xpnet.network.Network.scale_input": lambda i, _: i.network.scale_input(1 / 255),
    "xpnet.network.Network.cast_input": lambda i, _: i.network.cast_input(i.x),
    "xpnet.network.Network.cast_input int": lambda i, _: i.network.cast_input(i.pixels),
    "xpnet.network.Network.check_input": lambda i, _: i.network.check_input(i.pixels),
    "xpnet.network.Network.check_labels": lambda i, _: i.network.check_labels(i.labels, i.x),
    "xpnet.network.check_finite": lambda i, _: xpnet.network.check_finite(i.network),
    "xpnet.network.as_network": lambda i, _: xpnet.network.as_network(i.network.to_mapping()),
    "xpnet.network.init_network": lambda i, _: xpnet.init_network(
        (4, 3), backend="cupy", device=OTHER
    ),
    "xpnet.network.to_backend": lambda i, _: xpnet.to_backend(
        xpnet.to_backend(i.network, "numpy"), "cupy", OTHER
    ),
    "xpnet.network.to_backend from cuda:0": lambda i, _: xpnet.to_backend(
        xpnet.init_network((4, 3), backend="cupy", device="cuda:0"), "cupy", OTHER
    ),
    # files and formats
    "xpnet.onnx_export.onnx_model": lambda i, _: (
        pytest.importorskip("onnx") and xpnet.onnx_export.onnx_model(i.network) and None
    ),
    "xpnet.onnx_export.onnx_bytes": lambda i, _: xpnet.onnx_export.onnx_bytes(i.network) and None,
    "xpnet.onnx_export.export_onnx": lambda i, tmp: _export(i, tmp) and None,
    "xpnet.weights.save_weights": lambda i, tmp: xpnet.save_weights(i.network, tmp / "s.npz"),
    "xpnet.weights.load_weights": _weights_round_trip,
    "xpnet.weights.load_weights_and_info": lambda i, tmp: _weights_round_trip(i, tmp, info=True),
    "xpnet.importers.from_onnx": _from_onnx,
    "xpnet.importers.from_sklearn": _from_sklearn,
    "xpnet.importers.from_torch": _from_torch,
    "xpnet.datasets.mnist.load_mnist": _load_mnist,
    # optimizers
    "xpnet.optimizers.Optimizer.step": lambda i, _: xpnet.Adam().step([i.square], [i.half]),
    "xpnet.optimizers.SGD.update": lambda i, _: xpnet.SGD(lr=0.1).step([i.square], [i.square]),
    "xpnet.optimizers.Momentum.update": lambda i, _: xpnet.Momentum(lr=0.1).step(
        [i.square], [i.square]
    ),
    "xpnet.optimizers.Adam.update": lambda i, _: xpnet.Adam().step([i.square], [i.square]),
    "xpnet.optimizers.Optimizer.update": lambda i, _: xpnet.Adam().step([i.square], [i.square]),
    # plotting
    "xpnet.plotting.plot_activations": lambda i, _: _plot(
        lambda: xpnet.plotting.plot_activations(["sigmoid", "softmax"], num=9, backend=i.backend)
    ),
    "xpnet.plotting.plot_image_grid": lambda i, _: _plot(
        lambda: xpnet.plotting.plot_image_grid(
            _grid_images(i), i.labels, rows=2, cols=2, predicted=i.labels
        )
    ),
    "xpnet.plotting.misclassified_indices": lambda i, _: xpnet.plotting.misclassified_indices(
        i.labels, i.probabilities
    ),
    "xpnet.plotting.plot_misclassified": lambda i, _: _plot(
        lambda: xpnet.plotting.plot_misclassified(_grid_images(i), i.labels, i.probabilities)
    ),
    "xpnet.plotting.confusion_matrix": lambda i, _: xpnet.plotting.confusion_matrix(
        i.labels, xpnet.predict_labels(i.network, i.x), num_classes=3
    ),
    "xpnet.plotting.plot_confusion_matrix": lambda i, _: _plot(
        lambda: xpnet.plotting.plot_confusion_matrix(i.labels, i.labels, num_classes=3)
    ),
    "xpnet.plotting.plot_first_layer_weights": lambda i, _: _plot(
        lambda: xpnet.plotting.plot_first_layer_weights(
            xpnet.init_network((784, 4, 3), backend="cupy", device=OTHER), cols=2
        )
    ),
    # training
    "xpnet.training.train": lambda i, _: xpnet.train(
        i.network,
        i.x,
        i.labels,
        epochs=1,
        batch_size=5,
        optimizer="adam",
        x_val=i.x,
        t_val=i.labels,
        augment_shift=0,
    ),
    "xpnet.training.evaluate": lambda i, _: xpnet.evaluate(i.network, i.x, i.labels, batch_size=5),
    "xpnet.training.shift_images": lambda i, _: xpnet.shift_images(
        i.x, i.backend.asarray(np.ones((12, 2), dtype=np.int64)), max_shift=1, image_shape=(4, 4)
    ),
    "xpnet.training.BatchStats.loss": lambda i, _: _batch_stats_loss(i),
}
"""How each public function is called on inputs that live on cuda:1."""


@pytest.fixture
def on_double():
    with cupy_double.installed():
        yield


def test_every_public_function_is_proved_or_exempt():
    public = set(public_functions())
    proved = {name.split(" ")[0] for name in CALLS}
    assert not proved & set(EXEMPT), "a function is both proved and exempt"
    missing = sorted(public - proved - set(EXEMPT))
    assert not missing, f"public functions with no device-rule call in CALLS: {missing}"
    stale = sorted((proved | set(EXEMPT)) - public)
    assert not stale, f"CALLS or EXEMPT name functions that are gone: {stale}"
    assert set(CALLS) >= SAFE_WITHOUT_THE_RULE


@pytest.mark.parametrize("name", sorted(CALLS))
def test_public_function_keeps_the_device_rule(name, on_double, tmp_path):
    inputs = Inputs()
    assert cupy_double.current_device() == 0
    result = CALLS[name](inputs, tmp_path)
    assert cupy_double.current_device() == 0, "the call left another device current"
    assert cupy_double.devices_of(result) <= {1}, f"{name} gave arrays on another device"


@pytest.mark.parametrize("name", sorted(CALLS))
def test_without_the_rule_the_call_breaks(name, on_double, tmp_path, monkeypatch):
    # The control: with CuPy's entry taken out of the rule, every call that computes on
    # the device fails (the double refuses cuda:1's arrays on cuda:0) or leaves arrays on
    # cuda:0; those in SAFE_WITHOUT_THE_RULE still work. So each call above tests the rule.
    inputs = Inputs()
    monkeypatch.delitem(_device._ENTER, "cupy")
    try:
        result = CALLS[name](inputs, tmp_path)
    except cupy_double.DeviceMismatch:
        broke = True
    else:
        broke = cupy_double.devices_of(result) - {1} != set()
    assert broke is (name not in SAFE_WITHOUT_THE_RULE), name


def test_free_memory_and_batches_follow_the_inputs_device(on_double):
    from xpnet.backends import free_device_memory

    for index in (0, 1):
        backend = xpnet.get_backend("cupy", f"cuda:{index}")
        expected = cupy_double.FREE_BYTES[index] + cupy_double.POOL_FREE_BYTES[index]
        assert free_device_memory(backend) == expected
    inputs = Inputs()
    assert xpnet.batching.batch_size_for(inputs.network, inputs.pixels) == _expected_batch_size(
        inputs
    )


def test_the_double_refuses_what_cupy_refuses(on_double):
    import cupy

    x = cupy_double.on(1, [1.0, 2.0])
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        np.asarray(x)
    with pytest.raises(TypeError):
        np.exp(x)
    with pytest.raises(cupy_double.DeviceMismatch):
        cupy.exp(x)
    with pytest.raises(TypeError, match="Unsupported type"):
        x + np.ones(2)
    with cupy.cuda.Device(1):
        assert (x + 1.0)._device == 1 and cupy.exp(x)._device == 1
    moved = cupy.asarray(x)  # an explicit copy onto the current device
    assert moved._device == 0 and moved.get().tolist() == [1.0, 2.0]
    assert x[:1]._device == 1  # a view: no kernel, no device change
