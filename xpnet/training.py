"""Minibatch training on any backend: shuffled epochs, optional image shifts, a scalar log.

The data stays on its device. Each epoch, the shuffled order (and the random shifts, when
augmenting) is drawn on the host from ``numpy.random.default_rng(seed)`` and copied to the
device once; the epoch's shuffled (and shifted) copy of the data is gathered there with
``take`` and cut into batches. Only the epoch's loss and accuracy cross to the host, as
Python floats, once per epoch.

The epoch's copy costs the data's size again in device memory (plus, when shifting, a
padded copy and an index array).

The loop is written once for every backend. Dask is the one backend whose arrays the steps
do not run on: the data stays lazy, the steps run in memory and the results go back to dask,
through :mod:`xpnet.scaleout.training` at two points only: :func:`_transfers` (to the steps
and back) and :func:`_groups` (the rows, in memory a group of batches at a time). The
batches are the same as on any other backend, and so are the results.

Interrupting :func:`train` (Ctrl-C, or ``KeyboardInterrupt`` raised by a callback) ends it
early without losing work: it returns the network as of the last completed step, with
``history.interrupted`` set. (An optimizer object passed in may then be one step ahead of
that network, if the interrupt came between its update and the step's end.)
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from typing import NamedTuple

import array_api_compat as compat
import numpy as np

from xpnet._array_api import namespace_of
from xpnet._device import on_device_of
from xpnet._typing import Array
from xpnet.backends import Backend, to_host
from xpnet.batching import DEFAULT_BATCH_SIZE, check_batch_size, iter_batches
from xpnet.forward_pass import labels_of
from xpnet.gradients import (
    as_targets,
    backprop,
    check_trainable,
    checked_training_input,
    cross_entropy,
    forward_logits,
)
from xpnet.network import Layer, Network, NetworkLike, as_network
from xpnet.optimizers import Optimizer, make_optimizer


@dataclass(frozen=True)
class EpochStats:
    """One epoch's log: mean training loss and accuracy (over its batches), validation."""

    epoch: int
    loss: float
    accuracy: float
    seconds: float
    val_loss: float | None = None
    val_accuracy: float | None = None


ArrayTransfer = Callable[[list[Array]], list[Array]]
"""Arrays to the same values elsewhere: from the caller's backend to where the steps run,
or back (``list`` where the two are the same)."""


@dataclass(frozen=True)
class BatchStats:
    """One step's progress; ``loss`` is a 0-d array on the caller's backend (converting it
    waits for the device).

    The loss reaches the caller's backend only when first read: on dask, wrapping every
    step's loss would cost time on each step, and a progress bar never reads it.
    """

    epoch: int
    batch: int
    batches: int
    _step_loss: Array = field(repr=False)  # as the step made it: in memory, on dask
    _to_caller: ArrayTransfer = field(default=list, repr=False, compare=False)

    @cached_property
    def loss(self) -> Array:
        """The step's mean loss, on the caller's backend."""
        (loss,) = self._to_caller([self._step_loss])
        return loss


@dataclass
class History:
    """The log of a :func:`train` run, and whether it was interrupted."""

    epochs: list[EpochStats] = field(default_factory=list)
    interrupted: bool = False


