"""Interleaved timing: every variant in turn each round, medians over rounds.

Interleaving spreads a shared machine's noise over all variants alike, so their ratios
hold even when the absolute times drift. Two regimes: after a pause (each variant called
once, its threads asleep, as a program that classifies now and then), and back to back
(each variant called several times in a row, as a program that classifies in a loop).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

from benchmarks.peers import Variant
from xpnet.errors import XpnetError


def time_interleaved(
    variants: Sequence[Variant],
    *,
    rounds: int,
    pause: float,
    expected: int,
    streak: int = 1,
    on_round: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Median seconds of each variant over ``rounds``, after two warm-up runs each.

    Each round, each variant waits ``pause`` seconds and then runs ``streak`` times in a
    row; with ``streak`` above 1 the first run of each streak is not timed, so the times
    are those of calls right after the same call. Every warm-up result must equal
    ``expected`` (the number correct): a faster variant that loses accuracy is an error,
    not a result.
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
            if streak > 1:
                variant.run()
            for _ in range(max(1, streak - 1)):
                start = time.perf_counter()
                variant.run()
                samples[variant.name].append(time.perf_counter() - start)
        if on_round is not None:
            on_round(round_number + 1)
    return {name: statistics.median(times) for name, times in samples.items()}
