"""``xpnet infer``: the textbook's batched MNIST inference on the chosen backend and device.

Stages are timed apart (load from files, transfer to the device, a first call on one
image, compute), device work is synchronized before each clock reading, and the result
prints in the book's spelling, ``Accuracy:0.9352``, or as one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from xpnet._array_api import device_name
from xpnet.backends import get_backend
from xpnet.batching import batch_size_for, iter_batches
from xpnet.cli import dask_options
from xpnet.cli.network_loading import load_network_and_info, weights_file
from xpnet.cli.options import (
    add_backend_options,
    add_data_options,
    add_engine_option,
    positive_int,
)
from xpnet.cli.output import Score, display_path, json_safe, print_json, printable
from xpnet.cli.progress import progress_bar
from xpnet.inference import (
    choose_engine,
    count_correct,
    count_correct_and_unlabelled,
    engine_setting,
    use_engine,
)
from xpnet.training_record import summary

PROGRESS_ROWS = 50_000
"""Rows counted per progress-bar step: large enough that updates cost nothing."""


@dataclass(frozen=True)
class InferenceReport(Score):
    """What one inference run measured; ``--json`` prints it as is."""

    engine: str
    """What ran the forward pass: ``onnxruntime`` or ``array-api`` (on dask, in each chunk:
    ``auto`` chooses there, chunk by chunk)."""
    not_finite: int
    """Images whose output was not finite (NaN, infinity): no class, never correct."""
    seconds: float
    images_per_second: float | None
    """``None`` where the compute took no measurable time."""
    load_seconds: float
    transfer_seconds: float
    first_call_seconds: float | None
    """One image through the network before the rest: what a process pays once (ONNX
    Runtime building its session, CuPy its kernels). ``None`` on dask."""
    compute_seconds: float
    weights_provenance: dict[str, Any] | None
    """How the weights were made, as their file's header records it (``xpnet train``)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "infer",
        help="classify the MNIST test split and print the accuracy",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_backend_options(parser)
    add_engine_option(parser)
    parser.add_argument(
        "--weights",
        help="weights file (xpnet .npz, the textbook's .pkl or a plain .npz of its dict), "
        "or 'book' to fetch the textbook's (MIT-licensed, Koki Saitoh's repository); "
        "also a model from another framework, told by content: .onnx, .keras, skops, "
        ".safetensors, a PyTorch state dict (with --activations); "
        "default: the bundled mnist_5k.npz",
    )
    parser.add_argument(
        "--activations",
        metavar="NAMES",
        help="the layers' activations, comma-separated (sigmoid,sigmoid,softmax), for weights "
        "that store none (a PyTorch state dict)",
    )
    add_data_options(parser)
    parser.add_argument(
        "--dataset",
        choices=("mnist", "fashion-mnist"),
        default="mnist",
        help="the dataset whose test split is classified",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        help="images per batch; default: 100 on a CPU, on a GPU the whole input or the "
        "largest batch that fits half its free memory",
    )
    parser.add_argument(
        "--limit", type=positive_int, metavar="N", help="use only the first N test images"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    dask_options.add_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    with dask_options.dask_scheduler(args):
        report = infer(args)
    if args.json:
        print_json(asdict(report))
    else:
        print_report(report)
    return 0


def infer(args: argparse.Namespace) -> InferenceReport:
    from xpnet.datasets import load_mnist

    setting = engine_setting(args.engine)  # a bad $XPNET_ENGINE fails before any work
    target = get_backend(args.backend, args.device)
    say = (lambda _: None) if args.json else (lambda text: print(text, file=sys.stderr))
    say(f"backend: {target}")
    weights = weights_file(args.weights)
    # One reading gives the arrays and the header that describes them.
    network, info = load_network_and_info(weights, args.backend, args.device, args.activations)
    provenance = json_safe(info.get("metadata")) or None
    say(
        f"weights: {display_path(weights)} ({'-'.join(map(str, network.sizes))}, "
        f"{'/'.join(network.activations)}, {network.dtype})"
    )
    if provenance is not None:
        say(f"provenance: {printable(summary(provenance))}")

    start = time.perf_counter()
    # Raw uint8 pixels: a quarter of the bytes to move; the 1/255 lives in the first weights.
    if args.input is None:
        dataset, split = args.dataset, "test"
        x_host, t_host = load_mnist(
            normalize=False,
            split="test",
            dataset=dataset,
            data_dir=args.data_dir,
            download=not args.no_download,
        )
    else:  # with dask, lazy dask arrays: each chunk is read where it is computed
        x_host, t_host, dataset, split = dask_options.read_input(args)
    network = network.scale_input(1 / 255)
    if args.limit is not None:
        x_host, t_host = x_host[: args.limit], t_host[: args.limit]
    loaded = time.perf_counter()

    lazy = target.name == "dask" and args.input is not None
    x, t = (x_host, t_host) if lazy else (target.asarray(x_host), target.asarray(t_host))
    target.synchronize()
    transferred = time.perf_counter()

    # One engine for the whole input, chosen by its size (auto weighs ONNX Runtime's start-up
    # against the rows); dask chunks choose their own, under the same setting.
    engine = setting if target.name == "dask" else choose_engine(network, x, setting)
    say(f"engine: {engine}" + (" (each chunk)" if target.name == "dask" else ""))

    # One image first, timed apart: what a process pays once (ONNX Runtime
    # building its session, CuPy its kernels) is not throughput.
    warmed, first_call_seconds = transferred, None
    if target.name != "dask" and len(x_host):
        count_correct(network, x[:1, ...], t[:1], engine=engine)
        target.synchronize()
        warmed = time.perf_counter()
        first_call_seconds = warmed - transferred

    if target.name == "dask":
        with use_engine(setting):
            correct, unlabelled = dask_options.count_correct_on_dask(network, x, t, args)
    else:
        correct = unlabelled = 0
        batch_size = args.batch_size or batch_size_for(network, x)
        with progress_bar(total=len(x_host), unit="img", desc="compute", disable=args.json) as bar:
            for xb, tb in iter_batches(x, t, batch_size=max(PROGRESS_ROWS, batch_size)):
                right, none = count_correct_and_unlabelled(
                    network, xb, tb, batch_size=batch_size, engine=engine
                )
                correct, unlabelled = correct + right, unlabelled + none
                bar.update(xb.shape[0])
    target.synchronize()
    computed = time.perf_counter()

    images = len(x_host)
    compute_seconds = computed - warmed
    return InferenceReport(
        backend=target.name,
        device=device_name(target.device),
        weights=str(weights),
        dataset=dataset,
        split=split,
        images=images,
        engine=engine,
        correct=correct,
        accuracy=correct / images if images else None,
        not_finite=unlabelled,
        seconds=computed - start,
        images_per_second=images / compute_seconds if compute_seconds > 0 else None,
        load_seconds=loaded - start,
        transfer_seconds=transferred - loaded,
        first_call_seconds=first_call_seconds,
        compute_seconds=compute_seconds,
        weights_provenance=provenance,
    )


def print_report(report: InferenceReport) -> None:
    print(
        f"images: {report.images} ({printable(report.dataset)} {printable(report.split)} split), "
        f"correct: {report.correct}"
    )
    first_call = (
        ""
        if report.first_call_seconds is None
        else f", first call {report.first_call_seconds * 1e3:.1f} ms"
    )
    print(f"engine: {report.engine}")
    if report.not_finite:
        print(
            f"not finite: {report.not_finite} images gave an output that is not finite "
            "(NaN or infinity); counted as wrong"
        )
    print(
        f"time: load {report.load_seconds * 1e3:.1f} ms, transfer "
        f"{report.transfer_seconds * 1e3:.1f} ms{first_call}, "
        f"compute {report.compute_seconds * 1e3:.1f} ms"
    )
    rate = report.images_per_second
    print(f"images/s: {'-' if rate is None else format(rate, ',.0f')} (compute)")
    print(f"Accuracy:{'-' if report.accuracy is None else report.accuracy}")
