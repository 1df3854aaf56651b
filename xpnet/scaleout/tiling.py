"""Big synthetic datasets from a small one: its rows repeated, each repeat freshly shuffled.

Used to write out-of-core test stores and to benchmark at scale with real images (every
image, and so every answer, is one of the source's, which makes the accuracy checkable).
"""

from __future__ import annotations

import numpy as np


def tiled_order(sources: int, count: int, *, seed: int = 0) -> np.ndarray:
    """Indices of ``count`` rows drawn from ``sources`` rows: whole repeats of the source,
    each in its own order from ``numpy.random.default_rng(seed)`` (the last one cut short).
    """
    if sources < 1 or count < 0:
        raise ValueError(f"need at least one source row and count >= 0, got {sources}, {count}")
    rng = np.random.default_rng(seed)
    order = np.empty(count, dtype=np.intp)
    for start in range(0, count, sources):
        stop = min(start + sources, count)
        order[start:stop] = rng.permutation(sources)[: stop - start]
    return order
