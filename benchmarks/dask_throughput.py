"""Dask against NumPy on the same million images, in one run: the throughput ratio.

NumPy classifies the images in memory as one full batch (its fast path); dask classifies
the same array cut into row chunks, on its threaded scheduler, through the same
``count_correct``; optionally dask also reads them from a Zarr store on disk. Runs are
interleaved and the median of each kind is kept, so a busy machine slows all kinds alike.

Run by ``scripts/dask_benchmark.py`` and by ``scripts/benchmark.py --dask-images N``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.peers import Variant
from benchmarks.timing import time_interleaved
from xpnet.inference import count_correct
from xpnet.network import Network, to_backend
from xpnet.scaleout.store import DEFAULT_CHUNK_ROWS, write_store
from xpnet.scaleout.tiling import tiled_order

DEFAULT_IMAGES = 1_000_000


@dataclass(frozen=True)
class DaskThroughput:
    """Median seconds per pass over ``images`` images, and the correct count they agree on."""

    images: int
    chunk_rows: int
    correct: int
    numpy_seconds: float
    dask_seconds: float
    store_seconds: float | None = None

    @property
    def ratio(self) -> float:
        """Dask's throughput as a fraction of NumPy's (1.0: as fast)."""
        return self.numpy_seconds / self.dask_seconds

    @property
    def store_ratio(self) -> float | None:
        """The same, with dask reading the images from a Zarr store."""
        return None if self.store_seconds is None else self.numpy_seconds / self.store_seconds

    def summary(self) -> str:
        """A few lines for a terminal."""
        rate = self.images / self.numpy_seconds
        lines = [
            f"images: {self.images:,} in chunks of {self.chunk_rows:,} rows, correct: "
            f"{self.correct:,}",
            f"numpy (in memory, one batch): {self.numpy_seconds:.3f} s, {rate:,.0f} images/s",
            f"dask (in memory, threads):    {self.dask_seconds:.3f} s, "
            f"{self.images / self.dask_seconds:,.0f} images/s, ratio {self.ratio:.2f}",
        ]
        if self.store_seconds is not None:
            lines.append(
                f"dask (Zarr store, threads):   {self.store_seconds:.3f} s, "
                f"{self.images / self.store_seconds:,.0f} images/s, ratio {self.store_ratio:.2f}"
            )
        return "\n".join(lines)


def measure_dask_throughput(
    network: Network,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    count: int = DEFAULT_IMAGES,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    repeats: int = 3,
    seed: int = 0,
    from_store: bool = False,
) -> DaskThroughput:
    """Time NumPy and dask classifying ``count`` images tiled from uint8 ``images``.

    ``network`` is a NumPy network for pixels in [0, 1]; it takes the raw pixels as
    ``xpnet infer`` does (:meth:`~xpnet.Network.scale_input`). ``from_store`` also writes
    the images to a temporary Zarr store and times dask reading from it. Raises
    :class:`~xpnet.errors.XpnetError` if the backends disagree on the number correct.
    """
    import dask
    import dask.array as da

    order = tiled_order(len(images), count, seed=seed)
    x, t = images.reshape(len(images), -1)[order], labels[order]
    on_numpy = network.scale_input(1 / 255)
    on_dask = to_backend(on_numpy, "dask")
    # Made once, as NumPy's arrays are: from_array hashes its input to name the chunks.
    x_dask, t_dask = da.from_array(x, chunks=(chunk_rows, -1)), da.from_array(t, chunks=chunk_rows)
    runs: dict[str, Callable[[], int]] = {
        "numpy": lambda: count_correct(on_numpy, x, t),
        "dask": lambda: count_correct(on_dask, x_dask, t_dask),
    }
    with (
        tempfile.TemporaryDirectory(prefix="xpnet-bench-") as folder,
        dask.config.set(scheduler="threads"),
    ):
        if from_store:
            store = write_store(Path(folder) / "images.zarr", x, t, chunk_rows=chunk_rows)
            runs["store"] = lambda: count_correct(on_dask, *store.read(lazy=True))
        correct = runs["numpy"]()
        variants = [Variant(name, run) for name, run in runs.items()]
        seconds = time_interleaved(variants, rounds=repeats, pause=0.05, expected=correct)
    return DaskThroughput(
        images=count,
        chunk_rows=chunk_rows,
        correct=correct,
        numpy_seconds=seconds["numpy"],
        dask_seconds=seconds["dask"],
        store_seconds=seconds.get("store"),
    )
