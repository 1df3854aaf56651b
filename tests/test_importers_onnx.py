"""ONNX: graphs written by skl2onnx and torch.onnx.export from models trained here, graphs of
each admitted form built from a trained model's weights, and graphs xpnet must refuse."""

from __future__ import annotations

import numpy as np
import pytest
from importing import check_agreement, device_of, digits, quiet_fit

import xpnet
from xpnet.backends import backend_of
from xpnet.errors import NetworkError, WeightsError

onnx = pytest.importorskip("onnx", reason="onnx is not installed (xpnet[onnx])")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

sklearn_mlp = pytest.importorskip("sklearn.neural_network", reason="scikit-learn is not installed")


@pytest.fixture(scope="module")
def mlp():
    x, t = digits()
    model = sklearn_mlp.MLPClassifier(hidden_layer_sizes=(20,), max_iter=20, random_state=0)
    return quiet_fit(model, x, t)


def _expected(model, x):  # type: ignore[no-untyped-def]
    return model.predict_proba(x), np.searchsorted(model.classes_, model.predict(x))


@pytest.mark.parametrize("zipmap", [False, True])
def test_skl2onnx_graph_matches_sklearn(mlp, backend, tmp_path, zipmap):
    skl2onnx = pytest.importorskip("skl2onnx", reason="skl2onnx is not installed")
    x, _ = digits()
    model = skl2onnx.to_onnx(mlp, x[:1], options={"zipmap": zipmap})
    path = tmp_path / "mlp.onnx"
    onnx.save(model, path)
    network = xpnet.load_weights(path, backend=backend.name, device=device_of(backend))
    assert network.activations == ("relu", "softmax")
    assert str(network.dtype).endswith("float32")
    check_agreement(network, backend, x, *_expected(mlp, x))


@pytest.mark.parametrize("dynamo", [False, True])
def test_torch_export_matches_torch(backend, tmp_path, dynamo):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript")
    x, t = digits()
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 24), torch.nn.Tanh(), torch.nn.Linear(24, 10)
    )
    optimizer = torch.optim.Adam(module.parameters(), lr=0.01)
    images, labels = torch.from_numpy(x).reshape(-1, 8, 8), torch.from_numpy(t)
    for _ in range(30):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(module(images), labels).backward()
        optimizer.step()
    module.eval()
    path = tmp_path / "torch.onnx"
    sample = (images[:2],)
    if dynamo:  # writes the weights beside the model, as external data
        torch.onnx.export(
            module, sample, path, dynamo=True, dynamic_shapes=({0: torch.export.Dim("n")},)
        )
    else:
        torch.onnx.export(
            module, sample, path, dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "n"}}
        )
    network = xpnet.load_weights(path, backend=backend.name, device=device_of(backend))
    assert network.activations == ("tanh", "identity")
    with torch.no_grad():
        logits = module(images).numpy()
    check_agreement(network, backend, x, logits, logits.argmax(axis=1))


