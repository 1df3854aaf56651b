"""Whole processes, end to end: ``xpnet infer`` against the book's own script and PyTorch.

    python benchmarks/end_to_end.py --weights sample_weight.pkl --data-dir DIR --rounds 15

Each round runs every command once as a fresh process (``python -m xpnet infer ...``, the
book's script, a PyTorch script), in an order rotated round by round, so that every command
meets the same load; each process's wall time is read around it. Every command must print
the accuracy it is expected to (the book's weights: ``Accuracy:0.9352``; the bundled
weights: their recorded test accuracy). Reported: each command's median seconds, and the
median over rounds of its time over the peer's time in the same round (paired ratios).

"Warm": xpnet's cache folder already holds the parsed copies of the data files (the
second and later runs of a user's ``xpnet infer``). "Cold": a fresh, empty cache folder
for every run (``XPNET_CACHE_DIR``), so the data files are read, checked and parsed, and
the parsed copies written. The peers keep no cache: they read the gz files every time.
Either way Python's bytecode of xpnet's modules is there, as pip writes it on install (an
untimed first run writes it, in a scratch folder, even where ``PYTHONDONTWRITEBYTECODE``
is set); the peers' scripts are compiled every run, as their users' are.
Also timed: ``python -c "import numpy"`` and ``python -c "import xpnet"`` (and xpnet with
its inference module, what a first ``xpnet.predict`` imports), as the same kind of rounds.

The targets of issue 27 are printed with their verdicts: warm within 1.2x of the book's
script, cold within 1.5x, ``import xpnet`` within 50 ms of ``import numpy``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]

BOOK_SCRIPT = """\
import gzip, pickle, sys
import numpy as np

def load(path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)

