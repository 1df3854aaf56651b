"""``xpnet plot-activations``, ``show-mnist`` and ``inspect``: the book's pictures as files.

Each command writes its pictures to ``--out`` in any format matplotlib writes, chosen by
the suffix (PNG, JPEG, SVG, PDF...), and, with ``--show``, opens a window where a display
exists. An existing file is replaced only with ``--force``. Figures are drawn headless (Agg)
without pyplot; pyplot is imported only to show them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from xpnet._array_api import device_name
from xpnet.backends import get_backend, to_host
from xpnet.cli.infer import load_network, weights_file
from xpnet.cli.options import (
    UsageError,
    add_backend_options,
    add_data_options,
    add_force_option,
    check_output,
    display_path,
    positive_int,
    print_json,
    tell,
    write_output,
)
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

DEFAULT_DPI = 100
"""Pixels per inch of raster output: small files that still read well on a README page."""

MAX_SIDE = 2**16 - 1
"""The most pixels a picture may have along a side (matplotlib's Agg draws no more)."""

MAX_PIXELS = 100_000_000
"""The most pixels a picture may have: its raster, four bytes a pixel, is allocated whole."""

INSPECT_FIGURES = ("misclassified", "confusion_matrix", "first_layer_weights")
"""The pictures ``inspect`` writes, each as ``NAME.FORMAT`` in ``--out``."""


def picture_formats() -> dict[str, str]:
    """The formats matplotlib writes here, by suffix (``png``: Portable Network Graphics)."""
    require_matplotlib()
    from matplotlib.backend_bases import FigureCanvasBase

    return dict(FigureCanvasBase.get_supported_filetypes())


def register(subparsers: argparse._SubParsersAction) -> None:
    activations = _add_command(
        subparsers, "plot-activations", "draw the activation functions (step, sigmoid, ReLU...)"
    )
    add_backend_options(activations)
    activations.set_defaults(run=run_plot_activations)

    show_mnist = _add_command(subparsers, "show-mnist", "draw the first 25 images of a split")
    show_mnist.add_argument(
        "--split", choices=("train", "test"), default="test", help="split to draw from"
    )
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
        help="weights file: xpnet .npz, the textbook's .pkl or a plain .npz of its dict, "
        "or 'book'; default: the bundled mnist_5k.npz",
    )
    _add_data_options(inspect)
    inspect.add_argument(
        "--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, help="images per batch"
    )
    inspect.add_argument(
        "--max-images",
        type=positive_int,
        default=25,
        help="misclassified images to draw, worst first",
    )
    inspect.add_argument(
        "--format",
        default="png",
        help="picture format: any that matplotlib writes (png, jpg, svg, pdf...)",
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
        metavar="FOLDER" if directory else "PATH",
        help=(
            "required unless --show: folder to write the pictures into (made if its parent exists)"
            if directory
            else "required unless --show: picture file; its suffix picks the format, any "
            "that matplotlib writes (.png, .jpg, .svg, .pdf...)"
        ),
    )
    parser.add_argument("--show", action="store_true", help="also open a window (needs a display)")
    add_force_option(parser)
    parser.add_argument(
        "--dpi",
        type=positive_int,
        default=DEFAULT_DPI,
        help=f"pixels per inch; a picture may have at most {MAX_PIXELS:,} pixels and "
        f"{MAX_SIDE:,} a side",
    )
    return parser


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    add_data_options(parser)
    parser.add_argument(
        "--dataset", choices=("mnist", "fashion-mnist"), default="mnist", help="dataset to use"
    )


def run_plot_activations(args: argparse.Namespace) -> int:
    outputs = _check_output(args)
    figure = plot_activations(backend=get_backend(args.backend, args.device))
    return _deliver(args, [(outputs[0], figure)])


def run_show_mnist(args: argparse.Namespace) -> int:
    from xpnet.datasets import load_mnist

    outputs = _check_output(args)
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
    return _deliver(args, [(outputs[0], figure)])


@dataclass(frozen=True)
class Inspection:
    """What ``inspect`` found; ``--json`` prints it as is (docs/cli.md names the keys)."""

    backend: str
    device: str
    weights: str
    dataset: str
    split: str
    images: int
    correct: int
    accuracy: float | None
    """``None`` (JSON null) where there were no images."""
    misclassified: int
    misclassified_indices: list[int]
    """Worst first: lowest probability for the true class."""
    confusion_matrix: list[list[int]]
    out: str | None
    files: list[str]
    """The pictures written."""


