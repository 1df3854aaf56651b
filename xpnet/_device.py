"""Devices: one rule for running a computation on its inputs' device, one for device names.

**The device rule.** Every computation xpnet runs (the forward pass, counting, a training
step, an optimizer's state, the plotting helpers' counting and ranking, ``init_network``)
runs inside :func:`on_device_of` its inputs (or :func:`on_backend` of the backend it creates
arrays on). On CuPy that makes the inputs' GPU the current device, because CuPy launches
kernels on the current device and array-api-compat's CuPy ``zeros``, ``arange`` and
``zeros_like`` ignore ``device=``: without it, work on ``cuda:1`` would mix devices. On
every other backend the rule is a no-op context: PyTorch and JAX place each operation by
its operands and honour ``device=``.

Public functions that compute on arrays they are given wear :func:`device_rule`, which
enters the device of their first array argument; those that create arrays for a backend
use :func:`on_backend` inside.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, ParamSpec, TypeVar

import array_api_compat as compat

from xpnet._array_api import array_namespace, backend_name
from xpnet._backend_records import RECORDS
from xpnet._typing import Array, Device

_ENTER: dict[str, Callable[[Device], AbstractContextManager[Any]]] = {
    name: record.enter for name, record in RECORDS.items() if record.enter is not None
}
"""How to enter a device, for the backends whose records say (see the module): the rule's
cost is then one dictionary lookup."""


def on_backend(name: str, device: Device) -> AbstractContextManager[Any]:
    """The context in which work for backend ``name`` runs on ``device`` (the device rule)."""
    enter = _ENTER.get(name)
    return contextlib.nullcontext() if enter is None else enter(device)


def on_device_of(x: Array) -> AbstractContextManager[Any]:
    """The context in which work on array ``x`` runs on ``x``'s device (the device rule).

    Every array created inside it without an explicit device lands on ``x``'s device.
    """
    name = backend_name(array_namespace(x))
    if name not in _ENTER:
        return contextlib.nullcontext()
    return on_backend(name, compat.device(x))


P = ParamSpec("P")
R = TypeVar("R")

_backend_of_type: dict[type, str | None] = {}
"""The backend name of each argument type seen by :func:`device_rule` (``None``: not an
array); the rule's cost on NumPy is then one dictionary lookup per argument."""


def _backend_of_argument(value: object) -> str | None:
    kind = type(value)
    try:
        return _backend_of_type[kind]
    except KeyError:
        pass
    name = backend_name(array_namespace(value)) if compat.is_array_api_obj(value) else None
    _backend_of_type[kind] = name
    return name


def device_rule(function: Callable[P, R]) -> Callable[P, R]:
    """Run ``function`` under the device rule of its first array argument.

    The first positional or keyword argument that is an array decides the device (a
    network, a number or ``self`` is passed over); where no argument is an array, or the
    backend needs no device entered, ``function`` runs as it is.
    """

    @functools.wraps(function)
    def on_inputs_device(*args: P.args, **kwargs: P.kwargs) -> R:
        for value in (*args, *kwargs.values()):
            name = _backend_of_argument(value)
            if name is None:
                continue
            enter = _ENTER.get(name)
            if enter is None:
                break
            with enter(compat.device(value)):
                return function(*args, **kwargs)
        return function(*args, **kwargs)

    return on_inputs_device
