"""The public forward pass and accuracy, and the one place that decides which engine runs.

:func:`_run` dispatches: dask arrays chunk by chunk; NumPy rows to the engine chosen
(:func:`choose_engine`: ONNX Runtime, where the ``fast`` extra installs it, or the
array-API code); everything else to the written-once :func:`xpnet.forward_pass.forward`
(in batches by :mod:`xpnet.batching`'s rule). Each engine blocks the rows itself. Results
stay on the input's device; only the final count of correct answers comes back to the
host, once, as a Python int. Every computation runs under the
device rule (:func:`xpnet._device.on_device_of`: on CuPy, the input's GPU is the current
device).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial

from xpnet import _onnxruntime_engine as _engine
from xpnet._device import on_device_of
from xpnet._typing import Array
from xpnet.backends import to_host
from xpnet.batching import batch_size_for, iter_batches, optional_batch_size
from xpnet.errors import BackendUnavailableError
from xpnet.forward_pass import NO_CLASS, forward
from xpnet.network import Network, NetworkLike, as_network
from xpnet.scaleout import chunk_engine as _dask

ENGINES = ("auto", "array-api", "onnxruntime")
"""The engines a NumPy forward pass may run on: ``auto`` chooses by :data:`AUTO_ROWS`."""

AUTO_ROWS = 20_000
"""The rows of NumPy input from which ``auto`` runs ONNX Runtime: a call of this many, or
a smaller one once this process has given the array-API code this many (the rule of
renting until the rent paid would have bought: never more than twice the better
choice's cost). From this size on, importing ONNX Runtime, building its session and
running it took no longer, in a fresh process, than the array-API code on the same rows
(docs/performance.md has the figures); below it the start-up does not pay. A network whose
session is built already runs there whatever its rows."""

_generic_rows = 0
"""Rows of input ONNX Runtime could have run that ``auto`` gave the array-API path."""

_chosen: ContextVar[str | None] = ContextVar("xpnet_engine", default=None)


@contextmanager
def use_engine(engine: str) -> Iterator[None]:
    """Run NumPy forward passes on ``engine`` inside a ``with`` block (this thread only).

    ``engine`` is ``"auto"``, ``"array-api"`` (xpnet's own array-API code, the code every
    backend runs) or ``"onnxruntime"`` (the ``fast`` extra). An ``engine=`` argument wins
    over it; it wins over the environment variable ``XPNET_ENGINE``.

    Parameters
    ----------
    engine : {"auto", "array-api", "onnxruntime"}
        The engine of the block.

    Raises
    ------
    ValueError
        If ``engine`` is not one of :data:`~xpnet.inference.ENGINES`.

    Examples
    --------
    >>> import numpy as np
    >>> import xpnet
    >>> network = xpnet.init_network((4, 3, 2), seed=0)
    >>> x = np.ones((5, 4), dtype=np.float32)
    >>> with xpnet.use_engine("array-api"):
    ...     print(xpnet.choose_engine(network, x))
    array-api
    """
    token = _chosen.set(_checked(engine, "engine"))
    try:
        yield
    finally:
        _chosen.reset(token)


def engine_setting(engine: str | None = None) -> str:
    """The engine in force: ``engine`` where given, else :func:`use_engine`'s, else
    ``$XPNET_ENGINE``, else ``"auto"``; a one-line ValueError for an unknown name."""
    if engine is not None:
        return _checked(engine, "engine")
    chosen = _chosen.get()
    if chosen is not None:
        return chosen
    variable = os.environ.get("XPNET_ENGINE")
    return _checked(variable, "XPNET_ENGINE") if variable else "auto"


def _checked(engine: object, where: str) -> str:
    if engine not in ENGINES:
        raise ValueError(f"{where}={engine!r} is not an engine; choose one of {', '.join(ENGINES)}")
    return str(engine)


def choose_engine(network: NetworkLike, x: Array, engine: str | None = None) -> str:
    """Which engine runs ``network`` on ``x``: ``"onnxruntime"`` or ``"array-api"``.

    ``engine`` (else :func:`use_engine`'s, else ``$XPNET_ENGINE``, else ``"auto"``) is:

    - ``"array-api"``: xpnet's array-API code, on every backend;
    - ``"onnxruntime"``: NumPy rows (2-D, float32 or float64 weights) in ONNX Runtime,
      :class:`~xpnet.BackendUnavailableError` where it is not installed; other input
      (another backend, one 1-D sample) runs the array-API code;
    - ``"auto"``: NumPy rows in ONNX Runtime where it is installed and the work pays for
      its start-up: ``x`` has :data:`~xpnet.inference.AUTO_ROWS` rows or more, or this
      process has given the array-API code that many already, or the network's session is
      built; else the array-API code. The labels are the same either way.

    Parameters
    ----------
    network : Network or dict
        A :class:`~xpnet.Network` or the textbook's dict ``W1, b1, ...``.
    x : array
        The input the engine would run on.
    engine : {"auto", "array-api", "onnxruntime"}, optional
        The setting to apply; ``None``: the one in force.

    Returns
    -------
    str
        ``"onnxruntime"`` or ``"array-api"``.

    Examples
    --------
    >>> import numpy as np
    >>> import xpnet
    >>> network = xpnet.init_network((4, 3, 2), seed=0)
    >>> xpnet.choose_engine(network, np.ones((5, 4), dtype=np.float32), "array-api")
    'array-api'
    """
    net = as_network(network)
    return _choose(net, x, engine_setting(engine))


def _choose(net: Network, x: Array, setting: str) -> str:
    if setting == "array-api" or not _engine.takes(net, x):
        return "array-api"
    if setting == "onnxruntime":
        reason = _engine.why_not() if not _engine.available() else None
        if reason is not None:
            raise BackendUnavailableError(f"engine 'onnxruntime' cannot run: {reason}")
        return "onnxruntime"
    if not _engine.available():
        return "array-api"
    if _generic_rows + x.shape[0] >= AUTO_ROWS or _engine.has_session(net):
        return "onnxruntime"
    return "array-api"


def numpy_engine() -> tuple[str, str]:
    """The engine setting for NumPy input here, and what it means on this machine.

    Returns
    -------
    tuple of str
        The setting in force (``"auto"``, ``"array-api"`` or ``"onnxruntime"``, see
        :func:`choose_engine`), and in words which engine runs under it and why:
        ONNX Runtime's version, the rule of ``auto``, or why ONNX Runtime is not used.

    Examples
    --------
    >>> import xpnet
    >>> engine, why = xpnet.numpy_engine()
    >>> engine in ("auto", "array-api", "onnxruntime")
    True
    """
    setting = engine_setting()
    reason = _engine.why_not()
    if setting == "array-api":
        return setting, "xpnet's array-API code"
    if reason is not None:
        if setting == "onnxruntime":
            return setting, f"cannot run: {reason}"
        return setting, f"xpnet's array-API code: {reason}"
    from importlib.metadata import version

    runtime = f"onnxruntime {version('onnxruntime')}"
    if setting == "onnxruntime":
        return setting, runtime
    return setting, (
        f"{runtime} for {AUTO_ROWS:,} rows or more (in one call, or in this process, or once "
        "its session is built), else xpnet's array-API code"
    )


def predict(
    network: NetworkLike, x: Array, *, batch_size: int | None = None, engine: str | None = None
) -> Array:
    """Forward pass of ``network`` over ``x`` (one sample or a batch along axis 0).

    ``network`` is a :class:`~xpnet.Network` or the textbook's dict ``W1, b1, ...``
    (sigmoid, sigmoid, softmax). ``x`` must share the network's namespace and device; it
    is cast to the network's dtype batch by batch (so raw uint8 pixels are fine, see
    :meth:`~xpnet.Network.scale_input`); input that cannot be pixels (complex, strings,
    objects, masked arrays) is refused. ``batch_size`` bounds the rows computed at once;
    ``None`` runs ``x`` whole. ``engine`` chooses what runs NumPy input (see
    :func:`choose_engine`: ``"auto"``, ``"array-api"``, ``"onnxruntime"``); the labels are
    the same on each.

    Parameters
    ----------
    network : Network or dict
        A :class:`~xpnet.Network` or the textbook's dict ``W1, b1, ...``.
    x : array
        One sample ``(features,)`` or a batch ``(N, features)`` on the network's backend
        and device.
    batch_size : int, optional
        The most rows computed at once; ``None`` runs ``x`` whole.
    engine : {"auto", "array-api", "onnxruntime"}, optional
        What runs NumPy input; ``None``: :func:`use_engine`'s, else ``$XPNET_ENGINE``,
        else ``"auto"`` (see :func:`choose_engine`).

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
        If ``batch_size`` is not a positive integer, or ``engine`` no engine.

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
    setting = engine_setting(engine)
    with on_device_of(x):
        return _run(net, x, batch_size, labels=False, engine=setting)


def predict_labels(
    network: NetworkLike, x: Array, *, batch_size: int | None = None, engine: str | None = None
) -> Array:
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
    engine : {"auto", "array-api", "onnxruntime"}, optional
        What runs NumPy input; ``None``: :func:`use_engine`'s, else ``$XPNET_ENGINE``,
        else ``"auto"`` (see :func:`choose_engine`).

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
        If ``batch_size`` is not a positive integer, or ``engine`` no engine.

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
    setting = engine_setting(engine)
    with on_device_of(x):
        return _run(net, x, batch_size, labels=True, engine=setting)


AUTO = "auto"
"""A ``batch_size`` for :func:`_run`: the batching rule (:func:`batch_size_for`) applied to
the array the generic path runs on (for dask, each chunk: NumPy or CuPy)."""


def _run(
    net: Network, x: Array, batch_size: int | str | None, *, labels: bool, engine: str
) -> Array:
    """The forward pass of ``net`` over ``x`` by the engine that runs it; each engine blocks
    the rows itself. ``batch_size``: rows at once on the generic path (``None``: all,
    :data:`AUTO`: the batching rule). ``engine``: the setting (one of :data:`ENGINES`)."""
    global _generic_rows
    if _dask.accepts(x):  # lazily: each chunk of rows by this function, in memory
        chunk_forward = partial(_run_on_device, batch_size=batch_size, labels=labels, engine=engine)
        return _dask.forward(net, x, chunk_forward, labels=labels)
    if _choose(net, x, engine) == "onnxruntime":  # NumPy rows, in blocks of its own
        return _engine.forward(net, x, labels=labels)
    if engine == "auto" and _engine.takes(net, x):
        _generic_rows += x.shape[0]
    if isinstance(batch_size, str):  # AUTO
        batch_size = batch_size_for(net, x)
    if batch_size is None or x.ndim < 2 or batch_size >= x.shape[0]:
        return forward(net, x, labels=labels)
    parts = [forward(net, xb, labels=labels) for (xb,) in iter_batches(x, batch_size=batch_size)]
    return net.xp.concat(parts, axis=0) if parts else forward(net, x, labels=labels)


def _run_on_device(
    net: Network, x: Array, batch_size: int | str | None, *, labels: bool, engine: str
) -> Array:
    """:func:`_run` under the device rule (each dask chunk task enters its chunk's device)."""
    with on_device_of(x):
        return _run(net, x, batch_size, labels=labels, engine=engine)


def count_correct(
    network: NetworkLike,
    x: Array,
    t: Array,
    *,
    batch_size: int | None = None,
    engine: str | None = None,
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
    engine : {"auto", "array-api", "onnxruntime"}, optional
        What runs NumPy input; ``None``: :func:`use_engine`'s, else ``$XPNET_ENGINE``,
        else ``"auto"`` (see :func:`choose_engine`).

    Returns
    -------
    int
        The number of rows whose predicted class is their label. A row whose output
        layer's values are not all finite (NaN, infinity) has no class and is never
        correct (the non-finite rule;
        :func:`~xpnet.inference.count_correct_and_unlabelled` counts them).

    Raises
    ------
    BackendMismatchError
        If ``x`` or ``t`` is on another backend or device than the network.
    NetworkError
        If ``x`` or ``t`` has the wrong shape or dtype, or a label is out of range.
    ValueError
        If ``batch_size`` is not a positive integer, or ``engine`` no engine.

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
    setting = engine_setting(engine)
    with on_device_of(x):
        predicted, labels = _predicted_and_labels(net, x, t, batch_size, setting)
        return int(net.xp.count_nonzero(predicted == labels))


def _predicted_and_labels(
    net: Network, x: Array, t: Array, batch_size: int | None, setting: str
) -> tuple[Array, Array]:
    """The labels ``net`` predicts for ``x``, and ``t``'s labels (checked) in their dtype:
    what the counting functions compare, under the caller's device rule."""
    xp = net.xp
    net.check_labels(t, x)
    labels = xp.argmax(t, axis=-1) if t.ndim == 2 else t
    predicted = _run(
        net, x, AUTO if batch_size is None else batch_size, labels=True, engine=setting
    )
    return predicted, xp.astype(labels, predicted.dtype, copy=False)


def count_correct_and_unlabelled(
    network: NetworkLike,
    x: Array,
    t: Array,
    *,
    batch_size: int | None = None,
    engine: str | None = None,
) -> tuple[int, int]:
    """:func:`~xpnet.count_correct`, and how many rows got no class at all (their output layer's
    values were not all finite: the non-finite rule), from one pass.

    Arguments and errors as in :func:`~xpnet.count_correct`; the two counts cross to the host
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
    setting = engine_setting(engine)
    xp = net.xp
    with on_device_of(x):
        predicted, labels = _predicted_and_labels(net, x, t, batch_size, setting)
        correct = xp.count_nonzero(predicted == labels)
        unlabelled = xp.count_nonzero(predicted == NO_CLASS)
        both = to_host(xp.stack([correct, unlabelled]))
    return int(both[0]), int(both[1])


def accuracy(
    network: NetworkLike,
    x: Array,
    t: Array,
    *,
    batch_size: int | None = None,
    engine: str | None = None,
) -> float:
    """Fraction of rows of ``x`` classified as labelled by ``t`` (NaN for empty input).

    Labels, ``batch_size`` and ``engine`` as in :func:`count_correct` (``None``: the
    batching rule, the engine in force).

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
    engine : {"auto", "array-api", "onnxruntime"}, optional
        What runs NumPy input; ``None``: :func:`use_engine`'s, else ``$XPNET_ENGINE``,
        else ``"auto"`` (see :func:`choose_engine`).

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
        If ``batch_size`` is not a positive integer, or ``engine`` no engine.

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
    correct = count_correct(network, x, t, batch_size=batch_size, engine=engine)
    return correct / total if total else float("nan")


def predict_labels_streaming(
    network: NetworkLike,
    blocks: Iterable[Array],
    *,
    batch_size: int | None = None,
    engine: str | None = None,
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
    engine : {"auto", "array-api", "onnxruntime"}, optional
        What runs NumPy blocks (see :func:`choose_engine`).

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
    setting = engine_setting(engine)
    parts = [predict_labels(net, block, batch_size=batch_size, engine=setting) for block in blocks]
    if not parts:
        raise ValueError("predict_labels_streaming needs at least one block")
    with on_device_of(parts[0]):
        return net.xp.concat(parts, axis=0)
