"""The network type: dense layers with named activations, built, checked and moved as a unit.

A :class:`Network` holds weights ``(in, out)`` and biases ``(out,)`` of one namespace, device
and floating dtype. The textbook's parameter dict (``W1, b1, W2, b2, W3, b3``, as in
``sample_weight.pkl``) converts to and from it, so both are accepted wherever a network is.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import sys
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import array_api_compat as compat
import numpy as np

from xpnet._array_api import array_namespace, describe, device_name
from xpnet._device import device_rule, on_backend, on_device_of
from xpnet._typing import Array, Namespace
from xpnet.activations import ACTIVATIONS
from xpnet.backends import Backend, backend_of, get_backend, to_host
from xpnet.errors import BackendMismatchError, NetworkError


@dataclass(frozen=True)
class Layer:
    """One dense layer: ``activation(x @ weight + bias)``.

    Parameters
    ----------
    weight : array
        The weights, ``(inputs, outputs)``.
    bias : array
        The biases, ``(outputs,)``, of the weights' backend, device and dtype.
    activation : str
        The activation's name: ``"sigmoid"``, ``"softmax"``, ``"relu"``, ``"tanh"``,
        ``"step"`` or ``"identity"``.
    """

    weight: Array
    bias: Array
    activation: str


@dataclass(frozen=True)
class Network:
    """A feed-forward network of dense layers, checked for consistent shapes and placement.

    Every function that takes a network also takes the textbook's dict ``W1, b1, ...``;
    :meth:`from_mapping` and :meth:`to_mapping` convert between the two. A network is
    immutable: :meth:`scale_input` and :func:`~xpnet.to_backend` return new ones.

    Parameters
    ----------
    layers : tuple of Layer
        At least one layer; each takes as many inputs as the one before gives.

    Raises
    ------
    BackendMismatchError
        If the arrays are not all on one backend and device.
    NetworkError
        If there is no layer, the arrays differ in dtype or are not floating, a layer's
        shapes do not fit or hold no units (a width of 0), or an activation is unknown.

    See Also
    --------
    init_network : A network with seeded random weights.
    load_weights : A network from a file.

    Examples
    --------
    >>> import xpnet
    >>> for name in ("numpy", "array_api_strict"):
    ...     backend = xpnet.get_backend(name)
    ...     layer = xpnet.Layer(backend.asarray([[1.0, -1.0], [-1.0, 1.0]]),
    ...                         backend.asarray([0.0, 0.5]), "softmax")
    ...     network = xpnet.Network((layer,))
    ...     print(network.backend, network.sizes, network.activations, sorted(network.to_mapping()))
    numpy on cpu (2, 2) ('softmax',) ['W1', 'b1']
    array_api_strict on CPU_DEVICE (2, 2) ('softmax',) ['W1', 'b1']
    """

    layers: tuple[Layer, ...]

    def __post_init__(self) -> None:
        if not self.layers:
            raise NetworkError("a network needs at least one layer")
        arrays = [a for layer in self.layers for a in (layer.weight, layer.bias)]
        places = {describe(a) for a in arrays}
        if len(places) > 1:
            raise BackendMismatchError(
                f"a network's arrays must share one backend and device; got {sorted(places)}"
            )
        xp = array_namespace(*arrays)
        dtypes = {str(a.dtype) for a in arrays}
        if len(dtypes) > 1 or not xp.isdtype(arrays[0].dtype, "real floating"):
            raise NetworkError(f"a network's arrays must share one floating dtype; got {dtypes}")
        previous = None
        for number, layer in enumerate(self.layers, start=1):
            _check_layer(number, layer, previous)
            previous = layer.weight.shape[1]

    @classmethod
    def from_mapping(
        cls, params: Mapping[str, Array], activations: Sequence[str] | None = None
    ) -> Network:
        """Build from the textbook's dict ``{"W1": ..., "b1": ..., ...}``.

        ``activations`` defaults to the textbook's choice: sigmoid on every hidden layer,
        softmax on the output.

        Raises
        ------
        NetworkError
            If the keys are not ``W1, b1, ..., Wn, bn`` or the activations do not match the
            layers in number.
        """
        numbers = sorted(int(m[1]) for key in params if (m := re.fullmatch(r"W(\d{1,9})", key)))
        if numbers != list(range(1, len(numbers) + 1)) or not numbers:
            raise NetworkError(
                f"expected weight keys W1, W2, ... with biases b1, b2, ...; got {sorted(params)}"
            )
        missing = [f"b{n}" for n in numbers if f"b{n}" not in params]
        if missing:
            raise NetworkError(f"the parameters lack the bias(es) {', '.join(missing)}")
        strays = sorted(set(params) - {f"{kind}{n}" for n in numbers for kind in "Wb"})
        if strays:
            raise NetworkError(
                f"the parameter(s) {', '.join(strays)} fit no layer (the weights are "
                f"W1 to W{numbers[-1]})"
            )
        chosen = list(activations or textbook_activations(len(numbers)))
        if len(chosen) != len(numbers):
            raise NetworkError(
                f"{len(numbers)} layers need {len(numbers)} activations, got {chosen}"
            )
        return cls(
            tuple(Layer(params[f"W{n}"], params[f"b{n}"], a) for n, a in zip(numbers, chosen))
        )

    def to_mapping(self) -> dict[str, Array]:
        """The textbook's dict ``{"W1": ..., "b1": ..., ...}`` of this network's arrays."""
        params = {}
        for n, layer in enumerate(self.layers, start=1):
            params[f"W{n}"] = layer.weight
            params[f"b{n}"] = layer.bias
        return params

    @property
    def sizes(self) -> tuple[int, ...]:
        """Units per layer, input first: ``(784, 50, 100, 10)`` for the textbook network."""
        return (self.layers[0].weight.shape[0], *(layer.weight.shape[1] for layer in self.layers))

    @property
    def activations(self) -> tuple[str, ...]:
        """The activation name of each layer."""
        return tuple(layer.activation for layer in self.layers)

    @property
    def backend(self) -> Backend:
        """The backend and device the network's arrays live on."""
        return backend_of(self.layers[0].weight)

    @property
    def xp(self) -> Namespace:
        """The array namespace of the network's arrays."""
        return array_namespace(self.layers[0].weight)

    @property
    def dtype(self) -> object:
        """The floating dtype of the network's arrays."""
        return self.layers[0].weight.dtype

    def scale_input(self, factor: float) -> Network:
        """The same network for inputs multiplied by ``1/factor``: ``W1`` becomes ``factor*W1``.

        ``net.scale_input(1 / 255)`` classifies raw uint8 pixels as ``net`` classifies
        pixels scaled to [0, 1], without a separate pass over the images to scale them.
        """
        first, *rest = self.layers
        with on_device_of(first.weight):
            scaled = Layer(first.weight * float(factor), first.bias, first.activation)
        return Network((scaled, *rest))

    @device_rule
    def cast_input(self, x: Array) -> Array:
        """``x`` in the network's floating dtype (a no-op where it already is)."""
        return x if x.dtype == self.dtype else self.xp.astype(x, self.dtype)

    def check_input(self, x: Array) -> None:
        """Check that ``x`` shares the network's namespace and device, has its width, and
        holds real numbers (floating, integer or bool pixels).

        Raises :class:`BackendMismatchError` naming both sides and how to move the network,
        rather than copying data between devices behind the caller's back; and
        :class:`NetworkError` for input that cannot be pixels: complex, string, bytes or
        object dtypes, and NumPy masked arrays (the mask would be lost).
        """
        self._check_same_place(x, "x")
        _check_real(x, "x")
        if x.ndim == 0 or x.shape[-1] != self.layers[0].weight.shape[0]:
            flattened = x.ndim > 2 and math.prod(x.shape[1:]) == self.sizes[0]
            raise NetworkError(
                f"x has shape {tuple(x.shape)} but the network's first layer expects "
                f"{self.sizes[0]} features in the last axis"
                + (
                    f"; flatten each sample first: shape ({x.shape[0]}, {self.sizes[0]})"
                    if flattened
                    else ""
                )
            )

    @device_rule
    def check_labels(self, t: Array, x: Array) -> None:
        """Check labels ``t`` for the rows of ``x`` as :meth:`check_input` checks ``x``.

        ``t`` must share the network's namespace and device (else
        :class:`BackendMismatchError`) and be integer class indices ``(N,)`` in
        ``0 .. classes - 1`` or one-hot rows ``(N, classes)`` of real numbers, one per row
        of ``x`` (else :class:`NetworkError`, in one line). The range is counted on the
        device; one integer comes to the host.
        """
        self._check_same_place(t, "the labels t")
        _check_real(t, "the labels t")
        classes = self.layers[-1].weight.shape[1]
        if t.ndim == 0 or t.shape[0] != x.shape[0]:
            raise NetworkError(
                f"x has {x.shape[0]} rows but t has "
                f"{t.shape[0] if t.ndim else 'no'} labels (shape {tuple(t.shape)})"
            )
        if t.ndim == 2 and t.shape[1] == classes:
            return
        kind = _number_kind(t)
        if t.ndim != 1 or kind not in ("signed integer", "unsigned integer"):
            raise NetworkError(
                f"labels must be integer class indices (N,) or one-hot rows (N, {classes}); "
                f"got shape {tuple(t.shape)} and dtype {t.dtype}"
            )
        too_big = t >= classes
        unsigned = kind == "unsigned integer"  # nothing below 0 to look for
        outside = int(self.xp.count_nonzero(too_big if unsigned else too_big | (t < 0)))
        if outside:
            raise NetworkError(
                f"{outside} label(s) lie outside the network's classes 0..{classes - 1}"
            )

    def _check_same_place(self, x: Array, what: str) -> None:
        """Raise :class:`BackendMismatchError` unless ``x`` is on the network's backend and
        device."""
        weight = self.layers[0].weight
        # array-api-compat finds an array's namespace by its type, so the same type and
        # device object is the same place by any measure. (NumPy arrays of JAX's float0
        # dtype, the one exception, hold no numbers and are refused by the dtype check.)
        if type(x) is type(weight) and compat.device(x) == compat.device(weight):
            return
        here = self.backend
        try:
            there = backend_of(x)
        except TypeError:
            raise BackendMismatchError(
                f"{what} must be an array of the network's backend ({here}), got "
                f"{type(x).__name__}; convert it with xpnet.get_backend({here.name!r}).asarray"
            ) from None
        # An array being traced (inside jax.jit) has no device yet: the trace places it.
        traced = there.device is None
        if there.name != here.name or (
            not traced and device_name(there.device) != device_name(here.device)
        ):
            move = (
                f"move the network with xpnet.to_backend(network, {there.name!r}, "
                f"device={device_name(there.device)!r})"
                if what == "x"
                else f"move them with xpnet.get_backend({here.name!r}, "
                f"{device_name(here.device)!r}).asarray(xpnet.to_host(t))"
            )
            raise BackendMismatchError(
                f"the network is on {here} but {what} is on {there}; {move} "
                "(xpnet never copies between devices implicitly)"
            )


