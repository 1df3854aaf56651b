"""How every ``xpnet`` command reads its command line, spelled once: the parser and its
one-line usage errors, argument types named in words, and the options several commands share.

The rule (docs/cli.md states it for users): a usage error exits with status 2 and one line,
``xpnet infer: error: MESSAGE (see 'xpnet infer --help')``.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from xpnet.backends import BACKENDS
from xpnet.cli.output import printable
from xpnet.errors import XpnetError

USAGE_ERROR = 2
"""The exit status of a usage error (as argparse, and POSIX utilities, use it)."""

Number = TypeVar("Number", int, float)


class UsageError(XpnetError):
    """Options that do not go together, found after parsing: reported as a usage error."""


# Argument types, each naming what it wants in words -----------------------------------------


def integer(text: str) -> int:
    """An argparse type: a whole number."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def number(text: str) -> float:
    """An argparse type: a finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def at_least_zero(kind: Callable[[str], Number]) -> Callable[[str], Number]:
    """An argparse type: ``int`` or ``float`` of the text, refused where negative."""
    parse_number: Callable[[str], Any] = integer if kind is int else number
    words = "an integer" if kind is int else "a number"

    def parse(text: str) -> Number:
        value = parse_number(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"expected {words} >= 0, got {text!r}")
        return kind(value)

    return parse


# The parser ---------------------------------------------------------------------------------


class HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default (where it has one) and marks required options."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.required and action.option_strings:
            text = f"required: {text}" if text else "required"
        shown = not any(action.default is nothing for nothing in (None, False, argparse.SUPPRESS))
        if shown and action.option_strings and "%(default)" not in text:
            default = action.default
            if isinstance(default, (list, tuple)):
                default = " ".join(map(str, default))
            text += f" (default: {str(default).replace('%', '%%')})"
        return text


class Parser(argparse.ArgumentParser):
    """argparse's parser with one-line usage errors and argument types named in words."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        # Every parser (subcommands inherit this class) reads type=int and type=float with
        # messages in words, not argparse's "invalid int value".
        self.register("type", int, integer)
        self.register("type", float, number)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        """argparse's, where an option with a default but no help still shows its default."""
        default = kwargs.get("default")
        if kwargs.get("help") is None and default is not None and not isinstance(default, bool):
            kwargs["help"] = "(default: %(default)s)"
        return super().add_argument(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Exit with status 2 and one line naming this (sub)command and its help."""
        self.exit(
            USAGE_ERROR,
            f"{self.prog}: error: {printable(' '.join(message.split()))} "
            f"(see '{self.prog} --help')\n",
        )


def describe(doc: str | None) -> str | None:
    """The first paragraph of a docstring as plain text (reST markup removed)."""
    if not doc:
        return None
    return plain(" ".join(doc.split("\n\n")[0].split()))


def plain(text: str) -> str:
    """``text`` without reST markup: ````x```` and ``:role:`~a.b.x``` become ``x``."""
    text = re.sub(r":[a-z]+:`~?(?:[\w.]*\.)?([^`]+)`", r"\1", text)
    return text.replace("``", "")


# Shared options -----------------------------------------------------------------------------


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--device``: where the arrays live."""
    parser.add_argument("--backend", choices=BACKENDS, default="numpy", help="array backend")
    parser.add_argument(
        "--device",
        help="device name: cpu, cuda:0, device1 (array_api_strict); default: the backend's",
    )


ENGINES = ("auto", "array-api", "onnxruntime")
"""The engines ``--engine`` takes (those of :data:`xpnet.inference.ENGINES`, spelled here so
that reading the command line imports no computing module)."""


def add_engine_option(parser: argparse.ArgumentParser) -> None:
    """``--engine``: what runs the forward pass on NumPy input."""
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        help="what runs NumPy input: xpnet's array-API code, ONNX Runtime (the fast extra), "
        "or auto: ONNX Runtime where the rows are enough to pay for its start-up, else the "
        "array-API code (docs/performance.md); default: $XPNET_ENGINE, else auto",
    )


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """``--data-dir`` and ``--no-download``: where the dataset's files are."""
    parser.add_argument(
        "--data-dir",
        help="folder holding the dataset's files (.gz or raw); default: $XPNET_DATA_DIR, "
        "then the cache, then (MNIST's test split) the copy shipped with xpnet",
    )
    parser.add_argument("--no-download", action="store_true", help="never fetch missing files")


def add_dataset_options(parser: argparse.ArgumentParser) -> None:
    """The data options and ``--dataset``: MNIST or Fashion-MNIST, and where its files are."""
    add_data_options(parser)
    parser.add_argument(
        "--dataset", choices=("mnist", "fashion-mnist"), default="mnist", help="dataset to use"
    )


def add_debug_option(parser: argparse.ArgumentParser) -> None:
    """``--debug``: a failure shows its traceback instead of one line."""
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")


def add_force_option(parser: argparse.ArgumentParser) -> None:
    """``--force``: replace an existing output file."""
    parser.add_argument(
        "--force", action="store_true", help="replace an existing output file (never a folder)"
    )
