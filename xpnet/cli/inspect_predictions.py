"""``xpnet inspect``: classify a test split and draw what the network gets wrong.

Three pictures go into the ``--out`` folder: the misclassified images (worst first), the
confusion matrix and the first layer's weights as images; ``--json`` prints the results,
misclassified indices included, as one JSON object.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass

from xpnet._array_api import device_name
from xpnet.backends import get_backend, to_host
from xpnet.batching import DEFAULT_BATCH_SIZE
from xpnet.cli.network_loading import load_network, weights_file
from xpnet.cli.options import add_backend_options, add_dataset_options, positive_int
from xpnet.cli.output import Score, print_json
from xpnet.cli.pictures import add_picture_command, check_picture_outputs, deliver
from xpnet.forward_pass import NO_CLASS, labels_of
from xpnet.inference import predict
from xpnet.plotting import (
    confusion_matrix,
    misclassified_indices,
    plot_confusion_matrix,
    plot_first_layer_weights,
    plot_misclassified,
)

INSPECT_FIGURES = ("misclassified", "confusion_matrix", "first_layer_weights")
"""The pictures ``inspect`` writes, each as ``NAME.FORMAT`` in ``--out``."""


@dataclass(frozen=True)
class Inspection(Score):
    """What ``inspect`` found; ``--json`` prints it as is (docs/cli.md names the keys)."""

    misclassified: int
    not_finite: int
    """Images whose output held a NaN or an infinity: no class, misclassified, worst first."""
    misclassified_indices: list[int]
    """Worst first: lowest probability for the true class."""
    confusion_matrix: list[list[int]]
    out: str | None
    files: list[str]
    """The pictures written."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_picture_command(
        subparsers,
        "inspect",
        "classify the test split; draw mistakes, confusion matrix and first-layer weights",
        directory=True,
    )
    add_backend_options(parser)
    parser.add_argument(
        "--weights",
        help="weights file: xpnet .npz, the textbook's .pkl or a plain .npz of its dict, "
        "or 'book'; default: the bundled mnist_5k.npz",
    )
    add_dataset_options(parser)
    parser.add_argument(
        "--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, help="images per batch"
    )
    parser.add_argument(
        "--max-images",
        type=positive_int,
        default=25,
        help="misclassified images to draw, worst first",
    )
    parser.add_argument(
        "--format",
        default="png",
        help="picture format: any that matplotlib writes (png, jpg, svg, pdf...)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the results (with misclassified indices) as one JSON object",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from xpnet.datasets import load_mnist

    outputs = check_picture_outputs(args, names=INSPECT_FIGURES)
    target = get_backend(args.backend, args.device)
    weights = weights_file(args.weights)
    network = load_network(str(weights), args.backend, args.device)
    images, labels = load_mnist(
        normalize=True,
        flatten=True,
        split="test",
        dataset=args.dataset,
        data_dir=args.data_dir,
        download=not args.no_download,
        backend=args.backend,
        device=args.device,
        dtype=str(network.dtype).split(".")[-1],
    )
    probabilities = predict(network, images, batch_size=args.batch_size)
    # The non-finite rule: a row whose output is not finite has no class (never correct).
    predicted = labels_of(target.xp, probabilities, probabilities)
    worst = to_host(misclassified_indices(labels, probabilities))
    not_finite = int(target.xp.count_nonzero(predicted == NO_CLASS))
    if not_finite:  # the confusion matrix counts the rows that have a class
        keep = to_host(predicted) != NO_CLASS
        counts = to_host(confusion_matrix(to_host(labels)[keep], to_host(predicted)[keep]))
    else:
        counts = to_host(confusion_matrix(labels, predicted))
    total = images.shape[0]
    figures = {
        "misclassified": plot_misclassified(
            images, labels, probabilities, max_images=args.max_images
        ),
        "confusion_matrix": plot_confusion_matrix(labels, predicted),
        "first_layer_weights": plot_first_layer_weights(network),
    }
    pictures = [(path, figures[name]) for path, name in zip(outputs, INSPECT_FIGURES)]
    report = Inspection(
        backend=target.name,
        device=device_name(target.device),
        weights=str(weights),
        dataset=args.dataset,
        split="test",
        images=total,
        correct=total - len(worst),
        accuracy=(total - len(worst)) / total if total else None,
        misclassified=len(worst),
        not_finite=not_finite,
        misclassified_indices=worst.tolist(),
        confusion_matrix=counts.tolist(),
        out=None if args.out is None else str(args.out),
        files=[str(path) for path in outputs if path is not None],
    )
    status = deliver(args, pictures, folder=args.out)
    if args.json:
        print_json(asdict(report))
    else:
        print(
            f"{target}: {report.misclassified} of {total} test images misclassified, "
            f"accuracy {'-' if report.accuracy is None else report.accuracy}"
        )
    return status
