"""The textbook's activation functions and softmax, for any array-API backend.

Each function takes its namespace from its input, keeps the input's floating dtype and
device, works on arrays of any shape, and never writes into its input. Integer and bool
input is converted to the namespace's default floating dtype (see ``as_floating``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from xpnet._array_api import as_floating, namespace_of, scalar_like
from xpnet._backend_records import native_sigmoid
from xpnet._device import device_rule
from xpnet._typing import Array, Namespace


@device_rule
def identity_function(x: Array) -> Array:
    """Return ``x`` unchanged (the output activation of a regression network).

    Parameters
    ----------
    x : array
        Any array-API array; integer and bool input becomes the default floating dtype.

    Returns
    -------
    array
        ``x`` with the same values, in a floating dtype, on ``x``'s device.

    Examples
    --------
    >>> import xpnet
    >>> for name in ("numpy", "array_api_strict"):
    ...     x = xpnet.get_backend(name).asarray([-1.5, 0.0, 2.0])
    ...     print(xpnet.to_host(xpnet.identity_function(x)).tolist())
    [-1.5, 0.0, 2.0]
    [-1.5, 0.0, 2.0]
    """
    xp = namespace_of(x)
    return as_floating(x, xp, "identity_function")


@device_rule
def step_function(x: Array) -> Array:
    """1 where ``x > 0``, else 0, in ``x``'s floating dtype (NaN gives 0).

    Parameters
    ----------
    x : array
        Any array-API array; integer and bool input becomes the default floating dtype.

    Returns
    -------
    array
        0.0 and 1.0 of ``x``'s shape, floating dtype and device.

    Examples
    --------
    >>> import xpnet
    >>> for name in ("numpy", "array_api_strict"):
    ...     x = xpnet.get_backend(name).asarray([-1.0, 0.0, 0.5])
    ...     print(xpnet.to_host(xpnet.step_function(x)).tolist())
    [0.0, 0.0, 1.0]
    [0.0, 0.0, 1.0]
    """
    xp = namespace_of(x)
    x = as_floating(x, xp, "step_function")
    return xp.astype(x > 0, x.dtype)


@device_rule
def sigmoid(x: Array) -> Array:
    """The logistic function ``1 / (1 + exp(-x))``, computed without overflow.

    Where the array library has its own (PyTorch, JAX, CuPy) that one pass runs; else
    the standard-only formula, in which ``exp`` only ever sees ``-|x|``, so float32 input
    of any size (±100, ±inf) gives results in [0, 1] with no overflow warning and tiny
    outputs keep their relative precision. Both agree to rounding, except that some
    libraries flush outputs below the smallest normal float to zero. NaN propagates.

    Parameters
    ----------
    x : array
        Any array-API array; integer and bool input becomes the default floating dtype.

    Returns
    -------
    array
        Values in [0, 1] of ``x``'s shape, floating dtype and device.

    Examples
    --------
    >>> import xpnet
    >>> for name in ("numpy", "array_api_strict"):
    ...     x = xpnet.get_backend(name).asarray([-1000.0, 0.0, 2.0])
    ...     print(xpnet.to_host(xpnet.sigmoid(x)).round(4).tolist())
    [0.0, 0.5, 0.8808]
    [0.0, 0.5, 0.8808]
    """
    xp = namespace_of(x)
    x = as_floating(x, xp, "sigmoid")
    native = native_sigmoid(xp)
    return native(x) if native is not None else logistic_formula(x, xp)


@device_rule
def logistic_formula(x: Array, xp: Namespace) -> Array:
    """The sigmoid of floating ``x`` from standard functions only (see :func:`sigmoid`)."""
    decay = xp.exp(-xp.abs(x))
    positive = 1.0 / (1.0 + decay)
    return xp.where(x >= 0, positive, decay * positive)


@device_rule
def relu(x: Array) -> Array:
    """``max(x, 0)``; NaN propagates.

    Parameters
    ----------
    x : array
        Any array-API array; integer and bool input becomes the default floating dtype.

    Returns
    -------
    array
        ``x`` with its negative entries replaced by 0, in ``x``'s floating dtype and device.

    Examples
    --------
    >>> import xpnet
    >>> for name in ("numpy", "array_api_strict"):
    ...     x = xpnet.get_backend(name).asarray([-1.0, 0.0, 2.0])
    ...     print(xpnet.to_host(xpnet.relu(x)).tolist())
    [0.0, 0.0, 2.0]
    [0.0, 0.0, 2.0]
    """
    xp = namespace_of(x)
    x = as_floating(x, xp, "relu")
    return xp.maximum(x, scalar_like(0.0, x, xp))


@device_rule
def softmax(x: Array, axis: int = -1) -> Array:
    """Softmax along ``axis``, safe from overflow (the maximum is subtracted first).

    Slices along ``axis`` sum to 1. Special values, as limits of finite inputs:
    a slice holding +inf shares all probability equally among its +inf entries;
    a slice that is entirely -inf is uniform; a slice holding NaN is all NaN.
    Along an axis of length zero there are no slices: the result is an empty array of
    ``x``'s shape, as ``torch.softmax`` and ``jax.nn.softmax`` give.

    Parameters
    ----------
    x : array
        Any array-API array with at least one axis; integer and bool input becomes the
        default floating dtype.
    axis : int, optional
        The axis whose slices become probabilities; the last by default.

    Returns
    -------
    array
        Probabilities of ``x``'s shape, floating dtype and device.

    Raises
    ------
    ValueError
        If ``x`` is 0-d or ``axis`` is out of range.

    Examples
    --------
    >>> import xpnet
    >>> for name in ("numpy", "array_api_strict"):
    ...     x = xpnet.get_backend(name).asarray([[1.0, 2.0, 3.0], [0.0, 0.0, 1000.0]])
    ...     print(xpnet.to_host(xpnet.softmax(x)).round(4).tolist())
    [[0.09, 0.2447, 0.6652], [0.0, 0.0, 1.0]]
    [[0.09, 0.2447, 0.6652], [0.0, 0.0, 1.0]]
    """
    xp = namespace_of(x)
    x = as_floating(x, xp, "softmax")
    if x.ndim == 0:
        raise ValueError("softmax needs an array with at least one axis, got a 0-d array")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} is out of range for an array of {x.ndim} axes")
    if x.shape[axis] == 0:
        return xp.zeros_like(x)
    peak = xp.max(x, axis=axis, keepdims=True)
    infinite = xp.isinf(peak)
    zero = scalar_like(0.0, x, xp)
    # Rows whose peak is ±inf would give inf - inf = NaN: take the limit instead, where the
    # entries equal to the peak share everything. NaN peaks propagate through x - peak.
    limit = xp.where(x == peak, zero, scalar_like(-math.inf, x, xp))
    shifted = xp.where(infinite, limit, x - xp.where(infinite, zero, peak))
    exps = xp.exp(shifted)
    return exps / xp.sum(exps, axis=axis, keepdims=True)


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "identity": identity_function,
    "step": step_function,
    "sigmoid": sigmoid,
    "relu": relu,
    "softmax": softmax,
}
"""Activation functions by the names that networks and weight files use."""


@device_rule
def tanh(x: Array) -> Array:
    """The hyperbolic tangent, in [-1, 1] for every input (±1 at ±inf); NaN propagates.

    The standard's ``tanh`` saturates without overflow, so large magnitudes give ±1 with no
    warning; the tanh layers of scikit-learn, PyTorch, Keras and ONNX import as this.

    Parameters
    ----------
    x : array
        Any array-API array; integer and bool input becomes the default floating dtype.

    Returns
    -------
    array
        Values in [-1, 1] of ``x``'s shape, floating dtype and device.

    Examples
    --------
    >>> import xpnet
    >>> from xpnet.activations import tanh
    >>> for name in ("numpy", "array_api_strict"):
    ...     x = xpnet.get_backend(name).asarray([-1000.0, 0.0, 0.5])
    ...     print(xpnet.to_host(tanh(x)).round(4).tolist())
    [-1.0, 0.0, 0.4621]
    [-1.0, 0.0, 0.4621]
    """
    xp = namespace_of(x)
    x = as_floating(x, xp, "tanh")
    return xp.tanh(x)


ACTIVATIONS["tanh"] = tanh
