"""One record per backend: everything xpnet knows about each array library, in one place.

A record (after einops' one class per framework) holds the package and how to install it,
the test that recognises its namespace, its device names, how to enter a device (the
device rule), wait for it, ask its free memory, copy an array to the host, whether a device
is a GPU, and its native kernels. :data:`RECORDS` lists them; adding a backend is one
record here plus one nox session (docs/design.md). A record imports its library only
inside its methods, so importing this module loads no backend.

**Device names**, the same for CuPy, PyTorch and JAX (:func:`parse_device`): ``cpu``;
``cuda`` (the first GPU, as ``cuda:0``), ``cuda:N``, and a bare ``N``; ``gpu`` and
``gpu:N`` as JAX spells them. Anything else (``cuda:``, ``cuda:-1``, ``cuda0``, ``-1``) is
refused the same way on all three. array-api-strict keeps its own names.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import array_api_compat as compat
import numpy as np

from xpnet._typing import Array, Device, Namespace
from xpnet.errors import BackendUnavailableError

_DEVICE_NAME = re.compile(r"(?:(?P<kind>cpu|cuda|gpu)(?::(?P<index>[0-9]+))?|(?P<bare>[0-9]+))")


def parse_device(text: str | None) -> tuple[str, int | None]:
    """A device name (``None``: the CPU) as ``("cpu", None)``, ``("cpu", N)`` or ``("cuda", N)``."""
    if text is None:
        return "cpu", None
    match = _DEVICE_NAME.fullmatch(text)
    if match is None:
        raise BackendUnavailableError(
            f"device {text!r} is not a device name; use 'cpu', 'cuda', 'cuda:N' or 'N'"
        )
    if match["bare"] is not None:
        return "cuda", int(match["bare"])
    index = None if match["index"] is None else int(match["index"])
    if match["kind"] == "cpu":
        return "cpu", index
    return "cuda", 0 if index is None else index


class BackendRecord:
    """A backend; by default CPU-only, eager, without native kernels. A record overrides what
    differs (docs/design.md says what each part is); an answer ``None`` is none or unknown."""

    name: str
    package: str
    install_hint: str
    is_namespace: Callable[[Namespace], bool]
    namespace_module = x64_hint = ""
    enter: Callable[[Device], AbstractContextManager[Any]] | None = None
    test_devices: tuple[str | None, ...] = (None,)

    def resolve(self, device: str | None) -> tuple[Namespace, Device]:
        if parse_device(device) not in (("cpu", None), ("cpu", 0)):
            raise BackendUnavailableError(
                f"backend {self.name!r} has only the device 'cpu', not {device!r}"
            )
        return importlib.import_module(self.namespace_module), "cpu"

    def device_name(self, device: Device) -> str | None:
        return None

    def synchronize(self, device: Device) -> None:
        return None

    def is_gpu(self, device: Device) -> bool:
        return False

    def free_memory(self, device: Device) -> int | None:
        return None

    def to_host(self, x: Array) -> np.ndarray:
        return np.asarray(x)

    def native_sigmoid(self) -> Callable[[Array], Array] | None:
        return None


def _no_cuda_device(name: str, index: int, count: int, why: str = "") -> BackendUnavailableError:
    return BackendUnavailableError(
        f"backend {name!r} has no CUDA device {index}: it sees {count} GPU(s){why}"
    )


def first_line(exc: BaseException) -> str:
    """``'ErrorType: first line of the message'``, for one-line errors."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else 'no message'}"


NUMPY_SPEAKS_STANDARD = getattr(np, "__array_api_version__", "") >= "2023.12"
"""Whether NumPy's own namespace implements the array API standard (NumPy 2.1 on): then
xpnet computes NumPy arrays in ``numpy`` itself, not in array-api-compat's wrapper, whose
import clones NumPy's namespace and so loads every submodule NumPy loads lazily
(``numpy.f2py``, ``numpy.testing``...): as much time as importing NumPy, in every process."""


class NumPy(BackendRecord):
    name = package = "numpy"
    install_hint = "pip install numpy"
    namespace_module = "numpy" if NUMPY_SPEAKS_STANDARD else "array_api_compat.numpy"
    is_namespace = staticmethod(compat.is_numpy_namespace)


