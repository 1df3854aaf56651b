"""The ``xpnet`` command: one subcommand per job, each failure reported in one line.

Every subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``run`` (a function of the parsed arguments returning an exit status) as a default.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from xpnet.cli import backends, infer
from xpnet.errors import XpnetError

COMMANDS = (infer, backends)

EXPECTED_FAILURES = (XpnetError, OSError, ValueError, TypeError, ImportError)
"""Failures a user can cause and fix; anything else is a bug and keeps its traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xpnet", description="The textbook's MNIST network on any array backend."
    )
    subparsers = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``xpnet`` command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
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


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options every subcommand shares."""
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of a failure"
    )
