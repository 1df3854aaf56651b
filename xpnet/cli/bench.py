"""``xpnet bench``: xpnet against the textbook's loops, ONNX Runtime, PyTorch and jax.jit.

Every variant classifies the MNIST test split with the same weights and must get the
same number right; times are medians of interleaved rounds after warm-up, after pauses
and back to back in the same run, shown in ms, images/s, multiples of this machine's
floor and ratios to each peer.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import xpnet
from xpnet.backends import BACKENDS, Backend
from xpnet.bench import machine as machine_module
from xpnet.bench import report, variants
from xpnet.bench.timing import time_interleaved
from xpnet.cli.infer import positive_int, weights_file
from xpnet.cli.progress import progress_bar
from xpnet.errors import XpnetError
from xpnet.weights import load_weights

DEFAULT_BACKENDS = ("numpy", "torch", "jax", "dask", "array_api_strict", "cupy")
_DEVICES = {"cupy": "cuda:0", "torch": "cpu", "jax": "cpu"}
BACK_TO_BACK = 4
"""Calls of each variant in a row in the back-to-back rounds: the first, after the pause,
is not timed; the others each follow the same call at once."""


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="time xpnet against its peers on the MNIST test split",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--weights", default="book", help="weights file, or 'book' (default) for the textbook's"
    )
    parser.add_argument("--data-dir", help="folder holding the MNIST test split IDX files")
    parser.add_argument(
        "--backends",
        nargs="+",
        default=list(DEFAULT_BACKENDS),
        metavar="NAME",
        help="xpnet backends to time (those installed)",
    )
    parser.add_argument("--rounds", type=positive_int, default=15, help="timed rounds (default 15)")
    parser.add_argument(
        "--pause",
        type=non_negative_float,
        default=0.2,
        help="seconds before each call in the rounds after pauses (default 0.2), long "
        "enough for the threads of the call before to go to sleep",
    )
    parser.add_argument(
        "--stream",
        type=int,
        default=0,
        metavar="N",
        help="also stream N images (test split tiled) from disk",
    )
    parser.add_argument(
        "--dask-images",
        type=int,
        default=0,
        metavar="N",
        help="also time dask against NumPy on N images (e.g. 1000000)",
    )
    parser.add_argument(
        "--gpu-rows",
        type=int,
        default=1_000_000,
        help="batch for the resident GPU throughput (where CuPy runs)",
    )
    parser.add_argument("--plot", help="write a bar chart (PNG or SVG) to this path")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from xpnet.datasets import load_mnist

    def say(text: str) -> None:
        print(text, file=sys.stderr)

    unknown = [name for name in args.backends if name not in BACKENDS]
    if unknown:
        raise XpnetError(
            f"unknown backend {unknown[0]!r} in --backends; choose from {', '.join(BACKENDS)}"
        )
    weights = weights_file(args.weights)
    network = load_weights(weights)
    pixels, labels = load_mnist(normalize=False, split="test", data_dir=args.data_dir)
    images = pixels.astype(np.float32)
    images /= 255.0  # as load_mnist normalizes
    work = variants.Workload(network, images, pixels, labels)
    expected = xpnet.count_correct(network, images, labels)

    say("measuring this machine's sgemm rate and copy bandwidth...")
    machine = machine_module.measure_machine()
    floor = machine.floor_seconds(network.sizes, len(labels), images.nbytes)
    backends, not_timed = variants.resolve_backends(
        {name: _DEVICES.get(name) for name in args.backends}
    )
    gpu = next((backend for backend in backends if backend.name == "cupy"), None)
    contenders = _contenders(work, backends, gpu, args.data_dir)
    for name, reason in not_timed.items():
        say(f"xpnet on {name} not timed: {reason}")
    say(
        f"timing {len(contenders)} variants x {args.rounds} rounds, interleaved, after "
        f"{args.pause} s pauses and back to back..."
    )
    # Both after a pause, so no variant's threads are still busy when the next starts.
    regimes = {"after pauses": (args.pause, 1), "back to back": (args.pause, BACK_TO_BACK)}
    measured = {}
    with progress_bar(total=2 * args.rounds, desc="rounds", unit="round", disable=args.json) as bar:
        for regime, (pause, streak) in regimes.items():
            measured[regime] = time_interleaved(
                contenders,
                rounds=args.rounds,
                pause=pause,
                expected=expected,
                streak=streak,
                on_round=lambda _: bar.update(1),
            )
    rows = report.make_rows(contenders, measured["after pauses"], len(labels), floor)
    met = report.targets(measured["after pauses"])
    result = report.as_json(machine, floor, rows, met)
    rows_b2b = report.make_rows(contenders, measured["back to back"], len(labels), floor)
    met_b2b = report.targets(measured["back to back"])
    result["variants_back_to_back"] = [dataclasses.asdict(row) for row in rows_b2b]
    result["targets_back_to_back"] = met_b2b
    result["correct"] = expected
    result["not_timed"] = not_timed
    if args.stream:
        say(f"streaming {args.stream:,} images from disk in a fresh process...")
        result["streaming"] = _stream(work, args.stream, weights)
    if args.dask_images:
        say(f"timing dask against NumPy on {args.dask_images:,} images...")
        result["dask_throughput"] = _dask_throughput(work, args.dask_images)
    if "cupy" in args.backends:
        result["gpu_throughput"] = _gpu_throughput(work, gpu, args.gpu_rows) if gpu else None
    if args.plot:
        title = f"10,000 MNIST test images, 784-50-100-10, {machine.cpu}\nBLAS: {machine.blas}"
        report.bar_chart(rows, floor, args.plot, title)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"after {args.pause} s pauses:")
        print(report.table(rows))
        print(report.summary(machine, floor, len(labels), met))
        print(
            f"\nback to back ({BACK_TO_BACK} calls in a row after each pause, the first not timed):"
        )
        print(report.table(rows_b2b))
        print(report.summary(machine, floor, len(labels), met_b2b))
        for key in ("streaming", "dask_throughput", "gpu_throughput"):
            if result.get(key):
                print(f"{key}: {json.dumps(result[key])}")
    return 0


def _contenders(
    work: variants.Workload, backends: list[Backend], gpu: Backend | None, data_dir: str | None
) -> list[variants.Variant]:
    found = [
        *variants.book_variants(work),
        *variants.xpnet_variants(work, backends),
        variants.onnxruntime_variant(work),
        variants.torch_variant(work),
        variants.jax_variant(work),
    ]
    if gpu is not None:
        found += [variants.transfer_variant(work, gpu), variants.torch_variant(work, "cuda:0")]
    if data_dir:
        found += variants.end_to_end_variants(work, data_dir)
    return [v for v in found if v is not None]


def _gpu_throughput(work: variants.Workload, gpu: Backend, rows: int) -> dict:
    """Resident throughput: ``rows`` uint8 images already on ``gpu`` to predicted labels."""
    network = work.network_on(gpu).scale_input(1 / 255)
    copies = -(-rows // len(work.pixels))
    x = gpu.asarray(np.tile(work.pixels, (copies, 1))[:rows])
    seconds = []
    for _ in range(7):
        gpu.synchronize()
        start = time.perf_counter()
        xpnet.predict_labels(network, x)
        gpu.synchronize()
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds[2:])
    return {"rows": rows, "milliseconds": median * 1e3, "images_per_second": rows / median}


def _dask_throughput(work: variants.Workload, count: int) -> dict:
    from xpnet.scaleout import measure_dask_throughput

    measured = measure_dask_throughput(work.network, work.pixels, work.labels, count=count)
    return {**dataclasses.asdict(measured), "dask_over_numpy_throughput": measured.ratio}


def _stream(work: variants.Workload, count: int, weights: Path) -> dict:
    copies = -(-count // len(work.labels))
    with tempfile.TemporaryDirectory(prefix="xpnet-stream-") as folder:
        from xpnet.bench.stream import write_tiled

        images, labels = write_tiled(work.pixels, work.labels, copies, seed=0, folder=Path(folder))
        out = subprocess.run(
            [sys.executable, "-m", "xpnet.bench.stream", str(images), str(labels), str(weights)],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(out.stdout)
