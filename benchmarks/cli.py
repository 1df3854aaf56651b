"""The benchmarks' command lines: ``scripts/benchmark.py`` and ``scripts/dask_benchmark.py``.

``scripts/benchmark.py`` times xpnet against its peers (:data:`PEERS_DESCRIPTION` says how);
``scripts/dask_benchmark.py`` times dask against NumPy on a million tiled test images
(:mod:`benchmarks.dask_throughput`).

Both parse their options with xpnet's own parser (:mod:`xpnet.cli.options`): a usage error
is one line and status 2, any other failure one line and status 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

import xpnet
from benchmarks import machine as machine_module
from benchmarks import peers, report
from benchmarks.timing import time_interleaved
from xpnet.backends import BACKENDS, Backend
from xpnet.cli import EXPECTED_FAILURES, FAILURE, one_line
from xpnet.cli.network_loading import load_network, weights_file
from xpnet.cli.options import Parser, UsageError, add_debug_option, at_least_zero, positive_int
from xpnet.cli.output import INTERRUPTED, json_safe, print_json, tell, word_list
from xpnet.cli.progress import progress_bar
from xpnet.weights import load_weights

REPOSITORY = Path(__file__).resolve().parents[1]
"""The checkout these benchmarks sit in: put on a child process's path to import them."""

DEFAULT_BACKENDS = ("numpy", "torch", "jax", "dask", "array_api_strict", "cupy")
_DEVICES = {"cupy": "cuda:0", "torch": "cpu", "jax": "cpu"}
BACK_TO_BACK = 4
"""Calls of each variant in a row in the back-to-back rounds: the first, after the pause,
is not timed; the others each follow the same call at once."""


PEERS_DESCRIPTION = (
    "xpnet against the textbook's loops, ONNX Runtime, PyTorch and jax.jit. Every variant "
    "classifies the MNIST test split with the same weights and must get the same number "
    "right; times are medians of interleaved rounds after warm-up, after pauses and back to "
    "back in the same run, shown in ms, images/s, multiples of this machine's floor and "
    "ratios to each peer."
)


def peers_parser(prog: str = "benchmark.py") -> Parser:
    """The options of ``scripts/benchmark.py``."""
    parser = Parser(prog=prog, description=PEERS_DESCRIPTION)
    parser.add_argument(
        "--weights", default="book", help="weights file, or 'book' for the textbook's"
    )
    parser.add_argument("--data-dir", help="folder holding the MNIST test split IDX files")
    parser.add_argument(
        "--backends",
        nargs="+",
        default=list(DEFAULT_BACKENDS),
        metavar="NAME",
        help="xpnet backends to time (those installed)",
    )
    parser.add_argument("--rounds", type=positive_int, default=15, help="timed rounds")
    parser.add_argument(
        "--pause",
        type=at_least_zero(float),
        default=0.2,
        help="seconds before each call in the rounds after pauses, long enough for the "
        "threads of the call before to go to sleep",
    )
    parser.add_argument(
        "--stream",
        type=at_least_zero(int),
        default=0,
        metavar="N",
        help="also stream N images (test split tiled) from disk",
    )
    parser.add_argument(
        "--dask-images",
        type=at_least_zero(int),
        default=0,
        metavar="N",
        help="also time dask against NumPy on N images (e.g. 1000000)",
    )
    parser.add_argument(
        "--gpu-rows",
        type=positive_int,
        default=1_000_000,
        help="batch for the resident GPU throughput (where CuPy runs)",
    )
    parser.add_argument("--plot", help="write a bar chart (PNG or SVG) to this path")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_debug_option(parser)
    parser.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``scripts/benchmark.py``: parse ``argv`` and run; returns the exit status."""
    return _run_command(peers_parser(), argv)


def _run_command(parser: Parser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run ``args.run``: usage errors exit with status 2 and one line,
    other failures return status 1 after one line (``--debug`` keeps their traceback)."""
    args = parser.parse_args(argv)
    run_parsed: Callable[[argparse.Namespace], int] = args.run
    try:
        return run_parsed(args)
    except KeyboardInterrupt:
        tell(f"{parser.prog}: interrupted")
        return INTERRUPTED
    except UsageError as exc:
        parser.error(str(exc))  # exits with status 2
    except EXPECTED_FAILURES as exc:
        if args.debug:
            raise
        tell(f"{parser.prog}: error: {one_line(exc)}")
        return FAILURE


