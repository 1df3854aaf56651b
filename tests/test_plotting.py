"""The pictures check what they draw: curve data, titles, counts, order, tiles and file size.

Everything runs headless: figures are built without pyplot, saved through Agg.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import reference

import xpnet
import xpnet.plotting as plotting
from xpnet.activations import ACTIVATIONS
from xpnet.backends import backend_of, get_backend, to_host
from xpnet.cli import main

pytest.importorskip("matplotlib", reason="the pictures need matplotlib (pip install 'xpnet[plot]')")
from matplotlib.image import imread

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("XPNET_DATA_DIR") or ROOT.parent / "shared" / "data" / "mnist")
BOOK_WEIGHTS = Path(
    os.environ.get("XPNET_BOOK_WEIGHTS")
    or ROOT.parent / "shared" / "data" / "book" / "sample_weight.pkl"
)
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
"""Test-set images per digit, from the data folder's README."""


def image_axes(figure):
    """The Axes of a figure that show an image, in drawing order."""
    return [ax for ax in figure.axes if ax.images]


def random_probabilities(rows, classes=10, seed=0):
    logits = np.random.default_rng(seed).normal(scale=2.0, size=(rows, classes))
    return reference.softmax(logits).astype(np.float32)


# --- import cost -----------------------------------------------------------------------


def test_importing_xpnet_and_its_plotting_loads_no_matplotlib():
    code = "import sys, xpnet, xpnet.plotting, xpnet.cli; print('matplotlib' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


# --- activations -----------------------------------------------------------------------


def test_activation_curves_are_the_library_functions_on_the_grid(backend):
    figure = plotting.plot_activations(x_range=(-5.0, 5.0), num=101, backend=backend)
    names = [*plotting.BOOK_ORDER, *(n for n in ACTIVATIONS if n not in plotting.BOOK_ORDER)]
    assert len(figure.axes) == len(names) == len(ACTIVATIONS)
    grid = backend.asarray(np.linspace(-5.0, 5.0, 101), dtype="float32")
    for ax, name in zip(figure.axes, names):
        assert ax.get_title().split(" ")[0] == name
        (line,) = ax.get_lines()
        np.testing.assert_array_equal(line.get_xdata(), to_host(grid))
        np.testing.assert_array_equal(line.get_ydata(), to_host(ACTIVATIONS[name](grid)))
        np.testing.assert_allclose(
            line.get_ydata(), reference.ACTIVATIONS[name](to_host(grid)), rtol=1e-6, atol=1e-7
        )
    for ax in figure.axes[:2]:  # step and sigmoid, with the book's y limits
        assert ax.get_ylim() == pytest.approx((-0.1, 1.1))


def test_plot_activations_takes_names_or_titled_functions():
    assert [ax.get_title() for ax in plotting.plot_activations(["relu", "step"]).axes] == [
        "relu",
        "step",
    ]
    figure = plotting.plot_activations({"double": lambda x: 2 * x}, x_range=(0.0, 1.0), num=3)
    (line,) = figure.axes[0].get_lines()
    np.testing.assert_array_equal(line.get_ydata(), [0.0, 1.0, 2.0])


# --- image grid ------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(784,), (1, 28, 28), (28, 28)])
def test_image_grid_titles_are_the_labels(backend, shape):
    rng = np.random.default_rng(1)
    images = rng.random((30, *shape)).astype(np.float32)
    labels = rng.integers(0, 10, 30)
    figure = plotting.plot_image_grid(backend.asarray(images), backend.asarray(labels))
    shown = image_axes(figure)
    assert len(figure.axes) == 25
    assert [ax.get_title() for ax in shown] == [str(n) for n in labels[:25]]
    for ax, image in zip(shown, images.reshape(30, 28, 28)):
        np.testing.assert_array_equal(ax.images[0].get_array(), image)


