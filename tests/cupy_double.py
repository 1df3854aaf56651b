"""A CPU double of CuPy, for proving the device rule where no GPU is.

It behaves like CuPy in the ways the device rule is about, and is stricter where CuPy
would be silently slow:

- Every operation runs on the *current* device, which only ``with cupy.cuda.Device(n):``
  changes (as on CuPy, device 0 is current to begin with), and its result lands there;
  creation functions ignore no ``device=`` because, like CuPy's, they take none, and
  array-api-compat's CuPy wrappers drop it.
- An operation given an array that lives on another device is refused with a
  ``ValueError``, as CuPy refuses it where the two GPUs have no peer access (with peer
  access CuPy would run it, reading the other GPU's memory over the bus). Explicit copies
  (``cupy.asarray``, ``cupy.array``) move an array to the current device, as CuPy's do.
  Basic slicing and reading shape or dtype launch no kernel and are allowed anywhere.
- Nothing converts to NumPy implicitly: ``numpy.asarray(x)``, NumPy ufuncs and functions
  on a double array, and DLPack export to the host raise ``TypeError`` (CuPy:
  "Implicit conversion to a NumPy array is not allowed"), and NumPy arrays are refused as
  operands. ``x.get()``, ``float(x)``, ``int(x)``, ``bool(x)`` and ``x.item()`` are the
  explicit ways to the host, as on CuPy.
- Free memory is per device: ``cupy.cuda.runtime.memGetInfo()`` and the memory pool's
  ``free_bytes()`` answer for the current device only.

The double is a module named ``cupy`` (with ``cupy.cuda``, ``cupy.linalg``, ``cupy.fft``
and ``cupyx.scipy.special.expit``) that array-api-compat wraps as it wraps CuPy, so
xpnet's own CuPy branches (the device rule's ``with x.device:``, ``x.get()``, CuPy's
sigmoid, the memory queries) run as they would on a GPU. :func:`installed` puts it in
``sys.modules`` for the length of a test and takes it out again.
"""

from __future__ import annotations

import contextlib
import operator
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

DEVICES = 2
"""How many GPUs the double has."""

FREE_BYTES = {0: 6 << 30, 1: 1 << 30}
"""Free memory by device, as the driver reports it (device 1 has less)."""

POOL_FREE_BYTES = {0: 1 << 20, 1: 3 << 20}
"""Bytes CuPy's memory pool holds unused, by device."""

_current = [0]
"""The stack of current devices; the last is current."""


class DeviceMismatch(ValueError):
    """An operation given an array that is not on the current device (CuPy: ``ValueError``)."""


def current_device() -> int:
    return _current[-1]


class Device:
    """``cupy.cuda.Device``: a GPU's number, and the context that makes it current."""

    def __init__(self, device: int | Device | None = None) -> None:
        if device is None:
            device = current_device()
        index = int(device.id if isinstance(device, Device) else device)
        if not 0 <= index < DEVICES:
            raise RuntimeError(f"cudaErrorInvalidDevice: invalid device ordinal {index}")
        self.id = index

    def __enter__(self) -> Device:
        _current.append(self.id)
        return self

    def __exit__(self, *exc: object) -> None:
        _current.pop()

    def use(self) -> None:
        _current[-1] = self.id

    def synchronize(self) -> None:
        pass

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("cuda", self.id))

    def __int__(self) -> int:
        return self.id

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id}>"


Device.__module__ = "cupy.cuda.device"  # xpnet names devices of modules named cupy*


def _refuse_host(x: object, what: str) -> None:
    raise TypeError(
        f"Implicit conversion to a NumPy array is not allowed ({what}). "
        "Please use `.get()` to construct a NumPy array explicitly."
    )


