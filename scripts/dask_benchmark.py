"""Dask against NumPy on a million MNIST test images (tiled, shuffled), in one run.

python scripts/dask_benchmark.py --weights ../shared/data/book/sample_weight.pkl \
    --data-dir ../shared/data/mnist [--images 1000000] [--store] [--json]

Prints the median seconds of each and dask's throughput as a fraction of NumPy's.
"""

from __future__ import annotations

import sys
from dataclasses import asdict

from xpnet.cli.infer import load_network
from xpnet.cli.options import Parser, describe, json_safe, positive_int, print_json
from xpnet.datasets import load_mnist
from xpnet.scaleout.benchmark import DEFAULT_IMAGES, measure_dask_throughput
from xpnet.scaleout.store import DEFAULT_CHUNK_ROWS


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="dask_benchmark.py", description=describe(__doc__))
    parser.add_argument(
        "--weights", default="book", help="weights file, or 'book' for the textbook's"
    )
    parser.add_argument("--data-dir", help="folder holding the MNIST test files")
    parser.add_argument("--images", type=positive_int, default=DEFAULT_IMAGES)
    parser.add_argument("--chunk-rows", type=positive_int, default=DEFAULT_CHUNK_ROWS)
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--store", action="store_true", help="also time dask from a Zarr store")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    images, labels = load_mnist(normalize=False, split="test", data_dir=args.data_dir)
    result = measure_dask_throughput(
        load_network(args.weights, "numpy", None),
        images,
        labels,
        count=args.images,
        chunk_rows=args.chunk_rows,
        repeats=args.repeats,
        from_store=args.store,
    )
    if args.json:
        print_json(
            json_safe({**asdict(result), "ratio": result.ratio, "store_ratio": result.store_ratio})
        )
    else:
        print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
