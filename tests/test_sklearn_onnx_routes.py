"""One scikit-learn model, two routes: :func:`xpnet.from_sklearn` on the live model and
:func:`xpnet.load_weights` on the file skl2onnx writes of it give the same network (the same
arrays, bit for bit, once cast to the graph's dtype), the same outputs as scikit-learn and
the same labels; what one route refuses the other refuses too.

skl2onnx writes each kind of MLP its own way: a binary classifier as ``Sigmoid``, ``Sub``
and ``Concat`` of ``[1 - p, p]``; a multilabel one with a ``Binarizer``; a regressor with a
final ``Reshape`` (to ``[-1, 1]`` even for several outputs). Hand-made variants of those
patterns that mean something else are refused, and those that mean the same are checked
against ONNX Runtime.
"""

from __future__ import annotations

import numpy as np
import pytest
from importing import check_agreement, device_of, digits, quiet_fit

import xpnet
from xpnet.errors import NetworkError, WeightsError

onnx = pytest.importorskip("onnx", reason="onnx is not installed (xpnet[onnx])")
skl2onnx = pytest.importorskip("skl2onnx", reason="skl2onnx is not installed")
neural = pytest.importorskip("sklearn.neural_network", reason="scikit-learn is not installed")
from onnx import helper, numpy_helper  # noqa: E402


def _targets(kind: str, t: np.ndarray) -> np.ndarray:
    if kind == "multiclass":
        return t
    if kind == "binary":
        return (t >= 5).astype(np.int64)
    if kind == "binary-strings":
        return np.where(t % 2 == 1, "odd", "even")
    if kind == "multilabel":
        return np.stack([t % 2, t >= 5, t == 3], axis=1).astype(np.int64)
    if kind == "regressor":
        return t / 9.0
    if kind == "regressor-3":
        return np.stack([t / 9.0, (t % 3) / 2.0, np.cos(t)], axis=1)
    raise AssertionError(kind)


KINDS = {
    "multiclass": "relu",
    "binary": "logistic",
    "binary-strings": "tanh",
    "multilabel": "relu",
    "regressor": "tanh",
    "regressor-3": "identity",
}
"""Every kind of model from_sklearn accepts, each with another hidden activation."""


@pytest.fixture(scope="module", params=sorted(KINDS))
def fitted(request):  # type: ignore[no-untyped-def]
    kind = request.param
    x, t = digits()
    estimator = neural.MLPRegressor if kind.startswith("regressor") else neural.MLPClassifier
    model = estimator(
        hidden_layer_sizes=(16, 12), activation=KINDS[kind], max_iter=40, random_state=0
    )
    return kind, quiet_fit(model, x, _targets(kind, t))


def _graph_file(model, tmp_path, dtype, zipmap):  # type: ignore[no-untyped-def]
    x, _ = digits()
    options = {"zipmap": zipmap} if isinstance(model, neural.MLPClassifier) else None
    graph = skl2onnx.to_onnx(model, x[:1].astype(dtype), options=options)
    path = tmp_path / "model.onnx"
    onnx.save(graph, path)
    return path


def _reference(kind, model, x):  # type: ignore[no-untyped-def]
    """scikit-learn's outputs and, for single-label classifiers, label indices."""
    if kind.startswith("regressor"):
        return model.predict(x).reshape(len(x), -1), None
    if kind == "multilabel":
        return model.predict_proba(x), None
    return model.predict_proba(x), np.searchsorted(model.classes_, model.predict(x))


@pytest.mark.parametrize("graph_dtype", ["float32", "float64"])  # what skl2onnx writes
@pytest.mark.parametrize("zipmap", [False, True])
def test_both_routes_give_the_same_network_outputs_and_labels(
    fitted, backend, tmp_path, graph_dtype, zipmap
):
    kind, model = fitted
    if zipmap and kind.startswith("regressor"):
        pytest.skip("a regressor's graph has no ZipMap")
    path = _graph_file(model, tmp_path, graph_dtype, zipmap)
    device = device_of(backend)
    live = xpnet.from_sklearn(model, backend=backend.name, device=device, dtype=graph_dtype)
    from_file = xpnet.load_weights(path, backend=backend.name, device=device)
    assert from_file.sizes == live.sizes and from_file.activations == live.activations
    for ours, theirs in zip(from_file.layers, live.layers, strict=True):
        np.testing.assert_array_equal(xpnet.to_host(ours.weight), xpnet.to_host(theirs.weight))
        np.testing.assert_array_equal(xpnet.to_host(ours.bias), xpnet.to_host(theirs.bias))
    x, _ = digits()
    rows = x.astype(graph_dtype)
    outputs, labels = _reference(kind, model, rows)
    check_agreement(from_file, backend, rows, outputs, labels)
    on_backend = backend.asarray(rows)
    labels_from_file = xpnet.to_host(xpnet.predict_labels(from_file, on_backend))
    assert np.array_equal(labels_from_file, xpnet.to_host(xpnet.predict_labels(live, on_backend)))


