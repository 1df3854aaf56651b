"""The textbook's MNIST batched inference on any backend: ``xpnet infer`` as a script.

python scripts/mnist_inference.py --backend numpy --weights sample_weight.pkl
"""

import sys

from xpnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["infer", *sys.argv[1:]]))
