"""The contenders: xpnet on each backend, the textbook's loops, and PyTorch, jax.jit and
ONNX Runtime written by hand from the loaded network.

Each :class:`Variant` classifies the same images with the same weights and returns how
many it got right, so the benchmark can check that speed never costs accuracy. Device
work is synchronized before a variant returns, so the clock reads finished work.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import xpnet
from xpnet._array_api import device_name
from xpnet._typing import Array
from xpnet.backends import Backend, get_backend
from xpnet.errors import BackendUnavailableError
from xpnet.forward_pass import forward
from xpnet.network import Network

PEERS = ("book batch-100", "onnxruntime", "torch native", "jax.jit")
"""The variants every other one is compared with, in the table's column order."""


@dataclass(frozen=True)
class Variant:
    """One way to classify the test images: ``run()`` returns the number correct."""

    name: str
    run: Callable[[], int]
    note: str = ""


@dataclass(frozen=True)
class Workload:
    """The images, labels and weights every variant works on, on the host."""

    network: Network
    images: np.ndarray  # float32 in [0, 1], (N, 784)
    pixels: np.ndarray  # the same images as raw uint8
    labels: np.ndarray  # int64 class indices

    def network_on(self, backend: Backend) -> Network:
        """The network moved to ``backend``'s namespace and device."""
        return xpnet.to_backend(self.network, backend.name, device_name(backend.device))

    def labels_on(self, backend: Backend) -> Array:
        """The labels on ``backend`` in its default integer dtype: int64 (as the peers hold
        them) where it is the default, int32 on JAX without x64, which would truncate int64
        with a warning."""
        integers = backend.xp.__array_namespace_info__().default_dtypes()["integral"]
        return backend.asarray(self.labels, dtype=f"int{backend.xp.iinfo(integers).bits}")


def book_variants(work: Workload) -> list[Variant]:
    """The textbook's own code: one image at a time, and batches of 100 (for the textbook's
    three layers, sigmoid, sigmoid, softmax; none for another network)."""
    if work.network.activations != ("sigmoid", "sigmoid", "softmax"):
        return []
    (w1, b1, _), (w2, b2, _), (w3, b3, _) = _layers(work)
    x, t = work.images, work.labels

    def book_predict(a: np.ndarray) -> np.ndarray:
        a = 1 / (1 + np.exp(-(a @ w1 + b1)))
        a = 1 / (1 + np.exp(-(a @ w2 + b2)))
        y = a @ w3 + b3
        e = np.exp(y - np.max(y, axis=-1, keepdims=True))
        return e / np.sum(e, axis=-1, keepdims=True)

    def one_by_one() -> int:
        return sum(int(np.argmax(book_predict(x[i])) == t[i]) for i in range(len(x)))

    def batch_100() -> int:
        return sum(
            int(np.sum(np.argmax(book_predict(x[i : i + 100]), axis=1) == t[i : i + 100]))
            for i in range(0, len(x), 100)
        )

    return [Variant("book per-sample", one_by_one), Variant("book batch-100", batch_100)]


def resolve_backends(chosen: Mapping[str, str | None]) -> tuple[list[Backend], dict[str, str]]:
    """The chosen backends (name to device) that run here, and why each other one does not."""
    runnable, reasons = [], {}
    for name, device in chosen.items():
        try:
            runnable.append(get_backend(name, device))
        except BackendUnavailableError as exc:
            reasons[name] = str(exc)
    return runnable, reasons


def xpnet_variants(work: Workload, backends: Sequence[Backend]) -> list[Variant]:
    """xpnet's ``count_correct`` on each backend, data already on its device."""
    variants = []
    for backend in backends:
        variants.append(_resident(f"xpnet {backend}", backend, work, raw=False))
        if backend.name in ("numpy", "cupy"):
            variants.append(_resident(f"xpnet {backend}, uint8", backend, work, raw=True))
        if backend.name == "numpy":
            variants.append(_generic(backend, work))
        if backend.name == "jax":
            variants.append(_jitted(backend, work))
    return variants


def _jitted(backend: Backend, work: Workload) -> Variant:
    """xpnet's ``predict_labels`` compiled by ``jax.jit``: what a JAX user would write."""
    import jax

    network = work.network_on(backend)
    x, t = backend.asarray(work.images), work.labels_on(backend)
    labels = jax.jit(lambda rows: xpnet.predict_labels(network, rows))

    def run() -> int:
        return int(backend.xp.count_nonzero(labels(x) == t))

    return Variant(f"xpnet {backend}, jax.jit", run, "jax.jit(xpnet.predict_labels)")


