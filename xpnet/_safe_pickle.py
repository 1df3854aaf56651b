"""Read the textbook's pickles (``sample_weight.pkl``, the ``mnist.pkl`` cache), running no code.

``pickle.load`` calls every callable a file names, so a pickle from the web can run any
command. :class:`_ArrayUnpickler` admits only the globals that NumPy's array pickling names
and hands out a stand-in for each, which rebuilds a plain numeric array from its raw bytes:
no callable named by the file ever runs, and no real ``numpy.ndarray`` or ``numpy.dtype``
reaches the pickle's stack (``ndarray(shape, object, buffer)`` or a dtype's ``BUILD`` state
could otherwise forge object pointers from bytes).

How NumPy pickles (``ndarray.__reduce__``, ``__reduce_ex__`` and ``dtype.__reduce__``):

* array: ``_reconstruct(ndarray, (0,), b"b")``, then ``BUILD`` with
  ``(1, shape, dtype, is_fortran, raw_bytes)`` (protocols 2-4);
  ``_frombuffer(raw_bytes, dtype, shape, order)`` (protocol 5);
* dtype: ``dtype(code, False, True)``, then ``BUILD`` with
  ``(3, byte_order, None, None, None, -1, -1, 0)`` for a plain numeric dtype;
* bytes at protocol 2, written by Python 3: ``_codecs.encode(text, "latin1")``, or
  ``bytes()`` when empty (the data of an empty array).

``BUILD`` reaches only the stand-ins' own ``__setstate__``, which check the state; every
other ``BUILD`` target (dict, list, a stand-in callable) fails.
"""

from __future__ import annotations

import errno
import math
import os
import pickle
import re
import reprlib
import stat
from collections.abc import Callable
from pickle import UnpicklingError
from typing import Any

import numpy as np

from xpnet._budget import OverBudget, check_pickle
from xpnet.errors import WeightsError, XpnetError

_NUMERIC_CODE = re.compile(r"[biuf]\d{1,2}")
"""dtype codes of bool, signed and unsigned integer and real floating arrays (``"f4"``)."""


class _Refused(Exception):
    """The pickle asks for something xpnet will not do; the message says what."""


class _StandIn:
    """What the unpickler hands out for an admitted global: callable, but its state is fixed."""

    __slots__ = ("_call", "name")

    def __init__(self, name: str, call: Callable[..., object] | None) -> None:
        self.name = name
        self._call = call

    def __call__(self, *args: object) -> object:
        if self._call is None:
            raise _Refused(f"the pickle calls {self.name}, which NumPy's array pickling never does")
        return self._call(*args)

    def __setstate__(self, state: object) -> None:
        raise _Refused(f"the pickle tries to set the state of {self.name}")


class _DtypeStandIn:
    """A plain numeric dtype: created by ``numpy.dtype(code, ...)``, byte order set by ``BUILD``."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype

    def __setstate__(self, state: object) -> None:
        if not (
            isinstance(state, tuple)
            and len(state) == 8
            and state[0] == 3
            and state[1] in ("<", ">", "|", "=")
            and state[2:] == (None, None, None, -1, -1, 0)
        ):
            raise _Refused(
                f"the dtype {self.dtype} comes with the state {reprlib.repr(state)}; "
                "xpnet admits only plain numeric dtypes (no fields, subarrays or flags)"
            )
        self.dtype = self.dtype.newbyteorder(state[1])


class _ArrayStandIn:
    """An array, made by ``_reconstruct`` and filled by ``BUILD``, or whole by ``_frombuffer``."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray | None = None) -> None:
        self.array = array

    def __setstate__(self, state: object) -> None:
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            raise UnpicklingError("an array's state is not (1, shape, dtype, is_fortran, data)")
        _, shape, dtype, fortran, raw = state
        self.array = _build_array(raw, dtype, shape, "F" if fortran else "C")


