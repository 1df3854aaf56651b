"""xpnet against the textbook's loops, PyTorch and jax.jit: ``xpnet bench`` as a script.

python scripts/benchmark.py --weights sample_weight.pkl --data-dir mnist/ --plot bench.png
"""

import sys

from xpnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
