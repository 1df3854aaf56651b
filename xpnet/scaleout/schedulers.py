"""Where dask computes: threads, processes, a ``dask.distributed`` cluster, local or remote.

:func:`use_scheduler` routes every dask computation inside its block; :func:`compute`
computes with a progress bar on stderr (distributed's where a cluster computes, else dask's
diagnostics), as :func:`count_correct_and_unlabelled` does; :func:`worker_peak_memory` reads
each worker's memory high-water mark.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, redirect_stdout
from typing import Any

from xpnet._typing import Array
from xpnet.forward_pass import NO_CLASS
from xpnet.inference import predict_labels
from xpnet.network import Network

LOCAL_SCHEDULERS = ("threads", "processes", "synchronous")
"""Dask's single-machine schedulers; any other name is a distributed scheduler's address."""


@contextmanager
def use_scheduler(
    scheduler: str | None = None, *, local_workers: int | None = None
) -> Iterator[str]:
    """Compute dask collections inside the block on ``scheduler``; yields a description.

    ``scheduler`` is ``threads``, ``processes``, ``synchronous`` or the address of a running
    ``dask.distributed`` scheduler (``tcp://host:8786``). ``local_workers`` instead starts a
    ``LocalCluster`` of that many worker processes on 127.0.0.1, closed on leaving. ``None``
    for both keeps dask's default (threads, or the distributed client already made).

    Parameters
    ----------
    scheduler : str, optional
        A local scheduler's name or a distributed scheduler's address.
    local_workers : int, optional
        The number of worker processes of a local cluster started for the block.

    Yields
    ------
    str
        What computes the collections, in words.

    Raises
    ------
    ValueError
        If both ``scheduler`` and ``local_workers`` are given.

    Examples
    --------
    Needs dask (``pip install 'xpnet[dask]'``):

    >>> import xpnet
    >>> from xpnet.scaleout import use_scheduler
    >>> network = xpnet.init_network([4, 3, 2], backend="dask")  # doctest: +SKIP
    >>> x = xpnet.get_backend("dask").asarray([[0.0, 1.0, 2.0, 3.0]] * 5)  # doctest: +SKIP
    >>> with use_scheduler("synchronous") as where:  # doctest: +SKIP
    ...     labels = xpnet.predict_labels(network, x).compute()
    >>> where, labels.shape  # doctest: +SKIP
    ('dask synchronous', (5,))
    """
    if scheduler is not None and local_workers is not None:
        raise ValueError("give a scheduler or a number of local workers, not both")
    if local_workers is not None:
        from distributed import Client, LocalCluster

        with (
            LocalCluster(
                n_workers=local_workers,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.CRITICAL,  # a failed task is raised here, in one line
            ) as cluster,
            Client(cluster) as client,
        ):
            yield f"LocalCluster of {local_workers} workers at {client.scheduler.address}"
    elif scheduler in LOCAL_SCHEDULERS:
        import dask

        with dask.config.set(scheduler=scheduler):
            yield f"dask {scheduler}"
    elif scheduler is not None:
        from distributed import Client

        with Client(scheduler, timeout="10s") as client:
            yield f"distributed scheduler at {client.scheduler.address}"
    else:
        yield "dask's default"


def active_client() -> Any:
    """The ``distributed.Client`` that dask computes on now, or ``None``."""
    if "distributed" not in sys.modules:
        return None
    import dask.base

    get = dask.base.get_scheduler()
    owner = getattr(get, "__self__", None)
    from distributed import Client

    return owner if isinstance(owner, Client) else None


def compute(*collections: Any, progress: bool = False) -> tuple[Any, ...]:
    """Compute dask ``collections`` together; with ``progress``, draw a bar on stderr."""
    import dask

    client = active_client()
    if client is None:
        from dask.diagnostics import ProgressBar

        with ProgressBar(out=sys.stderr) if progress else nullcontext():
            return tuple(dask.compute(*collections))
    futures = client.compute(list(collections))
    if progress:
        from distributed import progress as draw

        with redirect_stdout(sys.stderr):  # distributed draws its text bar on stdout
            draw(futures, notebook=False)
    return tuple(client.gather(futures))


def worker_peak_memory(client: Any = None) -> dict[str, int]:
    """Each worker's peak resident memory in bytes since it started, by worker address, for
    ``client`` (``None``: the one dask computes on now; none at all: no workers, ``{}``)."""
    client = active_client() if client is None else client
    return {} if client is None else dict(client.run(_peak_rss))


def count_correct_and_unlabelled(
    network: Network, x: Array, t: Array, *, batch_size: int | None = None, progress: bool = False
) -> tuple[int, int]:
    """The rows of dask array ``x`` classified as labelled by ``t`` (class indices), and the
    rows with no class (an output that is not finite), counted as one graph by :func:`compute`."""
    predicted, xp = predict_labels(network, x, batch_size=batch_size), network.xp
    lazy = xp.count_nonzero(predicted == t), xp.count_nonzero(predicted == NO_CLASS)
    correct, unlabelled = compute(*lazy, progress=progress)
    return int(correct), int(unlabelled)


def _peak_rss() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS counts bytes, Linux KiB
