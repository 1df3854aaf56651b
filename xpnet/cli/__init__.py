"""The ``xpnet`` command: one subcommand per job, each failure reported in one line.

Every subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``run`` (a function of the parsed arguments returning an exit status) as a default.
docs/cli.md states the rules every command keeps: exit statuses, one-line errors, the JSON
keys, output files and pipes.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Sequence

from xpnet import __version__
from xpnet.cli.options import Parser, UsageError, add_debug_option, describe
from xpnet.cli.output import (
    interrupted_status,
    printable,
    silence_stdout,
    stdout_broken,
    tell,
)
from xpnet.errors import XpnetError

COMMANDS = {
    "infer": "infer",
    "train": "train",
    "backends": "backends",
    "plot-activations": "plot_activations",
    "show-mnist": "show_mnist",
    "inspect": "inspect_predictions",
    "convert": "convert",
}
"""Each command's name and its module in ``xpnet.cli``, in the order ``xpnet --help``
lists them. A command line naming one imports that module alone: a command's start-up is
part of its run time, and the others' imports (plotting, training, dask) are not."""

EXPECTED_FAILURES = (XpnetError, OSError, ValueError, TypeError, ImportError, MemoryError)
"""Failures a user can cause and fix; anything else is a bug and keeps its traceback."""

FAILURE = 1
"""The exit status of every failure but a usage error (2) and a stop signal (128 plus its
number: 130 for Ctrl-C)."""


def build_parser(only: str | None = None) -> Parser:
    """The ``xpnet`` parser with every command, or with the command ``only`` alone."""
    parser = Parser(
        prog="xpnet",
        description="The textbook's MNIST network on any array backend.",
        epilog="Run 'xpnet COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"xpnet {__version__}")
    subparsers = parser.add_subparsers(
        title="commands", required=True, metavar="COMMAND", dest="command"
    )
    for name, module in COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(f"xpnet.cli.{module}").register(subparsers)
    for command_parser in subparsers.choices.values():
        # The modules' docstrings are reST; help shows plain text.
        command_parser.description = describe(command_parser.description)
        command_parser.set_defaults(parser=command_parser)
        add_debug_option(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``xpnet`` command line; returns the process exit status.

    Output to a pipe whose reader has gone (``xpnet inspect --json | head -1``) ends
    quietly with status 0, as coreutils' tools do.
    """
    try:
        status = _main(argv)
        sys.stdout.flush()
    except SystemExit:  # --help, --version and usage errors: their output must reach too
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            silence_stdout()
        raise
    except BrokenPipeError:
        silence_stdout()
        return 0
    return status


def _main(argv: Sequence[str] | None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    named = next((word for word in words if not word.startswith("-")), None)
    parser = build_parser(named if named in COMMANDS else None)
    args, unknown = parser.parse_known_args(words)
    if unknown:  # reported by the command's own parser, with its own name
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    warnings.formatwarning = one_line_warning
    try:
        return int(args.run(args))
    except KeyboardInterrupt as interrupt:
        tell("xpnet: interrupted")
        return interrupted_status(interrupt)
    except UsageError as exc:
        args.parser.error(str(exc))  # exits with status 2
        raise  # not reached: error() exits
    except BrokenPipeError as exc:
        if stdout_broken() or args.debug:
            raise
        return failed(exc)
    except EXPECTED_FAILURES as exc:
        if args.debug:
            raise
        return failed(exc)


def failed(exc: BaseException) -> int:
    """Report ``exc`` in one line on stderr; the exit status of a failure."""
    tell(f"xpnet: error: {one_line(exc)}")
    return FAILURE


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (with its type where the message is bare),
    control characters escaped."""
    text = " ".join(str(exc).split())
    if isinstance(exc, MemoryError):
        text = f"out of memory: {text}" if text else "out of memory"
    elif not (isinstance(exc, XpnetError) and text):
        text = f"{type(exc).__name__}: {text}".rstrip(": ")
    return printable(text)


def one_line_warning(message: Warning | str, *_: object, **__: object) -> str:
    """Warnings print as ``xpnet: warning: ...`` on one line, without source lines."""
    return f"xpnet: warning: {printable(' '.join(str(message).split()))}\n"
