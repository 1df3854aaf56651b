"""Interleaved timing: every variant once per round, medians over rounds, pauses between.

Interleaving spreads a shared machine's noise over all variants alike, so their ratios
hold even when the absolute times drift. The pause lets BLAS threads left spinning by
one variant go to sleep before the next starts (on 2 cores they starve PyTorch's).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

from xpnet.bench.variants import Variant
from xpnet.errors import XpnetError


def time_interleaved(
    variants: Sequence[Variant],
    *,
    rounds: int,
    pause: float,
    expected: int,
    on_round: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Median seconds of each variant over ``rounds``, after two warm-up runs each.

    Every warm-up result must equal ``expected`` (the number correct): a faster variant
    that loses accuracy is an error, not a result.
    """
    for variant in variants:
        for _ in range(2):
            got = variant.run()
            if got != expected:
                raise XpnetError(f"{variant.name} classified {got} correctly, expected {expected}")
    samples: dict[str, list[float]] = {v.name: [] for v in variants}
    for round_number in range(rounds):
        shift = round_number % len(variants)
        order = [*variants[shift:], *variants[:shift]]
        for variant in order:
            time.sleep(pause)
            start = time.perf_counter()
            variant.run()
            samples[variant.name].append(time.perf_counter() - start)
        if on_round is not None:
            on_round(round_number + 1)
    return {name: statistics.median(times) for name, times in samples.items()}
