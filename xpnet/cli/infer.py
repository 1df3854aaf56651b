"""``xpnet infer``: the textbook's batched MNIST inference on the chosen backend and device.

Stages are timed apart (load from files, transfer to the device, compute), device work is
synchronized before each clock reading, and the result prints in the book's spelling,
``Accuracy:0.9352``, or as one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass

from xpnet.backends import BACKENDS, get_backend
from xpnet.cli.progress import progress_bar
from xpnet.errors import XpnetError
from xpnet.inference import DEFAULT_BATCH_SIZE, count_correct, iter_batches
from xpnet.network import Network

PROGRESS_ROWS = 50_000
"""Rows counted per progress-bar step: large enough that updates cost nothing."""


@dataclass(frozen=True)
class InferenceReport:
    """What one inference run measured; ``--json`` prints it as is."""

    backend: str
    device: str
    dataset: str
    weights: str
    images: int
    correct: int
    accuracy: float
    seconds: float
    images_per_second: float
    load_seconds: float
    transfer_seconds: float
    compute_seconds: float


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "infer",
        help="classify the MNIST test split and print the accuracy",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--backend", choices=BACKENDS, default="numpy", help="array backend")
    parser.add_argument("--device", help="device name: cpu, cuda:0, device1 (array_api_strict)")
    parser.add_argument(
        "--weights",
        help="weights file (xpnet .npz or the textbook's .pkl), or 'book' to fetch the book's",
    )
    parser.add_argument("--data-dir", help="folder holding the dataset's IDX files (.gz or raw)")
    parser.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default="mnist")
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--limit", type=positive_int, help="use only the first N test images")
    parser.add_argument("--no-download", action="store_true", help="never fetch missing files")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    parser.set_defaults(run=run)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def run(args: argparse.Namespace) -> int:
    report = infer(args)
    if args.json:
        print(json.dumps(asdict(report)))
    else:
        print_report(report)
    return 0


def load_network(path: str | None, backend: str, device: str | None) -> Network:
    """The weights at ``path`` on the target backend; ``"book"`` fetches the textbook's."""
    from xpnet.weights import load_weights

    if path == "book":
        from xpnet.datasets import fetch_book_weights

        path = str(fetch_book_weights())
    if path is None:
        raise XpnetError(
            "no weights given and none are bundled yet: pass --weights PATH "
            "(an xpnet .npz or the textbook's sample_weight.pkl)"
        )
    return load_weights(path, backend=backend, device=device)


def infer(args: argparse.Namespace) -> InferenceReport:
    from xpnet.datasets import load_mnist

    target = get_backend(args.backend, args.device)
    say = (lambda _: None) if args.json else (lambda text: print(text, file=sys.stderr))
    say(f"backend: {target}")
    network = load_network(args.weights, args.backend, args.device)
    say(
        f"weights: {args.weights} ({'-'.join(map(str, network.sizes))}, "
        f"{'/'.join(network.activations)}, {network.dtype})"
    )

    start = time.perf_counter()
    # Raw uint8 pixels: a quarter of the bytes to move; the 1/255 lives in the first weights.
    x_host, t_host = load_mnist(
        normalize=False,
        split="test",
        dataset=args.dataset,
        data_dir=args.data_dir,
        download=not args.no_download,
    )
    network = network.scale_input(1 / 255)
    if args.limit is not None:
        x_host, t_host = x_host[: args.limit], t_host[: args.limit]
    loaded = time.perf_counter()

    x, t = target.asarray(x_host), target.asarray(t_host)
    target.synchronize()
    transferred = time.perf_counter()

    correct = 0
    with progress_bar(total=len(x_host), unit="img", desc="compute", disable=args.json) as bar:
        for xb, tb in iter_batches(x, t, batch_size=max(PROGRESS_ROWS, args.batch_size)):
            correct += count_correct(network, xb, tb, batch_size=args.batch_size)
            bar.update(xb.shape[0])
    target.synchronize()
    computed = time.perf_counter()

    images = len(x_host)
    compute_seconds = computed - transferred
    return InferenceReport(
        backend=target.name,
        device=str(target).split(" on ", 1)[1],
        dataset=args.dataset,
        weights=str(args.weights),
        images=images,
        correct=correct,
        accuracy=correct / images if images else float("nan"),
        seconds=computed - start,
        images_per_second=images / compute_seconds if compute_seconds > 0 else float("inf"),
        load_seconds=loaded - start,
        transfer_seconds=transferred - loaded,
        compute_seconds=compute_seconds,
    )


def print_report(report: InferenceReport) -> None:
    print(f"images: {report.images} ({report.dataset} test split), correct: {report.correct}")
    print(
        f"time: load {report.load_seconds * 1e3:.1f} ms, transfer "
        f"{report.transfer_seconds * 1e3:.1f} ms, compute {report.compute_seconds * 1e3:.1f} ms"
    )
    print(f"images/s: {report.images_per_second:,.0f} (compute)")
    print(f"Accuracy:{report.accuracy}")
