"""Dask's engine: arrays in row chunks, made from host data and run one task per chunk.

:func:`from_host` makes them for ``Backend.asarray``. :func:`forward` is the forward pass
on dask arrays, lazily, on any dask scheduler: each row chunk of ``x`` goes through the
network in one task, by the same per-array code as an in-memory array (NumPy chunks in ONNX
Runtime where it is installed, each process building its own session; CuPy chunks the
generic path on their GPU), so the task graph grows with the number of chunks and not with
the batches inside a chunk. The network's arrays enter the graph once, as one key each that
every chunk task depends on: a distributed scheduler ships them to each worker once, never
per task. Nothing runs until the caller computes. ``import xpnet`` imports this module, never
dask itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import array_api_compat as compat
import numpy as np

from xpnet._typing import Array
from xpnet.network import Layer, Network

ChunkForward = Callable[[Network, Array], Array]
"""The in-memory forward pass of a network over one chunk (``predict`` or its labels)."""

CHUNK_BYTES = 100 << 20
"""Bytes of rows per chunk of a dask array made from host data: small graphs, busy workers."""


def from_host(host: np.ndarray) -> Array:
    """``host`` as a dask array in chunks of whole rows, about :data:`CHUNK_BYTES` each."""
    import dask.array as da

    row_bytes = max(1, host.itemsize * int(np.prod(host.shape[1:])))
    rows = [max(1, min(n, CHUNK_BYTES // row_bytes)) for n in host.shape[:1]]  # none if 0-d
    return da.from_array(host, chunks=(*rows, *host.shape[1:]))


def accepts(x: Array) -> bool:
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
    params: list[Any] = []  # whole arrays, axes named apart: one key each, shared by all tasks
    for number, layer in enumerate(network.layers):
        weight, bias = layer.weight.rechunk(-1), layer.bias.rechunk(-1)
        params += [weight, (f"w{number}", f"v{number}"), bias, (f"b{number}",)]
    # x's feature axis becomes the output axis (its chunk resized), or is dropped for labels.
    out_index = ("row",) if labels else ("row", "out")
    adjust = None if labels else {"out": network.sizes[-1]}
    info = network.xp.__array_namespace_info__()
    dtype = info.default_dtypes()["indexing"] if labels else network.dtype
    return da.blockwise(
        _chunk,
        out_index,
        x,
        ("row", "out"),
        network.activations,
        None,
        chunk_forward,
        None,
        *params,
        adjust_chunks=adjust,
        dtype=dtype,
        meta=meta_from_array(x, ndim=len(out_index), dtype=dtype),
        concatenate=False,  # a concatenation of one block would still copy it
        token=f"xpnet-{'labels' if labels else 'predict'}",
    )


def _chunk(
    rows: Array | list, activations: Sequence[str], chunk_forward: ChunkForward, *params: Array
) -> Array:
    """One task: the network rebuilt from its in-memory arrays, run over one chunk of rows."""
    weights, biases = map(_single_block, params[::2]), map(_single_block, params[1::2])
    network = Network(tuple(Layer(w, b, a) for w, b, a in zip(weights, biases, activations)))
    return chunk_forward(network, _single_block(rows))


def _single_block(blocks: Array | list) -> Array:
    """The one block that dask passes, nested in a list per axis that the output drops."""
    while isinstance(blocks, list):
        (blocks,) = blocks
    return blocks
