"""The forward pass written once for every array namespace: the centre every engine stands
in for.

:func:`forward` is the whole computation in array-API calls; :mod:`xpnet.inference` runs it
where no engine applies, and engines (ONNX Runtime for NumPy rows, dask chunk by chunk) must
give the same labels.

The non-finite rule (docs/design.md): a row whose output layer gives any value that is not
finite (NaN or an infinity, as a division by zero or an overflow leaves) has no class: its
label is :data:`NO_CLASS`, which no label equals, so it is never counted as correct.
"""

from __future__ import annotations

from xpnet._device import device_rule
from xpnet._typing import Array, Namespace
from xpnet.activations import ACTIVATIONS
from xpnet.network import Network
from xpnet.onnx_export import ORDER_PRESERVING

NO_CLASS = -1
"""The label of a row whose output layer's values are not all finite: no class at all."""


@device_rule
def labels_of(xp: Namespace, values: Array, z: Array) -> Array:
    """The class of each row of ``values`` (its argmax, in namespace ``xp``), or
    :data:`NO_CLASS` for a row where the output layer's sums ``z`` (``values`` before the
    activation) hold a NaN or an infinity.

    An argmax over NaN picks the NaN's own index (0 where every value is NaN), a class
    that the values do not support; such a row gets no class instead. Infinite sums are
    refused too: they are an overflow, and a squashing activation would hide it.
    """
    classes = xp.argmax(values, axis=-1)
    finite = xp.all(xp.isfinite(z), axis=-1)
    return xp.where(finite, classes, xp.full_like(classes, NO_CLASS))


@device_rule
def forward(net: Network, x: Array, *, labels: bool) -> Array:
    """The output layer's values of ``net`` on ``x`` in one pass (with ``labels``, the
    class of each row: a softmax or identity output is skipped, its argmax being the
    same).

    ``x`` must already be checked (:meth:`~xpnet.Network.check_input`); it is cast to the
    network's dtype here. Every step is an array-API call on ``net``'s namespace, so this
    runs unchanged on NumPy, CuPy, PyTorch, JAX, dask and array-api-strict, under
    ``jax.jit`` too.

    Parameters
    ----------
    net : Network
        The network.
    x : array
        One sample ``(features,)`` or rows ``(N, features)`` on the network's device.
    labels : bool
        Return class indices rather than the output layer's values
        (:func:`~xpnet.forward_pass.labels_of`: :data:`~xpnet.forward_pass.NO_CLASS` for a
        row whose output layer's values are not all finite).

    Returns
    -------
    array
        ``(N, outputs)`` values in the network's dtype, or ``(N,)`` class indices.

    Examples
    --------
    >>> import xpnet
    >>> from xpnet.forward_pass import forward
    >>> for name in ("numpy", "array_api_strict"):
    ...     backend = xpnet.get_backend(name)
    ...     weights = {"W1": backend.asarray([[1.0, -1.0], [-1.0, 1.0]]),
    ...                "b1": backend.asarray([0.0, 0.0])}
    ...     network = xpnet.Network.from_mapping(weights, ["softmax"])
    ...     x = backend.asarray([[1.0, 0.0], [0.0, 2.0]])
    ...     print(xpnet.to_host(forward(network, x, labels=True)).tolist())
    [0, 1]
    [0, 1]
    """
    xp = net.xp
    *hidden, last = net.layers
    x = net.cast_input(x)
    for layer in hidden:
        x = ACTIVATIONS[layer.activation](x @ layer.weight + layer.bias)
    z = x @ last.weight + last.bias
    if labels and last.activation in ORDER_PRESERVING:
        return labels_of(xp, z, z)
    out = ACTIVATIONS[last.activation](z)
    return labels_of(xp, out, z) if labels else out
