"""Batches of rows: checking a batch size, slicing aligned batches, and the batching rule.

**The batching rule** for :func:`xpnet.count_correct` and :func:`xpnet.accuracy` when the
caller gives no batch size (:func:`auto_batch_size`): a CPU backend (NumPy, array-api-strict, dask,
PyTorch and JAX on the CPU) takes the textbook's :data:`DEFAULT_BATCH_SIZE` rows at a time,
as it always has; a GPU backend (CuPy, PyTorch on ``cuda``, JAX on a GPU) runs the input
whole, or, where that would not fit, in the largest batches whose working set fits
:data:`GPU_MEMORY_FRACTION` of the GPU's free memory (as the backend reports it; a fixed
:data:`FALLBACK_GPU_BUDGET` where it cannot say). On a GPU, small batches leave it waiting
on kernel launches; one large batch keeps it busy.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator

from xpnet._backend_records import record_of
from xpnet._typing import Array
from xpnet.backends import free_device_memory
from xpnet.network import Network, NetworkLike, as_network

DEFAULT_BATCH_SIZE = 100
"""The textbook's batch size: what CPU backends use where the caller gives none."""

GPU_MEMORY_FRACTION = 0.5
"""The share of a GPU's free memory that one batch's working set may take."""

FALLBACK_GPU_BUDGET = 1 << 30
"""Bytes one GPU batch's working set may take where the backend cannot report free memory."""


def check_batch_size(batch_size: object) -> int:
    """``batch_size`` as an int, after checking that it is a positive integer.

    The same check on every backend: ``0``, ``-1``, ``2.5``, ``True`` and ``"10"`` raise
    ``ValueError`` in one line (NumPy integers are accepted).
    """
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, numbers.Integral)
        or int(batch_size) < 1
    ):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def optional_batch_size(batch_size: object) -> int | None:
    """:func:`check_batch_size`, where ``None`` (the function's own choice) is allowed too."""
    return None if batch_size is None else check_batch_size(batch_size)


def auto_batch_size(rows: int, row_bytes: int, *, gpu: bool, free_bytes: int | None) -> int:
    """The batch size where the caller gives none (the batching rule of this module).

    ``rows`` is the input's length, ``row_bytes`` the working set of one row (see
    :func:`working_set_per_row`), ``gpu`` whether the backend computes on a GPU,
    ``free_bytes`` its free memory (``None``: unknown). A CPU backend gets
    :data:`DEFAULT_BATCH_SIZE`; a GPU ``rows`` (the whole input) if
    ``rows * row_bytes`` fits the budget, ``GPU_MEMORY_FRACTION * free_bytes`` (or
    :data:`FALLBACK_GPU_BUDGET`), else the most rows that fit it, and at least 1.
    """
    if not gpu:
        return DEFAULT_BATCH_SIZE
    budget = FALLBACK_GPU_BUDGET if free_bytes is None else int(GPU_MEMORY_FRACTION * free_bytes)
    return max(1, min(rows, budget // max(1, row_bytes)))


def working_set_per_row(network: Network) -> int:
    """Bytes one input row needs on the device during the forward pass, in the network's
    dtype: the row cast to that dtype, plus three arrays the width of each layer (the
    product with the weights, the bias added, the activation)."""
    width = network.sizes[0] + 3 * sum(network.sizes[1:])
    return width * _itemsize(network)


def _itemsize(network: Network) -> int:
    """Bytes per element of the network's floating dtype."""
    xp = network.xp
    return int(xp.finfo(network.dtype).bits) // 8


def batch_size_for(network: NetworkLike, x: Array) -> int:
    """The batch size :func:`count_correct` uses for ``x`` where the caller gives none.

    Applies :func:`auto_batch_size` to the network's backend and device: the GPU's free
    memory is asked for only on a GPU backend.
    """
    net = as_network(network)
    backend = net.backend
    gpu = record_of(backend.name).is_gpu(backend.device)
    return auto_batch_size(
        int(x.shape[0]) if x.ndim else 1,
        working_set_per_row(net),
        gpu=gpu,
        free_bytes=free_device_memory(backend) if gpu else None,
    )


def iter_batches(*arrays: Array, batch_size: int) -> Iterator[tuple[Array, ...]]:
    """Yield aligned slices of ``arrays`` along their first axis, ``batch_size`` rows each.

    The last batch may be shorter; an empty input yields nothing. Slices are views or
    lazy slices of the originals (never copies to another device).

    Parameters
    ----------
    *arrays : array
        Arrays of one length along axis 0.
    batch_size : int
        Rows per batch, a positive integer.

    Yields
    ------
    tuple of array
        One slice of each array, in the order given.

    Raises
    ------
    ValueError
        If ``batch_size`` is not a positive integer or the arrays differ in length.

    Examples
    --------
    >>> import xpnet
    >>> for name in ("numpy", "array_api_strict"):
    ...     backend = xpnet.get_backend(name)
    ...     x, t = backend.asarray([[0.0], [1.0], [2.0]]), backend.asarray([7, 8, 9])
    ...     print([xpnet.to_host(tb).tolist() for _, tb in xpnet.iter_batches(x, t, batch_size=2)])
    [[7, 8], [9]]
    [[7, 8], [9]]
    """
    batch_size = check_batch_size(batch_size)
    lengths = {a.shape[0] for a in arrays}
    if len(lengths) != 1:
        raise ValueError(f"arrays to batch must have the same length, got {sorted(lengths)}")
    (length,) = lengths
    for start in range(0, length, batch_size):
        stop = min(start + batch_size, length)  # array-api-strict refuses stops past the end
        yield tuple(a[start:stop, ...] for a in arrays)
