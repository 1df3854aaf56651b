"""The cross-entropy loss of a :class:`~xpnet.Network` and its gradients, on any backend.

Training minimises the mean cross-entropy of the softmax output. The loss is computed from
the output layer's pre-activations (the logits) with a log-sum-exp, so it stays finite
where ``log(softmax(z))`` would underflow to ``-inf``, and its gradient with respect to the
logits is the textbook's ``(softmax(z) - t) / N``. Hidden layers may use every activation
of :data:`~xpnet.activations.ACTIVATIONS` except ``step``: its gradient is zero almost
everywhere, so gradient descent would leave every layer below it untouched, and a network
with a step layer is refused (:class:`~xpnet.NetworkError`) rather than silently not trained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

import array_api_compat as compat

from xpnet._array_api import describe, namespace_of, scalar_like
from xpnet._device import device_rule, on_device_of
from xpnet._typing import Array
from xpnet.activations import ACTIVATIONS, softmax
from xpnet.backends import to_host
from xpnet.errors import BackendMismatchError, NetworkError
from xpnet.network import Network, NetworkLike, as_network


@dataclass(frozen=True)
class LayerGradient:
    """The loss's gradient with respect to one layer's ``weight`` and ``bias``."""

    weight: Array
    bias: Array


Gradients: TypeAlias = tuple[LayerGradient, ...]
"""One :class:`LayerGradient` per layer of the network, in the same order."""


@dataclass(frozen=True)
class Backprop:
    """What one forward and backward pass gives: the loss, its gradients and the logits."""

    loss: Array
    gradients: Gradients
    logits: Array


def _identity_grad(grad: Array, z: Array, y: Array) -> Array:
    return grad


def _sigmoid_grad(grad: Array, z: Array, y: Array) -> Array:
    return grad * y * (1.0 - y)


def _tanh_grad(grad: Array, z: Array, y: Array) -> Array:
    return grad * (1.0 - y * y)


def _relu_grad(grad: Array, z: Array, y: Array) -> Array:
    xp = namespace_of(grad)
    return xp.where(z > 0, grad, scalar_like(0.0, grad, xp))


def _softmax_grad(grad: Array, z: Array, y: Array) -> Array:
    # The softmax Jacobian times grad, without building the Jacobian.
    xp = namespace_of(grad)
    return y * (grad - xp.sum(grad * y, axis=-1, keepdims=True))


DERIVATIVES: dict[str, Callable[[Array, Array, Array], Array]] = {
    "identity": _identity_grad,
    "sigmoid": _sigmoid_grad,
    "relu": _relu_grad,
    "tanh": _tanh_grad,
    "softmax": _softmax_grad,
}
"""``(grad wrt output, pre-activation z, output y) -> grad wrt z`` for each trainable activation."""


def check_trainable(network: Network) -> None:
    """Raise :class:`NetworkError` unless backprop can train ``network``.

    Every layer needs an activation with a useful gradient (not ``step``), and the output
    layer must be softmax, since the loss is the cross-entropy of a softmax output.
    """
    for number, layer in enumerate(network.layers, start=1):
        if layer.activation not in DERIVATIVES:
            raise NetworkError(
                f"layer {number} uses the {layer.activation!r} activation, whose gradient is zero "
                "almost everywhere, so training cannot change the layers below it; "
                "use sigmoid, tanh or relu for training"
            )
    if network.layers[-1].activation != "softmax":
        raise NetworkError(
            f"training needs a softmax output layer (the loss is cross-entropy); "
            f"the output layer uses {network.layers[-1].activation!r}"
        )


@device_rule
def as_targets(t: Array, classes: int, dtype: object) -> Array:
    """One-hot rows ``(N, classes)`` in ``dtype`` from class indices ``(N,)`` or one-hot rows.

    Index labels outside ``[0, classes)`` are refused (counted on the device; one integer
    comes to the host), since they would silently become all-zero rows.
    """
    xp = namespace_of(t, what="labels")
    if t.ndim == 2 and t.shape[1] == classes:
        return xp.astype(t, dtype)
    if t.ndim != 1 or not xp.isdtype(t.dtype, "integral"):
        raise ValueError(
            f"labels must be integer class indices (N,) or one-hot rows (N, {classes}); "
            f"got shape {tuple(t.shape)} and dtype {t.dtype}"
        )
    outside = int(to_host(xp.count_nonzero((t < 0) | (t >= classes))))
    if outside:
        raise ValueError(f"{outside} label(s) lie outside the network's classes 0..{classes - 1}")
    classes_row = xp.arange(classes, dtype=t.dtype, device=compat.device(t))
    return xp.astype(t[:, None] == classes_row, dtype)


@device_rule
def log_softmax(z: Array) -> Array:
    """``log(softmax(z))`` along the last axis, via log-sum-exp (finite for finite ``z``)."""
    xp = namespace_of(z)
    shifted = z - xp.max(z, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


@device_rule
def cross_entropy(logits: Array, targets: Array) -> Array:
    """Mean over rows of ``-sum(targets * log_softmax(logits))``, as a 0-d array."""
    xp = namespace_of(logits, targets)
    return -xp.sum(targets * log_softmax(logits)) / float(logits.shape[0])


@device_rule
def forward_logits(network: Network, x: Array) -> Array:
    """The output layer's pre-activations for a checked batch ``x`` (softmax not applied)."""
    return _forward(network, x)[2]


