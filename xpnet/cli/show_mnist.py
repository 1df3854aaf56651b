"""``xpnet show-mnist``: the first 25 images of a dataset's split, with their labels, as a
picture."""

from __future__ import annotations

import argparse

from xpnet.cli.options import add_dataset_options
from xpnet.cli.pictures import add_picture_command, check_picture_outputs, deliver
from xpnet.plotting import plot_image_grid


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_picture_command(subparsers, "show-mnist", "draw the first 25 images of a split")
    parser.add_argument(
        "--split", choices=("train", "test"), default="test", help="split to draw from"
    )
    add_dataset_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from xpnet.datasets import load_mnist

    outputs = check_picture_outputs(args)
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
    return deliver(args, [(outputs[0], figure)])