class ndarray:
    """A double of ``cupy.ndarray``: NumPy data and the number of the device holding it."""

    __array_ufunc__ = None  # NumPy's ufuncs refuse it instead of converting it
    __array_priority__ = 100

    def __init__(self, data: np.ndarray, device: int) -> None:
        self._data = data
        self._device = device

    # What reads no device memory, on any device.
    shape = property(lambda self: self._data.shape)
    ndim = property(lambda self: self._data.ndim)
    size = property(lambda self: self._data.size)
    dtype = property(lambda self: self._data.dtype)
    itemsize = property(lambda self: self._data.itemsize)
    nbytes = property(lambda self: self._data.nbytes)
    strides = property(lambda self: self._data.strides)
    flags = property(lambda self: self._data.flags)

    @property
    def device(self) -> Device:
        return Device(self._device)

    @property
    def T(self) -> ndarray:
        return ndarray(self._data.T, self._device)  # a view: no kernel

    @property
    def mT(self) -> ndarray:
        return ndarray(np.swapaxes(self._data, -1, -2), self._device)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"cupy_double.ndarray({self._data!r}, device={self._device})"

    # The explicit ways to the host.
    def get(self, stream: object = None, order: str = "C", out: object = None) -> np.ndarray:
        return np.array(self._data, order=order)

    def item(self) -> Any:
        return self._data.item()

    def tolist(self) -> Any:
        return self._data.tolist()

    def __float__(self) -> float:
        return float(self._data)

    def __int__(self) -> int:
        return int(self._data)

    def __index__(self) -> int:
        return operator.index(self._data)

    def __bool__(self) -> bool:
        return bool(self._data)

    def __complex__(self) -> complex:
        return complex(self._data)

    # What would make it a NumPy array behind the caller's back.
    def __array__(self, *args: object, **kwargs: object) -> np.ndarray:
        _refuse_host(self, "__array__")
        raise AssertionError  # unreachable

    def __dlpack_device__(self) -> tuple[int, int]:
        return 2, self._device  # kDLCUDA

    def __dlpack__(self, **kwargs: object) -> object:
        _refuse_host(self, "DLPack export of a CUDA array")

    def __iter__(self) -> Iterator[ndarray]:
        return (self[i] for i in range(len(self)))

    # Indexing: basic slicing is a view where the array lives; anything else is a kernel.
    def __getitem__(self, key: object) -> ndarray:
        if _is_basic_index(key):
            return ndarray(self._data[key], self._device)
        return _call(operator.getitem, (self, key), {})

    def __setitem__(self, key: object, value: object) -> None:
        _check_here((self, key, value))
        self._data[_unwrap(key)] = _unwrap(value)

    def __getattr__(self, name: str) -> Any:
        # Methods (astype, sum, reshape, argmax, copy...) run on the current device.
        method = getattr(np.ndarray, name, None)
        if name.startswith("_") or not callable(method):
            raise AttributeError(f"cupy_double.ndarray has no attribute {name!r}")
        return lambda *args, **kwargs: _call(method, (self, *args), kwargs)


def _is_basic_index(key: object) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, (int, np.integer, slice)) for k in keys)


def _operator(function: Callable[..., Any]) -> Callable[..., Any]:
    def apply(self: ndarray, *others: object) -> Any:
        for other in others:
            if isinstance(other, np.ndarray):
                raise TypeError(
                    f"Unsupported type {type(other)}: CuPy does not combine a NumPy array "
                    "with a device array"
                )
        return _call(function, (self, *others), {})

    return apply


for _name in [
    "add",
    "sub",
    "mul",
    "truediv",
    "floordiv",
    "mod",
    "pow",
    "matmul",
    "and",
    "or",
    "xor",
    "lshift",
    "rshift",
    "lt",
    "le",
    "gt",
    "ge",
    "eq",
    "ne",
]:
    _function = getattr(operator, f"__{_name}__")
    setattr(ndarray, f"__{_name}__", _operator(_function))
    if _name not in ("lt", "le", "gt", "ge", "eq", "ne"):
        setattr(
            ndarray,
            f"__r{_name}__",
            _operator(lambda self, other, f=_function: f(other, self)),
        )
for _name in ("neg", "pos", "abs", "invert"):
    setattr(ndarray, f"__{_name}__", _operator(getattr(operator, f"__{_name}__")))
ndarray.__hash__ = None  # type: ignore[assignment]  # as CuPy's, which defines __eq__


def _check_here(value: object) -> None:
    """Refuse device arrays not on the current device, and NumPy arrays, anywhere in value."""
    if isinstance(value, ndarray):
        if value._device != current_device():
            raise DeviceMismatch(
                f"The device where the array resides ({value._device}) is different from "
                f"the current device ({current_device()}). Peer access is unavailable "
                "between these devices."
            )
    elif isinstance(value, np.ndarray):
        raise TypeError(
            f"Unsupported type {type(value)}: pass NumPy data through cupy.asarray first"
        )
    elif isinstance(value, (tuple, list)):
        for item in value:
            _check_here(item)
    elif isinstance(value, dict):
        for item in value.values():
            _check_here(item)


def _unwrap(value: Any) -> Any:
    if isinstance(value, ndarray):
        return value._data
    if isinstance(value, tuple):
        return tuple(_unwrap(v) for v in value)
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    return value


