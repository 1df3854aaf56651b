"""Draw the first 25 images of a split: ``xpnet show-mnist`` as a script.

python scripts/show_mnist.py --split test --data-dir ../shared/data/mnist --out mnist.png
"""

import sys

from xpnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["show-mnist", *sys.argv[1:]]))
