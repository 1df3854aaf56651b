"""The ``xpnet`` command: one subcommand per job, each failure reported in one line.

Every subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``run`` (a function of the parsed arguments returning an exit status) as a default.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from xpnet.cli import backends, bench, convert, infer, plots, train
from xpnet.cli.options import add_debug_option
from xpnet.errors import XpnetError

COMMANDS = (infer, train, backends, plots, bench, convert)

EXPECTED_FAILURES = (XpnetError, OSError, ValueError, TypeError, ImportError)
"""Failures a user can cause and fix; anything else is a bug and keeps its traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xpnet", description="The textbook's MNIST network on any array backend."
    )
    subparsers = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    for command_parser in subparsers.choices.values():
        add_debug_option(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``xpnet`` command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.formatwarning = one_line_warning
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("xpnet: interrupted", file=sys.stderr)
        return 130
    except EXPECTED_FAILURES as exc:
        if getattr(args, "debug", False):
            raise
        print(f"xpnet: error: {one_line(exc)}", file=sys.stderr)
        return 1


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (with its type where the message is bare)."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, XpnetError) and text else f"{type(exc).__name__}: {text}"


def one_line_warning(message: Warning | str, *_: object, **__: object) -> str:
    """Warnings print as ``xpnet: warning: ...`` on one line, without source lines."""
    return f"xpnet: warning: {' '.join(str(message).split())}\n"