def check_finite(network: Network) -> None:
    """Refuse a network whose weights or biases hold a NaN or an infinity, naming the first
    such array (``W2``) and how many values in it are not finite.

    Every loader applies it (the non-finite rule, docs/design.md): such weights make
    every output they reach NaN, which no answer can be read from.

    Raises
    ------
    NetworkError
        If an array holds a value that is not finite.
    """
    for key, array in network.to_mapping().items():
        xp = array_namespace(array)
        with on_device_of(array):
            bad = int(xp.count_nonzero(~xp.isfinite(array)))
        if bad:
            raise NetworkError(
                f"{key}: {bad} of its {math.prod(array.shape)} values are not finite (NaN "
                "or infinity); xpnet loads only finite weights"
            )


def _check_real(x: Array, what: str) -> None:
    """Refuse arrays that cannot be numbers: masked, complex, strings, bytes, objects."""
    masked = sys.modules.get("numpy.ma")  # none was made if NumPy's masked arrays never loaded
    if masked is not None and isinstance(x, masked.MaskedArray):
        raise NetworkError(
            f"{what} is a NumPy masked array, whose mask xpnet would lose; fill the masked "
            "entries (x.filled(value)) or drop those rows first"
        )
    if _number_kind(x) is None:
        raise NetworkError(f"{what} must hold real numbers (pixels, labels), not dtype {x.dtype}")


