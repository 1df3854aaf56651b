"""The backend registry: backend names and device names to array namespaces.

``get_backend("torch", "cuda:0")`` returns a :class:`Backend` that knows its namespace and
device, moves host (NumPy) arrays onto that device and waits for the device to finish.
``backend_status(name)`` says whether a backend can run here and, if not, why. Backends
are imported only when asked for, so ``import xpnet`` loads none of them.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import array_api_compat as compat
import numpy as np

from xpnet._array_api import backend_name, device_name
from xpnet._typing import Array, Device, Namespace
from xpnet.errors import BackendUnavailableError

BACKENDS = ("numpy", "cupy", "torch", "jax", "dask", "array_api_strict")
"""Every backend name xpnet knows, in the order tables and ``--backend`` list them."""

_PACKAGE = {
    "numpy": "numpy",
    "cupy": "cupy",
    "torch": "torch",
    "jax": "jax",
    "dask": "dask",
    "array_api_strict": "array_api_strict",
}
_INSTALL_HINT = {
    "numpy": "pip install numpy",
    "cupy": "pip install 'xpnet[cuda12]' (or 'xpnet[cuda13]') on a machine with an NVIDIA GPU",
    "torch": "pip install 'xpnet[torch]'",
    "jax": "pip install 'xpnet[jax]'",
    "dask": "pip install 'xpnet[dask]'",
    "array_api_strict": "pip install 'xpnet[strict]'",
}


@dataclass(frozen=True)
class Backend:
    """A backend's namespace bound to one device."""

    name: str
    xp: Namespace
    device: Device

    def asarray(self, host: Any, dtype: str | None = None) -> Array:
        """Copy host data (a NumPy array or nested sequence) onto this backend and device.

        ``dtype`` is a dtype name such as ``"float32"``; ``None`` keeps the host dtype.
        """
        host = np.asarray(host)
        if dtype is not None:
            host = host.astype(dtype, copy=False)
        target = getattr(self.xp, str(host.dtype))
        if self.name == "dask":
            import dask.array

            # One chunk per ~100 MiB of rows keeps dask graphs small and workers busy.
            return dask.array.from_array(host, chunks=_row_chunks(host))
        return self.xp.asarray(host, dtype=target, device=self.device)

    def synchronize(self) -> None:
        """Wait until work queued on this device is done (before reading a clock)."""
        _SYNCHRONIZE.get(self.name, _no_wait)(self.device)

    def __str__(self) -> str:
        return f"{self.name} on {device_name(self.device)}"


