"""Command-line options that several ``xpnet`` commands share, spelled once."""

from __future__ import annotations

import argparse

from xpnet.backends import BACKENDS


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--device``: where the arrays live."""
    parser.add_argument("--backend", choices=BACKENDS, default="numpy", help="array backend")
    parser.add_argument("--device", help="device name: cpu, cuda:0, device1 (array_api_strict)")


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """``--data-dir`` and ``--no-download``: where the dataset's files are."""
    parser.add_argument("--data-dir", help="folder holding the dataset's files (.gz or raw)")
    parser.add_argument("--no-download", action="store_true", help="never fetch missing files")


def add_debug_option(parser: argparse.ArgumentParser) -> None:
    """``--debug``: a failure shows its traceback instead of one line."""
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