def numpy_engine(backend: Backend) -> str | None:
    """The engine the xpnet variants run NumPy input on: ONNX Runtime where installed (the
    variants time an engine, not ``auto``'s choice, which would give the first calls of a
    process to the array-API code), else the setting in force."""
    from xpnet import _onnxruntime_engine

    return "onnxruntime" if backend.name == "numpy" and _onnxruntime_engine.available() else None


def _resident(name: str, backend: Backend, work: Workload, *, raw: bool) -> Variant:
    network = work.network_on(backend)
    engine = numpy_engine(backend)
    if raw:
        network = network.scale_input(1 / 255)
    x = backend.asarray(work.pixels if raw else work.images)
    t = work.labels_on(backend)

    def run() -> int:
        correct = xpnet.count_correct(
            network, x, t, batch_size=max(1, len(work.labels)), engine=engine
        )
        backend.synchronize()
        return correct

    return Variant(name, run, "uint8 pixels, 1/255 folded into W1" if raw else "")


def _generic(backend: Backend, work: Workload) -> Variant:
    """xpnet's generic array-API forward pass on NumPy, whole: the path without the ``fast``
    extra, in the same run."""
    network = work.network_on(backend)

    def run() -> int:
        labels = forward(network, work.images, labels=True)
        return int(np.count_nonzero(labels == work.labels))

    return Variant(f"xpnet {backend}, generic", run, "without onnxruntime")


def transfer_variant(work: Workload, backend: Backend) -> Variant:
    """Host uint8 pixels to predicted labels on a GPU: the transfer counted in."""
    network = work.network_on(backend).scale_input(1 / 255)
    t = work.labels_on(backend)

    def run() -> int:
        correct = xpnet.count_correct(
            network, backend.asarray(work.pixels), t, batch_size=len(work.labels)
        )
        backend.synchronize()
        return correct

    return Variant(f"xpnet {backend}, host uint8 in", run, "includes the host-to-device copy")


def _layers(work: Workload) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """The loaded network's layers on the host: weight, bias, activation."""
    return [
        (np.ascontiguousarray(layer.weight), np.ascontiguousarray(layer.bias), layer.activation)
        for layer in work.network.layers
    ]


def torch_variant(work: Workload, device: str = "cpu") -> Variant | None:
    """Hand-written PyTorch: ``addmm`` and each activation under ``inference_mode``."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    if device != "cpu" and not torch.cuda.is_available():
        return None
    functions = {
        "sigmoid": torch.sigmoid,
        "relu": torch.relu,
        "tanh": torch.tanh,
        "identity": lambda z: z,
        "step": lambda z: (z > 0).to(z.dtype),
        "softmax": lambda z: torch.softmax(z, dim=1),
    }
    layers = [
        (torch.from_numpy(w).to(device), torch.from_numpy(b).to(device), functions[a])
        for w, b, a in _layers(work)
    ]
    *hidden, (w_last, b_last, _) = layers
    last = work.network.activations[-1]
    x = torch.from_numpy(work.images).to(device)
    t = torch.from_numpy(work.labels).to(device)

    def run() -> int:
        with torch.inference_mode():
            a = x
            for w, b, f in hidden:
                a = f(torch.addmm(b, a, w))
            z = torch.addmm(b_last, a, w_last)
            z = z if last in ("softmax", "identity") else functions[last](z)
            correct = int((z.argmax(dim=1) == t).sum())
        return correct

    threads = "" if device != "cpu" else f", {torch.get_num_threads()} threads"
    return Variant(
        f"torch native{'' if device == 'cpu' else ' ' + device}",
        run,
        f"addmm + activations, inference_mode{threads}",
    )


def jax_variant(work: Workload) -> Variant | None:
    """``jax.jit`` of the same network on the CPU, the input already a JAX array there.

    The CPU, also where JAX has a GPU: it is the CPU peer of xpnet's NumPy path.
    """
    if importlib.util.find_spec("jax") is None:
        return None
    import jax
    import jax.numpy as jnp

    functions = {
        "sigmoid": jax.nn.sigmoid,
        "relu": jax.nn.relu,
        "tanh": jnp.tanh,
        "identity": lambda z: z,
        "step": lambda z: (z > 0).astype(z.dtype),
        "softmax": lambda z: jax.nn.softmax(z, axis=1),
    }
    cpu = jax.devices("cpu")[0]
    layers = [(jax.device_put(w, cpu), jax.device_put(b, cpu), a) for w, b, a in _layers(work)]
    x, t = jax.device_put(work.images, cpu), jax.device_put(work.labels, cpu)

    @jax.jit
    def correct_count(x: jax.Array, t: jax.Array) -> jax.Array:
        *hidden, (w_last, b_last, last) = layers
        for w, b, a in hidden:
            x = functions[a](x @ w + b)
        z = x @ w_last + b_last
        z = z if last in ("softmax", "identity") else functions[last](z)
        return jnp.count_nonzero(jnp.argmax(z, axis=1) == t)

    return Variant("jax.jit", lambda: int(correct_count(x, t)), "compiled once, warm")


ONNXRUNTIME_THREADS = 0
"""The hand-built ONNX Runtime peer's intra-op threads: its best setting here."""

