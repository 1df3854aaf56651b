"""The backend registry: ``get_backend("torch", "cuda:0")`` is a :class:`Backend` that knows
its namespace and device, moves host (NumPy) arrays there and waits for the device to finish;
``backend_status(name)`` says whether a backend can run here and, if not, why. Backends are
imported only when asked for, so ``import xpnet`` loads none of them.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import array_api_compat as compat
import numpy as np

from xpnet._array_api import array_namespace, backend_name, device_name
from xpnet._backend_records import RECORDS, BackendRecord, first_line, record_of
from xpnet._device import on_backend
from xpnet._typing import Array, Device, Namespace
from xpnet.errors import BackendUnavailableError

BACKENDS = tuple(RECORDS)
"""Every backend name xpnet knows, in the order tables and ``--backend`` list them."""


@dataclass(frozen=True)
class Backend:
    """A backend's namespace bound to one device.

    Made by :func:`get_backend`; :attr:`xpnet.Network.backend` says where a network lives.

    Parameters
    ----------
    name : str
        The backend's name, one of :data:`BACKENDS`.
    xp : module
        Its array-API namespace (``numpy``, ``array_api_compat.torch``, ``array_api_strict``...).
    device : object
        The device, as the namespace's own ``device=`` arguments take it.
    """

    name: str
    xp: Namespace
    device: Device

    def asarray(self, host: Any, dtype: str | None = None) -> Array:
        """Copy host data (a NumPy array or nested sequence) onto this backend and device.

        ``dtype`` is a dtype name such as ``"float32"``; ``None`` keeps the host dtype. A dtype
        the backend lacks (float128 on PyTorch, strings) or would narrow as configured (float64
        on JAX without ``JAX_ENABLE_X64=1``) raises :class:`BackendUnavailableError` in one
        line: the numbers never change silently. Runs under the device rule.
        """
        host = np.asarray(host)
        if dtype is not None:
            host = host.astype(dtype, copy=False)
        target = getattr(self.xp, str(host.dtype), None)
        if target is None:
            raise BackendUnavailableError(
                f"backend {self.name!r} has no dtype {host.dtype}; convert the data to one it "
                "has first (float32 or float64)"
            )
        if host.dtype == np.float64:  # refuse what the backend as configured would narrow
            try:
                held = self.xp.__array_namespace_info__().dtypes(kind="real floating")
            except (AttributeError, TypeError):  # a namespace that cannot say: trust its dtypes
                held = ("float64",)
            if "float64" not in held:
                fix = record_of(self.name).x64_hint or f"use one of {', '.join(held)}"
                raise BackendUnavailableError(
                    f"backend {self.name!r} as configured holds no float64 (it would narrow it "
                    f"to {', '.join(held)}); {fix}, or convert explicitly (dtype='float32')"
                )
        if self.name == "dask":  # dask's engine makes the row chunks
            from xpnet.scaleout.chunk_engine import from_host

            return from_host(host)
        with on_backend(self.name, self.device):
            return self.xp.asarray(host, dtype=target, device=self.device)

    def synchronize(self) -> None:
        """Wait until work queued on this device is done (before reading a clock)."""
        record_of(self.name).synchronize(self.device)

    @property
    def device_name(self) -> str:
        """The device's name as :func:`get_backend` and ``--device`` take it (``'cuda:0'``...)."""
        return device_name(self.device)

    def __str__(self) -> str:
        return f"{self.name} on {self.device_name}"


def backend_status(name: str) -> tuple[bool, str]:
    """``(True, "")`` if backend ``name`` can run here, else ``(False, reason)``.

    The reason is one line, also where the backend's package is installed but fails to
    import (two CuPy wheels at once, a CUDA library that does not match).

    Parameters
    ----------
    name : str
        A backend's name; an unknown name gives ``False`` and the names there are.

    Returns
    -------
    tuple of (bool, str)
        Whether the backend runs on its default device here, and if not, why.

    Examples
    --------
    >>> import xpnet
    >>> xpnet.backend_status("numpy")
    (True, '')
    >>> xpnet.backend_status("array_api_strict")
    (True, '')
    >>> print(xpnet.backend_status("tensorflow")[1])
    unknown backend 'tensorflow'; choose one of numpy, cupy, torch, jax, dask, array_api_strict
    """
    try:
        get_backend(name)
    except BackendUnavailableError as exc:
        return False, str(exc)
    return True, ""


