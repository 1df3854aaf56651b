"""Networks past the ONNX Runtime engine's limits run on the generic path, with its answer.

ONNX Runtime reads a model as one protobuf message, which holds at most 2 GiB; a larger
network used to end in protobuf's ``EncodeError``. The engine now declines it before
building any graph (:func:`xpnet._onnxruntime_engine.fits`). The limit is lowered here to
test that without 2 GB of weights, and checked against protobuf's; one test builds a real
2.1 GB network (of untouched zero pages) in a child process where memory allows.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import _onnxruntime_engine as engine

pytestmark = pytest.mark.skipif(
    engine.why_not() is not None, reason="the fast extra is not installed"
)


def _network(sizes: list[int], activations: list[str]) -> xpnet.Network:
    rng = np.random.default_rng(7)
    params = {}
    for number, (inputs, outputs) in enumerate(itertools.pairwise(sizes), start=1):
        params[f"W{number}"] = rng.normal(size=(inputs, outputs)).astype(np.float32)
        params[f"b{number}"] = rng.normal(size=outputs).astype(np.float32)
    return xpnet.Network.from_mapping(params, activations)


def test_the_engine_limit_is_within_protobufs():
    import onnx.checker

    assert 0 < engine.MAX_MODEL_BYTES <= onnx.checker.MAXIMUM_PROTOBUF


@pytest.mark.parametrize("labels", [False, True])
@pytest.mark.parametrize(
    ("sizes", "activations"),
    [
        ([784, 50, 100, 10], ["sigmoid", "sigmoid", "softmax"]),
        ([3] * 41, ["relu", "tanh", "step", "identity"] * 10),
        ([1, 1], ["softmax"]),
    ],
)
def test_the_size_the_engine_counts_bounds_the_graph_it_builds(sizes, activations, labels):
    """What :func:`fits` counts (weights and a bound per layer) is never below the size of
    the graph ONNX Runtime is given: a network it admits always serializes."""
    from xpnet.onnx_export import onnx_model

    network = _network(sizes, activations)
    counted = sum(layer.weight.nbytes + layer.bias.nbytes for layer in network.layers)
    counted += engine.LAYER_BYTES * (len(network.layers) + 1)
    for dtype in (np.float32, np.uint8):
        model = onnx_model(network, labels=labels, input_dtype=np.dtype(dtype))
        assert model.ByteSize() <= counted


def test_a_network_past_the_limit_runs_on_the_generic_path_with_the_same_answer(monkeypatch):
    network = _network([784, 50, 100, 10], ["sigmoid", "sigmoid", "softmax"])
    x = np.random.default_rng(1).random((300, 784)).astype(np.float32)
    engine_probabilities = xpnet.predict(network, x)
    engine_labels = xpnet.predict_labels(network, x)
    assert engine.accepts(network, x)

    size = sum(layer.weight.nbytes + layer.bias.nbytes for layer in network.layers)
    monkeypatch.setattr(engine, "MAX_MODEL_BYTES", size)  # the layers' share does not fit
    monkeypatch.setattr(engine, "_entries", [])

    def no_graph(*args: object) -> None:
        raise AssertionError("a graph was built for a network past the engine's limit")

    monkeypatch.setattr(engine, "_build", no_graph)
    assert not engine.accepts(network, x)
    probabilities = xpnet.predict(network, x)
    np.testing.assert_allclose(probabilities, engine_probabilities, rtol=1e-5, atol=1e-6)
    labels = xpnet.predict_labels(network, x)
    assert np.mean(labels == engine_labels) > 0.99  # near-ties may differ between kernels
    assert xpnet.count_correct(network, x, engine_labels) >= 297


_CHILD = """
import json, resource, sys
import numpy as np
import xpnet
limit = 6 << 30
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
n = 23_200  # W1 is n * n float32: 2.15 GB, past protobuf's 2 GiB
w1 = np.zeros((n, n), np.float32)  # untouched pages: no memory until written
rng = np.random.default_rng(3)
w1[0, :] = rng.normal(size=n)
w2 = rng.normal(size=(n, 10)).astype(np.float32)
b2 = rng.normal(size=10).astype(np.float32)
network = xpnet.Network.from_mapping(
    {"W1": w1, "b1": np.zeros(n, np.float32), "W2": w2, "b2": b2}, ["sigmoid", "softmax"]
)
x = np.zeros((2, n), np.float32)
x[:, 0] = [1.0, 0.5]
out = xpnet.predict(network, x)
hidden = 1 / (1 + np.exp(-(x[:, :1].astype(np.float64) * w1[0].astype(np.float64))))
z = hidden @ w2.astype(np.float64) + b2
expected = np.exp(z - z.max(axis=1, keepdims=True))
expected /= expected.sum(axis=1, keepdims=True)
print(json.dumps({"error": float(np.abs(out - expected).max())}))
"""


def _available_memory() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@pytest.mark.skipif(_available_memory() < 8 << 30, reason="needs 8 GB of free memory")
def test_a_real_network_over_2_gb_runs_with_the_right_answer():
    """2.15 GB of weights, most of them never-written zeros (which take no memory): the
    engine declines it and the generic path gives the answer computed here by hand."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1])["error"] < 1e-5