class CuPy(BackendRecord):
    name = package = "cupy"
    install_hint = (
        "pip install 'xpnet[cuda13]' (or 'xpnet[cuda12]' for a CUDA 12 driver) on a machine "
        "with an NVIDIA GPU; it brings CuPy with the CUDA libraries it loads (CuPy's ctk extra)"
    )
    is_namespace = staticmethod(compat.is_cupy_namespace)
    test_devices = ("cuda:0",)
    enter = staticmethod(lambda device: device)  # a cupy.cuda.Device makes itself current

    def resolve(self, device: str | None) -> tuple[Namespace, Device]:
        kind, index = parse_device("cuda" if device is None else device)
        if kind != "cuda" or index is None:
            raise BackendUnavailableError(
                f"backend 'cupy' runs only on CUDA devices, not {device!r}"
            )
        import cupy

        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDARuntimeError, or a missing driver library
            raise BackendUnavailableError(
                f"backend 'cupy' needs an NVIDIA GPU, but CUDA reports none here ({exc}); "
                "use --backend numpy on this machine"
            ) from None
        if index >= count:
            raise _no_cuda_device("cupy", index, count)
        missing = self._libraries_missing()
        if missing:
            raise BackendUnavailableError(f"backend 'cupy' sees {count} GPU(s) but {missing}")
        return importlib.import_module("array_api_compat.cupy"), cupy.cuda.Device(index)

    def _libraries_missing(self) -> str:
        """Why CuPy cannot compile kernels (NVRTC) or multiply matrices (cuBLAS), or "": CuPy
        loads both at first use, so one that counts the GPUs may yet fail; this loads them now."""
        problems = []
        try:
            from cupy_backends.cuda.libs import nvrtc

            nvrtc.getVersion()
        except Exception as exc:  # DynamicLibNotFoundError, ImportError, a CUDA error
            problems.append(f"NVRTC, CUDA's kernel compiler, cannot load ({first_line(exc)})")
        try:
            from cupy_backends.cuda.libs import cublas  # noqa: F401  (loading it is the check)
        except Exception as exc:
            problems.append(f"cuBLAS, CUDA's matrix library, cannot load ({first_line(exc)})")
        return "; ".join(problems) + f": {self.install_hint}" if problems else ""

    def device_name(self, device: Device) -> str | None:
        return f"cuda:{device.id}" if type(device).__module__.startswith("cupy") else None

    def synchronize(self, device: Device) -> None:
        import cupy

        with device:
            cupy.cuda.get_current_stream().synchronize()

    def is_gpu(self, device: Device) -> bool:
        return True

    def free_memory(self, device: Device) -> int | None:
        import cupy

        with device:
            free, _ = cupy.cuda.runtime.memGetInfo()
            return int(free) + int(cupy.get_default_memory_pool().free_bytes())

    def to_host(self, x: Array) -> np.ndarray:
        return x.get()

    def native_sigmoid(self) -> Callable[[Array], Array] | None:
        try:
            from cupyx.scipy.special import expit
        except ImportError:  # a CuPy build without its SciPy layer
            return None

        def dtype_kept(x: Array) -> Array:  # expit has no float16 loop: float32, rounded once
            if x.dtype == np.float16:
                return expit(x.astype(np.float32)).astype(np.float16)
            result = expit(x)
            return result if result.dtype == x.dtype else result.astype(x.dtype)

        return dtype_kept


class Torch(BackendRecord):
    name = package = "torch"
    install_hint = "pip install 'xpnet[torch]'"
    is_namespace = staticmethod(compat.is_torch_namespace)
    test_devices = ("cpu", "cuda:0")

    def resolve(self, device: str | None) -> tuple[Namespace, Device]:
        import torch

        kind, index = parse_device(device)
        if kind == "cpu":
            if index not in (None, 0):
                raise BackendUnavailableError(f"torch has one CPU device, 'cpu', not {device!r}")
            resolved = torch.device("cpu")
        else:
            assert index is not None  # parse_device numbers every CUDA device
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if index >= count:
                why = " (a CPU-only torch build, or no NVIDIA GPU): use --device cpu"
                raise _no_cuda_device("torch", index, count, "" if count else why)
            resolved = torch.device("cuda", index)
        return importlib.import_module("array_api_compat.torch"), resolved

    def synchronize(self, device: Device) -> None:
        import torch

        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def is_gpu(self, device: Device) -> bool:
        return getattr(device, "type", "cpu") == "cuda"

    def free_memory(self, device: Device) -> int | None:
        import torch

        return int(torch.cuda.mem_get_info(device)[0]) if self.is_gpu(device) else None

    def to_host(self, x: Array) -> np.ndarray:
        return x.detach().to("cpu").numpy()

    def native_sigmoid(self) -> Callable[[Array], Array] | None:
        import torch

        return torch.sigmoid


