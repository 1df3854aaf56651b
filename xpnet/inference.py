"""The public forward pass and accuracy, and the one place that decides which engine runs.

:func:`_run` dispatches: NumPy rows to ONNX Runtime where the ``fast`` extra installs it,
dask arrays chunk by chunk, everything else to the written-once
:func:`xpnet.forward_pass.forward` (in batches by :mod:`xpnet.batching`'s rule). Each engine
blocks the rows itself. Results stay on the input's device; only the final count of correct
answers comes back to the host, once, as a Python int. Every computation runs under the
device rule (:func:`xpnet._device.on_device_of`: on CuPy, the input's GPU is the current
device).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

from xpnet import _onnxruntime_engine as _engine
from xpnet._device import on_device_of
from xpnet._typing import Array
from xpnet.backends import to_host
from xpnet.batching import batch_size_for, iter_batches, optional_batch_size
from xpnet.forward_pass import NO_CLASS, forward
from xpnet.network import Network, NetworkLike, as_network
from xpnet.scaleout import chunk_engine as _dask


def predict(network: NetworkLike, x: Array, *, batch_size: int | None = None) -> Array:
    """Forward pass of ``network`` over ``x`` (one sample or a batch along axis 0).

    ``network`` is a :class:`~xpnet.Network` or the textbook's dict ``W1, b1, ...``
    (sigmoid, sigmoid, softmax). ``x`` must share the network's namespace and device; it
    is cast to the network's dtype batch by batch (so raw uint8 pixels are fine, see
    :meth:`~xpnet.Network.scale_input`); input that cannot be pixels (complex, strings,
    objects, masked arrays) is refused. ``batch_size`` bounds the rows computed at once;
    ``None`` runs ``x`` whole. NumPy input runs in ONNX Runtime where the ``fast`` extra
    installs it (see :func:`xpnet.numpy_engine`), with the same labels.

    Parameters
    ----------
    network : Network or dict
        A :class:`~xpnet.Network` or the textbook's dict ``W1, b1, ...``.
    x : array
        One sample ``(features,)`` or a batch ``(N, features)`` on the network's backend
        and device.
    batch_size : int, optional
        The most rows computed at once; ``None`` runs ``x`` whole.

    Returns
    -------
    array
        The output layer's activations, ``(N, outputs)`` (or ``(outputs,)``), on ``x``'s
        device in the network's dtype.

    Raises
    ------
    BackendMismatchError
        If ``x`` is on another backend or device than the network.
    NetworkError
        If ``x`` has the wrong width or cannot be pixels.
    ValueError
        If ``batch_size`` is not a positive integer.

    Examples
    --------
    >>> import xpnet
    >>> for name in ("numpy", "array_api_strict"):
    ...     backend = xpnet.get_backend(name)
    ...     weights = {"W1": backend.asarray([[1.0, -1.0], [-1.0, 1.0]]),
    ...                "b1": backend.asarray([0.0, 0.0])}
    ...     network = xpnet.Network.from_mapping(weights, ["softmax"])
    ...     x = backend.asarray([[1.0, 0.0], [0.0, 2.0]])
    ...     print(xpnet.to_host(xpnet.predict(network, x)).round(3).tolist())
    [[0.881, 0.119], [0.018, 0.982]]
    [[0.881, 0.119], [0.018, 0.982]]
    """
    net = as_network(network)
    net.check_input(x)
    batch_size = optional_batch_size(batch_size)
    with on_device_of(x):
        return _run(net, x, batch_size, labels=False)


def predict_labels(network: NetworkLike, x: Array, *, batch_size: int | None = None) -> Array:
    """The predicted class of each row of ``x`` (argmax of :func:`predict`), on x's device.

    A softmax or identity output layer is skipped: the argmax of its input is the same.

    Parameters
    ----------
    network : Network or dict
        A :class:`~xpnet.Network` or the textbook's dict ``W1, b1, ...``.
    x : array
        One sample or a batch along axis 0, on the network's backend and device.
    batch_size : int, optional
        The most rows computed at once; ``None`` runs ``x`` whole.

    Returns
    -------
    array
        Integer class indices, one per row of ``x``, on ``x``'s device; ``-1``
        (``xpnet.forward_pass.NO_CLASS``) for a row whose output layer's values are not
        all finite (a NaN or an infinity: the non-finite rule).

    Raises
    ------
    BackendMismatchError
        If ``x`` is on another backend or device than the network.
    NetworkError
        If ``x`` has the wrong width or cannot be pixels.
    ValueError
        If ``batch_size`` is not a positive integer.

    Examples
    --------
    >>> import xpnet
    >>> for name in ("numpy", "array_api_strict"):
    ...     backend = xpnet.get_backend(name)
    ...     weights = {"W1": backend.asarray([[1.0, -1.0], [-1.0, 1.0]]),
    ...                "b1": backend.asarray([0.0, 0.0])}
    ...     network = xpnet.Network.from_mapping(weights, ["softmax"])
    ...     x = backend.asarray([[1.0, 0.0], [0.0, 2.0]])
    ...     print(xpnet.to_host(xpnet.predict_labels(network, x)).tolist())
    [0, 1]
    [0, 1]
    """
    net = as_network(network)
    net.check_input(x)
    batch_size = optional_batch_size(batch_size)
    with on_device_of(x):
        return _run(net, x, batch_size, labels=True)


AUTO = "auto"
"""A ``batch_size`` for :func:`_run`: the batching rule (:func:`batch_size_for`) applied to
the array the generic path runs on (for dask, each chunk: NumPy or CuPy)."""


def _run(net: Network, x: Array, batch_size: int | str | None, *, labels: bool) -> Array:
    """The forward pass of ``net`` over ``x`` by the engine that runs it; each engine blocks
    the rows itself. ``batch_size``: rows at once on the generic path (``None``: all,
    :data:`AUTO`: the batching rule)."""
    if _engine.accepts(net, x):  # NumPy rows: ONNX Runtime, in blocks of its own
        return _engine.forward(net, x, labels=labels)
    if _dask.accepts(x):  # lazily: each chunk of rows by this function, in memory
        chunk_forward = partial(_run_on_device, batch_size=batch_size, labels=labels)
        return _dask.forward(net, x, chunk_forward, labels=labels)
    if isinstance(batch_size, str):  # AUTO
        batch_size = batch_size_for(net, x)
    if batch_size is None or x.ndim < 2 or batch_size >= x.shape[0]:
        return forward(net, x, labels=labels)
    parts = [forward(net, xb, labels=labels) for (xb,) in iter_batches(x, batch_size=batch_size)]
    return net.xp.concat(parts, axis=0) if parts else forward(net, x, labels=labels)


def _run_on_device(net: Network, x: Array, batch_size: int | str | None, *, labels: bool) -> Array:
    """:func:`_run` under the device rule (each dask chunk task enters its chunk's device)."""
    with on_device_of(x):
        return _run(net, x, batch_size, labels=labels)


def count_correct(
    network: NetworkLike, x: Array, t: Array, *, batch_size: int | None = None
) -> int:
    """How many rows of ``x`` the network classifies as labelled by ``t``.

    ``t`` holds class indices ``(N,)`` in ``0 .. classes - 1`` or one-hot rows
    ``(N, classes)``, on ``x``'s backend and device; it is checked as ``x`` is (another
    backend or device: :class:`~xpnet.BackendMismatchError`; a label out of range, a
    float index or another shape: :class:`~xpnet.NetworkError`, never counted as wrong).
    ``batch_size`` rows are computed at once; ``None`` follows the batching rule (see
    ``xpnet.batching.auto_batch_size``: the textbook's 100 on a CPU, the whole input or the largest
    batch that fits on a GPU). Counting happens on the device with ``count_nonzero``; the
    total crosses to the host once.

    Parameters
    ----------
    network : Network or dict
        A :class:`~xpnet.Network` or the textbook's dict ``W1, b1, ...``.
    x : array
        A batch ``(N, features)`` on the network's backend and device.
    t : array
        Class indices ``(N,)`` or one-hot rows ``(N, classes)``, on ``x``'s device.
    batch_size : int, optional
        The most rows computed at once; ``None`` follows the batching rule.

    Returns
    -------
    int
        The number of rows whose predicted class is their label. A row whose output
        layer's values are not all finite (NaN, infinity) has no class and is never
        correct (the non-finite rule; :func:`count_correct_and_unlabelled` counts them).

    Raises
    ------
    BackendMismatchError
        If ``x`` or ``t`` is on another backend or device than the network.
    NetworkError
        If ``x`` or ``t`` has the wrong shape or dtype, or a label is out of range.
    ValueError
        If ``batch_size`` is not a positive integer.

    Examples
    --------
    >>> import xpnet
    >>> for name in ("numpy", "array_api_strict"):
    ...     backend = xpnet.get_backend(name)
    ...     weights = {"W1": backend.asarray([[1.0, -1.0], [-1.0, 1.0]]),
    ...                "b1": backend.asarray([0.0, 0.0])}
    ...     network = xpnet.Network.from_mapping(weights, ["softmax"])
    ...     x = backend.asarray([[1.0, 0.0], [0.0, 2.0]])
    ...     print(xpnet.count_correct(network, x, backend.asarray([0, 0])))
    1
    1
    """
    net = as_network(network)
    net.check_input(x)
    batch_size = optional_batch_size(batch_size)
    xp = net.xp
    with on_device_of(x):
        net.check_labels(t, x)
        labels = xp.argmax(t, axis=-1) if t.ndim == 2 else t
        predicted = _run(net, x, AUTO if batch_size is None else batch_size, labels=True)
        return int(xp.count_nonzero(predicted == xp.astype(labels, predicted.dtype, copy=False)))


def count_correct_and_unlabelled(
    network: NetworkLike, x: Array, t: Array, *, batch_size: int | None = None
) -> tuple[int, int]:
    """:func:`count_correct`, and how many rows got no class at all (their output layer's
    values were not all finite: the non-finite rule), from one pass.

    Arguments and errors as in :func:`count_correct`; the two counts cross to the host
    together.

    Examples
    --------
    >>> import math
    >>> import xpnet
    >>> from xpnet.inference import count_correct_and_unlabelled
    >>> for name in ("numpy", "array_api_strict"):
    ...     backend = xpnet.get_backend(name)
    ...     weights = {"W1": backend.asarray([[1.0, -1.0], [-1.0, 1.0]]),
    ...                "b1": backend.asarray([0.0, 0.0])}
    ...     network = xpnet.Network.from_mapping(weights, ["softmax"])
    ...     x = backend.asarray([[1.0, 0.0], [math.inf, 2.0]])
    ...     print(count_correct_and_unlabelled(network, x, backend.asarray([0, 0])))
    (1, 1)
    (1, 1)
    """
    net = as_network(network)
    net.check_input(x)
    batch_size = optional_batch_size(batch_size)
    xp = net.xp
    with on_device_of(x):
        net.check_labels(t, x)
        labels = xp.argmax(t, axis=-1) if t.ndim == 2 else t
        predicted = _run(net, x, AUTO if batch_size is None else batch_size, labels=True)
        correct = xp.count_nonzero(predicted == xp.astype(labels, predicted.dtype, copy=False))
        unlabelled = xp.count_nonzero(predicted == NO_CLASS)
        both = to_host(xp.stack([correct, unlabelled]))
    return int(both[0]), int(both[1])


def accuracy(network: NetworkLike, x: Array, t: Array, *, batch_size: int | None = None) -> float:
    """Fraction of rows of ``x`` classified as labelled by ``t`` (NaN for empty input).

    Labels and ``batch_size`` as in :func:`count_correct` (``None``: the batching rule).

    Parameters
    ----------
    network : Network or dict
        A :class:`~xpnet.Network` or the textbook's dict ``W1, b1, ...``.
    x : array
        A batch ``(N, features)`` on the network's backend and device.
    t : array
        Class indices ``(N,)`` or one-hot rows ``(N, classes)``, on ``x``'s device.
    batch_size : int, optional
        The most rows computed at once; ``None`` follows the batching rule.

    Returns
    -------
    float
        ``count_correct(...) / N``, a Python float; NaN where ``x`` has no rows.

    Raises
    ------
    BackendMismatchError
        If ``x`` or ``t`` is on another backend or device than the network.
    NetworkError
        If ``x`` or ``t`` has the wrong shape or dtype, or a label is out of range.
    ValueError
        If ``batch_size`` is not a positive integer.

    Examples
    --------
    >>> import xpnet
    >>> for name in ("numpy", "array_api_strict"):
    ...     backend = xpnet.get_backend(name)
    ...     weights = {"W1": backend.asarray([[1.0, -1.0], [-1.0, 1.0]]),
    ...                "b1": backend.asarray([0.0, 0.0])}
    ...     network = xpnet.Network.from_mapping(weights, ["softmax"])
    ...     x = backend.asarray([[1.0, 0.0], [0.0, 2.0]])
    ...     print(xpnet.accuracy(network, x, backend.asarray([[1.0, 0.0], [1.0, 0.0]])))
    0.5
    0.5
    """
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
    memory bounded by one block and its working set.

    Parameters
    ----------
    network : Network or dict
        A :class:`~xpnet.Network` or the textbook's dict ``W1, b1, ...``.
    blocks : iterable of array
        Batches ``(rows, features)`` on the network's backend and device, in order.
    batch_size : int, optional
        The most rows computed at once within a block; ``None`` runs each block whole.

    Returns
    -------
    array
        The class index of every row of every block, joined along axis 0.

    Raises
    ------
    ValueError
        If ``blocks`` is empty or ``batch_size`` is not a positive integer.

    Examples
    --------
    >>> import xpnet
    >>> for name in ("numpy", "array_api_strict"):
    ...     backend = xpnet.get_backend(name)
    ...     weights = {"W1": backend.asarray([[1.0, -1.0], [-1.0, 1.0]]),
    ...                "b1": backend.asarray([0.0, 0.0])}
    ...     network = xpnet.Network.from_mapping(weights, ["softmax"])
    ...     x = backend.asarray([[1.0, 0.0], [0.0, 2.0]])
    ...     blocks = (x, x[:1, ...])
    ...     print(xpnet.to_host(xpnet.predict_labels_streaming(network, blocks)).tolist())
    [0, 1, 0]
    [0, 1, 0]
    """
    net = as_network(network)
    batch_size = optional_batch_size(batch_size)
    parts = [predict_labels(net, block, batch_size=batch_size) for block in blocks]
    if not parts:
        raise ValueError("predict_labels_streaming needs at least one block")
    with on_device_of(parts[0]):
        return net.xp.concat(parts, axis=0)