def test_image_grid_shows_predictions_and_one_hot_labels(backend):
    labels = np.array([3, 1, 4, 1, 5, 9, 2])
    predicted = np.array([3, 7, 4, 1, 6, 9, 2])
    figure = plotting.plot_image_grid(
        backend.asarray(np.zeros((7, 784), dtype=np.float32)),
        backend.asarray(np.eye(10, dtype=np.float32)[labels]),
        rows=2,
        cols=4,
        predicted=backend.asarray(predicted),
    )
    shown = image_axes(figure)
    assert len(figure.axes) == 8
    assert [ax.get_title() for ax in shown] == [f"{t} → {p}" for t, p in zip(labels, predicted)]
    red = [ax.title.get_color() == "red" for ax in shown]
    assert red == list(labels != predicted)


def test_image_grid_refuses_non_square_rows():
    with pytest.raises(ValueError, match="images must be"):
        plotting.plot_image_grid(np.zeros((4, 783)), np.zeros(4, dtype=np.int64))


# --- confusion matrix ------------------------------------------------------------------


def reference_confusion(labels, predicted, classes=10):
    counts = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(counts, (labels, predicted), 1)
    return counts


def test_confusion_matrix_matches_numpy_on_the_device(backend, monkeypatch):
    monkeypatch.setattr(plotting, "_CELLS_PER_BATCH", 700)  # batches of 7 rows
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 10, 500).astype(np.uint8)  # uint8 * 10 would overflow
    predicted = rng.integers(0, 10, 500)
    result = plotting.confusion_matrix(backend.asarray(labels), backend.asarray(predicted), 10)
    assert backend_of(result).name == backend.name
    assert backend_of(result).device == backend.device
    counts = to_host(result)
    assert counts.sum() == 500
    np.testing.assert_array_equal(counts, reference_confusion(labels, predicted))
    one_hot = backend.asarray(np.eye(10, dtype=np.float32)[labels])
    np.testing.assert_array_equal(
        to_host(plotting.confusion_matrix(one_hot, backend.asarray(predicted))), counts
    )


def test_confusion_matrix_refuses_classes_out_of_range(backend):
    with pytest.raises(ValueError, match="classes 0 to 2"):
        plotting.confusion_matrix(backend.asarray([0, 3]), backend.asarray([0, 1]), 3)


def test_confusion_plot_draws_the_counts_and_per_class_accuracy(backend):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 10, 300)
    predicted = np.where(rng.random(300) < 0.7, labels, rng.integers(0, 10, 300))
    expected = reference_confusion(labels, predicted)
    figure = plotting.plot_confusion_matrix(backend.asarray(labels), backend.asarray(predicted))
    ax = figure.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), expected)
    assert [int(text.get_text()) for text in ax.texts] == expected.ravel().tolist()
    margin = next(child for child in ax.get_children() if type(child).__name__ == "SecondaryAxis")
    accuracy = expected.diagonal() / expected.sum(axis=1)
    assert [t.get_text() for t in margin.get_yticklabels()] == [f"{a:.1%}" for a in accuracy]
    assert f"({np.trace(expected)} of 300)" in ax.get_title()


# --- misclassified ---------------------------------------------------------------------


def reference_worst_first(labels, probabilities):
    """Misclassified rows by rising probability of the true class, ties in index order."""
    wrong = np.flatnonzero(probabilities.argmax(axis=1) != labels)
    p_true = probabilities[wrong, labels[wrong]]
    return wrong[np.argsort(p_true, kind="stable")]


def test_misclassified_are_exactly_the_argmax_mistakes_worst_first(backend):
    probabilities = random_probabilities(200)
    probabilities[100:120] = probabilities[0]  # ties: same probabilities, same labels
    labels = np.random.default_rng(4).integers(0, 10, 200)
    labels[0] = (probabilities[0].argmax() + 1) % 10  # a mistake, repeated 20 times below
    labels[100:120] = labels[0]
    result = plotting.misclassified_indices(backend.asarray(labels), backend.asarray(probabilities))
    assert backend_of(result).name == backend.name
    indices = to_host(result)
    assert set(indices.tolist()) == set(np.flatnonzero(probabilities.argmax(1) != labels).tolist())
    np.testing.assert_array_equal(indices, reference_worst_first(labels, probabilities))


