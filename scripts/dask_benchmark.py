"""Dask against NumPy on a million MNIST test images (tiled, shuffled), in one run.

python scripts/dask_benchmark.py --weights ../shared/data/book/sample_weight.pkl \
    --data-dir ../shared/data/mnist [--images 1000000] [--store] [--json]

Prints the median seconds of each and dask's throughput as a fraction of NumPy's. The
benchmark lives in the checkout's ``benchmarks/`` folder (not installed with xpnet): this
script puts the checkout first on the path and runs ``benchmarks.cli.dask_main``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cli import dask_main  # the checkout is on the path from here

if __name__ == "__main__":
    sys.exit(dask_main(sys.argv[1:]))
