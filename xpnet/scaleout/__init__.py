"""Dask's one home: the chunk engine, training on dask, image stores, schedulers, tiling.

:mod:`xpnet.inference` sends dask arrays to :mod:`~xpnet.scaleout.chunk_engine` (lazily, one
task per chunk of rows); :mod:`xpnet.training` sends them to :mod:`~xpnet.scaleout.training`.
Around such runs: Zarr image stores (:func:`write_store`, :func:`open_store`), big datasets
tiled from small ones (:func:`tiled_order`), dask schedulers and clusters with progress bars
and worker memory (:func:`use_scheduler`, :func:`compute`, :func:`worker_peak_memory`). Each
public name is imported when first used, so ``import xpnet`` loads the chunk engine alone.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
_MODULE = dict.fromkeys(("compute", "use_scheduler", "worker_peak_memory"), "schedulers")
_MODULE["tiled_order"] = "tiling"


def __getattr__(name: str) -> Any:
    """A public name, from the module that holds it (the store's unless said otherwise)."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE.get(name, 'store')}"), name)