def test_misclassified_plot_titles_follow_the_order(backend):
    probabilities = random_probabilities(120, seed=5)
    labels = np.random.default_rng(5).integers(0, 10, 120)
    images = np.random.default_rng(6).random((120, 784)).astype(np.float32)
    figure = plotting.plot_misclassified(
        backend.asarray(images),
        backend.asarray(labels),
        backend.asarray(probabilities),
        max_images=12,
        cols=4,
    )
    worst = reference_worst_first(labels, probabilities)
    guesses = probabilities.argmax(axis=1)
    expected = [
        f"pred {guesses[i]} ({probabilities[i, guesses[i]]:.0%})\ntrue {labels[i]}"
        for i in worst[:12]
    ]
    shown = image_axes(figure)
    assert [ax.get_title() for ax in shown] == expected
    for ax, i in zip(shown, worst):
        np.testing.assert_array_equal(ax.images[0].get_array(), images[i].reshape(28, 28))
    assert figure.get_suptitle().startswith(f"{len(worst)} of 120 misclassified")


def test_misclassified_plot_without_mistakes():
    probabilities = np.eye(10, dtype=np.float32)
    figure = plotting.plot_misclassified(
        np.zeros((10, 784), dtype=np.float32), np.arange(10), probabilities
    )
    assert image_axes(figure) == []
    assert figure.get_suptitle().startswith("0 of 10 misclassified")


# --- first-layer weights ---------------------------------------------------------------


def test_weight_tiles_one_per_hidden_unit(backend):
    rng = np.random.default_rng(7)
    params = {"W1": rng.normal(size=(784, 13)), "b1": np.zeros(13)}
    params |= {"W2": rng.normal(size=(13, 10)), "b2": np.zeros(10)}
    network = xpnet.Network.from_mapping(
        {key: backend.asarray(value, dtype="float32") for key, value in params.items()}
    )
    figure = plotting.plot_first_layer_weights(network, cols=5)
    tiles = image_axes(figure)
    assert len(tiles) == 13 == network.sizes[1]
    assert len(figure.axes) == 3 * 5 + 1  # a 3x5 grid and the colour bar
    for unit, ax in enumerate(tiles):
        np.testing.assert_array_equal(
            ax.images[0].get_array(), params["W1"][:, unit].reshape(28, 28).astype(np.float32)
        )
    with pytest.raises(ValueError, match="784 inputs"):
        plotting.plot_first_layer_weights(network, image_shape=(20, 20))


# --- command line ----------------------------------------------------------------------


def stated_sizes(text):
    """``{path: (width, height)}`` from the ``wrote PATH (WxH px)`` lines of the CLI."""
    return {
        Path(path): (int(w), int(h))
        for path, w, h in re.findall(r"wrote (.+) \((\d+)x(\d+) px\)", text)
    }


def test_cli_writes_png_of_the_stated_size(tmp_path, capsys):
    out = tmp_path / "activations.png"
    assert main(["plot-activations", "--out", str(out), "--dpi", "40"]) == 0
    (width, height) = stated_sizes(capsys.readouterr().err)[out]
    pixels = imread(out)
    assert pixels.shape[:2] == (height, width)
    assert (width, height) == (round(2.6 * len(ACTIVATIONS) * 40), round(2.6 * 40))


