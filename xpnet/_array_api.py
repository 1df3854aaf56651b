"""Small array-API helpers used by every compute module (after scipy's ``_lib/_array_api.py``).

Everything here takes the namespace from the arrays it is given; nothing imports a backend.
"""

from __future__ import annotations

import functools

import array_api_compat as compat

from xpnet._backend_records import NUMPY_SPEAKS_STANDARD, RECORDS
from xpnet._typing import Array, Device, Namespace


def array_namespace(*arrays: Array) -> Namespace:
    """``array_api_compat.array_namespace(*arrays)``, NumPy's own namespace for NumPy arrays.

    NumPy arrays (Python scalars beside them aside) get ``numpy`` itself where NumPy
    implements the standard (:data:`~xpnet._backend_records.NUMPY_SPEAKS_STANDARD`), as
    ``get_backend("numpy")`` does; every other array gets array-api-compat's choice.
    """
    own = NUMPY_SPEAKS_STANDARD and all(
        compat.is_numpy_array(a) or isinstance(a, int | float | complex | None) for a in arrays
    )
    return compat.array_namespace(*arrays, use_compat=False if own else None)


def namespace_of(*arrays: Array, what: str = "input") -> Namespace:
    """Return the array namespace of ``arrays``, with a readable error for non-arrays."""
    try:
        return array_namespace(*arrays)
    except TypeError as exc:
        kinds = ", ".join(sorted({type(a).__name__ for a in arrays}))
        raise TypeError(
            f"{what} must be arrays of one array-API namespace (got {kinds}); "
            "convert with xpnet.get_backend(name).asarray(...) first"
        ) from exc


@functools.cache
def backend_name(xp: Namespace) -> str:
    """Name of the backend behind namespace ``xp`` (``'numpy'``, ``'torch'``...)."""
    known = (record.name for record in RECORDS.values() if record.is_namespace(xp))
    return next(known, xp.__name__)


def device_name(device: Device) -> str:
    """A short, readable name of a device object (``'cpu'``, ``'cuda:0'``, ``'device1'``)."""
    names = (record.device_name(device) for record in RECORDS.values())
    return next(filter(None, names), str(device))


def describe(x: Array) -> str:
    """``'<backend> on <device>'`` for array ``x``, as error messages print it."""
    return f"{backend_name(array_namespace(x))} on {device_name(compat.device(x))}"


def as_floating(x: Array, xp: Namespace, what: str) -> Array:
    """``x`` if it is real floating; bool and integer input (the textbook's
    ``softmax(np.array([1010, 1000, 990]))``) converted to the namespace's default real
    floating dtype (float64 for NumPy, float32 for PyTorch); complex input refused."""
    if xp.isdtype(x.dtype, "real floating"):
        return x
    if xp.isdtype(x.dtype, ("integral", "bool")):
        device = compat.device(x)
        default = xp.__array_namespace_info__().default_dtypes(device=device)["real floating"]
        return xp.astype(x, default)
    raise TypeError(f"{what} needs real input, got dtype {x.dtype}")


def scalar_like(value: float, x: Array, xp: Namespace) -> Array:
    """A 0-d array holding ``value`` in ``x``'s dtype, on ``x``'s device."""
    return xp.asarray(value, dtype=x.dtype, device=compat.device(x))
