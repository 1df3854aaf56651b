"""xpnet against the textbook's loops, ONNX Runtime, PyTorch and jax.jit, in one run.

python scripts/benchmark.py --weights sample_weight.pkl --data-dir mnist/ --plot bench.png

The benchmark lives in the checkout's ``benchmarks/`` folder (not installed with xpnet):
this script puts the checkout first on the path and runs ``benchmarks.cli.main``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cli import main  # the checkout is on the path from here

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
