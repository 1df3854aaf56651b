"""``xpnet train``: train a network on MNIST, its 5,000-image subset or Fashion-MNIST.

The data moves to the chosen backend and device once and stays there. A progress bar per
epoch ends with that epoch's loss and accuracy; the trained network is then scored on the
whole test split and saved, atomically, with its provenance in the file's header (see
:class:`~xpnet.cli.provenance.TrainingRecord`). Ctrl-C stops training, saves the network as
of the last completed step and exits with status 130.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from xpnet import __version__
from xpnet._array_api import device_name
from xpnet.backends import Backend, get_backend
from xpnet.cli.infer import positive_int
from xpnet.cli.options import add_backend_options, add_data_options
from xpnet.cli.progress import EpochBars
from xpnet.cli.provenance import TrainingRecord
from xpnet.datasets import Dataset, get_dataset, load_mnist
from xpnet.errors import XpnetError
from xpnet.network import Network, init_network
from xpnet.optimizers import OPTIMIZERS, make_optimizer
from xpnet.training import EpochStats, evaluate, train
from xpnet.weights import save_weights

DATASETS = ("mnist", "mnist-5k", "fashion-mnist")
"""What ``--dataset`` accepts: the full MNIST (downloaded), its 5k subset, Fashion-MNIST."""

TEXTBOOK_LAYERS = (784, 50, 100, 10)
"""The default ``--layers``: the textbook's network."""

INTERRUPTED = 130
"""The exit status after Ctrl-C (128 + SIGINT), as shells report it."""

Number = TypeVar("Number", int, float)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a network and save it with its provenance",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_backend_options(parser)
    parser.add_argument("--dataset", choices=DATASETS, default="mnist")
    add_data_options(parser)
    parser.add_argument(
        "--layers",
        type=layer_sizes,
        default=TEXTBOOK_LAYERS,
        help="layer widths, input first (default: 784-50-100-10)",
    )
    parser.add_argument(
        "--activation",
        choices=("sigmoid", "relu"),
        default="sigmoid",
        help="hidden layers' activation (default: sigmoid; the output is softmax)",
    )
    parser.add_argument("--epochs", type=positive_int, default=10, help="default: 10")
    parser.add_argument("--batch-size", type=positive_int, default=100, help="default: 100")
    parser.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="sgd")
    parser.add_argument("--lr", type=float, help="learning rate (default: the optimizer's)")
    parser.add_argument(
        "--weight-decay", type=at_least_zero(float), default=0.0, help="L2 penalty on weights"
    )
    parser.add_argument(
        "--augment-shift",
        type=at_least_zero(int),
        default=0,
        help="shift each image by up to this many pixels, anew each epoch",
    )
    parser.add_argument(
        "--seed",
        type=at_least_zero(int),
        default=0,
        help="seeds the initial weights, the shuffling and the shifts (default: 0)",
    )
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("weights.npz"),
        help="weights file to write (default: weights.npz)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.set_defaults(run=run)


def layer_sizes(text: str) -> tuple[int, ...]:
    """``"784-50-100-10"`` as ``(784, 50, 100, 10)``: two or more positive widths."""
    parts = text.split("-")
    if len(parts) < 2 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise argparse.ArgumentTypeError(
            f"expected two or more positive widths joined by '-', such as 784-50-100-10, "
            f"got {text!r}"
        )
    return tuple(map(int, parts))


def at_least_zero(kind: Callable[[str], Number]) -> Callable[[str], Number]:
    """An argparse type: ``kind`` of the text, refused where negative."""

    def parse(text: str) -> Number:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names it in "invalid int value"
    return parse


def run(args: argparse.Namespace) -> int:
    record, network = train_network(args)
    save_weights(network, args.out, metadata=asdict(record))
    if args.json:
        print(json.dumps({**asdict(record), "out": str(args.out)}))
    else:
        print_record(record, args.out)
    if record.interrupted:
        print(
            f"xpnet: interrupted after {record.epochs_completed} of {record.epochs} epochs; "
            f"saved the network so far to {args.out}",
            file=sys.stderr,
        )
        return INTERRUPTED
    return 0


