"""``xpnet infer``'s options for data beyond memory: an image store, dask's scheduler, a cluster.

``--input STORE`` reads an image store (``xpnet convert``) on any backend: whole on the
host, or lazily, chunk by chunk, with ``--backend dask``. ``--scheduler`` and
``--local-cluster`` choose where dask computes; dask draws its own progress bar. This module
parses and checks the options; what they do is :mod:`xpnet.scaleout`'s.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from xpnet._typing import Array
from xpnet.cli.options import UsageError, positive_int
from xpnet.cli.output import word_list
from xpnet.network import Network

DASK_ONLY = ("scheduler", "local_cluster", "chunk_rows")
"""Options that only mean something with ``--backend dask``."""


def add_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--input``, ``--scheduler``, ``--local-cluster`` and ``--chunk-rows``."""
    parser.add_argument(
        "--input",
        metavar="STORE",
        help="an image store from 'xpnet convert' instead of --dataset (lazy with dask)",
    )
    group = parser.add_argument_group("dask (with --backend dask)")
    where = group.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        metavar="NAME|ADDRESS",
        help="threads, processes, synchronous, or a dask.distributed scheduler's address",
    )
    where.add_argument(
        "--local-cluster",
        type=positive_int,
        metavar="N",
        help="start a dask.distributed LocalCluster of N worker processes for the run",
    )
    group.add_argument("--chunk-rows", type=positive_int, help="rows per dask chunk (rechunk)")


@contextmanager
def dask_scheduler(args: argparse.Namespace) -> Iterator[None]:
    """The chosen dask scheduler for the run (a LocalCluster starts and stops here).

    Says where dask computes and, on a distributed cluster, each worker's peak memory.
    """
    if args.backend != "dask":
        given = [f"--{n.replace('_', '-')}" for n in DASK_ONLY if getattr(args, n) is not None]
        if given:
            verb = "needs" if len(given) == 1 else "need"
            raise UsageError(f"{word_list(given)} {verb} --backend dask")
        yield
        return
    from xpnet.scaleout import use_scheduler, worker_peak_memory

    say = (lambda _: None) if args.json else (lambda text: print(text, file=sys.stderr))
    with use_scheduler(args.scheduler, local_workers=args.local_cluster) as where:
        say(f"scheduler: {where}")
        yield
        if peaks := worker_peak_memory():  # on a distributed cluster
            say("worker peak memory: " + ", ".join(f"{p / 2**20:.0f} MiB" for p in peaks.values()))


def read_input(args: argparse.Namespace) -> tuple[Array, Array, str, str]:
    """The store's raw uint8 images, int64 labels, dataset name and split: dask arrays for
    dask. The names come from the store's metadata (the store's path where it has none)."""
    from xpnet.scaleout import open_store

    store = open_store(args.input)
    x, t = store.read(lazy=args.backend == "dask")
    metadata = store.metadata if isinstance(store.metadata, dict) else {}
    return x, t, str(metadata.get("dataset", args.input)), str(metadata.get("split", "test"))


def count_correct_on_dask(
    network: Network, x: Array, t: Array, args: argparse.Namespace
) -> tuple[int, int]:
    """The correct answers over dask arrays and the rows with no class, in ``--chunk-rows``
    chunks, with dask's progress bar on a terminal."""
    from xpnet.scaleout.schedulers import count_correct_and_unlabelled

    if args.chunk_rows is not None:
        x, t = x.rechunk({0: args.chunk_rows}), t.rechunk(args.chunk_rows)
    bar = not args.json and sys.stderr.isatty()
    return count_correct_and_unlabelled(network, x, t, batch_size=args.batch_size, progress=bar)
