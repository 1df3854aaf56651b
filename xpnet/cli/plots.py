"""``xpnet plot-activations``, ``show-mnist`` and ``inspect``: the book's pictures as files.

Each command writes PNG (or SVG, by the suffix) to ``--out`` and, with ``--show``, opens a
window where a display exists. Figures are drawn headless (Agg) without pyplot; pyplot is
imported only to show them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from xpnet.backends import get_backend, to_host
from xpnet.cli.infer import load_network, positive_int
from xpnet.cli.options import add_backend_options, add_data_options
from xpnet.errors import XpnetError
from xpnet.inference import DEFAULT_BATCH_SIZE, predict
from xpnet.plotting import (
    confusion_matrix,
    misclassified_indices,
    plot_activations,
    plot_confusion_matrix,
    plot_first_layer_weights,
    plot_image_grid,
    plot_misclassified,
    require_matplotlib,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SUFFIXES = (".png", ".svg")
"""The picture formats the commands write, chosen by the suffix of ``--out``."""

DEFAULT_DPI = 100
"""Pixels per inch of PNG output: small files that still read well on a README page."""


def register(subparsers: argparse._SubParsersAction) -> None:
    activations = _add_command(
        subparsers, "plot-activations", "draw the activation functions (step, sigmoid, ReLU...)"
    )
    add_backend_options(activations)
    activations.set_defaults(run=run_plot_activations)

    show_mnist = _add_command(subparsers, "show-mnist", "draw the first 25 images of a split")
    show_mnist.add_argument("--split", choices=("train", "test"), default="train")
    _add_data_options(show_mnist)
    show_mnist.set_defaults(run=run_show_mnist)

    inspect = _add_command(
        subparsers,
        "inspect",
        "classify the test split; draw mistakes, confusion matrix and first-layer weights",
        directory=True,
    )
    add_backend_options(inspect)
    inspect.add_argument(
        "--weights",
        help="weights file: xpnet .npz, the textbook's .pkl or a plain .npz of its dict",
    )
    _add_data_options(inspect)
    inspect.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE)
    inspect.add_argument(
        "--max-images",
        type=positive_int,
        default=25,
        help="misclassified images to draw, worst first (default 25)",
    )
    inspect.add_argument(
        "--format", choices=[s[1:] for s in SUFFIXES], default="png", help="picture format"
    )
    inspect.add_argument(
        "--json",
        action="store_true",
        help="print the results (with misclassified indices) as one JSON object",
    )
    inspect.set_defaults(run=run_inspect)


def _add_command(
    subparsers: argparse._SubParsersAction, name: str, summary: str, *, directory: bool = False
) -> argparse.ArgumentParser:
    """A subcommand parser with the output options every picture command shares."""
    parser = subparsers.add_parser(name, help=summary, description=summary)
    parser.add_argument(
        "--out",
        type=Path,
        help="folder to write the pictures into" if directory else "picture file (.png or .svg)",
    )
    parser.add_argument("--show", action="store_true", help="also open a window (needs a display)")
    parser.add_argument(
        "--dpi",
        type=positive_int,
        default=DEFAULT_DPI,
        help=f"PNG pixels per inch (default {DEFAULT_DPI})",
    )
    return parser


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    add_data_options(parser)
    parser.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default="mnist")


def run_plot_activations(args: argparse.Namespace) -> int:
    _check_output(args)
    figure = plot_activations(backend=get_backend(args.backend, args.device))
    return _deliver(args, [(args.out, figure)])


def run_show_mnist(args: argparse.Namespace) -> int:
    from xpnet.datasets import load_mnist

    _check_output(args)
    images, labels = load_mnist(
        normalize=True,
        flatten=True,
        split=args.split,
        dataset=args.dataset,
        data_dir=args.data_dir,
        download=not args.no_download,
    )
    figure = plot_image_grid(images, labels)
    figure.suptitle(f"first images of the {args.dataset} {args.split} split", fontsize="medium")
    return _deliver(args, [(args.out, figure)])


@dataclass(frozen=True)
class Inspection:
    """What ``inspect`` found; ``--json`` prints it as is."""

    backend: str
    images: int
    misclassified: int
    accuracy: float
    misclassified_indices: list[int]
    """Worst first: lowest probability for the true class."""
    confusion_matrix: list[list[int]]


def run_inspect(args: argparse.Namespace) -> int:
    from xpnet.datasets import load_mnist

    _check_output(args, directory=True)
    target = get_backend(args.backend, args.device)
    network = load_network(args.weights, args.backend, args.device)
    images, labels = load_mnist(
        normalize=True,
        flatten=True,
        split="test",
        dataset=args.dataset,
        data_dir=args.data_dir,
        download=not args.no_download,
        backend=args.backend,
        device=args.device,
        dtype=str(network.dtype).split(".")[-1],
    )
    probabilities = predict(network, images, batch_size=args.batch_size)
    predicted = target.xp.argmax(probabilities, axis=-1)
    worst = to_host(misclassified_indices(labels, probabilities))
    counts = to_host(confusion_matrix(labels, predicted))
    total = images.shape[0]
    report = Inspection(
        backend=str(target),
        images=total,
        misclassified=len(worst),
        accuracy=(total - len(worst)) / total if total else float("nan"),
        misclassified_indices=worst.tolist(),
        confusion_matrix=counts.tolist(),
    )
    if args.json:
        print(json.dumps(asdict(report)))
    else:
        print(
            f"{report.backend}: {report.misclassified} of {total} test images misclassified, "
            f"accuracy {report.accuracy}"
        )
    figures = {
        "misclassified": plot_misclassified(
            images, labels, probabilities, max_images=args.max_images
        ),
        "confusion_matrix": plot_confusion_matrix(labels, predicted),
        "first_layer_weights": plot_first_layer_weights(network),
    }
    return _deliver(
        args,
        [
            (None if args.out is None else args.out / f"{name}.{args.format}", figure)
            for name, figure in figures.items()
        ],
    )


def _check_output(args: argparse.Namespace, *, directory: bool = False) -> None:
    """Fail before any work where the pictures could go nowhere or to an unknown format."""
    require_matplotlib()
    can_show = args.show and not missing_display()
    if args.out is None and not can_show:
        why = f" ({missing_display()})" if args.show else ""
        raise XpnetError(f"nowhere to put the pictures: pass --out PATH{why}")
    if args.out is not None and not directory and args.out.suffix not in SUFFIXES:
        raise XpnetError(f"--out must end in {' or '.join(SUFFIXES)}, got {args.out}")


def _deliver(args: argparse.Namespace, figures: Sequence[tuple[Path | None, Figure]]) -> int:
    """Write each figure to its path, then show them all with ``--show`` where possible."""
    for path, figure in figures:
        if path is not None:
            save(figure, path, dpi=args.dpi)
    if args.show and missing_display():
        print(f"xpnet: notice: no window shown: {missing_display()}", file=sys.stderr)
    elif args.show:
        show([figure for _, figure in figures])
    return 0


def save(figure: Figure, path: Path, *, dpi: int = DEFAULT_DPI) -> None:
    """Write ``figure`` to ``path`` (format by suffix) and say where, with the PNG's size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    width, height = (figure.get_size_inches() * dpi).round().astype(int)
    size = f" ({width}x{height} px)" if path.suffix == ".png" else ""
    print(f"wrote {path}{size}", file=sys.stderr)


def missing_display() -> str:
    """Why no window can open here, or ``""`` where one can (macOS, Windows, X11, Wayland)."""
    if sys.platform in ("darwin", "win32") or any(
        os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY")
    ):
        return ""
    return "--show needs a display, and neither DISPLAY nor WAYLAND_DISPLAY is set"


def show(figures: Sequence[Figure]) -> None:
    """Hand the figures to pyplot (matplotlib 3.10 adopts figures made without it) and show."""
    import matplotlib.pyplot as plt

    for figure in figures:
        plt.figure(figure)
    plt.show()
