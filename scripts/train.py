"""Train a network on MNIST, its 5k subset or Fashion-MNIST: ``xpnet train`` as a script.

python scripts/train.py --dataset mnist-5k --data-dir ../shared/data/mnist --out weights.npz
"""

import sys

from xpnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