def available_backends() -> list[str]:
    """The names of the backends that can run on this machine.

    Returns
    -------
    list of str
        The names from :data:`BACKENDS` for which :func:`backend_status` is true.

    Examples
    --------
    >>> import xpnet
    >>> names = xpnet.available_backends()
    >>> "numpy" in names, set(names) <= set(xpnet.BACKENDS)
    (True, True)
    """
    return [name for name in BACKENDS if backend_status(name)[0]]


def get_backend(name: str, device: str | None = None) -> Backend:
    """Return backend ``name`` on ``device`` (its default device when ``None``).

    Device names are the same for CuPy, PyTorch and JAX: ``cpu`` (PyTorch, JAX), ``cuda``
    (the first GPU), ``cuda:N`` or a bare ``N`` (GPU number N), and JAX's ``gpu``/``gpu:N``;
    NumPy and dask have only ``cpu``; array-api-strict has ``CPU_DEVICE`` (or ``cpu``),
    ``device1`` and ``device2``. A missing GPU is refused alike: ``no CUDA device N``.

    Parameters
    ----------
    name : str
        One of :data:`BACKENDS`.
    device : str, optional
        A device name as above; ``None`` picks the backend's default device.

    Returns
    -------
    Backend
        The namespace and device; :meth:`Backend.asarray` puts host data there.

    Raises
    ------
    BackendUnavailableError
        In one line, saying why and what to do: if the backend is unknown or not installed,
        its import fails, or the device does not exist.

    Examples
    --------
    >>> import xpnet
    >>> backend = xpnet.get_backend("array_api_strict", "device1")
    >>> print(backend)
    array_api_strict on device1
    >>> x = backend.asarray([[1, 2], [3, 4]], dtype="float32")
    >>> xpnet.to_host(backend.xp.sum(x, axis=0)).tolist()
    [4.0, 6.0]
    >>> print(xpnet.get_backend("numpy"))
    numpy on cpu
    """
    record = RECORDS.get(name)
    if record is None:
        raise BackendUnavailableError(
            f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}"
        )
    try:
        found = importlib.util.find_spec(record.package) is not None
    except (ImportError, ValueError):  # a broken entry in sys.modules
        found = True
    if not found:
        raise BackendUnavailableError(
            f"backend {name!r} needs the package {record.package!r}, which is not installed: "
            f"{record.install_hint}"
        )
    try:
        importlib.import_module(record.package)
    except Exception as exc:  # ImportError, OSError (a missing CUDA library), RuntimeError...
        raise _import_failed(record, exc) from None
    try:
        xp, resolved = record.resolve(device)
    except (ImportError, OSError) as exc:  # e.g. dask importing a CuPy that cannot load
        raise _import_failed(record, exc) from None
    return Backend(name=name, xp=xp, device=resolved)


def _import_failed(record: BackendRecord, exc: BaseException) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"backend {record.name!r}: the package {record.package!r} is installed but cannot be "
        f"imported ({first_line(exc)}); {record.install_hint}"
    )


def free_device_memory(backend: Backend) -> int | None:
    """Bytes free on ``backend``'s GPU; ``None`` where unknown or asking fails (callers then
    use a fixed budget)."""
    try:
        return record_of(backend.name).free_memory(backend.device)
    except Exception:  # a driver that cannot answer: fall back to the fixed budget
        return None


def backend_of(x: Array) -> Backend:
    """The :class:`Backend` that array ``x`` lives on."""
    xp = array_namespace(x)
    return Backend(name=backend_name(xp), xp=xp, device=compat.device(x))


def to_host(x: Array) -> np.ndarray:
    """Copy array ``x`` from any backend to a NumPy array, explicitly (never implicitly).

    Parameters
    ----------
    x : array
        An array of any backend and device; a dask array is computed first.

    Returns
    -------
    numpy.ndarray
        The values on the host.

    Raises
    ------
    TypeError
        If ``x`` is of an array library xpnet does not know.

    Examples
    --------
    >>> import xpnet
    >>> for name in ("numpy", "array_api_strict"):
    ...     x = xpnet.get_backend(name).asarray([1.0, 2.0])
    ...     host = xpnet.to_host(x)
    ...     print(type(host).__name__, host.tolist())
    ndarray [1.0, 2.0]
    ndarray [1.0, 2.0]
    """
    name = backend_name(array_namespace(x))
    if name not in RECORDS:
        raise TypeError(f"xpnet cannot copy {name} arrays to the host")
    return RECORDS[name].to_host(x)