def _row_chunks(host: np.ndarray) -> tuple[int, ...]:
    if host.ndim == 0:
        return ()
    row_bytes = max(1, host.itemsize * int(np.prod(host.shape[1:])))
    rows = max(1, min(len(host), (100 << 20) // row_bytes))
    return (rows, *host.shape[1:])


def _no_wait(device: Device) -> None:
    """Backends that compute eagerly on the host have nothing to wait for."""


def _synchronize_cupy(device: Device) -> None:
    import cupy

    with device:
        cupy.cuda.get_current_stream().synchronize()


def _synchronize_torch(device: Device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


_SYNCHRONIZE: dict[str, Callable[[Device], None]] = {
    "cupy": _synchronize_cupy,
    "torch": _synchronize_torch,
}


def backend_status(name: str) -> tuple[bool, str]:
    """``(True, "")`` if backend ``name`` can run here, else ``(False, reason)``."""
    try:
        get_backend(name)
    except BackendUnavailableError as exc:
        return False, str(exc)
    return True, ""


def available_backends() -> list[str]:
    """The names of the backends that can run on this machine."""
    return [name for name in BACKENDS if backend_status(name)[0]]


def get_backend(name: str, device: str | None = None) -> Backend:
    """Return backend ``name`` on ``device`` (its default device when ``None``).

    Device names: ``cpu`` everywhere it exists; ``cuda:N`` (or ``N``) for CuPy, PyTorch
    and JAX; ``CPU_DEVICE``, ``device1``, ``device2`` for array-api-strict.
    Raises :class:`BackendUnavailableError` saying why and what to do.
    """
    if name not in _PACKAGE:
        raise BackendUnavailableError(
            f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}"
        )
    if importlib.util.find_spec(_PACKAGE[name]) is None:
        raise BackendUnavailableError(
            f"backend {name!r} needs the package {_PACKAGE[name]!r}, which is not installed: "
            f"{_INSTALL_HINT[name]}"
        )
    xp, resolved = _RESOLVERS[name](device)
    return Backend(name=name, xp=xp, device=resolved)


def _cpu_only(name: str, device: str | None) -> None:
    if device not in (None, "cpu"):
        raise BackendUnavailableError(f"backend {name!r} has only the device 'cpu', not {device!r}")


def _resolve_numpy(device: str | None) -> tuple[Namespace, Device]:
    _cpu_only("numpy", device)
    return importlib.import_module("array_api_compat.numpy"), "cpu"


def _resolve_dask(device: str | None) -> tuple[Namespace, Device]:
    _cpu_only("dask", device)
    return importlib.import_module("array_api_compat.dask.array"), "cpu"


def _cuda_index(device: str | None) -> int:
    text = "0" if device is None else device.removeprefix("cuda").removeprefix("gpu").lstrip(":")
    if not text.isdigit():
        raise BackendUnavailableError(f"device {device!r} is not a CUDA device; use 'cuda:0'")
    return int(text)


def _resolve_cupy(device: str | None) -> tuple[Namespace, Device]:
    index = _cuda_index(device)
    import cupy

    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError, or a missing driver library
        raise BackendUnavailableError(
            f"backend 'cupy' needs an NVIDIA GPU, but CUDA reports none here ({exc}); "
            "use --backend numpy on this machine"
        ) from None
    if index >= count:
        raise BackendUnavailableError(f"no CUDA device {index}: this machine has {count}")
    return importlib.import_module("array_api_compat.cupy"), cupy.cuda.Device(index)


def _resolve_torch(device: str | None) -> tuple[Namespace, Device]:
    import torch

    try:
        resolved = torch.device(device or "cpu")
    except RuntimeError as exc:
        raise BackendUnavailableError(f"torch does not know the device {device!r}: {exc}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"device {device!r} needs a CUDA build of torch and an NVIDIA GPU; "
                "none is available here: use --device cpu"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise BackendUnavailableError(f"no CUDA device {resolved.index} for torch")
    elif resolved.type != "cpu":
        raise BackendUnavailableError(f"xpnet supports torch devices cpu and cuda, not {device!r}")
    return importlib.import_module("array_api_compat.torch"), resolved


def _resolve_jax(device: str | None) -> tuple[Namespace, Device]:
    import jax

    platform, _, index = (device or "cpu").partition(":")
    platform = {"cuda": "gpu"}.get(platform, platform)
    try:
        devices = jax.devices(platform)
    except RuntimeError as exc:
        raise BackendUnavailableError(f"jax has no {platform!r} device here: {exc}") from None
    position = int(index or 0)
    if position >= len(devices):
        raise BackendUnavailableError(
            f"jax has {len(devices)} {platform} device(s), not {position + 1}"
        )
    return importlib.import_module("jax.numpy"), devices[position]


def _resolve_array_api_strict(device: str | None) -> tuple[Namespace, Device]:
    import array_api_strict

    name = {None: "CPU_DEVICE", "cpu": "CPU_DEVICE"}.get(device, device)
    known = {device_name(d): d for d in array_api_strict.__array_namespace_info__().devices()}
    if name not in known:
        raise BackendUnavailableError(
            f"array_api_strict has no device {device!r}; choose one of {', '.join(known)}"
        )
    return array_api_strict, known[name]


_RESOLVERS: dict[str, Callable[[str | None], tuple[Namespace, Device]]] = {
    "numpy": _resolve_numpy,
    "cupy": _resolve_cupy,
    "torch": _resolve_torch,
    "jax": _resolve_jax,
    "dask": _resolve_dask,
    "array_api_strict": _resolve_array_api_strict,
}


def backend_of(x: Array) -> Backend:
    """The :class:`Backend` that array ``x`` lives on."""
    xp = compat.array_namespace(x)
    return Backend(name=backend_name(xp), xp=xp, device=compat.device(x))


def to_host(x: Array) -> np.ndarray:
    """Copy array ``x`` from any backend to a NumPy array, explicitly (never implicitly)."""
    xp = compat.array_namespace(x)
    if compat.is_numpy_namespace(xp):
        return np.asarray(x)
    if compat.is_dask_namespace(xp):
        return to_host(x.compute())
    if compat.is_cupy_namespace(xp):
        return x.get()
    if compat.is_torch_namespace(xp):
        return x.detach().to("cpu").numpy()
    if compat.is_jax_namespace(xp):
        import jax

        return np.asarray(jax.device_get(x))
    if compat.is_array_api_strict_namespace(xp):
        return np.from_dlpack(compat.to_device(x, xp.Device("CPU_DEVICE")))
    raise TypeError(f"xpnet cannot copy {backend_name(xp)} arrays to the host")
