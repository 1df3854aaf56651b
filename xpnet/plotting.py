"""The book's pictures: activation curves, digit grids, mistakes, confusion matrix, weights.

Counting and ranking run on the arrays' own device with the array API; only what is drawn
is copied to the host, explicitly, with :func:`~xpnet.backends.to_host`. Each ``plot_*``
function returns a :class:`matplotlib.figure.Figure` built without pyplot, so it works
headless (Agg) and opens no window; save it with ``figure.savefig(path)``. matplotlib
(the ``plot`` extra) is imported only when a figure is made.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import array_api_compat as compat
import numpy as np

from xpnet._array_api import namespace_of, scalar_like
from xpnet._device import on_backend, on_device_of
from xpnet._typing import Array, Namespace
from xpnet.activations import ACTIVATIONS
from xpnet.backends import Backend, get_backend, to_host
from xpnet.forward_pass import NO_CLASS, labels_of
from xpnet.network import NetworkLike, as_network

if TYPE_CHECKING:
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

BOOK_ORDER = ("step", "sigmoid", "relu")
"""The activations in the order the book draws them; the others follow."""

_BOOK_YLIM = {"step": (-0.1, 1.1), "sigmoid": (-0.1, 1.1)}
"""The book's y limits for the bounded curves; other curves scale to their data."""

_TITLES = {"softmax": "softmax (whole grid)"}
"""Titles that need a word of explanation; the others are the function's name."""

_CELLS_PER_BATCH = 1 << 22
"""Comparisons per batch in :func:`confusion_matrix`: bounds its temporary memory (one
boolean per comparison)."""


