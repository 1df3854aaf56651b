"""Inference beyond one machine's memory: chunked image stores, dask schedulers, clusters.

``xpnet.predict``, ``predict_labels``, ``count_correct`` and ``accuracy`` take dask arrays
as they are: lazily, one task per chunk of rows. This package adds what such runs need
around them: Zarr image stores written and read chunk by chunk (:func:`write_store`,
:func:`open_store`), big real-image datasets from small ones (:func:`tiled_order`), a choice
of dask scheduler or cluster with progress bars and worker memory (:func:`use_scheduler`,
:func:`compute`, :func:`worker_peak_memory`). Importing it imports no dask.
"""

from xpnet.scaleout.schedulers import compute, use_scheduler, worker_peak_memory
from xpnet.scaleout.store import DEFAULT_CHUNK_ROWS, ImageStore, open_store, write_store
from xpnet.scaleout.tiling import tiled_order

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "ImageStore",
    "compute",
    "open_store",
    "tiled_order",
    "use_scheduler",
    "worker_peak_memory",
    "write_store",
]
