"""Write a dataset split into a chunked Zarr image store: ``xpnet convert`` as a script.

python scripts/convert.py mnist-test.zarr --data-dir ../shared/data/mnist
python scripts/convert.py mnist-2m.zarr --images 2000000 --seed 0 --data-dir ../shared/data/mnist
"""

import sys

from xpnet.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