def require_matplotlib() -> None:
    """Raise ``ImportError`` with the install hint where matplotlib (extra ``plot``) is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError("xpnet's pictures need matplotlib: pip install 'xpnet[plot]'")


def new_figure(width: float, height: float) -> Figure:
    """A figure with its own Agg canvas and no pyplot state (no window, no global registry)."""
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def plot_activations(
    functions: Sequence[str] | Mapping[str, Callable[[Array], Array]] | None = None,
    x_range: tuple[float, float] = (-6.0, 6.0),
    num: int = 601,
    *,
    backend: Backend | None = None,
) -> Figure:
    """Each activation on its own Axes over ``num`` points of ``x_range``, as the book draws them.

    ``functions`` are names from :data:`xpnet.activations.ACTIVATIONS` or a mapping of
    titles to functions; by default all of them (step, sigmoid, ReLU first, as in the
    book, which fixes y to [-0.1, 1.1] for step and sigmoid). The curves are computed on
    ``backend`` (NumPy by default) in float32. Softmax maps the whole grid, as one vector,
    to probabilities that sum to 1.

    Parameters
    ----------
    functions : sequence of str or mapping of str to callable, optional
        The activations to draw; all of them by default.
    x_range : tuple of float, optional
        The smallest and largest x.
    num : int, optional
        The number of points.
    backend : Backend, optional
        Where the curves are computed (:func:`~xpnet.get_backend`); NumPy by default.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, not shown; ``figure.savefig(path)`` writes it.

    Examples
    --------
    >>> import xpnet
    >>> from xpnet.plotting import plot_activations
    >>> backend = xpnet.get_backend("array_api_strict")
    >>> figure = plot_activations(["step", "sigmoid", "relu"], backend=backend)
    >>> [ax.get_title() for ax in figure.axes]
    ['step', 'sigmoid', 'relu']
    """
    if functions is None:
        functions = [*BOOK_ORDER, *(name for name in ACTIVATIONS if name not in BOOK_ORDER)]
    chosen = (
        dict(functions)
        if isinstance(functions, Mapping)
        else {name: ACTIVATIONS[name] for name in functions}
    )
    target = backend or get_backend("numpy")
    grid = target.asarray(np.linspace(*x_range, num), dtype="float32")
    x = to_host(grid)
    with on_backend(target.name, target.device):
        curves = {name: to_host(function(grid)) for name, function in chosen.items()}
    figure = new_figure(2.6 * len(chosen), 2.6)
    for ax, (name, curve) in zip(figure.subplots(1, len(chosen), squeeze=False)[0], curves.items()):
        ax.plot(x, curve)
        ax.set_title(_TITLES.get(name, name))
        ax.set_xlabel("x")
        ax.grid(alpha=0.3)
        if name in _BOOK_YLIM:
            ax.set_ylim(*_BOOK_YLIM[name])
    return figure


def plot_image_grid(
    images: Array,
    labels: Array,
    *,
    rows: int = 5,
    cols: int = 5,
    predicted: Array | None = None,
) -> Figure:
    """The first ``rows * cols`` images, each titled with its label (the book's 5x5 grid).

    ``images`` are ``(N, 784)``, ``(N, 1, 28, 28)`` or ``(N, 28, 28)``; ``labels`` are class
    indices or one-hot rows. With ``predicted``, titles read ``"label → prediction"`` and
    mistakes are red. Only the shown images are copied to the host.

    Parameters
    ----------
    images : array
        Images, one per row along axis 0, of any backend.
    labels : array
        Their class indices or one-hot rows.
    rows, cols : int, optional
        The grid's shape.
    predicted : array, optional
        Predicted class indices, shown beside the labels.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, not shown; ``figure.savefig(path)`` writes it.

    Examples
    --------
    >>> import numpy as np
    >>> import xpnet
    >>> from xpnet.plotting import plot_image_grid
    >>> backend = xpnet.get_backend("array_api_strict")
    >>> images = backend.asarray(np.zeros((4, 784)), dtype="float32")
    >>> labels, predicted = backend.asarray([3, 1, 4, 1]), backend.asarray([3, 1, 4, 7])
    >>> figure = plot_image_grid(images, labels, rows=2, cols=2, predicted=predicted)
    >>> [ax.get_title() for ax in figure.axes]
    ['3 → 3', '1 → 1', '4 → 4', '1 → 7']
    """
    count = min(rows * cols, images.shape[0])
    with on_device_of(labels):
        shown = to_host(_class_indices(labels[:count, ...]))
    titles = [(str(label), "black") for label in shown]
    if predicted is not None:
        guesses = to_host(predicted[:count, ...])
        titles = [
            (f"{label} → {guess}", "black" if label == guess else "red")
            for label, guess in zip(shown, guesses)
        ]
    figure = new_figure(1.3 * cols, 1.45 * rows)
    _draw_images(figure, _as_images(to_host(images[:count, ...])), rows, cols, titles)
    return figure


def misclassified_indices(labels: Array, probabilities: Array) -> Array:
    """Indices of the misclassified rows, worst first, on the input's device.

    A row is misclassified where the argmax of its ``probabilities`` differs from its label
    (a class index or a one-hot row). Worst means the lowest probability given to the true
    class; ties keep index order (a stable sort), so the order is deterministic for given
    probabilities. Runs under the device rule.

    Parameters
    ----------
    labels : array
        Class indices ``(N,)`` or one-hot rows ``(N, classes)``.
    probabilities : array
        The network's outputs ``(N, classes)``, on the labels' backend and device.

    Returns
    -------
    array
        Integer row indices, on the input's device.

    Examples
    --------
    >>> import xpnet
    >>> from xpnet.plotting import misclassified_indices
    >>> for name in ("numpy", "array_api_strict"):
    ...     backend = xpnet.get_backend(name)
    ...     labels = backend.asarray([0, 1, 1, 0])
    ...     probabilities = backend.asarray([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]])
    ...     print(xpnet.to_host(misclassified_indices(labels, probabilities)).tolist())
    [3, 1]
    [3, 1]
    """
    with on_device_of(probabilities):
        return _misclassified_indices(labels, probabilities)


def _misclassified_indices(labels: Array, probabilities: Array) -> Array:
    """:func:`misclassified_indices` on the inputs' device."""
    xp = namespace_of(labels, probabilities, what="labels and probabilities")
    truth = _class_indices(labels)
    # A row whose probabilities are not all finite has no class (the non-finite rule):
    # always wrong, and the worst of all.
    predicted = labels_of(xp, probabilities, probabilities)
    wrong = predicted != truth
    classes = xp.arange(probabilities.shape[-1], device=compat.device(probabilities))
    on_truth = xp.astype(truth[:, None], classes.dtype) == classes
    p_true = xp.sum(xp.where(on_truth, probabilities, scalar_like(0.0, probabilities, xp)), axis=-1)
    key = xp.where(wrong, p_true, scalar_like(math.inf, p_true, xp))
    key = xp.where(predicted == NO_CLASS, scalar_like(-math.inf, p_true, xp), key)
    order = xp.argsort(key, stable=True)
    return order[: int(xp.count_nonzero(wrong)), ...]