_NUMBER_KINDS = ("bool", "signed integer", "unsigned integer", "real floating")
_kind_of: dict[tuple[type, object], str] = {}
"""The number kind of each array type and dtype seen (only real-number dtypes, so it stays
as small as the set of such dtypes)."""


def _number_kind(x: Array) -> str | None:
    """The kind of real number array ``x`` holds (one of ``_NUMBER_KINDS``), ``None`` for
    any other dtype. Found by its namespace's ``isdtype`` and remembered per array type and
    dtype (the dtype alone may compare equal across libraries): the checks run every call."""
    key = (type(x), x.dtype)
    try:
        return _kind_of[key]
    except (KeyError, TypeError):  # not seen yet, or a dtype that cannot be hashed
        pass
    xp = array_namespace(x)
    kind = next((k for k in _NUMBER_KINDS if xp.isdtype(x.dtype, k)), None)
    if kind is not None and isinstance(key[1], Hashable):
        _kind_of[key] = kind
    return kind


def _check_layer(number: int, layer: Layer, inputs: int | None) -> None:
    weight, bias = layer.weight, layer.bias
    if layer.activation not in ACTIVATIONS:
        raise NetworkError(
            f"layer {number}: unknown activation {layer.activation!r}; "
            f"choose one of {', '.join(ACTIVATIONS)}"
        )
    if weight.ndim != 2 or bias.ndim != 1 or bias.shape[0] != weight.shape[1]:
        raise NetworkError(
            f"layer {number}: weight must be (in, out) and bias (out,); "
            f"got {tuple(weight.shape)} and {tuple(bias.shape)}"
        )
    if 0 in weight.shape:
        raise NetworkError(f"layer {number} has the shape {tuple(weight.shape)}: no units")
    if inputs is not None and weight.shape[0] != inputs:
        raise NetworkError(
            f"layer {number} takes {weight.shape[0]} inputs but layer {number - 1} gives {inputs}"
        )


