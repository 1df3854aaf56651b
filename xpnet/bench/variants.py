"""The contenders: xpnet on each backend, the textbook's loops, native PyTorch and jax.jit.

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
from xpnet import _numpy_fast
from xpnet._array_api import device_name
from xpnet._typing import Array
from xpnet.backends import Backend, get_backend
from xpnet.errors import BackendUnavailableError
from xpnet.network import Network

PEERS = ("book batch-100", "torch native", "jax.jit")
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
        """The labels on ``backend`` as int32: every backend has it, where int64 would be
        truncated, with a warning, by JAX without x64."""
        return backend.asarray(self.labels, dtype="int32")

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.network.to_mapping().items()}


def book_variants(work: Workload) -> list[Variant]:
    """The textbook's own code: one image at a time, and batches of 100."""
    p, x, t = work.params, work.images, work.labels

    def book_predict(a: np.ndarray) -> np.ndarray:
        a = 1 / (1 + np.exp(-(a @ p["W1"] + p["b1"])))
        a = 1 / (1 + np.exp(-(a @ p["W2"] + p["b2"])))
        y = a @ p["W3"] + p["b3"]
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
        if backend.name == "numpy" and _numpy_fast.sigmoid_kernel(work.images.dtype) == "numba":
            variants.append(_without_numba(backend, work))
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


def _resident(name: str, backend: Backend, work: Workload, *, raw: bool) -> Variant:
    network = work.network_on(backend)
    if raw:
        network = network.scale_input(1 / 255)
    x = backend.asarray(work.pixels if raw else work.images)
    t = work.labels_on(backend)

    def run() -> int:
        correct = xpnet.count_correct(network, x, t, batch_size=max(1, len(work.labels)))
        backend.synchronize()
        return correct

    return Variant(name, run, "uint8 pixels, 1/255 folded into W1" if raw else "")


def _without_numba(backend: Backend, work: Workload) -> Variant:
    """xpnet's NumPy path with NumPy's fastest sigmoid kernel instead of numba's: what the
    ``jit`` extra gains, in the same run."""
    network = work.network_on(backend)
    kernel = _numpy_fast.sigmoid_kernel(work.images.dtype, compiled=False)

    def run() -> int:
        labels = _numpy_fast.forward(network, work.images, labels=True, sigmoid=kernel)
        return int(np.count_nonzero(labels == work.labels))

    return Variant(f"xpnet {backend}, no numba", run, f"NumPy's own sigmoid ({kernel})")


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


def torch_variant(work: Workload, device: str = "cpu") -> Variant | None:
    """Hand-written PyTorch: ``addmm`` and ``sigmoid`` under ``inference_mode``."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    if device != "cpu" and not torch.cuda.is_available():
        return None
    p = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in work.params.items()}
    x = torch.from_numpy(work.images).to(device)
    t = torch.from_numpy(work.labels).to(device)

    def run() -> int:
        with torch.inference_mode():
            a = torch.sigmoid(torch.addmm(p["b1"], x, p["W1"]))
            a = torch.sigmoid(torch.addmm(p["b2"], a, p["W2"]))
            correct = int((torch.addmm(p["b3"], a, p["W3"]).argmax(dim=1) == t).sum())
        return correct

    threads = "" if device != "cpu" else f", {torch.get_num_threads()} threads"
    return Variant(
        f"torch native{'' if device == 'cpu' else ' ' + device}",
        run,
        f"addmm + sigmoid, inference_mode{threads}",
    )


def jax_variant(work: Workload) -> Variant | None:
    """``jax.jit`` of the same network on the CPU, the input already a JAX array there.

    The CPU, also where JAX has a GPU: it is the CPU peer of xpnet's NumPy path.
    """
    if importlib.util.find_spec("jax") is None:
        return None
    import jax
    import jax.numpy as jnp

    cpu = jax.devices("cpu")[0]
    p = {k: jax.device_put(v, cpu) for k, v in work.params.items()}
    x, t = jax.device_put(work.images, cpu), jax.device_put(work.labels, cpu)

    @jax.jit
    def correct_count(x: jax.Array, t: jax.Array) -> jax.Array:
        a = jax.nn.sigmoid(x @ p["W1"] + p["b1"])
        a = jax.nn.sigmoid(a @ p["W2"] + p["b2"])
        return jnp.count_nonzero(jnp.argmax(a @ p["W3"] + p["b3"], axis=1) == t)

    return Variant("jax.jit", lambda: int(correct_count(x, t)), "compiled once, warm")


def end_to_end_variants(work: Workload, data_dir: str) -> list[Variant]:
    """From files to the count: warm (xpnet's parsed cache) and cold (the gzip IDX files)."""
    from xpnet.datasets import load_mnist, read_idx

    network = work.network.scale_input(1 / 255)
    folder = Path(data_dir)

    def warm() -> int:
        x, t = load_mnist(normalize=False, split="test", data_dir=folder, download=False)
        return xpnet.count_correct(network, x, t, batch_size=len(t))

    def cold() -> int:
        x = read_idx(folder / "t10k-images-idx3-ubyte.gz").reshape(-1, 784)
        t = read_idx(folder / "t10k-labels-idx1-ubyte.gz")
        return xpnet.count_correct(network, x, t, batch_size=len(t))

    return [
        Variant("end to end, warm files", warm, "load_mnist from its parsed .npy cache + infer"),
        Variant("end to end, cold files", cold, "gzip IDX files parsed + infer"),
    ]
