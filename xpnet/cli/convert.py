"""``xpnet convert``: write a dataset split into a chunked Zarr image store for dask.

``--images N`` tiles the split to N images, each repeat in its own seeded order, for
out-of-core runs on real images; the store is written chunk by chunk, in bounded memory.
``xpnet infer --backend dask --input STORE`` reads it lazily.

The store is built beside its path under a name xpnet owns and swapped in at the end; Ctrl-C
or a failure leaves the old store (or nothing) and no partial copy. ``--overwrite`` replaces
only an xpnet store, recognised by its own metadata; the folder the store goes in must exist.
"""

from __future__ import annotations

import argparse
import sys
import time

from xpnet.cli.options import add_data_options, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    from xpnet.scaleout.store import DEFAULT_CHUNK_ROWS

    parser = subparsers.add_parser(
        "convert",
        help="write a dataset split into a chunked Zarr image store",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("store", help="the store to write (a folder, e.g. mnist-test.zarr)")
    parser.add_argument("--dataset", default="mnist", help="a registered dataset (mnist, ...)")
    parser.add_argument("--split", choices=("train", "test"), default="test")
    add_data_options(parser)
    parser.add_argument("--images", type=positive_int, help="tile the split to N images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tiles' orders")
    parser.add_argument(
        "--chunk-rows", type=positive_int, default=DEFAULT_CHUNK_ROWS, help="images per chunk"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing xpnet store (never another folder or file)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from xpnet.datasets import get_dataset, load_mnist
    from xpnet.scaleout.store import check_store_target, write_store
    from xpnet.scaleout.tiling import tiled_order

    check_store_target(args.store, overwrite=args.overwrite)  # before reading any data
    start = time.perf_counter()
    images, labels = load_mnist(
        normalize=False,
        flatten=False,  # (N, 1, height, width): the store records the image shape
        split=args.split,
        dataset=args.dataset,
        data_dir=args.data_dir,
        download=not args.no_download,
    )
    metadata = {
        "dataset": args.dataset,
        "split": args.split,
        "classes": get_dataset(args.dataset).num_classes,
    }
    order = None
    if args.images is not None:
        order = tiled_order(len(images), args.images, seed=args.seed)
        metadata["tiled"] = {"from": len(images), "seed": args.seed}
    store = write_store(
        args.store,
        images[:, 0],
        labels,
        order=order,
        chunk_rows=args.chunk_rows,
        metadata=metadata,
        overwrite=args.overwrite,
    )
    print(
        f"wrote {len(store)} images ({args.dataset} {args.split} split) to {store.path} "
        f"in {-(-len(store) // store.chunk_rows)} chunks of {store.chunk_rows} rows, "
        f"{time.perf_counter() - start:.1f} s",
        file=sys.stderr,
    )
    return 0