def textbook_activations(depth: int) -> tuple[str, ...]:
    """Sigmoid on each hidden layer and softmax on the output, as the textbook's network."""
    return (*(["sigmoid"] * (depth - 1)), "softmax")


NetworkLike: TypeAlias = Network | Mapping[str, Array]
"""A :class:`Network` or the textbook's parameter dict."""


def as_network(network: NetworkLike) -> Network:
    """Accept a :class:`Network` or the textbook's parameter dict."""
    if isinstance(network, Network):
        return network
    if isinstance(network, Mapping):
        return Network.from_mapping(network)
    raise TypeError(
        f"expected a Network or a dict of W1, b1, ... arrays, got {type(network).__name__}"
    )


MAX_INIT_BYTES = 1 << 32
"""The most bytes :func:`init_network` allocates unless told otherwise (``max_bytes``)."""


def init_bytes(sizes: Sequence[int], dtype: str = "float32") -> int:
    """Bytes :func:`init_network` needs for ``sizes``: every weight and bias in ``dtype``,
    plus the host's float64 draw of the largest layer's weights."""
    itemsize = np.dtype(dtype).itemsize
    params = sum(a * b + b for a, b in itertools.pairwise(sizes))
    largest = max(a * b for a, b in itertools.pairwise(sizes))
    return params * itemsize + largest * np.dtype(np.float64).itemsize


