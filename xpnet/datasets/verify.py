"""Check that a local file is the dataset file it claims to be, then parse it.

The file is read once: its gz md5 as it lies on disk, then its decompressed bytes, parsed
as they are hashed. What a file can make xpnet read is bounded first: an IDX header must
declare the registered shape before anything past it is inflated, and a CSV table's
text may not exceed what the registered table can take (:attr:`DataFile.max_payload`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from xpnet.datasets.download import stream_md5
from xpnet.datasets.idx import (
    open_payload,
    open_regular,
    read_array,
    read_errors,
    read_header,
)
from xpnet.datasets.labelled_csv import parse_labelled_csv, read_text
from xpnet.datasets.registry import DATASETS, DataFile
from xpnet.errors import DataError


class ForeignFileError(DataError):
    """A file that is another registered dataset's (MNIST's and Fashion-MNIST's share names)."""

    def __init__(self, message: str, owner: str) -> None:
        super().__init__(message)
        self.owner = owner
        """The name of the dataset the file belongs to."""


@dataclass(frozen=True)
class Verified:
    """A parsed data file and the checksums that vouch for it."""

    array: np.ndarray
    md5: str
    """The md5 of the file as it lies on disk (gzipped or not)."""
    payload_md5: str | None
    """The md5 of its decompressed bytes; ``None`` where ``md5`` is the canonical one."""
    accepted_by: Literal["md5", "payload md5", "structure"]
    """What made it acceptable: the canonical gz md5, the known payload md5, or (where no
    payload md5 is known) its structure alone."""


def read_verified(path: Path, spec: DataFile) -> np.ndarray:
    """Parse ``path`` as the file ``spec`` describes, or raise a one-line DataError.

    Accepted: the canonical gz (its md5), or any copy, re-compressed or unpacked, whose
    decompressed bytes have the known payload md5. Where no payload md5 is known, a copy
    is accepted on structure alone: a uint8 array of exactly ``spec.shape``, read as
    ``spec.format`` says (an IDX file, or a labelled CSV table).
    """
    return parse_verified(path, spec).array


def parse_verified(path: Path, spec: DataFile, dataset: str | None = None) -> Verified:
    """:func:`read_verified`, with the checksums that vouch for the array.

    A file that is another registered dataset's raises :class:`ForeignFileError` (saying
    whose, and that it is not ``dataset``'s, where given).
    """
    with read_errors(path), open_regular(path) as raw:  # a pipe is refused, not waited on
        md5 = stream_md5(raw)
    canonical = md5 == spec.md5
    if not canonical:
        _refuse_foreign(path, spec, dataset, md5=md5)
    with open_payload(path) as stream:
        if not canonical:
            stream.hash_with("md5")
        if spec.format == "idx":
            shape, dtype = read_header(stream, path)
            if shape != spec.shape or dtype != np.dtype(np.uint8):
                raise _wrong_shape(path, spec, dtype.newbyteorder("="), shape)
            array = read_array(stream, path, (shape, dtype))
        else:
            limit = spec.max_payload
            text = read_text(stream, limit, f"{spec.name} has at most {limit}")
            array = parse_labelled_csv(text, path)
            if array.shape != spec.shape:
                raise _wrong_shape(path, spec, array.dtype, array.shape)
        payload_md5 = None if canonical else stream.digest.hexdigest()
    if canonical:
        return Verified(array, md5, None, "md5")
    _refuse_foreign(path, spec, dataset, payload_md5=payload_md5)
    if spec.payload_md5 is None:
        return Verified(array, md5, payload_md5, "structure")
    if payload_md5 == spec.payload_md5:
        return Verified(array, md5, payload_md5, "payload md5")
    raise DataError(
        f"{path} is not the canonical {spec.name}: neither its md5 nor that of its "
        "decompressed bytes is the known one"
    )


def _wrong_shape(path: Path, spec: DataFile, dtype: np.dtype, shape: tuple[int, ...]) -> DataError:
    return DataError(
        f"{path} holds a {dtype} array of shape {shape}; "
        f"{spec.name} must be uint8 of shape {spec.shape}"
    )


def _refuse_foreign(
    path: Path,
    spec: DataFile,
    dataset: str | None,
    *,
    md5: str | None = None,
    payload_md5: str | None = None,
) -> None:
    """Raise ForeignFileError where the checksums are another registered file's."""
    for name, other in DATASETS.items():
        for split in other.splits.values():
            for known in split:
                matches = (md5 is not None and known.md5 == md5) or (
                    payload_md5 is not None and known.payload_md5 == payload_md5
                )
                if known == spec or not matches:
                    continue
                wanted = f"{dataset}'s {spec.name}" if dataset else spec.name
                raise ForeignFileError(f"{path} is {name}'s {known.name}, not {wanted}", name)
