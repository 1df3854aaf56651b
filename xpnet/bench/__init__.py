"""Benchmarks of xpnet's inference against its peers, measured in one interleaved run.

Used by ``xpnet bench`` (``scripts/benchmark.py``): the machine's own limits
(:mod:`~xpnet.bench.machine`), the contenders (:mod:`~xpnet.bench.variants`), the timing
loop (:mod:`~xpnet.bench.timing`) and the table, JSON and chart
(:mod:`~xpnet.bench.report`).
"""
