"""``xpnet plot-activations``: the book's activation functions (step, sigmoid, ReLU...) as a
picture, drawn on the chosen backend."""

from __future__ import annotations

import argparse

from xpnet.backends import get_backend
from xpnet.cli.options import add_backend_options
from xpnet.cli.pictures import add_picture_command, check_picture_outputs, deliver
from xpnet.plotting import plot_activations


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_picture_command(
        subparsers, "plot-activations", "draw the activation functions (step, sigmoid, ReLU...)"
    )
    add_backend_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    outputs = check_picture_outputs(args)
    figure = plot_activations(backend=get_backend(args.backend, args.device))
    return deliver(args, [(outputs[0], figure)])