class Jax(BackendRecord):
    name = package = "jax"
    install_hint = "pip install 'xpnet[jax]'"
    x64_hint = "set JAX_ENABLE_X64=1 in the environment before starting Python (JAX's x64 mode)"
    is_namespace = staticmethod(compat.is_jax_namespace)
    test_devices = (None, "cuda:0")

    def resolve(self, device: str | None) -> tuple[Namespace, Device]:
        import jax

        kind, index = parse_device(device)
        try:
            devices = jax.devices("gpu" if kind == "cuda" else "cpu")
        except RuntimeError:
            devices = []
        position = index or 0
        if position >= len(devices):
            if kind == "cuda":
                raise _no_cuda_device("jax", position, len(devices))
            raise BackendUnavailableError(
                f"jax has {len(devices)} cpu device(s), not {position + 1}"
            )
        return importlib.import_module("jax.numpy"), devices[position]

    def device_name(self, device: Device) -> str | None:
        if type(device).__module__.startswith("jaxlib") and ":" not in str(device):
            return f"{device.platform}:{device.id}"  # jax 0.5 and older: 'TFRT_CPU_0'
        return None

    def is_gpu(self, device: Device) -> bool:
        return getattr(device, "platform", "cpu") in ("gpu", "cuda", "rocm")

    def free_memory(self, device: Device) -> int | None:
        stats = (device.memory_stats() or {}) if self.is_gpu(device) else {}
        if "bytes_limit" not in stats:
            return None
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))

    def to_host(self, x: Array) -> np.ndarray:
        import jax

        return np.asarray(jax.device_get(x))

    def native_sigmoid(self) -> Callable[[Array], Array] | None:
        import jax

        return jax.nn.sigmoid


class Dask(BackendRecord):
    name = package = "dask"
    install_hint = "pip install 'xpnet[dask]'"
    namespace_module = "array_api_compat.dask.array"
    is_namespace = staticmethod(compat.is_dask_namespace)

    def to_host(self, x: Array) -> np.ndarray:
        from xpnet.backends import to_host  # the chunks' own backend copies them

        return to_host(x.compute())


class ArrayApiStrict(BackendRecord):
    name = package = "array_api_strict"
    install_hint = "pip install 'xpnet[strict]'"
    is_namespace = staticmethod(compat.is_array_api_strict_namespace)
    test_devices = (None, "device1")  # device1 catches arrays made on the default device

    def resolve(self, device: str | None) -> tuple[Namespace, Device]:
        import array_api_strict

        from xpnet._array_api import device_name

        name = {None: "CPU_DEVICE", "cpu": "CPU_DEVICE"}.get(device, device)
        known = {device_name(d): d for d in array_api_strict.__array_namespace_info__().devices()}
        if name not in known:
            raise BackendUnavailableError(
                f"array_api_strict has no device {device!r}; choose one of {', '.join(known)}"
            )
        return array_api_strict, known[name]

    def device_name(self, device: Device) -> str | None:
        inner = getattr(device, "_device", None)  # array_api_strict.Device keeps its name here
        return inner if isinstance(inner, str) else None

    def to_host(self, x: Array) -> np.ndarray:
        xp = compat.array_namespace(x)
        return np.from_dlpack(compat.to_device(x, xp.Device("CPU_DEVICE")))


def record_of(name: str) -> BackendRecord:
    """Backend ``name``'s record; an array library xpnet does not know gets the defaults."""
    return RECORDS.get(name, _UNKNOWN)


_UNKNOWN = BackendRecord()

RECORDS: dict[str, BackendRecord] = {
    record.name: record for record in (NumPy(), CuPy(), Torch(), Jax(), Dask(), ArrayApiStrict())
}
"""Every backend xpnet knows, by name, in the order tables and ``--backend`` list them."""


@functools.cache
def native_sigmoid(xp: Namespace) -> Callable[[Array], Array] | None:
    """``xp``'s own one-pass logistic function, or ``None`` (NumPy, the standard): the generic
    sigmoid in :mod:`xpnet.activations`, the tests' reference, takes eight passes."""
    from xpnet._array_api import backend_name

    return record_of(backend_name(xp)).native_sigmoid()