def test_a_model_refused_live_is_refused_as_a_file(tmp_path):
    """A pipeline with a scaler before the MLP: neither route drops the scaler silently."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, t = digits()
    model = quiet_fit(
        make_pipeline(
            StandardScaler(),
            neural.MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0),
        ),
        x,
        t,
    )
    with pytest.raises(NetworkError, match="Pipeline is not an MLPClassifier"):
        xpnet.from_sklearn(model)
    path = tmp_path / "pipeline.onnx"
    onnx.save(skl2onnx.to_onnx(model, x[:1], options={"zipmap": False}), path)
    with pytest.raises(WeightsError, match=r"\(Scaler\)") as info:
        xpnet.load_weights(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_a_poisson_regressor_is_refused_live_and_its_graph_too(regressor_graph):
    """scikit-learn's Poisson loss puts ``exp`` on the output, which xpnet lacks: refused
    live, and so is the same network as a graph (skl2onnx's regressor with an ``Exp``)."""
    x, t = digits()
    model = quiet_fit(
        neural.MLPRegressor(hidden_layer_sizes=(8,), loss="poisson", max_iter=5), x, t + 1.0
    )
    with pytest.raises(NetworkError, match="output activation 'exp' has no xpnet counterpart"):
        xpnet.from_sklearn(model)
    graph = _copy(regressor_graph)
    reshape = _find(graph, "Reshape")
    exp = helper.make_node("Exp", [reshape.input[0]], ["rate"], name="exp")
    reshape.input[0] = "rate"
    graph.graph.node.insert(list(graph.graph.node).index(reshape), exp)
    with pytest.raises(NetworkError, match=r"node 'exp' \(Exp\)"):
        xpnet.from_onnx(graph)


def test_a_two_label_multilabel_graph_that_computes_four_columns_is_refused_saying_why(tmp_path):
    """skl2onnx writes a multilabel classifier of two labels as if binary: its probabilities
    are ``[1 - p1, 1 - p2, p1, p2]`` (ONNX Runtime gives four columns), not the model's two.
    The live model is read; the graph, which computes something else, is refused."""
    x, t = digits()
    y = np.stack([t % 2, t >= 5], axis=1).astype(np.int64)
    model = quiet_fit(neural.MLPClassifier(hidden_layer_sizes=(8,), max_iter=20), x, y)
    assert xpnet.from_sklearn(model).sizes[-1] == 2
    graph = skl2onnx.to_onnx(model, x[:1], options={"zipmap": False})
    outputs = dict(zip([o.name for o in graph.graph.output], _run(graph, x[:5]), strict=True))
    assert outputs["probabilities"].shape == (5, 4)  # what the graph computes
    path = tmp_path / "multilabel.onnx"
    onnx.save(graph, path)
    with pytest.raises(WeightsError, match="4 columns where the classifier has 2 probabilities"):
        xpnet.load_weights(path)


# ---- hand-made variants of skl2onnx's patterns ---------------------------------------------


@pytest.fixture(scope="module")
def binary_graph():  # type: ignore[no-untyped-def]
    x, t = digits()
    model = quiet_fit(
        neural.MLPClassifier(hidden_layer_sizes=(10,), max_iter=30, random_state=1),
        x,
        (t >= 5).astype(int),
    )
    return skl2onnx.to_onnx(model, x[:1], options={"zipmap": False})


@pytest.fixture(scope="module")
def regressor_graph():  # type: ignore[no-untyped-def]
    x, t = digits()
    model = quiet_fit(
        neural.MLPRegressor(hidden_layer_sizes=(10,), max_iter=30, random_state=1),
        x,
        _targets("regressor-3", t),
    )
    return skl2onnx.to_onnx(model, x[:1])


def _copy(graph):  # type: ignore[no-untyped-def]
    copy = onnx.ModelProto()
    copy.CopyFrom(graph)
    return copy


def _find(model, op):  # type: ignore[no-untyped-def]
    return next(node for node in model.graph.node if node.op_type == op)


def _set_initializer(model, name, value) -> None:  # type: ignore[no-untyped-def]
    tensor = next(t for t in model.graph.initializer if t.name == name)
    tensor.CopyFrom(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))


def _run(model, x):  # type: ignore[no-untyped-def]
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def test_concat_of_p_then_one_minus_p_is_read_in_its_order(binary_graph):
    model = _copy(binary_graph)
    concat = _find(model, "Concat")
    concat.input[:] = list(reversed(concat.input))  # [p, 1 - p]: classes swapped
    x, _ = digits()
    outputs = dict(zip([o.name for o in model.graph.output], _run(model, x), strict=True))
    network = xpnet.from_onnx(model)
    np.testing.assert_allclose(xpnet.predict(network, x), outputs["probabilities"], atol=1e-6)
    assert np.array_equal(xpnet.predict_labels(network, x), outputs["label"])
    straight = xpnet.from_onnx(binary_graph)
    np.testing.assert_array_equal(network.layers[-1].weight, straight.layers[-1].weight[:, ::-1])


