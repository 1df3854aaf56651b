"""The forward pass, batched, and its accuracy on labelled data, for any backend.

Results stay on the input's device; only the final count of correct answers comes back
to the host, once, as a Python int.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial

from xpnet import _dask
from xpnet import _onnxruntime_engine as _engine
from xpnet._typing import Array
from xpnet.activations import ACTIVATIONS
from xpnet.network import Network, NetworkLike, as_network
from xpnet.onnx_export import ORDER_PRESERVING

DEFAULT_BATCH_SIZE = 100
"""The textbook's batch size; ``batch_size=None`` runs the whole input as one batch."""


def iter_batches(*arrays: Array, batch_size: int) -> Iterator[tuple[Array, ...]]:
    """Yield aligned slices of ``arrays`` along their first axis, ``batch_size`` rows each.

    The last batch may be shorter; an empty input yields nothing. Slices are views or
    lazy slices of the originals (never copies to another device).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    lengths = {a.shape[0] for a in arrays}
    if len(lengths) != 1:
        raise ValueError(f"arrays to batch must have the same length, got {sorted(lengths)}")
    (length,) = lengths
    for start in range(0, length, batch_size):
        stop = min(start + batch_size, length)  # array-api-strict refuses stops past the end
        yield tuple(a[start:stop, ...] for a in arrays)


def predict(network: NetworkLike, x: Array, *, batch_size: int | None = None) -> Array:
    """Forward pass of ``network`` over ``x`` (one sample or a batch along axis 0).

    ``network`` is a :class:`~xpnet.Network` or the textbook's dict ``W1, b1, ...``
    (sigmoid, sigmoid, softmax). ``x`` must share the network's namespace and device; it
    is cast to the network's dtype batch by batch (so raw uint8 pixels are fine, see
    :meth:`~xpnet.Network.scale_input`). ``batch_size`` bounds the rows computed at once;
    ``None`` runs ``x`` whole. NumPy input runs in ONNX Runtime where the ``fast`` extra
    installs it (see :func:`xpnet.numpy_engine`), with the same labels.
    """
    net = as_network(network)
    net.validate_input(x)
    return _run(net, x, batch_size, labels=False)


def predict_labels(network: NetworkLike, x: Array, *, batch_size: int | None = None) -> Array:
    """The predicted class of each row of ``x`` (argmax of :func:`predict`), on x's device.

    A softmax or identity output layer is skipped: the argmax of its input is the same.
    """
    net = as_network(network)
    net.validate_input(x)
    return _run(net, x, batch_size, labels=True)


def _run(net: Network, x: Array, batch_size: int | None, *, labels: bool) -> Array:
    if _engine.applies(net, x):
        return _engine.forward(net, x, labels=labels)
    if _dask.applies(x):  # lazily: each chunk of rows by this function, in memory
        chunk_forward = partial(_run, batch_size=batch_size, labels=labels)
        return _dask.forward(net, x, chunk_forward, labels=labels)
    if batch_size is None or x.ndim < 2:
        return _forward(net, x, labels=labels)
    parts = [_forward(net, xb, labels=labels) for (xb,) in iter_batches(x, batch_size=batch_size)]
    return net.xp.concat(parts, axis=0) if parts else _forward(net, x, labels=labels)


def _forward(net: Network, x: Array, *, labels: bool) -> Array:
    """The generic forward pass, written once for every namespace."""
    xp = net.xp
    *hidden, last = net.layers
    x = net.cast_input(x)
    for layer in hidden:
        x = ACTIVATIONS[layer.activation](x @ layer.weight + layer.bias)
    z = x @ last.weight + last.bias
    if labels and last.activation in ORDER_PRESERVING:
        return xp.argmax(z, axis=-1)
    out = ACTIVATIONS[last.activation](z)
    return xp.argmax(out, axis=-1) if labels else out


def count_correct(
    network: NetworkLike, x: Array, t: Array, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> int:
    """How many rows of ``x`` the network classifies as labelled by ``t``.

    ``t`` holds class indices ``(N,)`` or one-hot rows ``(N, classes)``. Counting happens
    on the device with ``count_nonzero``; the total crosses to the host once.
    """
    net = as_network(network)
    net.validate_input(x)
    xp = net.xp
    if t.shape[0] != x.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but t has {t.shape[0]} labels")
    # ONNX Runtime blocks the rows itself; dask batches inside each chunk, lazily.
    whole = _engine.applies(net, x) or _dask.applies(x)
    correct = 0
    for xb, tb in iter_batches(x, t, batch_size=max(1, x.shape[0]) if whole else batch_size):
        labels = xp.argmax(tb, axis=-1) if tb.ndim == 2 else tb
        predicted = _run(net, xb, batch_size if whole else None, labels=True)
        correct = correct + xp.count_nonzero(predicted == xp.astype(labels, predicted.dtype))
    return int(correct)


def accuracy(
    network: NetworkLike, x: Array, t: Array, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> float:
    """Fraction of rows of ``x`` classified as labelled by ``t`` (NaN for empty input)."""
    total = x.shape[0]
    correct = count_correct(network, x, t, batch_size=batch_size)
    return correct / total if total else float("nan")


def predict_labels_streaming(
    network: NetworkLike, blocks: Iterable[Array], *, batch_size: int | None = None
) -> Array:
    """The predicted classes of a stream of input blocks, joined in order.

    With ``blocks`` from :func:`xpnet.datasets.iter_idx` (each flattened to one row per
    image, ``block.reshape(len(block), -1)``, and moved to the device with
    ``backend.asarray`` where needed), millions of images on disk are classified with
    memory bounded by one block and its working set, at in-memory speed.
    """
    net = as_network(network)
    parts = [predict_labels(net, block, batch_size=batch_size) for block in blocks]
    if not parts:
        raise ValueError("predict_labels_streaming needs at least one block")
    return net.xp.concat(parts, axis=0)