def _build_array(raw: object, dtype: object, shape: object, order: object) -> np.ndarray:
    """A native-byte-order copy of ``raw`` read as ``shape`` and ``dtype``, after checking all."""
    if isinstance(raw, str):  # a Python 2 pickle's str, read with encoding="latin1"
        raw = raw.encode("latin1")
    if not isinstance(dtype, _DtypeStandIn):
        raise UnpicklingError("an array's dtype is not a numpy.dtype")
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise UnpicklingError(f"an array's shape {reprlib.repr(shape)} is not a tuple of sizes")
    if not isinstance(raw, (bytes, bytearray)) or order not in ("C", "F"):
        raise UnpicklingError("an array's data is not raw bytes in C or Fortran order")
    count = math.prod(shape)
    if len(raw) != count * dtype.dtype.itemsize:
        raise UnpicklingError(
            f"an array of shape {shape} and dtype {dtype.dtype} needs "
            f"{count * dtype.dtype.itemsize} bytes but holds {len(raw)}"
        )
    flat = np.frombuffer(raw, dtype=dtype.dtype, count=count)
    return flat.reshape(shape, order=order).astype(dtype.dtype.newbyteorder("="))


def _reconstruct(subtype: object, shape: object, typecode: object) -> _ArrayStandIn:
    """``numpy.core.multiarray._reconstruct``: an empty array that ``BUILD`` fills."""
    if subtype is not _NDARRAY:
        raise UnpicklingError("_reconstruct is asked for a type other than numpy.ndarray")
    return _ArrayStandIn()


def _frombuffer(raw: object, dtype: object, shape: object, order: object) -> _ArrayStandIn:
    """``numpy.core.numeric._frombuffer`` (protocol 5): a whole array from raw bytes."""
    return _ArrayStandIn(_build_array(raw, dtype, shape, order))


def _dtype(code: object, align: object = False, copy: object = True) -> _DtypeStandIn:
    """``numpy.dtype(code, align, copy)`` for bool, integer and real floating codes only."""
    if not (isinstance(code, str) and _NUMERIC_CODE.fullmatch(code)):
        why = " (object arrays hold pickled Python objects)" if str(code)[:1] == "O" else ""
        raise _Refused(
            f"the pickle holds an array of dtype {reprlib.repr(code)}{why}; "
            "only bool, integer and floating arrays are admitted"
        )
    return _DtypeStandIn(np.dtype(code))


def _latin1_encode(text: object, encoding: object) -> bytes:
    """``_codecs.encode(text, "latin1")``: how Python 3 writes bytes at protocol 2."""
    if not isinstance(text, str) or encoding != "latin1":
        raise _Refused(f"the pickle calls _codecs.encode with {reprlib.repr(encoding)}")
    return text.encode("latin1")


def _empty_bytes() -> bytes:
    """``bytes()``: how Python 3 writes ``b""`` at protocol 2 (only this call is admitted)."""
    return b""


_NDARRAY = _StandIn("numpy.ndarray", None)
_ADMITTED: dict[tuple[str, str], _StandIn] = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _StandIn("numpy.dtype", _dtype),
    ("_codecs", "encode"): _StandIn("_codecs.encode", _latin1_encode),
    **{
        (module, "bytes"): _StandIn(f"{module}.bytes", _empty_bytes)
        for module in ("__builtin__", "builtins")  # pickle's fix_imports=True, False
    },
    **{
        (f"{package}.{module}", name): _StandIn(f"{package}.{module}.{name}", call)
        for package in ("numpy.core", "numpy._core")  # NumPy 1.x and 2.x
        for module, name, call in (
            ("multiarray", "_reconstruct", _reconstruct),
            ("numeric", "_frombuffer", _frombuffer),
        )
    },
}
"""Every global a pickle may name, keyed by ``(module, name)``, with its stand-in."""


class _BoundedFile:
    """A file that refuses any read of more bytes than remain in it, before reading.

    A pickle's opcodes carry the lengths of their bytes and strings; read through this,
    a length that lies is refused before anything of that size is allocated.
    """

    def __init__(self, file: Any, size: int) -> None:
        self._file, self._left = file, size

    def read(self, count: int = -1) -> bytes:
        if count < 0:
            count = self._left
        if count > self._left:
            raise UnpicklingError(
                f"an opcode asks for {count} bytes where {self._left} remain in the file"
            )
        data = self._file.read(count)
        self._left -= len(data)
        return bytes(data)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        if view.nbytes > self._left:
            raise UnpicklingError(
                f"an opcode asks for {view.nbytes} bytes where {self._left} remain in the file"
            )
        count = int(self._file.readinto(view))
        self._left -= count
        return count

    def readline(self) -> bytes:
        line = self._file.readline(self._left)
        self._left -= len(line)
        return bytes(line)