def _wrap(value: Any) -> Any:
    """NumPy results become arrays on the current device (reductions give 0-d arrays)."""
    if isinstance(value, np.ndarray):
        return ndarray(value, current_device())
    if isinstance(value, np.generic) and not isinstance(value, (np.str_, np.bytes_, np.void)):
        return ndarray(np.asarray(value), current_device())
    if isinstance(value, tuple) and type(value) is tuple:
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _call(function: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    _check_here((args, kwargs))
    return _wrap(function(*_unwrap(args), **_unwrap(kwargs)))


def _transfer(function: Callable[..., Any]) -> Callable[..., Any]:
    """``cupy.asarray``, ``cupy.array``: explicit copies onto the current device."""

    def copy(obj: Any, *args: Any, **kwargs: Any) -> ndarray:
        kwargs.pop("blocking", None)
        data = obj._data if isinstance(obj, ndarray) else _unwrap(obj)
        result = function(data, *args, **kwargs)
        if isinstance(obj, ndarray) and (obj._device != current_device() or result is data):
            result = np.array(result, copy=True) if obj._device != current_device() else result
        return ndarray(np.asarray(result), current_device())

    return copy


def _kernel(function: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        return _call(function, args, kwargs)

    run.__name__ = getattr(function, "__name__", "kernel")
    return run


_NOT_FUNCTIONS = (type, np.dtype, types.ModuleType)


def _namespace(name: str, source: types.ModuleType, extra: dict[str, Any]) -> types.ModuleType:
    """A module named ``name`` whose functions are ``source``'s, run as kernels."""
    module = types.ModuleType(name)
    public = [n for n in dir(source) if not n.startswith("_")]
    for attribute in public:
        value = getattr(source, attribute)
        if isinstance(value, _NOT_FUNCTIONS) or not callable(value):
            if not isinstance(value, types.ModuleType):
                setattr(module, attribute, value)
        else:
            setattr(module, attribute, _kernel(value))
    for attribute, value in extra.items():
        setattr(module, attribute, value)
    module.__all__ = [n for n in vars(module) if not n.startswith("_")]  # type: ignore[attr-defined]
    return module


class _Pool:
    def free_bytes(self) -> int:
        return POOL_FREE_BYTES[current_device()]

    def used_bytes(self) -> int:
        return 0

    def free_all_blocks(self) -> None:
        pass


class _Stream:
    def synchronize(self) -> None:
        pass


def _build() -> dict[str, types.ModuleType]:
    runtime = types.SimpleNamespace(
        getDeviceCount=lambda: DEVICES,
        getDevice=current_device,
        setDevice=lambda index: Device(index).use(),
        memGetInfo=lambda: (FREE_BYTES[current_device()], 80 << 30),
        is_hip=False,
    )
    cuda = types.ModuleType("cupy.cuda")
    cuda.__path__ = []  # type: ignore[attr-defined]  # a package, as CuPy's
    device_module = types.ModuleType("cupy.cuda.device")
    device_module.Device = Device  # type: ignore[attr-defined]
    cuda.device = device_module  # type: ignore[attr-defined]
    cuda.Device = Device  # type: ignore[attr-defined]
    cuda.runtime = runtime  # type: ignore[attr-defined]
    cuda.get_current_stream = lambda: _Stream()  # type: ignore[attr-defined]
    cuda.Stream = _Stream  # type: ignore[attr-defined]
    cuda.is_available = lambda: True  # type: ignore[attr-defined]
    pool = _Pool()
    cupy = _namespace(
        "cupy",
        np,
        {
            "ndarray": ndarray,
            "cuda": cuda,
            "asarray": _transfer(np.asarray),
            "array": _transfer(np.array),
            "asanyarray": _transfer(np.asarray),
            "ascontiguousarray": _transfer(np.ascontiguousarray),
            "get_default_memory_pool": lambda: pool,
            "__version__": "14.2.0",
        },
    )
    cupy.bool_ = np.bool_  # type: ignore[attr-defined]
    cupy.linalg = _namespace("cupy.linalg", np.linalg, {})  # type: ignore[attr-defined]
    cupy.fft = _namespace("cupy.fft", np.fft, {})  # type: ignore[attr-defined]
    special = types.ModuleType("cupyx.scipy.special")
    special.expit = _kernel(lambda x: 1.0 / (1.0 + np.exp(-x)))  # type: ignore[attr-defined]
    scipy = types.ModuleType("cupyx.scipy")
    scipy.special = special  # type: ignore[attr-defined]
    cupyx = types.ModuleType("cupyx")
    cupyx.scipy = scipy  # type: ignore[attr-defined]
    libs = types.ModuleType("cupy_backends.cuda.libs")  # NVRTC and cuBLAS load
    for library in ("nvrtc", "cublas"):
        loaded = types.ModuleType(f"cupy_backends.cuda.libs.{library}")
        loaded.getVersion = lambda *handle: 13000  # type: ignore[attr-defined]
        setattr(libs, library, loaded)
    backends = types.ModuleType("cupy_backends")
    backends_cuda = types.ModuleType("cupy_backends.cuda")
    return {
        "cupy_backends": backends,
        "cupy_backends.cuda": backends_cuda,
        "cupy_backends.cuda.libs": libs,
        "cupy": cupy,
        "cupy.cuda": cuda,
        "cupy.cuda.device": device_module,
        "cupy.linalg": cupy.linalg,  # type: ignore[attr-defined]
        "cupy.fft": cupy.fft,  # type: ignore[attr-defined]
        "cupyx": cupyx,
        "cupyx.scipy": scipy,
        "cupyx.scipy.special": special,
    }


_MODULES: dict[str, types.ModuleType] = {}
"""The double's modules and array-api-compat's wrapper of them, built once per process so
that every cache keyed by a module or an array type sees one set of them."""


def _modules() -> dict[str, types.ModuleType]:
    if _MODULES:
        return _MODULES
    import array_api_compat

    double = _build()
    wrapper_names = [n for n in sys.modules if n.startswith("array_api_compat.cupy")]
    kept = {n: sys.modules.pop(n) for n in [*double, *wrapper_names] if n in sys.modules}
    kept_attribute = array_api_compat.__dict__.pop("cupy", None)
    try:
        sys.modules.update(double)
        import array_api_compat.cupy as wrapper

        built = {n: m for n, m in sys.modules.items() if n.startswith("array_api_compat.cupy")}
        _MODULES.update(double)
        _MODULES.update(built)
        _MODULES["array_api_compat.cupy"] = wrapper
    finally:
        for name in list(sys.modules):
            if name in double or name.startswith("array_api_compat.cupy"):
                del sys.modules[name]
        sys.modules.update(kept)
        if kept_attribute is not None:
            array_api_compat.cupy = kept_attribute  # type: ignore[attr-defined]
        else:
            array_api_compat.__dict__.pop("cupy", None)
    return _MODULES


@contextlib.contextmanager
def installed() -> Iterator[types.ModuleType]:
    """The double in place of CuPy (and array-api-compat's CuPy wrapper), device 0 current.

    Whatever was in ``sys.modules`` before (a real CuPy on a GPU host) is put back after.
    """
    import array_api_compat

    modules = _modules()
    saved = {name: sys.modules.get(name) for name in modules}
    saved_attribute = array_api_compat.__dict__.get("cupy")
    saved_current = list(_current)
    sys.modules.update(modules)
    array_api_compat.cupy = modules["array_api_compat.cupy"]  # type: ignore[attr-defined]
    _current[:] = [0]
    try:
        yield modules["cupy"]
    finally:
        _current[:] = saved_current
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        if saved_attribute is None:
            array_api_compat.__dict__.pop("cupy", None)
        else:
            array_api_compat.cupy = saved_attribute  # type: ignore[attr-defined]


def on(device: int, host: Any, dtype: Any = None) -> ndarray:
    """Host data as a double array on ``device`` (the current device is left as it was)."""
    data = np.array(host, dtype=dtype)
    return ndarray(data, device)


def devices_of(value: Any) -> set[int]:
    """The devices of every double array in ``value`` (arrays, tuples, lists, dicts, objects
    with ``__dict__`` or ``__slots__`` such as networks, layers and gradients)."""
    found: set[int] = set()
    seen: set[int] = set()

    def visit(item: Any) -> None:
        if id(item) in seen or isinstance(item, (str, bytes, int, float, type(None))):
            return
        seen.add(id(item))
        if isinstance(item, ndarray):
            found.add(item._device)
        elif isinstance(item, dict):
            for v in item.values():
                visit(v)
        elif isinstance(item, (tuple, list, set, frozenset)):
            for v in item:
                visit(v)
        elif hasattr(item, "__dict__") and not isinstance(item, (types.ModuleType, type)):
            for v in vars(item).values():
                visit(v)
        elif hasattr(item, "__dataclass_fields__"):
            for f in item.__dataclass_fields__:
                visit(getattr(item, f))

    visit(value)
    return found


__all__ = ["DEVICES", "FREE_BYTES", "POOL_FREE_BYTES", "Device", "installed", "ndarray", "on"]
