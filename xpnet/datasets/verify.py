"""Check that a local file is the dataset file it claims to be, then parse it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xpnet.datasets.download import file_md5, stream_md5
from xpnet.datasets.idx import open_payload, read_errors, read_idx
from xpnet.datasets.labelled_csv import read_labelled_csv
from xpnet.datasets.registry import DataFile
from xpnet.errors import DataError


def read_verified(path: Path, spec: DataFile) -> np.ndarray:
    """Parse ``path`` as the file ``spec`` describes, or raise a one-line DataError.

    Accepted: the canonical gz (its md5), or any copy, re-compressed or unpacked, whose
    decompressed bytes have the known payload md5. Where no payload md5 is known, a copy
    is accepted on structure alone: a uint8 array of exactly ``spec.shape``, read as
    ``spec.format`` says (an IDX file, or a labelled CSV table).
    """
    with read_errors(path):
        gz_md5 = file_md5(path)
    if gz_md5 != spec.md5 and spec.payload_md5 is not None:
        with open_payload(path) as stream:
            payload_md5 = stream_md5(stream)
        if payload_md5 != spec.payload_md5:
            raise DataError(
                f"{path} is not the canonical {spec.name}: neither its md5 ({gz_md5}) nor "
                f"that of its decompressed bytes ({payload_md5}) is the known one"
            )
    array = read_idx(path) if spec.format == "idx" else read_labelled_csv(path)
    if array.dtype != np.uint8 or array.shape != spec.shape:
        raise DataError(
            f"{path} holds a {array.dtype} array of shape {array.shape}; "
            f"{spec.name} must be uint8 of shape {spec.shape}"
        )
    return array