folder, weights = sys.argv[1], sys.argv[2]
x = load(f"{folder}/t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784).astype(np.float32) / 255.0
t = load(f"{folder}/t10k-labels-idx1-ubyte.gz", 8)
with open(weights, "rb") as f:
    network = pickle.load(f)

def sigmoid(a):
    return 1 / (1 + np.exp(-a))

def softmax(a):
    e = np.exp(a - np.max(a, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)

def predict(network, x):
    W1, W2, W3 = network["W1"], network["W2"], network["W3"]
    b1, b2, b3 = network["b1"], network["b2"], network["b3"]
    z1 = sigmoid(x @ W1 + b1)
    z2 = sigmoid(z1 @ W2 + b2)
    return softmax(z2 @ W3 + b3)

correct = 0
for i in range(0, len(x), 100):
    p = np.argmax(predict(network, x[i : i + 100]), axis=1)
    correct += np.sum(p == t[i : i + 100])
print("Accuracy:" + str(float(correct) / len(x)))
"""
"""The book's flow (ch. 3, ``neuralnet_mnist_batch.py``), reading the gz files directly as
its ``dataset/mnist.py`` does on a first run: gz to NumPy, ``pickle.load`` of the weights,
batches of 100, sigmoid, sigmoid, softmax."""

TORCH_SCRIPT = """\
import gzip, pickle, sys
import numpy as np
import torch

def load(path, offset):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)

folder, weights = sys.argv[1], sys.argv[2]
x = torch.from_numpy(load(f"{folder}/t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784).copy())
t = torch.from_numpy(load(f"{folder}/t10k-labels-idx1-ubyte.gz", 8).astype(np.int64))
with open(weights, "rb") as f:
    w = {k: torch.from_numpy(v) for k, v in pickle.load(f).items()}
with torch.inference_mode():
    a = x.to(torch.float32) / 255.0
    a = torch.sigmoid(torch.addmm(w["b1"], a, w["W1"]))
    a = torch.sigmoid(torch.addmm(w["b2"], a, w["W2"]))
    y = torch.softmax(torch.addmm(w["b3"], a, w["W3"]), dim=1)
    correct = int((y.argmax(dim=1) == t).sum())
print("Accuracy:" + str(correct / len(t)))
"""
"""The same job as a PyTorch user writes it: the whole split at once under
``inference_mode``."""


@dataclass
class Command:
    """One whole process to time: its arguments, and what it must print last."""

    name: str
    argv: list[str]
    expected: str | None
    """The last line of its output (``Accuracy:...``); ``None``: not checked."""
    fresh_cache: bool = False
    """A new, empty xpnet cache folder for every run (the cold case)."""
    times: list[float] = field(default_factory=list)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--weights", required=True, help="the book's sample_weight.pkl")
    parser.add_argument("--data-dir", required=True, help="folder of the MNIST t10k gz files")
    parser.add_argument("--rounds", type=int, default=15, help="(default: 15)")
    parser.add_argument("--no-torch", action="store_true", help="leave the PyTorch peer out")
    parser.add_argument(
        "--before",
        action="store_true",
        help="for a checkout from before issue 27: no --engine row, and the bundled weights' "
        "rows get --data-dir (no test split shipped in the package then)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="xpnet-e2e-") as scratch:
        results = run(args, Path(scratch))
    print_results(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def run(args: argparse.Namespace, scratch: Path) -> dict:
    python = sys.executable
    (scratch / "book.py").write_text(BOOK_SCRIPT)
    (scratch / "torch_peer.py").write_text(TORCH_SCRIPT)
    weights, data = str(Path(args.weights).resolve()), str(Path(args.data_dir).resolve())
    book_line = "Accuracy:0.9352"
    infer = [python, "-m", "xpnet", "infer"]
    bundled_line = f"Accuracy:{_bundled_accuracy()}"
    bundled = [*infer, "--data-dir", data] if args.before else infer
    commands = [
        Command("book script", [python, str(scratch / "book.py"), data, weights], book_line),
        Command(
            "xpnet infer --weights PKL --data-dir DIR, warm",
            [*infer, "--weights", weights, "--data-dir", data],
            book_line,
        ),
        Command("xpnet infer (bundled weights, shipped data), warm", bundled, bundled_line),
        Command(
            "xpnet infer --weights PKL --data-dir DIR, cold",
            [*infer, "--weights", weights, "--data-dir", data],
            book_line,
            fresh_cache=True,
        ),
        Command(
            "xpnet infer (bundled weights, shipped data), cold",
            bundled,
            bundled_line,
            fresh_cache=True,
        ),
        Command(
            "xpnet infer --weights PKL --engine onnxruntime, warm",
            [*infer, "--weights", weights, "--data-dir", data, "--engine", "onnxruntime"],
            book_line,
        ),
    ]
    if args.before:
        commands.pop()  # no --engine before issue 27
    if not args.no_torch and _has("torch"):
        commands.append(
            Command(
                "PyTorch script", [python, str(scratch / "torch_peer.py"), data, weights], book_line
            )
        )
    imports = [
        Command("python -c 'import numpy'", [python, "-c", "import numpy"], None),
        Command("python -c 'import xpnet'", [python, "-c", "import xpnet"], None),
        Command(
            "python -c 'import xpnet.inference'", [python, "-c", "import xpnet.inference"], None
        ),
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHECKOUT), env.get("PYTHONPATH")]))
    env.pop("XPNET_DATA_DIR", None)  # "shipped data" means no folder named
    env.pop("XPNET_ENGINE", None)
    # Bytecode as an installed package has it (pip compiles it on install): written once,
    # away from the checkout, whatever PYTHONDONTWRITEBYTECODE the caller's shell sets.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(scratch / "bytecode")
    warm_cache = scratch / "warm cache"
    for command in commands + imports:  # fill the warm cache and the bytecode, untimed
        _time(command, {**env, "XPNET_CACHE_DIR": str(warm_cache)}, check=True)
    for group in (commands, imports):
        for round_number in range(args.rounds):
            shift = round_number % len(group)
            for command in group[shift:] + group[:shift]:
                cache = (
                    scratch / f"cold {round_number} {id(command)}"
                    if command.fresh_cache
                    else warm_cache
                )
                command.times.append(_time(command, {**env, "XPNET_CACHE_DIR": str(cache)}))
    book, numpy_import = commands[0], imports[0]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "rounds": args.rounds,
        "commands": [_summary(c, book) for c in commands],
        "imports": [_summary(c, numpy_import, difference=True) for c in imports],
    }


def _time(command: Command, env: dict[str, str], *, check: bool = True) -> float:
    start = time.perf_counter()
    done = subprocess.run(command.argv, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{command.name} failed ({done.returncode}): {done.stderr[-500:]}")
    last = (done.stdout.strip().splitlines() or [""])[-1]
    if check and command.expected is not None and last != command.expected:
        raise SystemExit(f"{command.name} printed {last!r}, not {command.expected!r}")
    return seconds


def _summary(command: Command, peer: Command, *, difference: bool = False) -> dict:
    pairs = list(zip(command.times, peer.times, strict=True))
    summary = {
        "name": command.name,
        "median_s": statistics.median(command.times),
        "min_s": min(command.times),
        "paired_ratio": statistics.median(a / b for a, b in pairs),
        "ratio_quartiles": _quartiles([a / b for a, b in pairs]),
    }
    if difference:
        summary["paired_difference_ms"] = statistics.median(1e3 * (a - b) for a, b in pairs)
    return summary


def _quartiles(values: list[float]) -> list[float]:
    if len(values) < 2:
        return [values[0], values[0]] if values else []
    q = statistics.quantiles(values, n=4)
    return [q[0], q[2]]


def print_results(results: dict) -> None:
    print(
        f"{results['date']}, Python {results['python']}, {results['cpus']} CPUs, "
        f"{results['rounds']} rounds, load average at the end {results['load_average']}"
    )
    print("| command | median s | x book script (paired median; quartiles) |")
    print("| --- | --- | --- |")
    for row in results["commands"]:
        q = row["ratio_quartiles"]
        print(
            f"| {row['name']} | {row['median_s']:.3f} | {row['paired_ratio']:.2f} "
            f"({q[0]:.2f}-{q[1]:.2f}) |"
        )
    print("| import | median s | minus `import numpy`, paired median |")
    print("| --- | --- | --- |")
    for row in results["imports"]:
        print(f"| {row['name']} | {row['median_s']:.3f} | {row['paired_difference_ms']:+.0f} ms |")
    rows = {row["name"]: row for row in results["commands"]}
    for name, limit in (
        ("xpnet infer --weights PKL --data-dir DIR, warm", 1.2),
        ("xpnet infer (bundled weights, shipped data), warm", 1.2),
        ("xpnet infer --weights PKL --data-dir DIR, cold", 1.5),
        ("xpnet infer (bundled weights, shipped data), cold", 1.5),
    ):
        ratio = rows[name]["paired_ratio"]
        print(
            f"target {name}: within {limit}x: {'met' if ratio <= limit else 'NOT met'} "
            f"({ratio:.2f})"
        )
    extra = results["imports"][1]["paired_difference_ms"]
    print(
        f"target import xpnet within 50 ms of import numpy: "
        f"{'met' if extra <= 50 else 'NOT met'} ({extra:+.0f} ms)"
    )


def _bundled_accuracy() -> float:
    sys.path.insert(0, str(CHECKOUT))
    import xpnet

    return float(xpnet.read_weights_info(xpnet.BUNDLED_WEIGHTS)["metadata"]["test_accuracy"])


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    sys.exit(main())