ONNXRUNTIME_SPINNING = "1"
"""Whether its idle threads spin ("1") or sleep ("0"): its best setting here."""


def onnxruntime_variant(work: Workload) -> Variant | None:
    """ONNX Runtime running a graph built here by hand with ``onnx.helper`` (``MatMul``,
    ``Add``, the activations, ``ArgMax``), not by xpnet's exporter."""
    if any(importlib.util.find_spec(name) is None for name in ("onnx", "onnxruntime")):
        return None
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    operators = {"sigmoid": "Sigmoid", "relu": "Relu", "tanh": "Tanh", "identity": "Identity"}
    activations = work.network.activations
    if any(a not in operators for a in activations[:-1]) or activations[-1] not in (
        "softmax",
        "identity",
    ):
        return None  # a peer for networks whose argmax needs no output activation
    nodes, weights, a = [], [], "x"
    for number, (w, b, activation) in enumerate(_layers(work)):
        weights += [
            numpy_helper.from_array(w, f"w{number}"),
            numpy_helper.from_array(b, f"b{number}"),
        ]
        nodes += [
            helper.make_node("MatMul", [a, f"w{number}"], [f"m{number}"]),
            helper.make_node("Add", [f"m{number}", f"b{number}"], [f"z{number}"]),
        ]
        a = f"z{number}"
        if number < len(activations) - 1:
            nodes.append(helper.make_node(operators[activation], [a], [f"a{number}"]))
            a = f"a{number}"
    nodes.append(helper.make_node("ArgMax", [a], ["labels"], axis=1, keepdims=0))
    elem = helper.np_dtype_to_tensor_dtype(work.images.dtype)
    graph = helper.make_graph(
        nodes,
        "peer",
        [helper.make_tensor_value_info("x", elem, ["rows", work.network.sizes[0]])],
        [helper.make_tensor_value_info("labels", TensorProto.INT64, ["rows"])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = ONNXRUNTIME_THREADS
    options.add_session_config_entry("session.intra_op.allow_spinning", ONNXRUNTIME_SPINNING)
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    x, t = work.images, work.labels

    def run() -> int:
        return int(np.count_nonzero(session.run(None, {"x": x})[0] == t))

    spinning = "spinning" if ONNXRUNTIME_SPINNING == "1" else "no spinning"
    return Variant(
        "onnxruntime",
        run,
        f"hand-built graph, intra-op threads {ONNXRUNTIME_THREADS or 'per core'}, {spinning}",
    )


def end_to_end_variants(work: Workload, data_dir: str) -> list[Variant]:
    """From files to the count: warm (xpnet's parsed cache) and cold (the gzip IDX files)."""
    from xpnet.datasets import load_mnist, read_idx

    network = work.network.scale_input(1 / 255)
    folder = Path(data_dir)
    engine = numpy_engine(get_backend("numpy"))

    def warm() -> int:
        x, t = load_mnist(normalize=False, split="test", data_dir=folder, download=False)
        return xpnet.count_correct(network, x, t, batch_size=len(t), engine=engine)

    def cold() -> int:
        x = read_idx(folder / "t10k-images-idx3-ubyte.gz").reshape(-1, 784)
        t = read_idx(folder / "t10k-labels-idx1-ubyte.gz")
        return xpnet.count_correct(network, x, t, batch_size=len(t), engine=engine)

    return [
        Variant("end to end, warm files", warm, "load_mnist from its parsed cache + infer"),
        Variant("end to end, cold files", cold, "gzip IDX files parsed + infer"),
    ]