def train_network(args: argparse.Namespace) -> tuple[TrainingRecord, Network]:
    """Load the data, train as ``args`` say, score on the test split; Ctrl-C ends training."""
    target = get_backend(args.backend, args.device)
    optimizer = make_optimizer(args.optimizer, args.lr)
    if not args.json:
        print(f"backend: {target}", file=sys.stderr)
    dataset = get_dataset(args.dataset)
    (x, t), (x_test, t_test) = load_mnist(
        dataset=dataset.name,
        data_dir=args.data_dir,
        download=not args.no_download,
        backend=args.backend,
        device=args.device,
        dtype=args.dtype,
    )
    check_layers(args.layers, x.shape[1], dataset)
    activations = [*[args.activation] * (len(args.layers) - 2), "softmax"]
    network = init_network(
        args.layers,
        activations=activations,
        seed=args.seed,
        dtype=args.dtype,
        backend=args.backend,
        device=args.device,
    )
    with EpochBars(args.epochs, disable=args.json) as bars:
        start = time.perf_counter()
        network, history = train(
            network,
            x,
            t,
            epochs=args.epochs,
            batch_size=args.batch_size,
            optimizer=optimizer,
            weight_decay=args.weight_decay,
            seed=args.seed,
            augment_shift=args.augment_shift,
            on_batch=bars.batch,
            on_epoch=bars.epoch,
        )
        seconds = time.perf_counter() - start
        test = (None, None) if history.interrupted else evaluate(network, x_test, t_test)
    last = history.epochs[-1] if history.epochs else None
    record = TrainingRecord(
        command=command_line(args, optimizer.lr),
        dataset=dataset.name,
        dataset_md5=split_md5(dataset, "train"),
        test_md5=split_md5(dataset, "test"),
        train_images=x.shape[0],
        test_images=x_test.shape[0],
        backend=target.name,
        device=device_name(target.device),
        dtype=args.dtype,
        layers=list(args.layers),
        activations=activations,
        optimizer=args.optimizer,
        lr=optimizer.lr,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        augment_shift=args.augment_shift,
        seed=args.seed,
        epochs=args.epochs,
        epochs_completed=len(history.epochs),
        interrupted=history.interrupted,
        train_loss=None if last is None else last.loss,
        train_accuracy=None if last is None else last.accuracy,
        test_loss=test[0],
        test_accuracy=test[1],
        train_seconds=seconds,
        cpu_threads=cpu_threads(target),
        xpnet_version=__version__,
        numpy_version=np.__version__,
        date=datetime.now(UTC).isoformat(timespec="seconds"),
        history=[epoch_log(stats) for stats in history.epochs],
    )
    return record, network


def cpu_threads(target: Backend) -> int | None:
    """Threads of the CPU math (NumPy's BLAS as threadpoolctl reports it, or PyTorch's on
    the CPU); ``None`` where not known: GPUs, JAX, or threadpoolctl not installed."""
    if target.name == "torch" and device_name(target.device) == "cpu":
        import torch

        return int(torch.get_num_threads())
    if target.name not in ("numpy", "array_api_strict", "dask"):
        return None
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return max(
        (p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"), default=None
    )


def epoch_log(stats: EpochStats) -> dict[str, Any]:
    """One epoch of the record's history, rounded: the header costs 4 bytes a character."""
    return {
        "epoch": stats.epoch,
        "loss": float(f"{stats.loss:.6g}"),
        "accuracy": stats.accuracy,
        "seconds": round(stats.seconds, 3),
    }


def check_layers(sizes: tuple[int, ...], features: int, dataset: Dataset) -> None:
    """Refuse ``--layers`` whose ends do not fit the images and the classes."""
    if sizes[0] != features or sizes[-1] != dataset.num_classes:
        raise XpnetError(
            f"--layers {'-'.join(map(str, sizes))} does not fit {dataset.name}: it must start "
            f"with {features} (pixels per image) and end with {dataset.num_classes} (classes)"
        )


def split_md5(dataset: Dataset, split: str) -> dict[str, str]:
    """The md5 of each file of ``split``, as the registry knows and the loader checks it."""
    _, files = dataset.split(split)
    return {file.gz_name: file.md5 for file in files}


def command_line(args: argparse.Namespace, lr: float) -> str:
    """The ``xpnet train`` command that reproduces this run, every setting spelled out."""
    options: list[tuple[str, object]] = [
        ("--backend", args.backend),
        ("--device", args.device),
        ("--dataset", args.dataset),
        ("--data-dir", args.data_dir),
        ("--layers", "-".join(map(str, args.layers))),
        ("--activation", args.activation),
        ("--optimizer", args.optimizer),
        ("--lr", lr),
        ("--weight-decay", args.weight_decay),
        ("--batch-size", args.batch_size),
        ("--epochs", args.epochs),
        ("--augment-shift", args.augment_shift),
        ("--seed", args.seed),
        ("--dtype", args.dtype),
        ("--out", args.out),
    ]
    words = ["xpnet", "train"]
    for name, value in options:
        if value is not None:
            words += [name, str(value)]
    if args.no_download:
        words.append("--no-download")
    return shlex.join(words)


def print_record(record: TrainingRecord, out: Path) -> None:
    line = (
        f"train: {record.train_images} {record.dataset} images, "
        f"{record.epochs_completed} epochs in {record.train_seconds:.1f} s"
    )
    if record.train_loss is not None:
        line += f"; last epoch: loss {record.train_loss:.4f}, accuracy {record.train_accuracy}"
    print(line)
    if record.test_loss is not None:
        print(
            f"test: {record.test_images} images, loss {record.test_loss:.4f}, "
            f"accuracy {record.test_accuracy}"
        )
    print(f"saved: {out}")
