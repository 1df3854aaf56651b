"""Pictures as files, for the commands that draw (``plot-activations``, ``show-mnist``,
``inspect``): their shared options, output checks, size limits, saving and showing.

Each such command writes its pictures to ``--out`` in any format matplotlib writes, chosen
by the suffix (PNG, JPEG, SVG, PDF...), and, with ``--show``, opens a window where a display
exists. An existing file is replaced only with ``--force``. Figures are drawn headless (Agg)
without pyplot; pyplot is imported only to show them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from xpnet.cli.options import UsageError, add_force_option, positive_int
from xpnet.cli.output import display_path, tell
from xpnet.cli.output_files import check_output, write_output, write_outputs
from xpnet.errors import XpnetError
from xpnet.plotting import require_matplotlib

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DEFAULT_DPI = 100
"""Pixels per inch of raster output: small files that still read well on a README page."""

MAX_SIDE = 2**16 - 1
"""The most pixels a picture may have along a side (matplotlib's Agg draws no more)."""

MAX_PIXELS = 100_000_000
"""The most pixels a picture may have: its raster, four bytes a pixel, is allocated whole."""


def picture_formats() -> dict[str, str]:
    """The formats matplotlib writes here, by suffix (``png``: Portable Network Graphics)."""
    require_matplotlib()
    from matplotlib.backend_bases import FigureCanvasBase

    return dict(FigureCanvasBase.get_supported_filetypes())


def add_picture_command(
    subparsers: argparse._SubParsersAction, name: str, summary: str, *, directory: bool = False
) -> argparse.ArgumentParser:
    """A subcommand parser with the output options every picture command shares:
    ``--out`` (a file, or a folder with ``directory``), ``--show``, ``--force``, ``--dpi``."""
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


def check_picture_outputs(
    args: argparse.Namespace, *, names: Sequence[str] | None = None
) -> list[Path | None]:
    """The paths to write, checked before any work: somewhere to put the pictures, a format
    matplotlib writes, a folder that exists, no file replaced without ``--force``.

    Without ``names``, ``--out`` is one picture file; with them, a folder to hold a picture
    ``NAME.FORMAT`` for each name (``--format``). ``None`` stands for each picture that is
    only shown.
    """
    formats = picture_formats()
    can_show = args.show and not missing_display()
    if args.out is None and not can_show:
        why = f" ({missing_display()})" if args.show else ""
        raise UsageError(f"--out is required unless --show can open a window{why}")
    if args.out is None:
        return [None] * (1 if names is None else len(names))
    suffix = args.out.suffix.removeprefix(".") if names is None else args.format
    if suffix.lower() not in formats:
        what = "--out's suffix" if names is None else "--format"
        raise UsageError(
            f"{what} {suffix!r} is no picture format matplotlib writes; choose from "
            f"{', '.join(sorted(formats))}"
        )
    if names is None:
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
    paths: list[Path | None] = [folder / f"{name}.{suffix}" for name in names]
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


def deliver(
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
    made = folder is not None and not folder.is_dir()
    if folder is not None and made:
        folder.mkdir()
    chosen = [(path, figure) for path, figure in figures if path is not None]
    try:  # all the pictures, or none: a full disk replaces none of them
        write_outputs(
            [(path, writer(figure, path, args.dpi)) for path, figure in chosen], force=args.force
        )
    except BaseException:
        if folder is not None and made:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    for path, figure in chosen:
        say_written(figure, path, args.dpi)
    if args.show and missing_display():
        tell(f"xpnet: notice: no window shown: {missing_display()}")
    elif args.show:
        show([figure for _, figure in figures])
    return 0


def save(figure: Figure, path: Path, *, dpi: int = DEFAULT_DPI, force: bool = False) -> None:
    """Write ``figure`` to ``path`` (format by suffix) and say where, with its pixel size.

    The file appears whole or not at all; an existing one is replaced only with ``force``.
    """
    write_output(path, writer(figure, path, dpi), force=force)
    say_written(figure, path, dpi)


def writer(figure: Figure, path: Path, dpi: int) -> Callable[[BinaryIO], None]:
    """What writes ``figure`` into a stream, in the format ``path``'s suffix names."""
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

    return write


def say_written(figure: Figure, path: Path, dpi: int) -> None:
    """Tell where a picture went, with its pixel size."""
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
