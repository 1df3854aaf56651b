"""What the non-finite rule costs: the labels of the MNIST test split with the rule and
without it, interleaved in one run, on both routes NumPy takes.

ONNX Runtime: xpnet's labels graph, and the same graph with the rule's four nodes
(``Sub``, ``ReduceSum``, ``IsNaN``, ``Where``) taken out. The generic path:
``forward_pass.forward(..., labels=True)``, and the same layers ending in a bare argmax.

    XPNET_DATA_DIR=... XPNET_BOOK_WEIGHTS=... python benchmarks/non_finite_rule.py 60

(the argument: rounds). Each route's pair is timed apart, alternating which goes first;
prints the fastest and the median call of each, and the ratio of the rule's to the bare
one's. Figures: docs/performance.md.
"""

import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import onnxruntime

import xpnet
from xpnet.activations import ACTIVATIONS
from xpnet.datasets import load_mnist
from xpnet.forward_pass import forward
from xpnet.onnx_export import onnx_model

RULE_NODES = ("Sub", "ReduceSum", "IsNaN", "Where")

network = xpnet.load_weights(os.environ["XPNET_BOOK_WEIGHTS"])
x, _ = load_mnist(split="test", data_dir=os.environ["XPNET_DATA_DIR"])
x = x.astype(np.float32)


def session(bare: bool) -> Callable[[], np.ndarray]:
    model = onnx_model(network, labels=True)
    if bare:
        kept = [node for node in model.graph.node if node.op_type not in RULE_NODES]
        for node in kept:
            if node.op_type == "ArgMax":
                node.output[0] = "labels"
        del model.graph.node[:]
        model.graph.node.extend(kept)
        del model.graph.initializer[-2:]  # the rule's axis and -1
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    run = onnxruntime.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    ).run
    return lambda: run(None, {"input": x})[0]


def bare_generic() -> np.ndarray:
    *hidden, last = network.layers
    a = x
    for layer in hidden:
        a = ACTIVATIONS[layer.activation](a @ layer.weight + layer.bias)
    return np.argmax(a @ last.weight + last.bias, axis=-1)


pairs = {
    "ONNX Runtime": (session(bare=False), session(bare=True)),
    "generic path": (lambda: forward(network, x, labels=True), bare_generic),
}
reference = bare_generic()
assert all(np.array_equal(call(), reference) for pair in pairs.values() for call in pair)
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
for route, pair in pairs.items():  # apart: ONNX Runtime's spinning threads slow what follows
    times: list[list[float]] = [[], []]
    for number in range(rounds):
        order = (0, 1) if number % 2 else (1, 0)  # each first in half the rounds
        for which in order:
            start = time.perf_counter()
            pair[which]()
            times[which].append(time.perf_counter() - start)
    (rule, bare) = times
    print(
        f"{route:13s} the rule: fastest {min(rule) * 1e3:7.2f} ms, median "
        f"{statistics.median(rule) * 1e3:7.2f} ms; bare: fastest {min(bare) * 1e3:7.2f} ms, "
        f"median {statistics.median(bare) * 1e3:7.2f} ms; x bare {min(rule) / min(bare):.3f} "
        f"(medians {statistics.median(rule) / statistics.median(bare):.3f})"
    )
