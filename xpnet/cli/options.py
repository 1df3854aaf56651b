"""What every ``xpnet`` command shares, spelled once: options, argument types, the parser and
its one-line usage errors, output files that are never silently replaced, strict JSON and
text that is safe to print.

The rules (docs/cli.md states them for users): a usage error exits with status 2 and one
line, ``xpnet infer: error: MESSAGE (see 'xpnet infer --help')``; every other failure exits
with status 1 and one line ``xpnet: error: MESSAGE``; ``--out`` never replaces an existing
file without ``--force`` and never creates a missing parent folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import select
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, TypeVar

from xpnet._atomic import atomic_write
from xpnet.backends import BACKENDS
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


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """``--data-dir`` and ``--no-download``: where the dataset's files are."""
    parser.add_argument(
        "--data-dir",
        help="folder holding the dataset's files (.gz or raw); default: $XPNET_DATA_DIR, "
        "then the cache",
    )
    parser.add_argument("--no-download", action="store_true", help="never fetch missing files")


def add_debug_option(parser: argparse.ArgumentParser) -> None:
    """``--debug``: a failure shows its traceback instead of one line."""
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")


def add_force_option(parser: argparse.ArgumentParser) -> None:
    """``--force``: replace an existing output file."""
    parser.add_argument(
        "--force", action="store_true", help="replace an existing output file (never a folder)"
    )


# Output files -------------------------------------------------------------------------------


def check_output(path: Path, *, force: bool, option: str = "--out") -> None:
    """Refuse, before any work, an output that would replace a file without ``force``.

    The parent folder must exist (it is never created); an existing ``path`` is refused
    without ``force``, and always where it is a folder or not a regular file (a device).
    """
    shown = display_path(path)
    parent = path.parent
    if not parent.is_dir():
        raise XpnetError(
            f"{option} {shown}: the folder {display_path(parent)} does not exist "
            f"(xpnet does not create it)"
        )
    if path.is_dir():
        raise XpnetError(f"{option} {shown} is a folder; name a file in it")
    if path.exists() or path.is_symlink():
        if not force:
            raise XpnetError(f"{option} {shown} exists; pass --force to replace it")
        if path.exists() and not path.resolve().is_file():
            raise XpnetError(f"{option} {shown} is not a regular file; xpnet will not replace it")


def write_output(path: Path, write: Callable[[BinaryIO], None], *, force: bool) -> None:
    """Write a file through ``write`` so that ``path`` is either as it was or whole and new.

    :func:`xpnet._atomic.atomic_write` does the writing (through a symlink, keeping the old
    file's permissions, the umask's for a new one); without ``force`` the new file appears
    only if no file has appeared at ``path`` meanwhile.
    """
    check_output(path, force=force)
    try:
        with atomic_write(path, replace=force) as stream:
            write(stream)
    except FileExistsError:
        raise XpnetError(f"--out {display_path(path)} exists; pass --force to replace it") from None


# Text and JSON that are safe to print -------------------------------------------------------

_UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)
"""Control characters (C0, DEL, C1), bidirectional overrides and marks, line and paragraph
separators, and lone surrogates (bytes of a name that are not UTF-8)."""


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character escaped (``\\x1b``), so that metadata read
    from a file cannot move the cursor, recolour or rewrite the terminal, and a file name
    whose bytes are not UTF-8 prints as those bytes (``\\xff``) instead of failing."""
    return _UNPRINTABLE.sub(_escape, text)


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as text safe to print (see :func:`printable`)."""
    return printable(os.fspath(path))


def json_safe(value: Any) -> Any:
    """``value`` as strict JSON can hold it: NaN and infinities become ``None`` (null),
    tuples lists, paths strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def print_json(value: Mapping[str, Any]) -> None:
    """Print one strict JSON object on one line: no NaN or Infinity (a value that would
    need them is an error here, before anything is printed)."""
    text = json.dumps(value, allow_nan=False)
    print(text)


# Pipes --------------------------------------------------------------------------------------


def stdout_broken() -> bool:
    """Whether stdout is a pipe (or socket) whose reader has gone, as after ``| head -1``."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an object without a file
        return False
    if not hasattr(select, "poll"):  # no poll (Windows): a broken pipe there is stdout's
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def silence_stdout() -> None:
    """Point stdout at the null device, so that what is left in its buffer and the flush
    at exit go nowhere instead of raising ``BrokenPipeError`` again."""
    with contextlib.suppress(AttributeError, OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)


def tell(text: str) -> None:
    """Print a line on stderr; a stderr that is gone (closed pipe) is not another error."""
    with contextlib.suppress(OSError, ValueError):
        print(text, file=sys.stderr)


def word_list(names: Sequence[str]) -> str:
    """``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
