"""The GPU window's benchmark: xpnet's main job on CuPy, PyTorch CUDA and JAX on one GPU.

``python -m benchmarks.gpu_window --weights W --data-dir D --budget 150 --out bench.json``

For each backend (CuPy, PyTorch on ``cuda:0``, JAX on the GPU; with ``--cpu``, NumPy,
PyTorch and JAX on the CPU as a rehearsal), after checking the book's 9,352 on the MNIST
test split:

- ``host uint8``: raw pixels in host memory to the number of correct labels, the copy to
  the device counted in (``count_correct`` of ``Backend.asarray(pixels)``);
- ``resident``: the pixels already on the device to the number correct;
- for JAX also ``jax.jit`` of ``xpnet.predict_labels`` on the resident pixels, and for
  PyTorch a hand-written ``addmm`` peer (``torch native``),

each at 10,000 images (the test split) and 1,000,000 (it tiled 100 times), synchronised
and warmed up (the warm-up's count must be 9,352 per 10,000). The run is sized by time,
not by a round count: each case gets timed calls until its share of ``--budget`` seconds is
spent (at least one, at most ``--max-calls``), and a case whose warm-up shows it cannot fit
in what is left is recorded as not measured, with why. After every case the whole result so
far is written to ``--out`` (replaced atomically), so an outer timeout keeps every case
before it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import xpnet
from xpnet.backends import Backend
from xpnet.errors import BackendUnavailableError

BOOK_CORRECT = 9352
"""Test images the textbook's weights classify correctly."""

GPU_BACKENDS = (("cupy", "cuda:0"), ("torch", "cuda:0"), ("jax", "cuda:0"))
CPU_BACKENDS = (("numpy", None), ("torch", "cpu"), ("jax", "cpu"))
SIZES = (10_000, 1_000_000)


@dataclass
class Case:
    """One timed way to count the correct labels of ``rows`` images on a backend."""

    backend: str
    variant: str
    rows: int
    run: Callable[[], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="the book's sample_weight.pkl")
    parser.add_argument("--data-dir", required=True, help="folder of the MNIST test split")
    parser.add_argument("--out", required=True, help="JSON file, rewritten after every case")
    parser.add_argument("--budget", type=float, default=150.0, help="seconds for all cases")
    parser.add_argument("--max-calls", type=int, default=30, help="timed calls per case at most")
    parser.add_argument("--cpu", action="store_true", help="the CPU rehearsal's backends")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.budget
    result: dict[str, Any] = {
        "mode": "cpu rehearsal" if args.cpu else "gpu",
        "budget_seconds": args.budget,
        "book_correct": BOOK_CORRECT,
        "backends": {},
        "cases": [],
    }
    out = Path(args.out)
    network = xpnet.load_weights(args.weights)
    pixels, labels = _test_split(args.data_dir)
    _write(out, result)
    chosen = CPU_BACKENDS if args.cpu else GPU_BACKENDS
    share = args.budget / planned_cases([name for name, _ in chosen], args.sizes)
    seen: dict[tuple[str, str], tuple[int, float]] = {}  # a case's rows and seconds per call
    ready: list[tuple[Backend, xpnet.Network]] = []
    for name, device in chosen:
        try:
            backend = xpnet.get_backend(name, device)
        except BackendUnavailableError as exc:
            result["backends"][name] = {"available": False, "reason": str(exc)}
            _say(f"{name}: not available: {exc}")
            _write(out, result)
            continue
        net = xpnet.to_backend(network, backend.name, backend.device_name).scale_input(1 / 255)
        correct = xpnet.count_correct(net, backend.asarray(pixels), _labels_on(backend, labels))
        result["backends"][name] = {
            "available": True,
            "device": backend.device_name,
            "correct": correct,
            "book": correct == BOOK_CORRECT,
        }
        _say(f"{backend}: {correct} of {len(labels)} correct (book: {BOOK_CORRECT})")
        _write(out, result)
        ready.append((backend, net))
    for rows in args.sizes:  # every backend at one size before the next size
        for backend, net in ready:
            for case in _cases(backend, net, pixels, labels, rows):
                row = _measure(case, backend, deadline, share, args.max_calls, seen)
                result["cases"].append(row)
                _write(out, result)
                del case
            _release(backend)
    result["finished"] = True
    _write(out, result)
    print(table(result))
    return 0 if all(b.get("book", True) for b in result["backends"].values()) else 1