def _graph(nodes, initializers, *, input_shape=("n", 64), outputs=None, opset=17, extra_inputs=()):  # type: ignore[no-untyped-def]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))]
    inputs += [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1]) for name in extra_inputs]
    outs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["n"])
        if name == "label"
        else helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", None])
        for name in (outputs or [nodes[-1].output[0]])
    ]
    graph = helper.make_graph(
        nodes, "g", inputs, outs, [numpy_helper.from_array(v, k) for k, v in initializers.items()]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _weights(mlp):  # type: ignore[no-untyped-def]
    return [np.asarray(w, np.float32) for w in mlp.coefs_], [
        np.asarray(b, np.float32) for b in mlp.intercepts_
    ]


@pytest.mark.parametrize(
    "form", ["gemm", "gemm-transB", "matmul-add", "reshape-argmax", "labels-only"]
)
@pytest.mark.parametrize("opset", [13, 21])
def test_admitted_forms_match_sklearn(mlp, backend, form, opset):
    (w1, w2), (b1, b2) = _weights(mlp)
    init = {"w1": w1, "b1": b1, "w2": w2, "b2": b2}
    shape = ("n", 64)
    pre: list = []
    if form == "gemm":
        layers = [
            helper.make_node("Gemm", ["x", "w1", "b1"], ["z1"]),
            helper.make_node("Relu", ["z1"], ["h1"]),
            helper.make_node("Gemm", ["h1", "w2", "b2"], ["z2"]),
        ]
    elif form == "gemm-transB":  # PyTorch's layout: (out, in), alpha/beta folded in
        init |= {"w1": w1.T.copy() / 2, "b1": b1 * 4, "w2": w2.T.copy()}
        layers = [
            helper.make_node("Gemm", ["x", "w1", "b1"], ["z1"], transB=1, alpha=2.0, beta=0.25),
            helper.make_node("Relu", ["z1"], ["h1"]),
            helper.make_node("Gemm", ["h1", "w2", "b2"], ["z2"], transB=1),
        ]
    else:
        layers = [
            helper.make_node("MatMul", ["x0", "w1"], ["m1"]),
            helper.make_node("Add", ["b1", "m1"], ["z1"]),  # bias first: Add commutes
            helper.make_node("Relu", ["z1"], ["h1"]),
            helper.make_node("MatMul", ["h1", "w2"], ["m2"]),
            helper.make_node("Add", ["m2", "b2"], ["z2"]),
        ]
        pre = [helper.make_node("Identity", ["x"], ["x0"])]
        if form == "reshape-argmax":
            shape = ("n", 8, 8)
            init["shape"] = np.array([-1, 64], dtype=np.int64)
            pre = [helper.make_node("Reshape", ["x", "shape"], ["x0"])]
    tail = [
        helper.make_node("Softmax", ["z2"], ["p"], axis=-1),
        helper.make_node("ArgMax", ["p"], ["label"], axis=1, keepdims=0),
    ]
    outputs = ["p", "label"] if form == "reshape-argmax" else ["p"]
    nodes = pre + layers + (tail if form == "reshape-argmax" else tail[:1])
    if form == "labels-only":  # the argmax of the logits, and no probabilities out
        argmax = helper.make_node("ArgMax", ["z2"], ["label"], axis=-1, keepdims=0)
        nodes, outputs = [*pre, *layers, argmax, tail[0]], ["label"]
    model = _graph(nodes, init, input_shape=shape, outputs=outputs, opset=opset)
    onnx.checker.check_model(model)
    network = xpnet.from_onnx(model, backend=backend.name, device=device_of(backend))
    x, _ = digits()
    check_agreement(network, backend, x, *_expected(mlp, x))


def _hostile(mlp, kind):  # type: ignore[no-untyped-def]
    (w1, w2), (b1, b2) = _weights(mlp)
    init = {"w1": w1, "b1": b1, "w2": w2, "b2": b2}
    first = helper.make_node("Gemm", ["x", "w1", "b1"], ["z1"], name="dense1")
    if kind == "loop":
        body = helper.make_graph(
            [helper.make_node("Identity", ["cond"], ["cond_out"])],
            "body",
            [
                helper.make_tensor_value_info("i", TensorProto.INT64, []),
                helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            ],
            [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, [])],
        )
        init |= {"trips": np.array(3, np.int64), "go": np.array(True)}
        loop = helper.make_node("Loop", ["trips", "go"], ["z2"], name="spin", body=body)
        return _graph([first, loop], init), r"node 'spin' \(Loop\)"
    if kind == "unknown-op":
        node = helper.make_node("LeakyRelu", ["z1"], ["h1"], name="leaky")
        return _graph([first, node], init), r"node 'leaky' \(LeakyRelu\)"
    if kind == "mismatch":
        init["w2"] = np.zeros((19, 10), np.float32)  # layer 1 gives 20
        second = helper.make_node("Gemm", ["z1", "w2", "b2"], ["z2"])
        return _graph([first, second], init), "takes 19 inputs but layer 1 gives 20"
    if kind == "two-inputs":
        second = helper.make_node("Add", ["z1", "y"], ["z2"], name="mix")
        return _graph([first, second], init, extra_inputs=["y"]), "takes 2 inputs"
    if kind == "rank-3":
        return _graph([first], init, input_shape=("n", 8, 8)), "flatten first"
    if kind == "softmax-axis":
        node = helper.make_node("Softmax", ["z1"], ["p"], axis=0, name="sm")
        return _graph([first, node], init), "over axis 0"
    if kind == "opset":
        return _graph([first], init, opset=11), "opset 11"
    if kind == "branch":
        second = helper.make_node("Gemm", ["x", "w1", "b1"], ["z2"], name="again")
        return _graph([first, second], init, outputs=["z1", "z2"]), r"node 'again' \(Gemm\)"
    if kind == "argmax-hidden":
        argmax = helper.make_node("ArgMax", ["z1"], ["label"], axis=1, keepdims=0, name="early")
        second = helper.make_node("Gemm", ["z1", "w2", "b2"], ["z2"])
        return _graph([first, argmax, second], init, outputs=["z2", "label"]), "'early'.*inside"
    raise AssertionError(kind)