def _forward(network: Network, x: Array) -> tuple[list[Array], list[Array], Array]:
    """Each layer's input, each hidden layer's pre-activation, and the logits."""
    layers = network.layers
    inputs, pre_activations = [x], []
    for layer in layers[:-1]:
        z = inputs[-1] @ layer.weight + layer.bias
        pre_activations.append(z)
        inputs.append(ACTIVATIONS[layer.activation](z))
    return inputs, pre_activations, inputs[-1] @ layers[-1].weight + layers[-1].bias


def _l2_penalty(network: Network, weight_decay: float) -> Array:
    """``weight_decay / 2`` times the sum of the squared weights (biases are not decayed)."""
    xp = network.xp
    return 0.5 * weight_decay * sum(xp.sum(layer.weight**2) for layer in network.layers)


@device_rule
def backprop(network: Network, x: Array, targets: Array, weight_decay: float = 0.0) -> Backprop:
    """One forward and backward pass over a batch, unchecked (the core of the training loop).

    ``x`` must already be in the network's dtype and place, ``targets`` one-hot rows from
    :func:`as_targets`. The loss is the mean cross-entropy plus the L2 penalty
    ``weight_decay / 2 * sum(W**2)`` over the weights (biases are not decayed).
    """
    xp = network.xp
    layers = network.layers
    inputs, pre_activations, logits = _forward(network, x)
    loss = cross_entropy(logits, targets)
    delta = (softmax(logits) - targets) / float(x.shape[0])
    gradients = []
    for number in range(len(layers) - 1, -1, -1):
        layer = layers[number]
        weight_grad = inputs[number].T @ delta
        if weight_decay:
            weight_grad = weight_grad + weight_decay * layer.weight
        gradients.append(LayerGradient(weight_grad, xp.sum(delta, axis=0)))
        if number:
            below = layers[number - 1].activation
            delta = DERIVATIVES[below](
                delta @ layer.weight.T, pre_activations[number - 1], inputs[number]
            )
    if weight_decay:
        loss = loss + _l2_penalty(network, weight_decay)
    return Backprop(loss, tuple(reversed(gradients)), logits)


def loss_and_gradients(
    network: NetworkLike, x: Array, t: Array, *, weight_decay: float = 0.0
) -> tuple[Array, Gradients]:
    """The loss of ``network`` on the batch ``x`` with labels ``t``, and its gradients.

    ``t`` holds class indices ``(N,)`` or one-hot rows ``(N, classes)``. The loss is the
    mean cross-entropy plus ``weight_decay / 2 * sum(W**2)`` over the weights, a 0-d array
    on the network's device; the gradients mirror the layers. Runs under the device rule.

    Parameters
    ----------
    network : Network or dict
        A trainable network.
    x : array
        A batch ``(N, features)`` on the network's backend and device.
    t : array
        Its class indices ``(N,)`` or one-hot rows ``(N, classes)``.
    weight_decay : float, optional
        The L2 penalty's factor.

    Returns
    -------
    tuple of (array, tuple of LayerGradient)
        The loss and one gradient (``weight``, ``bias``) per layer.

    Examples
    --------
    >>> import xpnet
    >>> for name in ("numpy", "array_api_strict"):
    ...     backend = xpnet.get_backend(name)
    ...     x = backend.asarray([[1.0, 0.0], [0.0, 1.0]] * 2)
    ...     t = backend.asarray([0, 1] * 2)
    ...     network = xpnet.init_network([2, 4, 2], seed=0, backend=name, dtype="float64")
    ...     loss, gradients = xpnet.loss_and_gradients(network, x, t)
    ...     print(round(float(xpnet.to_host(loss)), 3), [g.weight.shape for g in gradients])
    0.739 [(2, 4), (4, 2)]
    0.739 [(2, 4), (4, 2)]
    """
    net = as_network(network)
    check_trainable(net)
    with on_device_of(x):
        x = checked_training_input(net, x, t)
        result = backprop(net, x, as_targets(t, net.sizes[-1], net.dtype), weight_decay)
    return result.loss, result.gradients


@device_rule
def checked_training_input(network: Network, x: Array, t: Array) -> Array:
    """``x`` as a checked ``(N, features)`` batch in the network's dtype, with N labels in ``t``."""
    network.check_input(x)
    x = network.cast_input(x)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"training needs a non-empty batch (N, features), got {tuple(x.shape)}")
    if describe(t) != describe(x):
        raise BackendMismatchError(f"x is on {describe(x)} but its labels t are on {describe(t)}")
    if t.shape[0] != x.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but t has {t.shape[0]} labels")
    return x