def run_inspect(args: argparse.Namespace) -> int:
    from xpnet.datasets import load_mnist

    outputs = _check_output(args, directory=True)
    target = get_backend(args.backend, args.device)
    weights = weights_file(args.weights)
    network = load_network(str(weights), args.backend, args.device)
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
    figures = {
        "misclassified": plot_misclassified(
            images, labels, probabilities, max_images=args.max_images
        ),
        "confusion_matrix": plot_confusion_matrix(labels, predicted),
        "first_layer_weights": plot_first_layer_weights(network),
    }
    pictures = [(path, figures[name]) for path, name in zip(outputs, INSPECT_FIGURES)]
    report = Inspection(
        backend=target.name,
        device=device_name(target.device),
        weights=str(weights),
        dataset=args.dataset,
        split="test",
        images=total,
        correct=total - len(worst),
        accuracy=(total - len(worst)) / total if total else None,
        misclassified=len(worst),
        misclassified_indices=worst.tolist(),
        confusion_matrix=counts.tolist(),
        out=None if args.out is None else str(args.out),
        files=[str(path) for path in outputs if path is not None],
    )
    status = _deliver(args, pictures, folder=args.out)
    if args.json:
        print_json(asdict(report))
    else:
        print(
            f"{target}: {report.misclassified} of {total} test images misclassified, "
            f"accuracy {'-' if report.accuracy is None else report.accuracy}"
        )
    return status


def _check_output(args: argparse.Namespace, *, directory: bool = False) -> list[Path | None]:
    """The paths to write, checked before any work: somewhere to put the pictures, a format
    matplotlib writes, a folder that exists, no file replaced without ``--force``."""
    formats = picture_formats()
    can_show = args.show and not missing_display()
    if args.out is None and not can_show:
        why = f" ({missing_display()})" if args.show else ""
        raise UsageError(f"--out is required unless --show can open a window{why}")
    if args.out is None:
        return [None] * (len(INSPECT_FIGURES) if directory else 1)
    suffix = args.format if directory else args.out.suffix.removeprefix(".")
    if suffix.lower() not in formats:
        what = "--format" if directory else "--out's suffix"
        raise UsageError(
            f"{what} {suffix!r} is no picture format matplotlib writes; choose from "
            f"{', '.join(sorted(formats))}"
        )
    if not directory:
        check_output(args.out, force=args.force)
        return [args.out]
    folder = args.out
    if not folder.parent.is_dir():
        raise XpnetError(
            f"--out {display_path(folder)}: the folder {display_path(folder.parent)} does not "
            f"exist (xpnet does not create it)"
        )
    if folder.exists() and not folder.is_dir():
        raise XpnetError(f"--out {display_path(folder)} is not a folder")
    paths: list[Path | None] = [folder / f"{name}.{suffix}" for name in INSPECT_FIGURES]
    if folder.is_dir():
        for path in paths:
            assert path is not None
            check_output(path, force=args.force)
    return paths


def check_size(figure: Figure, dpi: int) -> None:
    """Refuse a picture larger than :data:`MAX_PIXELS` or :data:`MAX_SIDE`, before its
    raster is allocated."""
    width, height = (float(side) * dpi for side in figure.get_size_inches())
    if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise XpnetError(
            f"--dpi {dpi} makes a {width:,.0f}x{height:,.0f}-pixel picture; at most "
            f"{MAX_PIXELS:,} pixels and {MAX_SIDE:,} a side (a lower --dpi)"
        )


def _deliver(
    args: argparse.Namespace,
    figures: Sequence[tuple[Path | None, Figure]],
    *,
    folder: Path | None = None,
) -> int:
    """Write each figure to its path (into ``folder``, made here where missing: one level,
    its parent was checked), then show them all with ``--show`` where possible."""
    for path, figure in figures:
        if path is not None:
            check_size(figure, args.dpi)
    if folder is not None and not folder.is_dir():
        folder.mkdir()
    for path, figure in figures:
        if path is not None:
            save(figure, path, dpi=args.dpi, force=args.force)
    if args.show and missing_display():
        tell(f"xpnet: notice: no window shown: {missing_display()}")
    elif args.show:
        show([figure for _, figure in figures])
    return 0


def save(figure: Figure, path: Path, *, dpi: int = DEFAULT_DPI, force: bool = False) -> None:
    """Write ``figure`` to ``path`` (format by suffix) and say where, with its pixel size.

    The file appears whole or not at all; an existing one is replaced only with ``force``.
    """
    suffix = path.suffix.removeprefix(".").lower()

    def write(stream: BinaryIO) -> None:
        try:
            figure.savefig(stream, format=suffix, dpi=dpi)
        except (OSError, MemoryError):
            raise
        except Exception as exc:  # a writer's own failure (pgf without LaTeX, ...)
            raise XpnetError(
                f"cannot write {display_path(path)}: {type(exc).__name__}: {exc}"
            ) from None

    write_output(path, write, force=force)
    width, height = (figure.get_size_inches() * dpi).round().astype(int)
    tell(f"wrote {display_path(path)} ({width}x{height} px)")


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
