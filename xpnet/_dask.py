"""The forward pass on dask arrays: one task per row chunk, lazily, on any dask scheduler.

Each row chunk of ``x`` goes through the network in one task, by the same per-array code as
an in-memory array (NumPy chunks take the NumPy fast path, CuPy chunks the generic path on
their GPU), so the task graph grows with the number of chunks and not with the batches
inside a chunk. The network's arrays enter the graph once, as one key each that every chunk
task depends on: a distributed scheduler ships them to each worker once, never per task.
Nothing runs until the caller computes the result. ``import xpnet`` imports no dask.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import array_api_compat as compat

from xpnet._typing import Array
from xpnet.network import Layer, Network

ChunkForward = Callable[[Network, Array], Array]
"""The in-memory forward pass of a network over one chunk (``predict`` or its labels)."""


def applies(x: Array) -> bool:
    """Whether ``x`` is a dask array of rows, which :func:`forward` runs chunk by chunk."""
    return compat.is_dask_array(x) and x.ndim == 2


def forward(network: Network, x: Array, chunk_forward: ChunkForward, *, labels: bool) -> Array:
    """``chunk_forward`` mapped over the row chunks of dask array ``x``, lazily.

    Returns a dask array with ``x``'s row chunks: the class of each row with ``labels``,
    else the output layer's values.
    """
    import dask.array as da
    from dask.array.utils import meta_from_array

    x = x.rechunk({1: -1})  # one chunk across the features, so each task sees whole rows
    params = tuple(a for layer in network.layers for a in (layer.weight, layer.bias))
    if labels:
        index_dtype = network.xp.__array_namespace_info__().default_dtypes()["indexing"]
        out_index, adjust, dtype = "i", None, index_dtype
    else:
        out_index, adjust, dtype = "ij", {"j": network.sizes[-1]}, network.dtype
    return da.blockwise(
        _chunk,
        out_index,
        x,
        "ij",
        params,  # dask arrays here become one whole-array key each, shared by every task
        None,
        network.activations,
        None,
        chunk_forward,
        None,
        adjust_chunks=adjust,
        dtype=dtype,
        meta=meta_from_array(x, ndim=len(out_index), dtype=dtype),
        concatenate=True,
        name=f"xpnet-{'labels' if labels else 'predict'}",
    )


def _chunk(
    rows: Array, params: Sequence[Array], activations: Sequence[str], chunk_forward: ChunkForward
) -> Array:
    """One task: the network rebuilt from its in-memory arrays, run over one chunk of rows."""
    pairs = zip(params[::2], params[1::2])
    network = Network(tuple(Layer(w, b, a) for (w, b), a in zip(pairs, activations)))
    return chunk_forward(network, rows)
