"""Training and evaluating on dask arrays: lazy data, in-memory steps, results on dask again.

A training step is a few hundred small operations; as dask tasks their scheduling would
cost far more than the math. So :mod:`xpnet.training` runs the steps in memory, computing
the network and the optimizer's state (:func:`computed`) and each epoch's rows a group of
whole batches at a time (:func:`groups`: memory holds one group, never the whole set), and
hands results back as dask arrays (:func:`as_dask`). No dask is imported before then.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import array_api_compat as compat
import numpy as np

from xpnet._typing import Array

GROUP_ROWS = 8192
"""The fewest rows computed into memory at once when training on dask."""


def computed(arrays: Sequence[Any]) -> list[Any]:
    """``arrays`` with each dask array among them computed, in one pass, into its chunks' own
    type (NumPy, CuPy); everything else passes through unchanged."""
    lazy = [i for i, a in enumerate(arrays) if compat.is_dask_array(a)]
    result = list(arrays)
    if lazy:
        import dask

        for i, done in zip(lazy, dask.compute(*(arrays[i] for i in lazy))):
            result[i] = done
    return result


def as_dask(arrays: Sequence[Any]) -> list[Any]:
    """In-memory arrays as one-chunk dask arrays: results handed back on the caller's
    backend. Random names, since hashing the data for a name would cost a pass over it."""
    import dask.array as da

    return [da.from_array(a, chunks=tuple(a.shape), name=False) for a in arrays]


def groups(
    source: tuple[Array, ...], order: np.ndarray | None, batch_size: int
) -> Iterator[tuple[slice, tuple[Array, ...]]]:
    """``(positions in order, rows)`` of the dask arrays ``source`` (rows in ``order`` if
    given), in groups of whole batches of at least a chunk or :data:`GROUP_ROWS` rows, each
    computed into memory only when reached."""
    rows = source[0].shape[0]
    largest_chunk = max(source[0].chunks[0])
    group = batch_size * math.ceil(max(largest_chunk, GROUP_ROWS) / batch_size)
    for start in range(0, rows, group):
        part = slice(start, min(start + group, rows))
        gathered = [a[part] if order is None else a[order[part]] for a in source]
        yield part, tuple(computed(gathered))
