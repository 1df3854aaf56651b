"""What each NumPy engine costs a fresh process on the MNIST test split: the figures behind
``auto``'s threshold (``xpnet.inference.AUTO_ROWS``).

    python benchmarks/engine_start_up.py --weights sample_weight.pkl --data-dir DIR --runs 8

Each run is a new process per engine: it loads the data and the weights, makes one call
on one image with the array-API code (what any process pays first), then times one
``count_correct`` on the 10,000 images: in ONNX Runtime (importing it and building the
session included), with the array-API code in the textbook's batches of 100
(``count_correct``'s default on a CPU), and with the array-API code on the whole input.
Printed: each engine's fastest and median milliseconds over the runs.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
ENGINES = {
    "onnxruntime: import, session, run": {"engine": "onnxruntime"},
    "array-api, batches of 100": {"engine": "array-api"},
    "array-api, whole input": {"engine": "array-api", "batch_size": 10_000},
}


def one_run(weights: str, data_dir: str, engine: str) -> float:
    """In this process: the seconds of the timed call (see the module's notes)."""
    sys.path.insert(0, str(CHECKOUT))
    import xpnet
    from xpnet.datasets import load_mnist

    network = xpnet.load_weights(weights).scale_input(1 / 255)
    x, t = load_mnist(normalize=False, split="test", data_dir=data_dir, download=False)
    xpnet.count_correct(network, x[:1], t[:1], engine="array-api")
    start = time.perf_counter()
    correct = xpnet.count_correct(network, x, t, **ENGINES[engine])  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    if correct != 9352:
        raise SystemExit(f"{engine} counted {correct} correct, not the book's 9352")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--weights", required=True, help="the book's sample_weight.pkl")
    parser.add_argument("--data-dir", required=True, help="folder of the MNIST t10k files")
    parser.add_argument("--runs", type=int, default=8, help="(default: 8)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(one_run(args.weights, args.data_dir, args.child))
        return 0
    times: dict[str, list[float]] = {name: [] for name in ENGINES}
    for _ in range(args.runs):
        for name in ENGINES:  # interleaved: every engine meets the same load
            command = [sys.executable, __file__, "--weights", args.weights, "--data-dir"]
            command += [args.data_dir, "--child", name]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            times[name].append(float(done.stdout))
    print("| engine, 10,000 rows, fresh process | fastest ms | median ms |")
    print("| --- | --- | --- |")
    for name, seconds in times.items():
        print(f"| {name} | {min(seconds) * 1e3:.0f} | {statistics.median(seconds) * 1e3:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