def train(
    network: NetworkLike,
    x: Array,
    t: Array,
    *,
    epochs: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    optimizer: str | Optimizer = "sgd",
    lr: float | None = None,
    weight_decay: float = 0.0,
    seed: int = 0,
    augment_shift: int = 0,
    x_val: Array | None = None,
    t_val: Array | None = None,
    on_epoch: Callable[[EpochStats, Network], None] | None = None,
    on_batch: Callable[[BatchStats], None] | None = None,
) -> tuple[Network, History]:
    """Train ``network`` on ``x`` with labels ``t``; return the trained network and the log.

    ``t`` holds class indices ``(N,)`` or one-hot rows. ``optimizer`` is ``"sgd"``,
    ``"momentum"``, ``"adam"`` (``lr=None`` takes its default rate) or an :class:`Optimizer`,
    whose state then carries over between calls. ``weight_decay`` adds
    ``weight_decay / 2 * sum(W**2)`` to the loss. ``seed`` fixes the shuffling and shifts:
    the same call gives bitwise the same network; continue training with another seed.
    ``augment_shift`` moves each square image (``x`` rows of ``side * side`` pixels) by up to
    that many pixels along each axis, anew each epoch. ``on_epoch(stats, network)`` runs after
    each epoch (to print, plot or checkpoint); ``on_batch(stats)`` after each step.
    On ``KeyboardInterrupt`` the network so far comes back, with ``history.interrupted``.
    Every step runs under the device rule (see ``xpnet._device``).

    Parameters
    ----------
    network : Network or dict
        The network to start from (it is not changed).
    x : array
        Training inputs ``(N, features)`` on the network's backend and device.
    t : array
        Their class indices ``(N,)`` or one-hot rows ``(N, classes)``.
    epochs : int
        Passes over ``x``; 0 returns the network as it is.
    batch_size : int, optional
        Rows per step.
    optimizer : str or Optimizer, optional
        ``"sgd"``, ``"momentum"``, ``"adam"`` or an :class:`Optimizer`.
    lr : float, optional
        The learning rate of a named optimizer; ``None`` takes its default.
    weight_decay : float, optional
        The L2 penalty's factor.
    seed : int, optional
        Fixes the shuffling and shifts.
    augment_shift : int, optional
        The most pixels each image moves along each axis (0: no augmentation).
    x_val, t_val : array, optional
        Validation data, evaluated after each epoch.
    on_epoch : callable, optional
        Called as ``on_epoch(stats, network)`` after each epoch.
    on_batch : callable, optional
        Called as ``on_batch(stats)`` after each step.

    Returns
    -------
    tuple of (Network, History)
        The trained network, on the input's backend and device, and the log.

    Raises
    ------
    ValueError
        If ``epochs`` is not an integer >= 0, ``batch_size`` is not a positive integer, the
        optimizer is unknown, or only one of ``x_val`` and ``t_val`` is given.
    NetworkError
        If the network cannot be trained (a ``step`` layer, an output other than softmax)
        or ``x`` or ``t`` does not fit it.
    BackendMismatchError
        If ``x`` or ``t`` is on another backend or device than the network.

    Examples
    --------
    >>> import xpnet
    >>> for name in ("numpy", "array_api_strict"):
    ...     backend = xpnet.get_backend(name)
    ...     x = backend.asarray([[1.0, 0.0], [0.0, 1.0]] * 20)
    ...     t = backend.asarray([0, 1] * 20)
    ...     network = xpnet.init_network([2, 4, 2], seed=0, backend=name, dtype="float64")
    ...     trained, history = xpnet.train(network, x, t, epochs=20, batch_size=10, lr=1.0)
    ...     print(len(history.epochs), xpnet.accuracy(network, x, t), xpnet.accuracy(trained, x, t))
    20 0.5 1.0
    20 0.5 1.0
    """
    net = as_network(network)
    check_trainable(net)
    batch_size = check_batch_size(batch_size)
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 0:
        raise ValueError(f"epochs must be an integer >= 0, got {epochs!r}")
    epochs = int(epochs)
    net.check_input(x)
    with on_device_of(x):
        return _train(
            net,
            x,
            t,
            epochs=epochs,
            batch_size=batch_size,
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            seed=seed,
            augment_shift=augment_shift,
            x_val=x_val,
            t_val=t_val,
            on_epoch=on_epoch,
            on_batch=on_batch,
        )


