"""The device rule: every computation xpnet runs (the forward pass, counting, a training step,
an optimizer's state, the plotting helpers' counting and ranking, ``init_network``) runs
inside :func:`on_device_of` its inputs (or :func:`on_backend` of the backend it creates
arrays on). On CuPy that makes the inputs' GPU the current device, because CuPy launches
kernels on the current device and array-api-compat's CuPy ``zeros``, ``arange`` and
``zeros_like`` ignore ``device=``: without it, work on ``cuda:1`` would mix devices. On
every other backend the rule is a no-op context: PyTorch and JAX place each operation by
its operands and honour ``device=``. Public functions that compute on arrays they are
given wear :func:`device_rule`; those that create arrays for a backend use
:func:`on_backend` inside.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ParamSpec, TypeVar

import array_api_compat as compat

from xpnet._array_api import array_namespace, backend_name
from xpnet._backend_records import RECORDS
from xpnet._typing import Array, Device

_ENTER: dict[str, Callable[[Device], AbstractContextManager[Any]]] = {
    name: record.enter for name, record in RECORDS.items() if record.enter is not None
}
"""How to enter a device, where a record says: the rule then costs one dictionary lookup."""


def on_backend(name: str, device: Device) -> AbstractContextManager[Any]:
    """The context in which work for backend ``name`` runs on ``device`` (the device rule)."""
    enter = _ENTER.get(name)
    return nullcontext() if enter is None else enter(device)


def on_device_of(x: Array) -> AbstractContextManager[Any]:
    """The context in which work on array ``x`` runs on ``x``'s device (the device rule): every
    array created inside it without an explicit device lands there."""
    enter = _ENTER.get(backend_name(array_namespace(x)))
    return nullcontext() if enter is None else enter(compat.device(x))


P = ParamSpec("P")
R = TypeVar("R")

_backend_of_type: dict[type, str | None] = {}
"""Each argument type's backend (``None``: not an array): the rule costs a lookup per argument."""


def _backend_of_argument(value: object) -> str | None:
    kind = type(value)
    if kind not in _backend_of_type:
        is_array = compat.is_array_api_obj(value)
        _backend_of_type[kind] = backend_name(array_namespace(value)) if is_array else None
    return _backend_of_type[kind]


def device_rule(function: Callable[P, R]) -> Callable[P, R]:
    """Run ``function`` under the device rule of its first array argument, positional or
    keyword (a network, a number or ``self`` is passed over); with none, as it is."""

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
