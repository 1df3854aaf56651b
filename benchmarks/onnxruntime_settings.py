"""ONNX Runtime's settings for xpnet's NumPy engine, measured in one interleaved run.

Intra-op threads (0: one per physical core, 1, 2) and spinning on or off, Gemm against
MatMul+Add, and raw uint8 pixels converted by an in-graph Cast or by NumPy first; each
timed after 0.3 s pauses and back to back (a call right after the same call).

    XPNET_DATA_DIR=... XPNET_BOOK_WEIGHTS=... python benchmarks/onnxruntime_settings.py 41

(the argument: rounds). Figures and the choices made from them: docs/performance.md.
"""

import os
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort
from onnx import helper

import xpnet
from xpnet.datasets import load_mnist
from xpnet.onnx_export import onnx_model

net = xpnet.load_weights(os.environ["XPNET_BOOK_WEIGHTS"])
pixels, t = load_mnist(
    normalize=False, split="test", data_dir=os.environ["XPNET_DATA_DIR"], download=False
)
x = pixels.astype(np.float32) / np.float32(255)
rawnet = net.scale_input(1 / 255)


def session(model, threads, spin):
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), o, providers=["CPUExecutionProvider"])


def matmul_add(model):
    g = model.graph
    nodes = []
    for n in g.node:
        if n.op_type == "Gemm":
            nodes += [
                helper.make_node("MatMul", n.input[:2], [n.output[0] + "_mm"]),
                helper.make_node("Add", [n.output[0] + "_mm", n.input[2]], [n.output[0]]),
            ]
        else:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    return model


variants = {}
lab = onnx_model(net, labels=True)
for th in (0, 1, 2):
    for spin in (True, False):
        s = session(lab, th, spin)
        variants[f"gemm f32 threads={th} spin={int(spin)}"] = lambda s=s: s.run(None, {"input": x})[
            0
        ]
s = session(matmul_add(onnx_model(net, labels=True)), 0, True)
variants["matmul+add f32 threads=0 spin=1"] = lambda s=s: s.run(None, {"input": x})[0]
s = session(onnx_model(rawnet, labels=True, input_dtype=np.uint8), 0, True)
variants["uint8 Cast in graph threads=0 spin=1"] = lambda s=s: s.run(None, {"input": pixels})[0]
s2 = session(onnx_model(rawnet, labels=True), 0, True)
variants["uint8 NumPy astype threads=0 spin=1"] = lambda s=s2: s.run(
    None, {"input": pixels.astype(np.float32)}
)[0]
s3 = session(onnx_model(rawnet, labels=True, input_dtype=np.uint8), 2, False)
variants["uint8 Cast in graph threads=2 spin=0"] = lambda s=s3: s.run(None, {"input": pixels})[0]
s4 = session(onnx_model(rawnet, labels=True), 2, False)
variants["uint8 NumPy astype threads=2 spin=0"] = lambda s=s4: s.run(
    None, {"input": pixels.astype(np.float32)}
)[0]

for name, f in variants.items():
    for _ in range(2):
        assert (f() == t).sum() == 9352, name
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
out = {}
for pause in (0.3, 0.0):
    samples = {k: [] for k in variants}
    names = list(variants)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for k in order:
            if pause:
                time.sleep(pause)
                st = time.perf_counter()
                variants[k]()
                samples[k].append(time.perf_counter() - st)
            else:  # back to back: the same call repeated, the first of the run untimed
                variants[k]()
                for _ in range(3):
                    st = time.perf_counter()
                    variants[k]()
                    samples[k].append(time.perf_counter() - st)
    out[pause] = {k: statistics.median(v) * 1e3 for k, v in samples.items()}
for k in variants:
    print(f"{k:40s} pause0.3 {out[0.3][k]:7.2f} ms   b2b {out[0.0][k]:7.2f} ms")
