"""What this machine is and can do at best: its CPU, its sgemm rate, its copy bandwidth,
its BLAS kernel and the engine that runs xpnet's forward pass on NumPy input.

The floor of an inference is the larger of its FLOPs at the sgemm rate and its input
bytes at the copy bandwidth; every timing is reported as a multiple of it.
"""

from __future__ import annotations

import itertools
import os
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xpnet import numpy_engine


@dataclass(frozen=True)
class Machine:
    """The measured limits of this machine."""

    cpu: str
    sgemm_gflops: float
    copy_gbytes_per_second: float
    blas: str
    numpy_engine: str

    def floor_seconds(self, sizes: Sequence[int], images: int, input_bytes: int) -> float:
        """The least time for ``images`` through dense layers ``sizes``."""
        compute = flops_per_image(sizes) * images / (self.sgemm_gflops * 1e9)
        memory = input_bytes / (self.copy_gbytes_per_second * 1e9)
        return max(compute, memory)


def flops_per_image(sizes: Sequence[int]) -> int:
    """Multiply-adds of the dense layers, counted as 2 FLOPs: 90,400 for 784-50-100-10."""
    return sum(2 * fan_in * fan_out for fan_in, fan_out in itertools.pairwise(sizes))


def measure_machine(*, sgemm_size: int = 4096, copy_megabytes: int = 512) -> Machine:
    """Measure the sgemm rate (square float32 matmul) and the copy bandwidth."""
    return Machine(
        cpu=cpu_description(),
        sgemm_gflops=_sgemm_gflops(sgemm_size),
        copy_gbytes_per_second=_copy_gbytes_per_second(copy_megabytes),
        blas=blas_description(),
        numpy_engine=": ".join(numpy_engine()),
    )


def _sgemm_gflops(n: int, repeats: int = 3) -> float:
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)  # warm-up: threads started, pages touched
    seconds = statistics.median(_timed(lambda: np.matmul(a, b, out=out)) for _ in range(repeats))
    return 2 * n**3 / seconds / 1e9


def _copy_gbytes_per_second(megabytes: int, repeats: int = 5) -> float:
    source = np.ones(megabytes << 18, dtype=np.float32)
    target = np.empty_like(source)
    np.copyto(target, source)
    seconds = statistics.median(_timed(lambda: np.copyto(target, source)) for _ in range(repeats))
    return 2 * source.nbytes / seconds / 1e9  # bytes read plus bytes written


def _timed(run: object) -> float:
    start = time.perf_counter()
    run()  # type: ignore[operator]
    return time.perf_counter() - start


def blas_description() -> str:
    """The BLAS behind NumPy, as threadpoolctl names it: library, kernel, threads."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (pip install threadpoolctl to name it)"
    pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    return (
        "; ".join(
            f"{p.get('internal_api')} {p.get('version')}, kernel {p.get('architecture')}, "
            f"{p.get('num_threads')} threads"
            for p in pools
        )
        or "none found"
    )


def cpu_description() -> str:
    """The CPU's model name (Linux's ``/proc/cpuinfo``, else ``platform``) and usable cores."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            names = [
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            ]
    except OSError:
        names = []
    model = names[0] if names else platform.processor() or platform.machine() or "unknown CPU"
    return f"{model}, {usable_cores()} cores"


def usable_cores() -> int:
    """How many cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