def _train(
    net: Network,
    x: Array,
    t: Array,
    *,
    epochs: int,
    batch_size: int,
    optimizer: str | Optimizer,
    lr: float | None,
    weight_decay: float,
    seed: int,
    augment_shift: int,
    x_val: Array | None,
    t_val: Array | None,
    on_epoch: Callable[[EpochStats, Network], None] | None,
    on_batch: Callable[[BatchStats], None] | None,
) -> tuple[Network, History]:
    """:func:`train`'s loop, on the device of ``x`` (arguments checked by the caller)."""
    x = checked_training_input(net, x, t)
    targets = as_targets(t, net.sizes[-1], net.dtype)
    xp = net.xp
    labels = xp.argmax(targets, axis=-1)
    augment = _augmentation(net, augment_shift)
    if (x_val is None) != (t_val is None):
        raise ValueError("pass both x_val and t_val, or neither")
    validation = None
    if x_val is not None and t_val is not None:
        validation = (
            checked_training_input(net, x_val, t_val),
            as_targets(t_val, net.sizes[-1], net.dtype),
        )
    chosen = make_optimizer(optimizer, lr)
    to_steps, to_caller = _transfers(x)
    net = _transfer_network(net, to_steps)
    _transfer_state(chosen, to_steps)
    rng = np.random.default_rng(seed)
    rows = x.shape[0]
    per_epoch = math.ceil(rows / batch_size)
    history = History()
    try:
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            order = rng.permutation(rows)
            shifts = None
            if augment_shift:
                shifts = rng.integers(-augment_shift, augment_shift + 1, (rows, 2))
            batches = _epoch_batches(
                (x, targets, labels), order, shifts, net.backend, augment, batch_size
            )
            loss_sum: Array = 0.0
            correct: Array = 0
            for batch, step in enumerate(_steps(net, chosen, batches, weight_decay), start=1):
                net = step.network
                loss_sum = loss_sum + step.loss * float(step.rows)
                correct = correct + step.correct
                if on_batch is not None:
                    on_batch(BatchStats(epoch, batch, per_epoch, step.loss, to_caller))
            stats = EpochStats(
                epoch,
                loss=float(to_host(loss_sum)) / rows,
                accuracy=int(to_host(correct)) / rows,
                seconds=time.perf_counter() - start,
            )
            if validation is not None:
                val_loss, val_accuracy = _evaluate(net, *validation, batch_size)
                stats = replace(stats, val_loss=val_loss, val_accuracy=val_accuracy)
            history.epochs.append(stats)
            if on_epoch is not None:
                on_epoch(stats, _transfer_network(net, to_caller))
    except KeyboardInterrupt:
        history.interrupted = True
    _transfer_state(chosen, to_caller)
    return _transfer_network(net, to_caller), history


