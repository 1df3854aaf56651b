"""What each NumPy engine costs a fresh process on the MNIST test split: the figures behind
``auto``'s threshold (``xpnet.inference.AUTO_ROWS``).

    python benchmarks/engine_start_up.py --weights sample_weight.pkl --data-dir DIR --runs 8 \
        --rows 10000 40000 160000

Each run is a new process per engine and size: it loads the data and the weights, makes
one call on one image with the array-API code (what any process pays first), then times
one ``count_correct`` on the test images repeated to ``--rows`` rows (a multiple of
10,000): in ONNX Runtime (importing it and building the session included), with the
array-API code in the textbook's batches of 100 (``count_correct``'s default on a CPU),
and with the array-API code on the whole input. Printed: each engine's fastest and median
milliseconds over the runs, per size. Each child finds xpnet's bytecode written, as pip
writes it on install. Run on a quiet machine: the threshold is about
start-up costs, which load distorts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CHECKOUT = Path(__file__).resolve().parents[1]
ENGINES: dict[str, dict[str, Any]] = {
    "onnxruntime: import, session, run": {"engine": "onnxruntime"},
    "array-api, batches of 100": {"engine": "array-api"},
    "array-api, whole input": {"engine": "array-api", "batch_size": -1},
}


def one_run(weights: str, data_dir: str, engine: str, rows: int) -> float:
    """In this process: the seconds of the timed call (see the module's notes)."""
    sys.path.insert(0, str(CHECKOUT))
    import xpnet
    from xpnet.datasets import load_mnist

    network = xpnet.load_weights(weights).scale_input(1 / 255)
    x, t = load_mnist(normalize=False, split="test", data_dir=data_dir, download=False)
    copies = rows // x.shape[0]
    x, t = np.tile(x, (copies, 1)), np.tile(t, copies)
    xpnet.count_correct(network, x[:1], t[:1], engine="array-api")
    options = dict(ENGINES[engine])
    if options.get("batch_size") == -1:
        options["batch_size"] = rows
    start = time.perf_counter()
    correct = xpnet.count_correct(network, x, t, **options)
    seconds = time.perf_counter() - start
    if correct != 9352 * copies:
        raise SystemExit(f"{engine} counted {correct} correct, not the book's 9352 x {copies}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--weights", required=True, help="the book's sample_weight.pkl")
    parser.add_argument("--data-dir", required=True, help="folder of the MNIST t10k files")
    parser.add_argument("--runs", type=int, default=8, help="(default: 8)")
    parser.add_argument(
        "--rows", type=int, nargs="+", default=[10_000], help="multiples of 10,000 (default: 10000)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if any(rows < 10_000 or rows % 10_000 for rows in args.rows):
        parser.error("--rows takes multiples of 10,000")
    if args.child:
        print(one_run(args.weights, args.data_dir, args.child, args.rows[0]))
        return 0
    times: dict[tuple[int, str], list[float]] = {
        (rows, name): [] for rows in args.rows for name in ENGINES
    }
    with tempfile.TemporaryDirectory(prefix="xpnet-engine-start-up-") as bytecode:
        # Bytecode as an installed package has it (pip writes it on install): written by
        # an untimed first run, away from the checkout.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = bytecode
        for round_number in range(args.runs + 1):
            for rows, name in times:  # interleaved: every engine meets the same load
                command = [sys.executable, __file__, "--weights", args.weights, "--data-dir"]
                command += [args.data_dir, "--rows", str(rows), "--child", name]
                done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
                if round_number:
                    times[rows, name].append(float(done.stdout))
    print("| rows | engine, fresh process | fastest ms | median ms |")
    print("| --- | --- | --- | --- |")
    for (rows, name), seconds in times.items():
        fastest, median = min(seconds) * 1e3, statistics.median(seconds) * 1e3
        print(f"| {rows:,} | {name} | {fastest:.0f} | {median:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