def _insert_after(model, op, node) -> None:  # type: ignore[no-untyped-def]
    at = [n.op_type for n in model.graph.node].index(op)
    model.graph.node.insert(at + 1, node)


def _mutate_binary(model, kind: str) -> str:  # type: ignore[no-untyped-def]
    """Change skl2onnx's binary graph into one that means something else; the refusal."""
    sub, concat = _find(model, "Sub"), _find(model, "Concat")
    if kind == "two-minus-p":
        _set_initializer(model, sub.input[0], 2.0)
        return "a Sub only as 1 - p"
    if kind == "p-minus-one":
        sub.input[:] = list(reversed(sub.input))
        return "a Sub only as 1 - p"
    if kind == "ones-of-two":
        _set_initializer(model, sub.input[0], [[1.0, 1.0]])
        return "a Sub only as 1 - p"
    if kind == "concat-rows":
        concat.ClearField("attribute")
        concat.attribute.append(helper.make_attribute("axis", 0))
        return "does not join"
    if kind == "concat-three":
        concat.input.append(concat.input[1])
        return "does not join"
    if kind == "concat-other":
        concat.input[0] = concat.input[1]
        return "not \\[1 - p, p\\]"
    if kind == "between":
        _insert_after(model, "Sub", helper.make_node("Identity", [sub.output[0]], ["extra"]))
        return "comes between a Sub"
    if kind == "no-concat":
        model.graph.node.remove(concat)
        return "comes between a Sub|feeds no Concat"
    if kind == "sub-of-softmax":
        _find(model, "Sigmoid").op_type = "Softmax"
        return "a Sub only as 1 - p"
    if kind == "argmax-of-p":
        tap = helper.make_node("ArgMax", [sub.input[1]], ["early"], axis=1, keepdims=0)
        model.graph.node.insert([n.op_type for n in model.graph.node].index("Sub"), tap)
        model.graph.output.append(helper.make_tensor_value_info("early", 7, [None]))
        return "inside the network"
    raise AssertionError(kind)


BINARY_MUTATIONS = [
    "two-minus-p",
    "p-minus-one",
    "ones-of-two",
    "concat-rows",
    "concat-three",
    "concat-other",
    "between",
    "no-concat",
    "sub-of-softmax",
    "argmax-of-p",
]


@pytest.mark.parametrize("kind", BINARY_MUTATIONS)
def test_variants_of_the_binary_pattern_that_mean_something_else_are_refused(
    binary_graph, tmp_path, kind
):
    model = _copy(binary_graph)
    match = _mutate_binary(model, kind)
    with pytest.raises(NetworkError, match=match) as info:
        xpnet.from_onnx(model)
    assert "\n" not in str(info.value)
    path = tmp_path / "variant.onnx"
    onnx.save(model, path)
    with pytest.raises(WeightsError, match=match):
        xpnet.load_weights(path)


def test_a_final_reshape_one_output_per_row_is_read_as_rows_of_outputs(regressor_graph):
    """skl2onnx lays a 3-output regressor's outputs one per row, ``(3N, 1)``: the same
    values in the same order as the ``(N, 3)`` that xpnet (and scikit-learn) give."""
    x, _ = digits()
    (flat,) = _run(regressor_graph, x)
    network = xpnet.from_onnx(regressor_graph)
    assert flat.shape == (3 * len(x), 1) and network.sizes[-1] == 3
    np.testing.assert_allclose(xpnet.predict(network, x), flat.reshape(len(x), 3), atol=1e-5)


@pytest.mark.parametrize(
    ("shape", "after", "match"),
    [
        ([1, -1], None, r"reshapes the \(3 wide\) output to \[1, -1\]"),
        ([-1, 2], None, r"reshapes the \(3 wide\) output to \[-1, 2\]"),
        ([-1, 3, 1], None, "reshapes"),
        ([-1, 1], "Relu", "follows node .* which lays the outputs one per row"),
        ([-1, 1], "ArgMax", "follows node .* which lays the outputs one per row"),
    ],
)
def test_a_final_reshape_that_changes_the_rows_is_refused(regressor_graph, shape, after, match):
    model = _copy(regressor_graph)
    reshape = _find(model, "Reshape")
    target = next(t for t in model.graph.initializer if t.name == reshape.input[1])
    target.CopyFrom(numpy_helper.from_array(np.array(shape, np.int64), target.name))
    if after is not None:
        old = reshape.output[0]
        reshape.output[0] = "reshaped"
        axis = {"axis": 1} if after == "ArgMax" else {}
        model.graph.node.append(helper.make_node(after, ["reshaped"], [old], **axis))
    with pytest.raises(NetworkError, match=match):
        xpnet.from_onnx(model)