def plot_misclassified(
    images: Array,
    labels: Array,
    probabilities: Array,
    *,
    max_images: int = 25,
    cols: int = 5,
) -> Figure:
    """Up to ``max_images`` misclassified images, worst first (see :func:`misclassified_indices`).

    Each title gives the predicted class with its probability, then the true class.

    Parameters
    ----------
    images : array
        Images, one per row along axis 0.
    labels : array
        Their class indices or one-hot rows.
    probabilities : array
        The network's outputs ``(N, classes)``.
    max_images : int, optional
        The most images shown.
    cols : int, optional
        Images per row of the grid.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, not shown; ``figure.savefig(path)`` writes it.

    Examples
    --------
    >>> import numpy as np
    >>> import xpnet
    >>> from xpnet.plotting import plot_misclassified
    >>> backend = xpnet.get_backend("array_api_strict")
    >>> images = backend.asarray(np.zeros((3, 784)), dtype="float32")
    >>> probabilities = backend.asarray([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    >>> figure = plot_misclassified(images, backend.asarray([0, 1, 1]), probabilities)
    >>> figure.get_suptitle()
    '1 of 3 misclassified; 1 worst shown (lowest probability for the true class)'
    """
    worst = misclassified_indices(labels, probabilities)
    total = worst.shape[0]
    chosen = worst[: min(max_images, total), ...]
    xp = namespace_of(images)
    with on_device_of(images):
        shown = to_host(xp.take(images, chosen, axis=0))
        truth = to_host(_class_indices(xp.take(labels, chosen, axis=0)))
        probs = to_host(xp.take(probabilities, chosen, axis=0))
    guesses = probs.argmax(axis=-1)
    titles = [
        (f"pred {guess} ({p[guess]:.0%})\ntrue {label}", "red")
        for guess, p, label in zip(guesses, probs, truth)
    ]
    rows = max(1, math.ceil(len(titles) / cols))
    figure = new_figure(1.3 * cols, 1.7 * rows + 0.4)
    _draw_images(figure, _as_images(shown), rows, cols, titles)
    figure.suptitle(
        f"{total} of {images.shape[0]} misclassified; {len(titles)} worst shown "
        "(lowest probability for the true class)",
        fontsize="medium",
    )
    return figure


def confusion_matrix(labels: Array, predicted: Array, num_classes: int = 10) -> Array:
    """Counts ``[true, predicted]`` of a classification, in the inputs' namespace and device.

    ``labels`` are class indices or one-hot rows, ``predicted`` class indices. Each pair
    ``(true, predicted)`` is coded as one cell number and compared with every cell, in
    batches, and the matches counted with ``count_nonzero``: no bincount, no host copy.
    Raises ``ValueError`` if a class lies outside ``0 .. num_classes - 1``. Runs under the
    device rule.

    Parameters
    ----------
    labels : array
        True class indices ``(N,)`` or one-hot rows ``(N, num_classes)``.
    predicted : array
        Predicted class indices ``(N,)``, on the labels' backend and device.
    num_classes : int, optional
        The number of classes.

    Returns
    -------
    array
        Integer counts ``(num_classes, num_classes)``: row ``i``, column ``j`` counts the
        rows of class ``i`` predicted as ``j``.

    Raises
    ------
    ValueError
        If a class lies outside ``0 .. num_classes - 1``.

    Examples
    --------
    >>> import xpnet
    >>> from xpnet.plotting import confusion_matrix
    >>> for name in ("numpy", "array_api_strict"):
    ...     backend = xpnet.get_backend(name)
    ...     labels, predicted = backend.asarray([0, 1, 2, 2]), backend.asarray([0, 2, 2, 1])
    ...     print(xpnet.to_host(confusion_matrix(labels, predicted, num_classes=3)).tolist())
    [[1, 0, 0], [0, 0, 1], [0, 1, 1]]
    [[1, 0, 0], [0, 0, 1], [0, 1, 1]]
    """
    with on_device_of(predicted):
        return _confusion_matrix(labels, predicted, num_classes)