def _test_split(data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """The MNIST test split's raw pixels ``(10000, 784)`` uint8 and labels, from its files."""
    from xpnet.datasets.idx import read_idx

    folder = Path(data_dir)
    images = read_idx(folder / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    return images.reshape(len(images), -1).astype(np.uint8), labels.astype(np.int64)


def _labels_on(backend: Backend, labels: np.ndarray) -> Any:
    """Labels in the backend's default integer dtype (int32 on JAX without x64)."""
    integers = backend.xp.__array_namespace_info__().default_dtypes()["integral"]
    return backend.asarray(labels, dtype=f"int{backend.xp.iinfo(integers).bits}")


def _release(backend: Backend) -> None:
    """Give the device memory a backend's pool keeps back to the driver, for the next one."""
    backend.synchronize()
    if backend.name == "cupy":
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
    elif backend.name == "torch" and backend.device_name.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def planned_cases(names: Sequence[str], sizes: Sequence[int]) -> int:
    """How many cases a run times: two per backend and size, three for JAX and PyTorch."""
    return sum(3 if name in ("jax", "torch") else 2 for name in names) * len(sizes)


def _cases(
    backend: Backend, net: xpnet.Network, pixels: np.ndarray, labels: np.ndarray, rows: int
) -> list[Case]:
    copies = -(-rows // len(pixels))
    host = np.tile(pixels, (copies, 1))[:rows] if rows != len(pixels) else pixels
    host_t = np.tile(labels, copies)[:rows] if rows != len(labels) else labels
    t = _labels_on(backend, host_t)
    x = backend.asarray(host)

    def host_uint8() -> int:
        return xpnet.count_correct(net, backend.asarray(host), t)

    def resident() -> int:
        return xpnet.count_correct(net, x, t)

    cases = [
        Case(backend.name, "host uint8", rows, host_uint8),
        Case(backend.name, "resident", rows, resident),
    ]
    if backend.name == "jax":
        import jax

        labelled = jax.jit(lambda rows_: xpnet.predict_labels(net, rows_))
        cases.append(
            Case(
                "jax",
                "jax.jit resident",
                rows,
                lambda: int(backend.xp.count_nonzero(labelled(x) == t)),
            )
        )
    if backend.name == "torch":
        cases.append(Case("torch", "torch native resident", rows, _torch_native(net, x, t)))
    return cases


def _torch_native(net: xpnet.Network, x: Any, t: Any) -> Callable[[], int]:
    """Hand-written PyTorch for the textbook network: ``addmm`` and its activations."""
    import torch

    (w1, b1, _), (w2, b2, _), (w3, b3, _) = [(L.weight, L.bias, L.activation) for L in net.layers]

    def run() -> int:
        with torch.inference_mode():
            a = torch.sigmoid(torch.addmm(b1, x.to(w1.dtype), w1))
            a = torch.sigmoid(torch.addmm(b2, a, w2))
            return int((torch.addmm(b3, a, w3).argmax(dim=1) == t).sum())

    return run


def _measure(
    case: Case,
    backend: Backend,
    deadline: float,
    share: float,
    max_calls: int,
    seen: dict[tuple[str, str], tuple[int, float]],
) -> dict[str, Any]:
    """Warm ``case`` up (checking its count), then time calls until ``share`` seconds are
    spent or ``max_calls`` made. Not run where the warm-up and one call would pass
    ``deadline``, as estimated from the same case on fewer rows (in ``seen``)."""
    row: dict[str, Any] = {"backend": case.backend, "variant": case.variant, "rows": case.rows}
    row["device"] = backend.device_name
    expected = BOOK_CORRECT * case.rows // 10_000
    left = deadline - time.monotonic()
    smaller = seen.get((case.backend, case.variant))
    estimate = smaller[1] * case.rows / smaller[0] if smaller else 0.0
    if left <= 0 or 2 * estimate > left:
        row["status"] = "not measured"
        row["detail"] = (
            f"about {2 * estimate:.1f} s needed, {max(left, 0):.1f} s of the budget left"
            if estimate
            else "the benchmark's time budget is spent"
        )
        _say(_line(row))
        return row
    try:
        start = time.perf_counter()
        got = case.run()  # warm-up: compiles kernels, fills caches
        backend.synchronize()
        warm = time.perf_counter() - start
        row["warm_up_seconds"] = warm
        seen[case.backend, case.variant] = (case.rows, warm)
        if got != expected:
            row["status"] = "wrong"
            row["detail"] = f"{got} correct, expected {expected}"
            _say(_line(row))
            return row
        seconds: list[float] = []
        while len(seconds) < max_calls:
            left = deadline - time.monotonic()
            if seconds and (sum(seconds) >= share or left < 2 * seconds[-1]):
                break
            if not seconds and left < 1.5 * warm:
                row["status"] = "not measured"
                row["detail"] = f"its warm-up took {warm:.2f} s; {left:.1f} s of budget left"
                _say(_line(row))
                return row
            backend.synchronize()
            start = time.perf_counter()
            case.run()
            backend.synchronize()
            seconds.append(time.perf_counter() - start)
    except Exception as exc:  # a failing case is recorded, and the others still run
        row["status"] = "failed"
        row["detail"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        _say(_line(row))
        return row
    median = statistics.median(seconds)
    seen[case.backend, case.variant] = (case.rows, median)
    row.update(
        status="measured",
        calls=len(seconds),
        milliseconds=median * 1e3,
        images_per_second=case.rows / median,
    )
    _say(_line(row))
    return row


def _line(row: dict[str, Any]) -> str:
    where = f"{row['backend']} {row['variant']}, {row['rows']:,} images"
    if row.get("status") == "measured":
        return (
            f"{where}: {row['images_per_second']:.4g} images/s "
            f"({row['milliseconds']:.3g} ms, median of {row['calls']})"
        )
    return f"{where}: {row.get('status')} ({row.get('detail')})"


def table(result: dict[str, Any]) -> str:
    """One table: each backend's correct count, then images per second by case and size."""
    lines = [f"{'backend':<8} {'book 9,352':<22} {'variant':<24} {'images':>9}  images/s"]
    for name, info in result["backends"].items():
        if not info.get("available"):
            lines.append(f"{name:<8} {'absent':<22} {info.get('reason', '')[:60]}")
            continue
        verdict = "yes" if info["book"] else f"NO: {info['correct']}"
        cases = [c for c in result["cases"] if c["backend"] == name]
        for number, case in enumerate(cases):
            label = f"{verdict} ({info['device']})" if number == 0 else ""
            speed = (
                f"{case['images_per_second']:.4g}"
                if case.get("status") == "measured"
                else f"{case.get('status')}: {case.get('detail')}"
            )
            lines.append(
                f"{name if number == 0 else '':<8} {label:<22} {case['variant']:<24} "
                f"{case['rows']:>9,}  {speed}"
            )
        if not cases:
            lines.append(f"{name:<8} {verdict:<22}")
    return "\n".join(lines)


def _write(path: Path, result: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(result, indent=1))
    os.replace(partial, path)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