def evaluate(
    network: NetworkLike, x: Array, t: Array, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``network`` on ``x`` with labels ``t``, batched.

    Sums stay on the device; two numbers cross to the host at the end.

    Parameters
    ----------
    network : Network or dict
        A trainable network.
    x : array
        Inputs ``(N, features)`` on the network's backend and device.
    t : array
        Their class indices ``(N,)`` or one-hot rows ``(N, classes)``.
    batch_size : int, optional
        Rows computed at once.

    Returns
    -------
    tuple of (float, float)
        The mean cross-entropy and the accuracy.

    Examples
    --------
    >>> import xpnet
    >>> for name in ("numpy", "array_api_strict"):
    ...     backend = xpnet.get_backend(name)
    ...     x = backend.asarray([[1.0, 0.0], [0.0, 1.0]] * 20)
    ...     t = backend.asarray([0, 1] * 20)
    ...     network = xpnet.init_network([2, 4, 2], seed=0, backend=name, dtype="float64")
    ...     loss, accuracy = xpnet.evaluate(network, x, t)
    ...     print(round(loss, 3), accuracy)
    0.739 0.5
    0.739 0.5
    """
    net = as_network(network)
    check_trainable(net)
    batch_size = check_batch_size(batch_size)
    net.check_input(x)
    with on_device_of(x):
        x = checked_training_input(net, x, t)
        to_steps, _ = _transfers(x)
        net = _transfer_network(net, to_steps)
        return _evaluate(net, x, as_targets(t, net.sizes[-1], net.dtype), batch_size)


def _evaluate(network: Network, x: Array, targets: Array, batch_size: int) -> tuple[float, float]:
    """Loss and accuracy of ``network``, already where the steps run (see :func:`_transfers`)."""
    xp = network.xp
    loss_sum: Array = 0.0
    correct: Array = 0
    for xb, tb in _batches((x, targets), network.backend, batch_size):
        logits = forward_logits(network, xb)
        loss_sum = loss_sum + cross_entropy(logits, tb) * float(xb.shape[0])
        correct = correct + _count_correct(logits, xp.argmax(tb, axis=-1))
    return float(to_host(loss_sum)) / x.shape[0], int(to_host(correct)) / x.shape[0]


def shift_images(
    x: Array, shifts: Array, *, max_shift: int, image_shape: tuple[int, int] = (28, 28)
) -> Array:
    """Move image ``i`` (row ``i`` of ``x``) ``shifts[i, 0]`` pixels down and ``shifts[i, 1]``
    right (negative: up, left), filling with zeros.

    ``shifts`` is an integer array ``(N, 2)`` on ``x``'s device, values in
    ``[-max_shift, max_shift]``. The batch is zero-padded by ``max_shift`` on every side
    and each output pixel is gathered from it with one ``take``, so the cost does not grow
    with the number of images or shifts.

    Parameters
    ----------
    x : array
        Flattened images, one per row: ``(N, height * width)``.
    shifts : array
        Integer ``(N, 2)``: rows down and columns right for each image, on ``x``'s device.
    max_shift : int
        The largest shift in either direction, the padding added on each side.
    image_shape : tuple of int
        ``(height, width)`` of one image.

    Returns
    -------
    array
        A new array of ``x``'s shape, dtype and device.

    Examples
    --------
    >>> import xpnet
    >>> for name in ("numpy", "array_api_strict"):
    ...     backend = xpnet.get_backend(name)
    ...     x = backend.asarray([[1.0, 2.0, 3.0, 4.0]])  # one 2x2 image
    ...     shifts = backend.asarray([[0, 1]])  # one column right
    ...     moved = xpnet.shift_images(x, shifts, max_shift=1, image_shape=(2, 2))
    ...     print(xpnet.to_host(moved).tolist())
    [[0.0, 1.0, 0.0, 3.0]]
    [[0.0, 1.0, 0.0, 3.0]]
    """
    with on_device_of(x):
        return _shift_images(x, shifts, max_shift, image_shape)


def _shift_images(x: Array, shifts: Array, max_shift: int, image_shape: tuple[int, int]) -> Array:
    """:func:`shift_images` on ``x``'s device."""
    xp = namespace_of(x, shifts)
    device = compat.device(x)
    count, (height, width), pad = x.shape[0], image_shape, max_shift
    images = xp.reshape(x, (count, height, width))
    side = xp.zeros((count, height, pad), dtype=x.dtype, device=device)
    images = xp.concat((side, images, side), axis=2)
    top = xp.zeros((count, pad, width + 2 * pad), dtype=x.dtype, device=device)
    padded = xp.reshape(xp.concat((top, images, top), axis=1), (-1,))

    def positions(size: int, shape: tuple[int, ...]) -> Array:
        return xp.reshape(xp.arange(size, dtype=shifts.dtype, device=device), shape)

    stride = width + 2 * pad
    source_row = positions(height, (1, height, 1)) - xp.reshape(shifts[:, 0], (count, 1, 1))
    source_col = positions(width, (1, 1, width)) - xp.reshape(shifts[:, 1], (count, 1, 1))
    first = positions(count, (count, 1, 1)) * ((height + 2 * pad) * stride)
    index = first + (source_row + pad) * stride + (source_col + pad)
    return xp.reshape(xp.take(padded, xp.reshape(index, (-1,)), axis=0), x.shape)


def _epoch_batches(
    source: tuple[Array, ...],
    order: np.ndarray,
    shifts: np.ndarray | None,
    backend: Backend,
    augment: Callable[[Array, Array], Array],
    batch_size: int,
) -> Iterator[tuple[Array, ...]]:
    """An epoch's batches: the ``source`` rows in ``order``, the images moved by ``shifts``.

    ``backend`` is where the steps run (the network's); the rows come from :func:`_groups`.
    """
    for part, arrays in _groups(source, order, backend, batch_size):
        if shifts is not None:
            arrays = (augment(arrays[0], backend.asarray(shifts[part])), *arrays[1:])
        yield from iter_batches(*arrays, batch_size=batch_size)


def _batches(
    source: tuple[Array, ...], backend: Backend, batch_size: int
) -> Iterator[tuple[Array, ...]]:
    """The ``source`` rows in batches, on ``backend`` (computed into memory from dask)."""
    for _, arrays in _groups(source, None, backend, batch_size):
        yield from iter_batches(*arrays, batch_size=batch_size)


def _groups(
    source: tuple[Array, ...], order: np.ndarray | None, backend: Backend, batch_size: int
) -> Iterator[tuple[slice, tuple[Array, ...]]]:
    """``(positions in order, rows)`` of ``source`` on ``backend``, gathered by ``order`` if
    given: all rows in one group, or for dask several groups, each computed when reached."""
    if compat.is_dask_array(source[0]):  # one group of batches in memory at a time, not all
        from xpnet.scaleout import training as dask_training

        yield from dask_training.groups(source, order, batch_size)
        return
    rows = source[0].shape[0]
    if order is None:
        yield slice(0, rows), source
    else:
        index = backend.asarray(order)
        yield slice(0, rows), tuple(backend.xp.take(a, index, axis=0) for a in source)


def _transfers(x: Array) -> tuple[ArrayTransfer, ArrayTransfer]:
    """How arrays reach where the steps on ``x`` run, and how the results go back to the
    caller: nowhere (``list``) for in-memory arrays."""
    if compat.is_dask_array(x):  # scheduling a step as dask tasks costs more than its math
        from xpnet.scaleout import training as dask_training

        return dask_training.computed, dask_training.as_dask
    return list, list


def _params(network: Network) -> list[Array]:
    """Each layer's weight and bias, in order."""
    return [a for layer in network.layers for a in (layer.weight, layer.bias)]


def _with_params(network: Network, params: Sequence[Array]) -> Network:
    """``network`` with its weights and biases replaced, in :func:`_params`'s order."""
    return Network(
        tuple(
            Layer(params[2 * i], params[2 * i + 1], layer.activation)
            for i, layer in enumerate(network.layers)
        )
    )


def _transfer_network(network: Network, transfer: ArrayTransfer) -> Network:
    """``network`` with all its arrays passed through ``transfer``."""
    return _with_params(network, transfer(_params(network)))


def _transfer_state(optimizer: Optimizer, transfer: ArrayTransfer) -> None:
    """Replace the optimizer's state arrays by ``transfer`` of them."""
    slots = list(optimizer.state.items())
    moved = iter(transfer([a for _, arrays in slots for a in arrays]))
    optimizer.state = {slot: tuple(next(moved) for _ in arrays) for slot, arrays in slots}


class _Step(NamedTuple):
    network: Network
    loss: Array
    rows: int
    correct: Array


def _steps(
    network: Network, optimizer: Optimizer, batches: Iterator[tuple[Array, ...]], decay: float
) -> Iterator[_Step]:
    """Take one optimizer step per batch ``(x, targets, labels)``; yield each new network."""
    for xb, tb, lb in batches:
        result = backprop(network, xb, tb, decay)
        grads = [a for grad in result.gradients for a in (grad.weight, grad.bias)]
        network = _with_params(network, optimizer.step(_params(network), grads))
        yield _Step(network, result.loss, xb.shape[0], _count_correct(result.logits, lb))


def _count_correct(logits: Array, labels: Array) -> Array:
    """Rows classified as labelled; a row with a logit that is not finite has no class
    (the non-finite rule, :func:`xpnet.forward_pass.labels_of`)."""
    xp = namespace_of(logits)
    return xp.count_nonzero(labels_of(xp, logits, logits) == labels)


def _augmentation(network: Network, max_shift: int) -> Callable[[Array, Array], Array]:
    """:func:`shift_images` for the network's square input images, checked for ``max_shift``."""
    width = network.sizes[0]
    side = math.isqrt(width)
    if max_shift < 0 or (max_shift and (side * side != width or max_shift >= side)):
        raise ValueError(
            f"augment_shift={max_shift} needs square images wider than the shift; "
            f"the network takes {width} inputs"
        )
    return partial(shift_images, max_shift=max_shift, image_shape=(side, side))
