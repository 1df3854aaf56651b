"""The Python half of ``scripts/gpu_check.sh``: its probes and its running summary.

``python -m benchmarks.gpu_check probe cupy|torch|jax``
    One elementwise kernel and one matrix product on CuPy (compiled by NVRTC, run by
    cuBLAS), or one operation on PyTorch's ``cuda`` or JAX's GPU, checked against NumPy;
    prints one JSON line (``ok``, ``detail``, ``versions``) after the library's own report
    of its build (``cupy.show_config()``...). Exit status 0 when it ran. Each probe runs in
    its own process under ``timeout``, so a driver that hangs costs seconds, not the window.
``python -m benchmarks.gpu_check record RESULTS STEP STATUS SECONDS DETAIL [--outcomes F]``
    Adds a step to ``RESULTS/summary.json`` and rewrites ``RESULTS/summary.txt``, both
    replaced atomically, so whatever ends the check leaves every step before it recorded.
    With ``--outcomes``, the step's counts, its skip reasons (grouped, modules skipped at
    collection among them) and its first failures come from the lines that this module,
    loaded into pytest with ``-p benchmarks.gpu_check``, wrote as each test ended.
``python -m benchmarks.gpu_check bench-detail RESULTS``
    One line on ``RESULTS/bench.json``: cases measured, each backend's correct count.
``python -m benchmarks.gpu_check finish RESULTS MODE STATUS``
    Adds the exit status and the benchmark's table (from ``RESULTS/bench.json``).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.metadata
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

VERSIONS = (
    "numpy",
    "cupy-cuda13x",
    "cupy-cuda12x",
    "torch",
    "jax",
    "jaxlib",
    "jax-cuda13-plugin",
    "jax-cuda12-plugin",
    "array-api-compat",
    "dask",
    "onnx",
    "onnxruntime",
    "scikit-learn",
    "pytest",
)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in VERSIONS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def probe_cupy() -> str:
    import cupy
    import numpy as np

    cupy.show_config()
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((64, 32)), rng.standard_normal((32, 16))
    kernel = cupy.ElementwiseKernel("T x", "T y", "y = x * x + 1", "xpnet_probe_square")
    squared = kernel(cupy.asarray(a)).get()  # NVRTC compiles it here
    product = (cupy.asarray(a) @ cupy.asarray(b)).get()  # cuBLAS
    if not np.allclose(squared, a * a + 1) or not np.allclose(product, a @ b):
        raise AssertionError("CuPy's kernel or matrix product disagrees with NumPy")
    count = cupy.cuda.runtime.getDeviceCount()
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    name = name.decode() if isinstance(name, bytes) else name
    from cupy_backends.cuda.libs import nvrtc

    nvrtc_version = ".".join(map(str, nvrtc.getVersion()))
    return (
        f"{count} GPU(s), {name}; kernel and matrix product agree with NumPy; NVRTC {nvrtc_version}"
    )


def probe_torch() -> str:
    import torch

    print(torch.__config__.show())
    if not torch.cuda.is_available():
        raise RuntimeError(f"torch {torch.__version__} sees no CUDA device")
    x = torch.arange(12.0, device="cuda:0").reshape(3, 4)
    total = float((x @ x.T).sum().cpu())
    if total != 2580.0:  # arange(12) as 3x4 times its transpose sums to 2580
        raise AssertionError(f"torch on cuda:0 gave {total}, expected 2580")
    return (
        f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}"
    )


def probe_jax() -> str:
    import jax
    import jax.numpy as jnp

    jax.print_environment_info()
    devices = jax.devices("gpu")
    x = jax.device_put(jnp.arange(12.0).reshape(3, 4), devices[0])
    total = float(jax.jit(lambda a: (a @ a.T).sum())(x))
    if total != 2580.0:
        raise AssertionError(f"JAX on {devices[0]} gave {total}, expected 2580")
    return f"jax {jax.__version__} on {devices[0]} ({devices[0].device_kind})"


PROBES = {"cupy": probe_cupy, "torch": probe_torch, "jax": probe_jax}


def probe(framework: str) -> int:
    try:
        detail, ok = PROBES[framework](), True
    except BaseException as exc:  # what failed is the result: one line
        lines = str(exc).strip().splitlines()
        detail, ok = f"{type(exc).__name__}: {lines[0] if lines else 'no message'}", False
    sys.stdout.flush()
    print(json.dumps({"framework": framework, "ok": ok, "detail": detail}))
    return 0 if ok else 1


def pytest_runtest_logreport(report: Any) -> None:
    """pytest hook (``-p benchmarks.gpu_check``): each test's outcome, one JSON line, written
    as the test ends to ``$XPNET_GPU_CHECK_OUTCOMES``, so a step stopped by its timeout keeps
    the counts of every test before."""
    if report.when == "call" or report.outcome != "passed":
        _outcome(report.nodeid, report.outcome, report.longrepr)


def pytest_collectreport(report: Any) -> None:
    """pytest hook: a module skipped or broken at collection (a missing library), too."""
    if report.outcome != "passed":
        _outcome(report.nodeid, f"collection {report.outcome}", report.longrepr)


def _outcome(nodeid: str, outcome: str, longrepr: Any) -> None:
    path = os.environ.get("XPNET_GPU_CHECK_OUTCOMES")
    if not path:
        return
    if isinstance(longrepr, tuple):  # a skip: (file, line, reason)
        why = str(longrepr[-1]).removeprefix("Skipped: ")
    else:
        lines = str(longrepr or "").strip().splitlines()
        why = next((x for x in lines if x.startswith("E ")), lines[-1] if lines else "")
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(json.dumps({"test": nodeid, "outcome": outcome, "why": why[:300]}) + "\n")


def outcomes(path: Path) -> dict[str, Any]:
    """Counts, skip reasons (grouped, most frequent first) and the first failures."""
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    final: dict[str, dict[str, str]] = {}
    for entry in entries:  # a failed teardown after a passed call counts as a failure
        if final.get(entry["test"], {}).get("outcome") not in ("failed", "collection failed"):
            final[entry["test"]] = entry
    counts = collections.Counter(entry["outcome"] for entry in final.values())
    skipped = collections.Counter(
        f"{'module: ' if e['outcome'] == 'collection skipped' else ''}{e['why'][:150]}"
        for e in final.values()
        if e["outcome"].endswith("skipped")
    )
    failures = [
        f"{e['test']}: {e['why']}"[:300] for e in final.values() if e["outcome"].endswith("failed")
    ]
    return {
        "passed": counts["passed"],
        "failed": len(failures),
        "skipped": counts["skipped"],
        "modules_skipped": counts["collection skipped"],
        "skip_reasons": dict(skipped.most_common(8)),
        "first_failures": failures[:20],
    }


def _load(results: Path) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = json.loads((results / "summary.json").read_text())
        return loaded
    except (OSError, ValueError):
        return {"steps": []}


def _save(results: Path, summary: dict[str, Any]) -> None:
    for name, text in (
        ("summary.json", json.dumps(summary, indent=1)),
        ("summary.txt", table(summary) + "\n"),
    ):
        partial = results / f".{name}.partial"
        partial.write_text(text)
        os.replace(partial, results / name)


def table(summary: dict[str, Any]) -> str:
    lines = [f"xpnet gpu_check, {summary.get('mode', '?')}, {summary.get('date', '')}"]
    lines.append(f"{'step':<13} {'status':<12} {'seconds':>7}  detail")
    for step in summary["steps"]:
        lines.append(
            f"{step['step']:<13} {step['status']:<12} {step['seconds']:>7}  {step['detail']}"
        )
        for reason, count in step.get("skip_reasons", {}).items():
            lines.append(f"{'':<13} {'':<12} {'':>7}    skipped {count}: {reason[:110]}")
        for failure in step.get("first_failures", [])[:5]:
            lines.append(f"{'':<13} {'':<12} {'':>7}    FAILED {failure[:120]}")
    if "bench_table" in summary:
        lines += ["", summary["bench_table"]]
    if "exit_status" in summary:
        lines.append(f"exit status {summary['exit_status']}: {summary['verdict']}")
    return "\n".join(lines)


def record(args: argparse.Namespace) -> int:
    results = Path(args.results)
    summary = _load(results)
    summary.setdefault("mode", args.mode)
    summary.setdefault("date", args.date)
    summary.setdefault("versions", versions())
    step: dict[str, Any] = {
        "step": args.step,
        "status": args.status,
        "seconds": args.seconds,
        "detail": args.detail,
    }
    if args.outcomes:
        try:
            counts = outcomes(Path(args.outcomes))
        except (OSError, ValueError) as exc:
            step["detail"] = f"no test outcomes ({type(exc).__name__}); {args.detail}"
        else:
            step.update(counts)
            step["detail"] = (
                f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} "
                f"skipped, {counts['modules_skipped']} modules skipped; {args.detail}"
            )
    summary["steps"].append(step)
    _save(results, summary)
    print(f"gpu_check [{summary['mode']}]: {args.step}: {args.status} ({step['detail']})")
    return 0


VERDICTS = {
    0: "every step passed",
    1: "a step failed or timed out",
    2: "something the check needs is missing",
}


def finish(args: argparse.Namespace) -> int:
    results = Path(args.results)
    summary = _load(results)
    summary.setdefault("mode", args.mode)
    bench = results / "bench.json"
    if bench.is_file():
        from benchmarks.gpu_window import table as bench_table

        try:
            summary["bench_table"] = bench_table(json.loads(bench.read_text()))
        except (ValueError, KeyError) as exc:
            summary["bench_table"] = f"bench.json unreadable: {exc}"
    summary["exit_status"] = args.status
    summary["verdict"] = VERDICTS.get(args.status, "?")
    _save(results, summary)
    print(table(summary))
    return 0


def bench_detail(results: Path) -> str:
    try:
        bench = json.loads((results / "bench.json").read_text())
    except (OSError, ValueError) as exc:
        return f"no bench.json ({type(exc).__name__})"
    measured = sum(case.get("status") == "measured" for case in bench["cases"])
    books = [f"{name} {info.get('correct', 'absent')}" for name, info in bench["backends"].items()]
    return f"{measured} of {len(bench['cases'])} cases measured; correct: {', '.join(books)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("probe")
    p.add_argument("framework", choices=sorted(PROBES))
    r = commands.add_parser("record")
    for name in ("results", "step", "status"):
        r.add_argument(name)
    r.add_argument("seconds", type=int)
    r.add_argument("detail")
    r.add_argument("--outcomes", help="the JSON lines this module's pytest hooks wrote")
    r.add_argument("--mode", default="?")
    r.add_argument("--date", default="")
    f = commands.add_parser("finish")
    f.add_argument("results")
    f.add_argument("mode")
    f.add_argument("status", type=int)
    d = commands.add_parser("bench-detail")
    d.add_argument("results")
    args = parser.parse_args(argv)
    if args.command == "bench-detail":
        print(bench_detail(Path(args.results)))
        return 0
    if args.command == "probe":
        return probe(args.framework)
    return record(args) if args.command == "record" else finish(args)


if __name__ == "__main__":
    sys.exit(main())