def _confusion_matrix(labels: Array, predicted: Array, num_classes: int) -> Array:
    """:func:`confusion_matrix` on the inputs' device."""
    xp = namespace_of(labels, predicted, what="labels and predicted")
    codes = _as_default_int(_class_indices(labels), xp) * num_classes + _as_default_int(
        predicted, xp
    )
    cells = xp.arange(num_classes * num_classes, dtype=codes.dtype, device=compat.device(codes))
    counts = xp.zeros_like(cells)
    batch = max(1, _CELLS_PER_BATCH // cells.shape[0])
    for start in range(0, codes.shape[0], batch):
        part = codes[start : min(start + batch, codes.shape[0]), ...]
        counts = counts + xp.astype(xp.count_nonzero(part[:, None] == cells, axis=0), cells.dtype)
    if int(xp.sum(counts)) != codes.shape[0]:
        raise ValueError(f"labels and predictions must be classes 0 to {num_classes - 1}")
    return xp.reshape(counts, (num_classes, num_classes))


def plot_confusion_matrix(labels: Array, predicted: Array, *, num_classes: int = 10) -> Figure:
    """The confusion matrix as annotated counts, with each true class's accuracy on the right.

    Parameters
    ----------
    labels : array
        True class indices ``(N,)`` or one-hot rows ``(N, num_classes)``.
    predicted : array
        Predicted class indices ``(N,)``, on the labels' backend and device.
    num_classes : int, optional
        The number of classes.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, not shown; ``figure.savefig(path)`` writes it.

    Raises
    ------
    ValueError
        If a class lies outside ``0 .. num_classes - 1``.

    Examples
    --------
    >>> import xpnet
    >>> from xpnet.plotting import plot_confusion_matrix
    >>> backend = xpnet.get_backend("array_api_strict")
    >>> labels, predicted = backend.asarray([0, 1, 2, 2]), backend.asarray([0, 2, 2, 1])
    >>> plot_confusion_matrix(labels, predicted, num_classes=3).axes[0].get_title()
    'accuracy 50.00% (2 of 4)'
    """
    counts = to_host(confusion_matrix(labels, predicted, num_classes))
    per_class = np.diag(counts) / np.maximum(counts.sum(axis=1), 1)
    correct, total = int(np.trace(counts)), int(counts.sum())
    figure = new_figure(6.4, 5.6)
    ax = figure.subplots()
    ax.imshow(counts, cmap="Blues")
    for (true, guess), count in np.ndenumerate(counts):
        light = count > counts.max() / 2
        ax.text(
            guess,
            true,
            str(count),
            ha="center",
            va="center",
            fontsize="small",
            color="white" if light else "black",
        )
    ticks = range(num_classes)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    margin = ax.secondary_yaxis("right")
    margin.set_yticks(ticks, [f"{value:.1%}" for value in per_class])
    margin.set_ylabel("accuracy of the true class")
    ax.set_title(f"accuracy {correct / max(total, 1):.2%} ({correct} of {total})")
    return figure


def plot_first_layer_weights(
    network: NetworkLike, *, image_shape: tuple[int, int] = (28, 28), cols: int = 10
) -> Figure:
    """The first layer's weights as one image per hidden unit (what each unit looks for).

    Red weights excite the unit, blue ones inhibit it. All tiles share one symmetric scale,
    clipped at the 99th percentile of ``|weight|`` so that a few large weights do not wash
    out the rest; 32 colour steps keep the scale easy to read and the PNG small.

    Parameters
    ----------
    network : Network or dict
        A :class:`~xpnet.Network` on any backend, or the textbook's dict ``W1, b1, ...``.
    image_shape : tuple of int, optional
        The shape of one input image.
    cols : int, optional
        Tiles per row.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, not shown; ``figure.savefig(path)`` writes it.

    Raises
    ------
    ValueError
        If the first layer's inputs are not one image of ``image_shape``.

    Examples
    --------
    >>> import xpnet
    >>> from xpnet.plotting import plot_first_layer_weights
    >>> network = xpnet.init_network([784, 50, 10], backend="array_api_strict")
    >>> figure = plot_first_layer_weights(network)
    >>> type(figure).__name__
    'Figure'
    """
    weight = to_host(as_network(network).layers[0].weight)
    if weight.shape[0] != math.prod(image_shape):
        raise ValueError(
            f"the first layer takes {weight.shape[0]} inputs, not images of shape {image_shape}"
        )
    tiles = weight.T.reshape(-1, *image_shape)
    limit = float(np.percentile(np.abs(tiles), 99)) or 1.0
    cols = min(cols, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    from matplotlib import colormaps

    figure = new_figure(1.0 * cols + 1.0, 1.0 * rows + 0.5)
    _draw_images(
        figure,
        tiles,
        rows,
        cols,
        cmap=colormaps["RdBu_r"].resampled(32),
        limits=(-limit, limit),
        interpolation="nearest",
    )
    figure.colorbar(
        figure.axes[0].images[0], ax=figure.axes, shrink=0.8, extend="both", label="weight"
    )
    figure.suptitle(f"first-layer weights: {len(tiles)} hidden units", fontsize="medium")
    return figure


def _class_indices(labels: Array) -> Array:
    """Class indices from labels given as indices ``(N,)`` or one-hot rows ``(N, classes)``."""
    xp = namespace_of(labels)
    return xp.argmax(labels, axis=-1) if labels.ndim == 2 else labels


def _as_default_int(x: Array, xp: Namespace) -> Array:
    """``x`` in the namespace's default integer dtype (so ``uint8`` labels cannot overflow)."""
    info = xp.__array_namespace_info__().default_dtypes(device=compat.device(x))
    return xp.astype(x, info["integral"])


def _as_images(host: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` images from ``(N, H*W)`` square rows, ``(N, 1, H, W)`` or ``(N, H, W)``."""
    if host.ndim == 4 and host.shape[1] == 1:
        return host[:, 0]
    if host.ndim == 3:
        return host
    side = math.isqrt(host.shape[-1]) if host.ndim == 2 else 0
    if side * side != host.shape[-1] or side == 0:
        raise ValueError(
            f"images must be (N, 784), (N, 1, 28, 28) or (N, 28, 28), got shape {host.shape}"
        )
    return host.reshape(-1, side, side)


def _draw_images(
    figure: Figure,
    images: np.ndarray,
    rows: int,
    cols: int,
    titles: Sequence[tuple[str, str]] = (),
    *,
    cmap: str | Colormap = "gray_r",
    limits: tuple[float, float] | None = None,
    interpolation: str = "antialiased",
) -> None:
    """Draw ``images`` on a ``rows x cols`` grid of Axes, on one colour scale (``limits``,
    by default the images' range), each titled by its ``(text, colour)`` pair if given."""
    axes = figure.subplots(rows, cols, squeeze=False).ravel()
    if limits is None and len(images):
        limits = (float(images.min()), float(images.max()))
    low, high = limits or (0.0, 1.0)
    for ax in axes:
        ax.set_axis_off()
    for index, (ax, image) in enumerate(zip(axes, images)):
        ax.imshow(image, cmap=cmap, vmin=low, vmax=high, interpolation=interpolation)
        if titles:
            text, color = titles[index]
            ax.set_title(text, color=color, fontsize="small")