def test_cli_writes_svg_by_suffix(tmp_path):
    out = tmp_path / "activations.svg"
    assert main(["plot-activations", "--out", str(out)]) == 0
    assert "<svg" in out.read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["plot-activations"], "--out is required unless --show"),
        (["plot-activations", "--out", "pictures.nope"], "no picture format matplotlib writes"),
        (["plot-activations", "--show"], "needs a display"),
    ],
)
def test_cli_usage_errors_are_one_line(argv, message, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("xpnet plot-activations: error:")
    assert message in err
    assert not list(tmp_path.iterdir())


def test_cli_show_without_display_still_writes(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    out = tmp_path / "activations.png"
    assert main(["plot-activations", "--out", str(out), "--show"]) == 0
    assert out.exists()
    assert "notice: no window shown" in capsys.readouterr().err


def test_cli_show_hands_the_figures_to_pyplot(monkeypatch):
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")  # a display is claimed below, but no window may open
    monkeypatch.setenv("DISPLAY", ":0")
    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.extend(map(plt.figure, plt.get_fignums())))
    try:
        assert main(["plot-activations", "--show"]) == 0
    finally:
        plt.close("all")
    (figure,) = shown
    assert len(figure.axes) == len(ACTIVATIONS)


@pytest.fixture
def fake_mnist(monkeypatch):
    """Stand-in for ``load_mnist``: 40 random images, labels 0..9, recording its arguments."""
    calls = []

    def load_mnist(normalize=True, flatten=True, one_hot_label=False, **options):
        calls.append(options)
        target = get_backend(options.get("backend", "numpy"), options.get("device"))
        rng = np.random.default_rng(8)
        images = rng.random((40, 784)).astype(options.get("dtype", "float32"))
        return target.asarray(images), target.asarray(np.arange(40) % 10)

    monkeypatch.setattr("xpnet.datasets.load_mnist", load_mnist)
    return calls


def test_cli_show_mnist(tmp_path, fake_mnist, capsys):
    out = tmp_path / "mnist.png"
    argv = ["show-mnist", "--split", "test", "--data-dir", "somewhere", "--out", str(out)]
    assert main(argv) == 0
    assert fake_mnist == [
        {"split": "test", "dataset": "mnist", "data_dir": "somewhere", "download": True}
    ]
    (width, height) = stated_sizes(capsys.readouterr().err)[out]
    assert imread(out).shape[:2] == (height, width)


@pytest.mark.skip_backends("numpy_readonly", reason="a command makes its own arrays from names")
def test_cli_inspect_on_synthetic_data(backend, request, tmp_path, fake_mnist, capsys):
    from xpnet.weights import save_weights

    name, device = request.node.callspec.params["backend"]
    weights = tmp_path / "w.npz"
    save_weights(xpnet.init_network((784, 6, 10), seed=1), weights)
    argv = ["inspect", "--backend", name, "--weights", str(weights), "--json"]
    argv += ["--out", str(tmp_path / "out"), *(["--device", device] if device else [])]
    assert main(argv) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    counts = np.array(report["confusion_matrix"])
    assert counts.sum() == 40
    assert report["misclassified"] == 40 - np.trace(counts) == len(report["misclassified_indices"])
    written = stated_sizes(captured.err)
    assert sorted(path.name for path in written) == [
        "confusion_matrix.png",
        "first_layer_weights.png",
        "misclassified.png",
    ]
    for path, (width, height) in written.items():
        assert imread(path).shape[:2] == (height, width)


# --- real data -------------------------------------------------------------------------


@pytest.mark.data
def test_inspect_real_mnist_same_on_numpy_and_array_api_strict(tmp_path, capsys, monkeypatch):
    if not (DATA_DIR / "t10k-labels-idx1-ubyte.gz").exists() or not BOOK_WEIGHTS.exists():
        pytest.skip(f"real data absent: needs {DATA_DIR} and {BOOK_WEIGHTS} (XPNET_DATA_DIR)")
    pytest.importorskip("array_api_strict")
    monkeypatch.setenv("XPNET_CACHE_DIR", str(tmp_path / "cache"))
    reports = {}
    for name, device in (("numpy", "cpu"), ("array_api_strict", "device1")):
        argv = ["inspect", "--backend", name, "--device", device, "--weights", str(BOOK_WEIGHTS)]
        argv += ["--data-dir", str(DATA_DIR), "--no-download", "--json"]
        assert main([*argv, "--out", str(tmp_path / name)]) == 0
        reports[name] = json.loads(capsys.readouterr().out)
    numpy_report, strict_report = reports["numpy"], reports["array_api_strict"]
    assert numpy_report["misclassified"] == strict_report["misclassified"] == 648
    assert numpy_report["accuracy"] == pytest.approx(0.9352)
    assert_same_order_within(
        numpy_report["misclassified_indices"], strict_report["misclassified_indices"]
    )
    assert numpy_report["confusion_matrix"] == strict_report["confusion_matrix"]
    counts = np.array(numpy_report["confusion_matrix"])
    assert np.trace(counts) == 9352
    assert counts.sum(axis=1).tolist() == TEST_LABEL_COUNTS


CONFIDENCE_TOLERANCE = 1e-5
"""How far two kernels' float32 probabilities of one image may differ (they differ by about
1e-7): orders of images whose confidences lie closer than this may swap."""


def assert_same_order_within(first: list[int], second: list[int]) -> None:
    """The two "worst first" orders rank the same images and, wherever they differ, the
    images in that place have confidences within :data:`CONFIDENCE_TOLERANCE` (by an
    independent float64 forward pass), so only near-ties swapped."""
    from xpnet.datasets import load_mnist

    assert sorted(first) == sorted(second)
    x, t = load_mnist(split="test", data_dir=str(DATA_DIR), download=False)
    network = xpnet.load_weights(BOOK_WEIGHTS)
    params = {key: to_host(value) for key, value in network.to_mapping().items()}
    p_true = reference.forward(params, list(network.activations), x)[np.arange(len(t)), t]
    for order in (first, second):  # each is worst first, up to the tolerance
        confidences = p_true[order]
        assert np.all(np.diff(confidences) >= -CONFIDENCE_TOLERANCE)
    np.testing.assert_allclose(p_true[first], p_true[second], rtol=0, atol=CONFIDENCE_TOLERANCE)


def test_order_comparison_allows_near_ties_only():
    """The tolerant comparison itself: swapped near-ties pass, a real reordering fails."""
    if not (DATA_DIR / "t10k-labels-idx1-ubyte.gz").exists() or not BOOK_WEIGHTS.exists():
        pytest.skip(f"real data absent: needs {DATA_DIR} and {BOOK_WEIGHTS} (XPNET_DATA_DIR)")
    from xpnet.datasets import load_mnist

    x, t = load_mnist(split="test", data_dir=str(DATA_DIR), download=False)
    network = xpnet.load_weights(BOOK_WEIGHTS)
    params = {key: to_host(value) for key, value in network.to_mapping().items()}
    probabilities = reference.forward(params, list(network.activations), x)
    order = to_host(plotting.misclassified_indices(t, probabilities)).tolist()
    p_true = probabilities[np.arange(len(t)), t][order]
    gaps = np.diff(p_true)
    near = int(np.argmin(gaps))  # the closest neighbours: swapping them is a near-tie
    far = int(np.argmax(gaps))
    assert gaps[near] <= CONFIDENCE_TOLERANCE  # the book's weights have such near-ties
    swapped = order.copy()
    swapped[near], swapped[near + 1] = swapped[near + 1], swapped[near]
    assert swapped != order  # a bitwise comparison would call these two orders different
    assert_same_order_within(order, swapped)
    reordered = order.copy()
    reordered[far], reordered[far + 1] = reordered[far + 1], reordered[far]
    with pytest.raises(AssertionError):
        assert_same_order_within(order, reordered)


def test_misclassified_ties_keep_index_order(backend):
    """Equal confidences rank by index, the same on every backend (a stable sort)."""
    probabilities = np.tile(np.array([[0.3, 0.7]]), (6, 1))
    labels = np.array([0, 0, 1, 0, 1, 0])
    order = plotting.misclassified_indices(
        backend.asarray(labels), backend.asarray(probabilities, "float32")
    )
    assert to_host(order).tolist() == [0, 1, 3, 5]
