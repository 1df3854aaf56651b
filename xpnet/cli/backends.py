"""``xpnet backends``: which backends can run here, and why not where they cannot."""

from __future__ import annotations

import argparse

from xpnet.backends import BACKENDS, backend_status
from xpnet.cli.output import print_json, printable
from xpnet.inference import numpy_engine


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "backends",
        help="list the backends and their availability",
        description="List the array backends xpnet knows, whether each can run here, and "
        "why not where it cannot (a package missing, no GPU), and which engine runs NumPy "
        "input: the setting (auto, array-api or onnxruntime; $XPNET_ENGINE) and what it "
        "means here.",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object: {"backends": [{"backend", "available", "reason"}, ...], '
        '"numpy_engine": {"engine", "detail"}}',
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    statuses = {name: backend_status(name) for name in BACKENDS}
    engine, detail = numpy_engine()
    if args.json:
        print_json(
            {
                "backends": [
                    {"backend": name, "available": ok, "reason": why}
                    for name, (ok, why) in statuses.items()
                ],
                "numpy_engine": {"engine": engine, "detail": detail},
            }
        )
        return 0
    width = max(map(len, BACKENDS))
    for name, (ok, why) in statuses.items():
        print(printable(f"{name:<{width}}  {'yes' if ok else 'no '}  {why}".rstrip()))
    print(printable(f"numpy engine: {engine} ({detail})"))
    return 0