HOSTILE = [
    "loop",
    "unknown-op",
    "mismatch",
    "two-inputs",
    "rank-3",
    "softmax-axis",
    "opset",
    "branch",
]


@pytest.mark.parametrize("kind", HOSTILE)
def test_unrepresentable_graphs_are_refused_naming_the_node(mlp, tmp_path, kind):
    model, match = _hostile(mlp, kind)
    with pytest.raises(NetworkError, match=match) as info:
        xpnet.from_onnx(model)
    assert "\n" not in str(info.value)
    path = tmp_path / "hostile.onnx"
    onnx.save(model, path)
    with pytest.raises(WeightsError, match=match) as info:
        xpnet.load_weights(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_external_data_outside_the_model_folder_is_refused(mlp, tmp_path):
    (w1, _), (b1, _) = _weights(mlp)
    model = _graph([helper.make_node("Gemm", ["x", "w1", "b1"], ["z"])], {"w1": w1, "b1": b1})
    folder = tmp_path / "model"
    folder.mkdir()
    onnx.save(
        model, folder / "m.onnx", save_as_external_data=True, location="w.bin", size_threshold=0
    )
    assert xpnet.load_weights(folder / "m.onnx").sizes == (64, 20)
    (folder / "w.bin").write_bytes((folder / "w.bin").read_bytes()[:100])
    with pytest.raises(WeightsError, match="truncated"):
        xpnet.load_weights(folder / "m.onnx")
    huge = onnx.load(folder / "m.onnx", load_external_data=False)
    huge.graph.initializer[0].dims[:] = [10**7, 10**7]  # asks for 400 TB: refused unallocated
    onnx.save(huge, folder / "huge.onnx")
    with pytest.raises(WeightsError, match="needs 400000000000000 bytes but"):
        xpnet.load_weights(folder / "huge.onnx")
    entries = huge.graph.initializer[0].external_data
    keep = [(e.key, e.value) for e in entries if e.key != "length"]
    del entries[:]
    for key, value in keep:
        entry = entries.add()
        entry.key, entry.value = key, value
    onnx.save(huge, folder / "huge.onnx")
    with pytest.raises(WeightsError, match="truncated"):
        xpnet.load_weights(folder / "huge.onnx")
    tensor = model.graph.initializer[0]
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../secret"
    onnx.save(model, folder / "escape.onnx")
    with pytest.raises(WeightsError, match="not a file beside the model"):
        xpnet.load_weights(folder / "escape.onnx")


@pytest.mark.parametrize(
    "activations",
    [("sigmoid", "sigmoid", "softmax"), ("relu", "tanh", "identity"), ("tanh", "relu", "sigmoid")],
)
def test_a_network_exported_by_xpnet_round_trips_exactly(backend, tmp_path, dtype, activations):
    pytest.importorskip("onnx", reason="export_onnx needs onnx (pip install 'xpnet[onnx]')")
    network = xpnet.init_network(
        (64, 12, 9, 10), activations=activations, seed=3, dtype=dtype, backend="numpy"
    )
    network = xpnet.Network(  # non-zero biases, so a lost or misplaced bias shows
        tuple(
            xpnet.Layer(layer.weight, layer.bias + 0.25 * (number + 1), layer.activation)
            for number, layer in enumerate(network.layers)
        )
    )
    place = {"backend": backend.name, "device": backend.device_name}
    path = xpnet.export_onnx(xpnet.to_backend(network, **place), tmp_path / "n.onnx")
    back = xpnet.load_weights(path, **place)
    assert back.activations == activations and str(back.dtype).endswith(dtype)
    assert str(backend_of(back.layers[0].weight)) == str(backend_of(backend.asarray(np.zeros(1))))
    for mine, theirs in zip(network.layers, back.layers, strict=True):
        np.testing.assert_array_equal(xpnet.to_host(theirs.weight), mine.weight)
        np.testing.assert_array_equal(xpnet.to_host(theirs.bias), mine.bias)