def init_network(
    sizes: Sequence[int],
    *,
    activations: Sequence[str] | None = None,
    seed: int = 0,
    dtype: str = "float32",
    backend: str = "numpy",
    device: str | None = None,
    max_bytes: int = MAX_INIT_BYTES,
) -> Network:
    """A network with seeded random weights, the same values on every backend.

    Weights are Gaussian with Xavier scaling (``1/sqrt(fan_in)``), or He scaling
    (``sqrt(2/fan_in)``) for ReLU layers; biases start at zero. ``activations`` defaults to
    the textbook's (sigmoid hidden layers, softmax output). Before anything is allocated,
    the bytes it takes (``xpnet.network.init_bytes``) are checked against ``max_bytes`` (by
    default ``xpnet.network.MAX_INIT_BYTES``) and, where the system says, the host's
    available memory; too many raise :class:`NetworkError` in one line. The arrays are
    created under the device rule (see ``xpnet._device``).

    Parameters
    ----------
    sizes : sequence of int
        Units per layer, input first: ``[784, 50, 100, 10]`` for the textbook's network.
    activations : sequence of str, optional
        One activation name per layer; the textbook's by default.
    seed : int, optional
        The seed of NumPy's generator that draws the weights.
    dtype : str, optional
        The floating dtype's name, ``"float32"`` by default.
    backend, device : str, optional
        Where the arrays are created (see :func:`~xpnet.get_backend`).
    max_bytes : int, optional
        The most bytes the network may take to create.

    Returns
    -------
    Network
        The new network on ``backend`` and ``device``.

    Raises
    ------
    NetworkError
        If ``sizes``, ``activations`` or ``dtype`` is malformed, or the network would take
        more than ``max_bytes`` or the memory available.
    BackendUnavailableError
        If ``backend`` or ``device`` cannot run here.

    Examples
    --------
    >>> import xpnet
    >>> weights = []
    >>> for name in ("numpy", "array_api_strict"):
    ...     network = xpnet.init_network([784, 50, 100, 10], seed=0, backend=name)
    ...     print(network.backend, network.sizes, network.activations)
    ...     weights.append(xpnet.to_host(network.layers[0].weight))
    numpy on cpu (784, 50, 100, 10) ('sigmoid', 'sigmoid', 'softmax')
    array_api_strict on CPU_DEVICE (784, 50, 100, 10) ('sigmoid', 'sigmoid', 'softmax')
    >>> bool((weights[0] == weights[1]).all()), weights[0].dtype.name
    (True, 'float32')
    """
    if len(sizes) < 2 or any(
        isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1 for n in sizes
    ):
        raise NetworkError(f"sizes must list at least two positive layer widths, got {list(sizes)}")
    sizes = [int(n) for n in sizes]
    chosen = list(activations or textbook_activations(len(sizes) - 1))
    if len(chosen) != len(sizes) - 1:
        raise NetworkError(f"{len(sizes) - 1} layers need as many activations, got {chosen}")
    try:
        needed = init_bytes(sizes, dtype)
    except TypeError:
        raise NetworkError(f"dtype {dtype!r} is not a dtype name such as 'float32'") from None
    available = _available_host_memory()
    limit = max_bytes if available is None else min(max_bytes, available)
    if needed > limit:
        raise NetworkError(
            f"a {'-'.join(map(str, sizes))} network in {dtype} needs {needed:,} bytes to "
            f"create, more than the {limit:,} allowed "
            + ("(max_bytes)" if limit == max_bytes else "(the memory available here)")
        )
    target = get_backend(backend, device)
    rng = np.random.default_rng(seed)
    layers = []
    with on_backend(target.name, target.device):
        for fan_in, fan_out, activation in zip(sizes[:-1], sizes[1:], chosen):
            gain = 2.0 if activation == "relu" else 1.0
            weight = rng.standard_normal((fan_in, fan_out)) * math.sqrt(gain / fan_in)
            layers.append(
                Layer(
                    target.asarray(weight, dtype=dtype),
                    target.asarray(np.zeros(fan_out), dtype=dtype),
                    activation,
                )
            )
    return Network(tuple(layers))


def _available_host_memory() -> int | None:
    """Bytes of memory the host can still give, as the C library counts them; ``None`` where
    the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def to_backend(network: NetworkLike, backend: str, device: str | None = None) -> Network:
    """Copy a network (or the textbook's dict) onto ``backend`` and ``device``, dtype kept.

    Parameters
    ----------
    network : Network or dict
        A :class:`Network` on any backend, or the textbook's dict ``W1, b1, ...``.
    backend : str
        The target backend's name (see :data:`~xpnet.BACKENDS`).
    device : str, optional
        The target device; the backend's default where ``None``.

    Returns
    -------
    Network
        A copy with the same weights, dtype and activations on the target.

    Raises
    ------
    BackendUnavailableError
        If ``backend`` or ``device`` cannot run here, or lacks the network's dtype.

    Examples
    --------
    >>> import xpnet
    >>> network = xpnet.init_network([4, 3, 2])
    >>> moved = xpnet.to_backend(network, "array_api_strict", "device1")
    >>> print(moved.backend, moved.sizes)
    array_api_strict on device1 (4, 3, 2)
    >>> back = xpnet.to_backend(moved, "numpy")
    >>> bool((xpnet.to_host(back.layers[0].weight) == network.layers[0].weight).all())
    True
    """
    source = as_network(network)
    target = get_backend(backend, device)
    with on_backend(target.name, target.device):
        return Network(
            tuple(
                Layer(
                    target.asarray(to_host(layer.weight)),
                    target.asarray(to_host(layer.bias)),
                    layer.activation,
                )
                for layer in source.layers
            )
        )