def run(args: argparse.Namespace) -> int:
    """Time every contender and print the tables (or one JSON object)."""
    from xpnet.datasets import load_mnist

    def say(text: str) -> None:
        print(text, file=sys.stderr)

    unknown = [name for name in args.backends if name not in BACKENDS]
    if unknown:
        raise UsageError(
            f"argument --backends: unknown backend {unknown[0]!r}; "
            f"choose from {word_list(list(BACKENDS))}"
        )
    weights = weights_file(args.weights)
    network = load_weights(weights)
    pixels, labels = load_mnist(normalize=False, split="test", data_dir=args.data_dir)
    images = pixels.astype(np.float32)
    images /= 255.0  # as load_mnist normalizes
    work = peers.Workload(network, images, pixels, labels)
    expected = xpnet.count_correct(network, images, labels)

    say("measuring this machine's sgemm rate and copy bandwidth...")
    machine = machine_module.measure_machine()
    floor = machine.floor_seconds(network.sizes, len(labels), images.nbytes)
    backends, not_timed = peers.resolve_backends(
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
    work: peers.Workload, backends: list[Backend], gpu: Backend | None, data_dir: str | None
) -> list[peers.Variant]:
    found = [
        *peers.book_variants(work),
        *peers.xpnet_variants(work, backends),
        peers.onnxruntime_variant(work),
        peers.torch_variant(work),
        peers.jax_variant(work),
    ]
    if gpu is not None:
        found += [peers.transfer_variant(work, gpu), peers.torch_variant(work, "cuda:0")]
    if data_dir:
        found += peers.end_to_end_variants(work, data_dir)
    return [v for v in found if v is not None]


def _gpu_throughput(work: peers.Workload, gpu: Backend, rows: int) -> dict:
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


def _dask_throughput(work: peers.Workload, count: int) -> dict:
    from benchmarks.dask_throughput import measure_dask_throughput

    measured = measure_dask_throughput(work.network, work.pixels, work.labels, count=count)
    return {**dataclasses.asdict(measured), "dask_over_numpy_throughput": measured.ratio}


def _stream(work: peers.Workload, count: int, weights: Path) -> dict:
    copies = -(-count // len(work.labels))
    with tempfile.TemporaryDirectory(prefix="xpnet-stream-") as folder:
        from benchmarks.stream import write_tiled

        images, labels = write_tiled(work.pixels, work.labels, copies, seed=0, folder=Path(folder))
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.stream", str(images), str(labels), str(weights)],
            capture_output=True,
            text=True,
            check=True,
            env=child_environment(),
        )
    return json.loads(out.stdout)


def child_environment() -> dict[str, str]:
    """This process's environment, with the checkout first on ``PYTHONPATH``: a child
    imports ``benchmarks`` (and, where it is not installed, ``xpnet``) from here."""
    path = [str(REPOSITORY), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


# scripts/dask_benchmark.py --------------------------------------------------------------------


def dask_parser(prog: str = "dask_benchmark.py") -> Parser:
    """The options of ``scripts/dask_benchmark.py``."""
    from benchmarks.dask_throughput import DEFAULT_IMAGES
    from xpnet.scaleout.store import DEFAULT_CHUNK_ROWS

    parser = Parser(
        prog=prog,
        description="Dask against NumPy on a million MNIST test images (tiled, shuffled), in "
        "one run: the median seconds of each and dask's throughput as a fraction of NumPy's.",
    )
    parser.add_argument(
        "--weights", default="book", help="weights file, or 'book' for the textbook's"
    )
    parser.add_argument("--data-dir", help="folder holding the MNIST test files")
    parser.add_argument("--images", type=positive_int, default=DEFAULT_IMAGES)
    parser.add_argument("--chunk-rows", type=positive_int, default=DEFAULT_CHUNK_ROWS)
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--store", action="store_true", help="also time dask from a Zarr store")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_debug_option(parser)
    parser.set_defaults(run=run_dask)
    return parser


def dask_main(argv: Sequence[str] | None = None) -> int:
    """``scripts/dask_benchmark.py``: parse ``argv`` and run; returns the exit status."""
    return _run_command(dask_parser(), argv)


def run_dask(args: argparse.Namespace) -> int:
    """Time dask against NumPy and print the summary (or one JSON object)."""
    from benchmarks.dask_throughput import measure_dask_throughput
    from xpnet.datasets import load_mnist

    images, labels = load_mnist(normalize=False, split="test", data_dir=args.data_dir)
    result = measure_dask_throughput(
        load_network(args.weights, "numpy", None),
        images,
        labels,
        count=args.images,
        chunk_rows=args.chunk_rows,
        repeats=args.repeats,
        from_store=args.store,
    )
    if args.json:
        print_json(
            json_safe(
                {
                    **dataclasses.asdict(result),
                    "ratio": result.ratio,
                    "store_ratio": result.store_ratio,
                }
            )
        )
    else:
        print(result.summary())
    return 0
