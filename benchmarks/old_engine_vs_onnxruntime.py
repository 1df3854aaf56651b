"""The hand-made NumPy engine that xpnet had until ONNX Runtime replaced it, against ONNX
Runtime's hand-built graph, in one interleaved run: after 0.3 s pauses and back to back.

Runs against a checkout of the commit before the replacement (ddd1925), whose xpnet has
``xpnet._numpy_fast``:

    git worktree add /tmp/xpnet-old ddd1925
    PYTHONPATH=/tmp/xpnet-old XPNET_DATA_DIR=... XPNET_BOOK_WEIGHTS=... \
        python benchmarks/old_engine_vs_onnxruntime.py 21

Figures: docs/performance.md.
"""

import importlib
import os
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import xpnet
from xpnet.datasets import load_mnist

net = xpnet.load_weights(os.environ["XPNET_BOOK_WEIGHTS"])
pixels, t = load_mnist(
    normalize=False, split="test", data_dir=os.environ["XPNET_DATA_DIR"], download=False
)
x = pixels.astype(np.float32) / np.float32(255)
raw = net.scale_input(1 / 255)


def graph(network):
    nodes, inits, a = [], [], "x"
    for i, layer in enumerate(network.layers):
        inits += [
            numpy_helper.from_array(np.ascontiguousarray(layer.weight), f"w{i}"),
            numpy_helper.from_array(np.ascontiguousarray(layer.bias), f"b{i}"),
        ]
        nodes += [
            helper.make_node("MatMul", [a, f"w{i}"], [f"m{i}"]),
            helper.make_node("Add", [f"m{i}", f"b{i}"], [f"z{i}"]),
        ]
        a = f"z{i}"
        if i < 2:
            nodes.append(helper.make_node("Sigmoid", [a], [f"a{i}"]))
            a = f"a{i}"
    nodes.append(helper.make_node("ArgMax", [a], ["labels"], axis=1, keepdims=0))
    g = helper.make_graph(
        nodes,
        "peer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 784])],
        [helper.make_tensor_value_info("labels", TensorProto.INT64, ["n"])],
        initializer=inits,
    )
    return helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8
    ).SerializeToString()


def session(spin):
    o = ort.SessionOptions()
    o.intra_op_num_threads = 0
    o.add_session_config_entry("session.intra_op.allow_spinning", spin)
    return ort.InferenceSession(graph(net), o, providers=["CPUExecutionProvider"])


s1, s0 = session("1"), session("0")
variants = {
    "old xpnet engine, float32": lambda: int(np.count_nonzero(xpnet.predict_labels(net, x) == t)),
    "old xpnet engine, uint8": lambda: xpnet.count_correct(raw, pixels, t, batch_size=len(t)),
    "onnxruntime hand-built, spinning": lambda: int(
        np.count_nonzero(s1.run(None, {"x": x})[0] == t)
    ),
    "onnxruntime hand-built, no spinning": lambda: int(
        np.count_nonzero(s0.run(None, {"x": x})[0] == t)
    ),
}
_numpy_fast = importlib.import_module("xpnet._numpy_fast")  # only in the old checkout
print("old engine sigmoid kernel:", _numpy_fast.sigmoid_kernel(np.dtype(np.float32)))
for f in variants.values():
    for _ in range(2):
        assert f() == 9352
rounds = int(sys.argv[1])
for pause, streak in ((0.3, 1), (0.0, 4)):
    samples = {k: [] for k in variants}
    names = list(variants)
    for r in range(rounds):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            time.sleep(pause)
            if streak > 1:
                variants[k]()
            for _ in range(max(1, streak - 1)):
                st = time.perf_counter()
                variants[k]()
                samples[k].append(time.perf_counter() - st)
    med = {k: statistics.median(v) * 1e3 for k, v in samples.items()}
    best = min(med["onnxruntime hand-built, spinning"], med["onnxruntime hand-built, no spinning"])
    label = "after 0.3 s pauses" if pause else "back to back"
    for k, v in med.items():
        print(f"{label:20s} {k:38s} {v:7.2f} ms  x best onnxruntime {v / best:.2f}")
