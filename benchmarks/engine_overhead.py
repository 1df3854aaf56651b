"""What xpnet's NumPy engine adds around its ONNX Runtime session, measured in one run.

Back to back (after a 0.3 s pause, one untimed call, then three timed), interleaved:
``xpnet.count_correct``; the session it built, run directly and counted as the peer
counts; and hand-built peer graphs (``MatMul`` + ``Add``, the same with one inter-op
thread, ``Gemm``), all on the MNIST test split with the book's weights.

Then the per-call work alone (``count_correct`` with its session's run replaced by
handing back the run's output), timed right after a real run, which has streamed the
31 MB input through the caches, and again at once; beside it the peer's counting.

    XPNET_DATA_DIR=... XPNET_BOOK_WEIGHTS=... python benchmarks/engine_overhead.py 30

(the argument: rounds). Ratios to the peer both as medians over medians and as the median
of each call over the peer's call in the same place of the same round. Figures:
docs/performance.md.
"""

import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

import xpnet
from xpnet import _onnxruntime_engine as engine
from xpnet.datasets import load_mnist

network = xpnet.load_weights(os.environ["XPNET_BOOK_WEIGHTS"])
x, t = load_mnist(split="test", data_dir=os.environ["XPNET_DATA_DIR"])


def peer(operator: str, inter_op_threads: int = 0) -> Callable[[], int]:
    """A session of a graph built here by hand: ``operator`` is "matmul" or "gemm"."""
    nodes, weights, a = [], [], "x"
    for n, layer in enumerate(network.layers):
        weights += [
            numpy_helper.from_array(layer.weight, f"w{n}"),
            numpy_helper.from_array(layer.bias, f"b{n}"),
        ]
        if operator == "gemm":
            nodes.append(helper.make_node("Gemm", [a, f"w{n}", f"b{n}"], [f"z{n}"]))
        else:
            nodes.append(helper.make_node("MatMul", [a, f"w{n}"], [f"m{n}"]))
            nodes.append(helper.make_node("Add", [f"m{n}", f"b{n}"], [f"z{n}"]))
        a = f"z{n}"
        if n < len(network.layers) - 1:
            nodes.append(helper.make_node("Sigmoid", [a], [f"a{n}"]))
            a = f"a{n}"
    nodes.append(helper.make_node("ArgMax", [a], ["labels"], axis=1, keepdims=0))
    graph = helper.make_graph(
        nodes,
        "peer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", network.sizes[0]])],
        [helper.make_tensor_value_info("labels", TensorProto.INT64, ["rows"])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 0
    options.inter_op_num_threads = inter_op_threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return lambda: int(np.count_nonzero(session.run(None, {"x": x})[0] == t))


xpnet.count_correct(network, x, t, engine="onnxruntime")  # builds xpnet's session
own = engine._session(network, True, np.dtype(np.float32), engine.THREADS)
variants = {
    "xpnet.count_correct": lambda: xpnet.count_correct(network, x, t, engine="onnxruntime"),
    "xpnet's session, run directly": lambda: int(
        np.count_nonzero(own.run(None, {"input": x})[0] == t)
    ),
    "peer MatMul+Add": peer("matmul"),
    "peer MatMul+Add, 1 inter-op thread": peer("matmul", 1),
    "peer Gemm": peer("gemm"),
}
for run in variants.values():
    assert run() == 9352
times: dict[str, list[float]] = {name: [] for name in variants}
for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 30):
    for name, run in variants.items():
        time.sleep(0.3)
        run()
        for _ in range(3):
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
base = statistics.median(times["peer MatMul+Add"])
peer_calls = times["peer MatMul+Add"]
for name, seconds in times.items():
    median = statistics.median(seconds)
    # Each call over the peer's call of the same place in the same round: the machine's
    # drift from round to round cancels.
    paired = statistics.quantiles([a / b for a, b in zip(seconds, peer_calls)], n=4)
    print(
        f"{name:36s} {median * 1e3:7.2f} ms  x peer MatMul+Add {median / base:5.3f}"
        f"  paired {paired[1]:5.3f} (quartiles {paired[0]:5.3f}-{paired[2]:5.3f})"
    )


class Replay:
    """Stands in for the cached session: hands back the output of a real run."""

    def __init__(self, output: np.ndarray) -> None:
        self.output = output

    def run(self, names: object, feeds: object) -> list[np.ndarray]:
        return [self.output]


def after_a_run(work: Callable[[], object]) -> tuple[float, float]:
    """Median seconds of ``work`` right after a run of the real session, and again at once."""
    cold: list[float] = []
    warm: list[float] = []
    for _ in range(300):
        own.run(None, {"input": x})
        for kept in (cold, warm):
            start = time.perf_counter()
            work()
            kept.append(time.perf_counter() - start)
    return statistics.median(cold), statistics.median(warm)


output = own.run(None, {"input": x})[0]
peer_count = after_a_run(lambda: int(np.count_nonzero(output == t)))
(entry,) = engine._entries
entry[2][True, np.dtype(np.float32), engine.THREADS] = Replay(output)
xpnet_work = after_a_run(lambda: xpnet.count_correct(network, x, t, engine="onnxruntime"))
entry[2][True, np.dtype(np.float32), engine.THREADS] = own
for name, (cold, warm) in (
    ("count_correct less its session's run", xpnet_work),
    ("the peer's counting", peer_count),
):
    print(f"{name:36s} {cold * 1e6:5.0f} us right after a run, {warm * 1e6:4.0f} us again")