# The pure-Python unpickler: it reads each opcode's data through the file's ``read``, so
# :class:`_BoundedFile` sees every length first (the C one allocates before it reads).
class _ArrayUnpickler(pickle._Unpickler):
    """An unpickler that resolves only the globals of NumPy's array pickling, to stand-ins."""

    def find_class(self, module: str, name: str, /) -> Any:
        try:
            return _ADMITTED[module, name]
        except KeyError:
            raise _Refused(
                f"the pickle names the global {module}.{name}, which is not part of "
                "NumPy's array pickling"
            ) from None


def load_textbook_pickle(
    path: str | os.PathLike[str], *, error: type[XpnetError] = WeightsError
) -> dict[str, np.ndarray]:
    """Load a pickled dict of NumPy arrays, as the textbook writes them, without running code.

    Reads ``sample_weight.pkl`` and the ``mnist.pkl`` cache (protocols 2 to 5, NumPy 1.x or
    2.x, Python 2 or 3). Anything else a pickle may hold (a global outside NumPy's array
    pickling, object or structured arrays, a top level other than a dict of str to arrays)
    and corrupt or truncated files raise ``error`` with a one-line message naming the file.

    Parameters
    ----------
    path : str or os.PathLike
        The pickle file.
    error : type, optional
        The :class:`~xpnet.XpnetError` subclass raised for a file that cannot be read.

    Returns
    -------
    dict of str to numpy.ndarray
        The arrays, on the host.

    Raises
    ------
    WeightsError
        (or ``error``) If the file is unreadable, corrupt, or holds anything but a dict of
        arrays.

    Examples
    --------
    >>> import pathlib, pickle, tempfile
    >>> import numpy as np
    >>> import xpnet
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = pathlib.Path(folder.name) / "weights.pkl"
    >>> _ = path.write_bytes(pickle.dumps({"W1": np.eye(2), "b1": np.zeros(2)}))
    >>> params = xpnet.load_textbook_pickle(path)
    >>> sorted(params), xpnet.Network.from_mapping(params).activations
    (['W1', 'b1'], ('softmax',))

    A pickle that would call a function is refused before anything runs:

    >>> _ = path.write_bytes(pickle.dumps({"W1": print}))
    >>> xpnet.load_textbook_pickle(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    xpnet.errors.WeightsError: ...: refused: ...; xpnet never runs code from a data file
    >>> folder.cleanup()
    """
    name = os.fspath(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block, a device never end
            raise OSError(errno.EINVAL, "it is not a regular file")
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            check_pickle(file, size, "the pickle")  # opcodes counted before any runs
            bounded = _BoundedFile(file, size)
            loaded = _ArrayUnpickler(bounded, encoding="latin1").load()
    except _Refused as exc:
        raise error(f"{name}: refused: {exc}; xpnet never runs code from a data file") from None
    except OverBudget as exc:
        raise error(f"{name}: {exc}") from None
    except OSError as exc:
        raise error(f"cannot read {name}: {exc.strerror or exc}") from None
    except Exception as exc:  # only the stand-ins run, so any failure means a corrupt file
        raise error(
            f"{name} is not a valid pickle of NumPy arrays ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(loaded, dict):
        raise error(f"{name} holds a {type(loaded).__name__}, not a dict of names to NumPy arrays")
    arrays: dict[str, np.ndarray] = {}
    for key, value in loaded.items():
        if not (
            isinstance(key, str) and isinstance(value, _ArrayStandIn) and value.array is not None
        ):
            raise error(
                f"{name}: the entry {reprlib.repr(key)} is not a NumPy array under a str key"
            )
        arrays[key] = value.array
    return arrays
