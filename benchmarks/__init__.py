"""xpnet's benchmarks, kept outside the installed package: run from a checkout.

``scripts/benchmark.py`` times xpnet against its peers (:mod:`benchmarks.cli`): the
machine's own limits (:mod:`benchmarks.machine`), the contenders (:mod:`benchmarks.peers`),
the timing loop (:mod:`benchmarks.timing`), the table, JSON and chart
(:mod:`benchmarks.report`) and streaming from disk (:mod:`benchmarks.stream`).
``scripts/dask_benchmark.py`` times dask against NumPy (:mod:`benchmarks.dask_throughput`).
The standalone scripts beside them (``onnxruntime_settings.py``,
``old_engine_vs_onnxruntime.py``, ``importers_mnist.py``) run on their own. Their tests:
``nox -s benchmarks`` (``pytest benchmarks``).
"""
