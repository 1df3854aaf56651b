"""The ONNX exporter and the NumPy engine that runs its graph in ONNX Runtime."""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
import threading

import numpy as np
import pytest
from realdata import BOOK_CORRECT, MNIST_DIR, needs_mnist

import xpnet
from xpnet import _onnxruntime_engine as engine
from xpnet.activations import ACTIVATIONS
from xpnet.backends import to_host
from xpnet.forward_pass import forward as generic_forward
from xpnet.onnx_export import IR_VERSION, OPSET, onnx_model

onnx = pytest.importorskip("onnx", reason="the exporter needs onnx (extra fast)")
ort = pytest.importorskip("onnxruntime", reason="the engine needs onnxruntime (extra fast)")


@pytest.fixture(autouse=True)
def on_the_engine(monkeypatch) -> None:
    """NumPy input runs in ONNX Runtime here whatever its size (``auto`` would give small
    inputs to the array-API code): the tests below are of that engine."""
    monkeypatch.setenv("XPNET_ENGINE", "onnxruntime")


@pytest.fixture
def builds(monkeypatch) -> list[tuple]:
    """The sessions the engine builds in this test, one entry each; the cache starts empty."""
    monkeypatch.setattr(engine, "_entries", [])
    built: list[tuple] = []
    real = engine._build

    def counting(network, labels, fed, threads):
        built.append((labels, np.dtype(fed), threads))
        return real(network, labels, fed, threads)

    monkeypatch.setattr(engine, "_build", counting)
    return built


def random_network(activations, dtype="float64", sizes=(30, 16, 12, 7, 5), seed=0):
    sizes = sizes[: len(activations) + 1]
    return xpnet.init_network(sizes, activations=activations, seed=seed, dtype=dtype)


def generic(network, x, *, labels):
    return generic_forward(network, x, labels=labels)


def book_labels(params: dict, x: np.ndarray) -> np.ndarray:
    """The textbook's own ``predict`` (ch. 3), batched, then argmax."""

    def sigmoid(a):
        return 1 / (1 + np.exp(-a))

    a = sigmoid(x @ params["W1"] + params["b1"])
    a = sigmoid(a @ params["W2"] + params["b2"])
    y = a @ params["W3"] + params["b3"]
    e = np.exp(y - np.max(y, axis=-1, keepdims=True))
    return np.argmax(e / np.sum(e, axis=-1, keepdims=True), axis=1)


@pytest.fixture(scope="module")
def test_split():
    from xpnet.datasets import load_mnist

    return load_mnist(normalize=False, split="test", data_dir=MNIST_DIR, download=False)


# The exporter --------------------------------------------------------------------------------


@needs_mnist
def test_the_exported_file_runs_in_onnxruntime_with_xpnets_labels(
    book_weights, test_split, tmp_path
):
    network = xpnet.load_weights(book_weights)
    pixels, t = test_split
    x = pixels.astype(np.float32) / 255.0
    with pytest.raises(FileNotFoundError, match="no such folder"):
        xpnet.export_onnx(network, tmp_path / "sub" / "book.onnx")
    assert not (tmp_path / "sub").exists()  # a missing folder is not made up
    (tmp_path / "sub").mkdir()
    path = xpnet.export_onnx(network, tmp_path / "sub" / "book.onnx")
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    assert model.ir_version == IR_VERSION and model.opset_import[0].version == OPSET
    props = {p.key: p.value for p in model.metadata_props}
    assert props == {
        "xpnet_version": xpnet.__version__,
        "activations": '["sigmoid", "sigmoid", "softmax"]',
    }
    assert [n.op_type for n in model.graph.node] == ["Gemm", "Sigmoid"] * 2 + ["Gemm", "Softmax"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probabilities = session.run(None, {"input": x})[0]
    labels = np.argmax(probabilities, axis=1)
    np.testing.assert_array_equal(labels, generic(network, x, labels=True))
    assert np.count_nonzero(labels == t) == BOOK_CORRECT
    on64 = xpnet.Network(
        tuple(
            xpnet.Layer(
                layer.weight.astype(np.float64), layer.bias.astype(np.float64), layer.activation
            )
            for layer in network.layers
        )
    )
    reference = generic(on64, x.astype(np.float64), labels=False)
    assert np.max(np.abs(probabilities - reference)) < 1e-5


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "activations",
    [
        ["sigmoid", "sigmoid", "softmax"],
        ["relu", "identity"],
        ["relu", "sigmoid", "step", "softmax"],
        ["tanh", "sigmoid"],
        ["identity", "relu", "step"],
    ],
)
def test_every_activation_exports_as_xpnet_computes_it(activations, dtype, tmp_path):
    if any(a not in ACTIVATIONS for a in activations):
        pytest.skip(f"xpnet has no activation {activations} here")
    network = random_network(activations, dtype)
    x = np.random.default_rng(1).normal(size=(40, network.sizes[0])).astype(dtype)
    path = xpnet.export_onnx(network, tmp_path / "net.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": x})[0]
    assert out.dtype == np.dtype(dtype)
    expected = generic(network, x, labels=False)
    tolerance = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(out, expected, rtol=tolerance, atol=tolerance)


def test_export_from_any_backend_writes_the_same_graph(backend, tmp_path):
    network = random_network(["relu", "sigmoid", "softmax"], "float32")
    there = xpnet.to_backend(network, backend.name, backend.device_name)
    here = xpnet.export_onnx(network, tmp_path / "numpy.onnx").read_bytes()
    assert xpnet.export_onnx(there, tmp_path / "there.onnx").read_bytes() == here
    textbook = network.to_mapping()  # the textbook's dict is a network too
    assert xpnet.export_onnx(textbook, tmp_path / "dict.onnx").read_bytes() != b""


def test_export_replaces_a_file_whole_and_leaves_nothing_when_it_cannot_write(tmp_path):
    network = random_network(["sigmoid", "softmax"])
    target = tmp_path / "net.onnx"
    target.write_bytes(b"an older file")
    xpnet.export_onnx(network, target)
    onnx.checker.check_model(str(target))
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"not a folder")
    with pytest.raises(OSError):
        xpnet.export_onnx(network, blocker / "net.onnx")
    assert blocker.read_bytes() == b"not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "net.onnx"]


def test_labels_graph_skips_an_order_preserving_output_and_keeps_others():
    softmax = onnx_model(random_network(["sigmoid", "softmax"]), labels=True)
    check = ["ArgMax", "Sub", "ReduceSum", "IsNaN", "Where"]  # the non-finite rule
    assert [n.op_type for n in softmax.graph.node] == ["Gemm", "Sigmoid", "Gemm", *check]
    step = onnx_model(random_network(["sigmoid", "step"]), labels=True, input_dtype=np.uint8)
    ops = [n.op_type for n in step.graph.node]
    assert ops == ["Cast", "Gemm", "Sigmoid", "Gemm", "Greater", "Cast", *check]


def test_importing_xpnet_loads_neither_onnx_nor_onnxruntime():
    code = "import sys, xpnet; print(sorted(m for m in sys.modules if m.split('.')[0] in "
    code += "('onnx', 'onnxruntime')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# The engine ----------------------------------------------------------------------------------


@needs_mnist
def test_the_test_split_gets_the_books_answers_through_onnxruntime(
    book_weights, test_split, builds
):
    network = xpnet.load_weights(book_weights)
    pixels, t = test_split
    x = pixels.astype(np.float32) / 255.0
    labels = xpnet.predict_labels(network, x)
    assert builds == [(True, np.dtype(np.float32), 0)]
    np.testing.assert_array_equal(labels, generic(network, x, labels=True))
    params = {k: np.asarray(v) for k, v in network.to_mapping().items()}
    np.testing.assert_array_equal(labels, book_labels(params, x))
    assert xpnet.count_correct(network, x, t) == BOOK_CORRECT
    raw = network.scale_input(1 / 255)
    np.testing.assert_array_equal(xpnet.predict_labels(raw, pixels), labels)
    assert xpnet.count_correct(raw, pixels, t) == BOOK_CORRECT
    on64 = xpnet.Network(
        tuple(
            xpnet.Layer(
                layer.weight.astype(np.float64), layer.bias.astype(np.float64), layer.activation
            )
            for layer in network.layers
        )
    )
    reference = generic(on64, x.astype(np.float64), labels=False)
    probabilities = xpnet.predict(network, x)
    assert probabilities.dtype == np.float32
    assert np.max(np.abs(probabilities - reference)) < 1e-5
    in64 = xpnet.predict(on64, x.astype(np.float64))
    assert in64.dtype == np.float64 and np.max(np.abs(in64 - reference)) < 1e-12
    assert xpnet.count_correct(on64, pixels.astype(np.float64) / 255.0, t) == BOOK_CORRECT
    assert {(labels, fed) for labels, fed, _ in builds} == {
        (True, np.dtype(np.float32)),
        (False, np.dtype(np.float32)),
        (False, np.dtype(np.float64)),
        (True, np.dtype(np.float64)),
    }


def test_a_network_builds_its_session_once_and_changed_weights_get_a_new_one(builds):
    network = random_network(["sigmoid", "sigmoid", "softmax"], "float32")
    x = np.random.default_rng(2).normal(size=(50, network.sizes[0])).astype(np.float32)
    first = xpnet.predict(network, x)
    for _ in range(3):
        np.testing.assert_array_equal(xpnet.predict(network, x), first)
        np.testing.assert_array_equal(xpnet.predict(network.to_mapping(), x), first)
    assert len(builds) == 1  # the textbook dict, a new Network each call, finds it too
    weight = network.layers[0].weight
    weight[0, :] = -weight[0, :]  # changed in place: the cached session no longer fits
    again = xpnet.predict(network, x)
    assert len(builds) == 2 and not np.array_equal(again, first)
    np.testing.assert_allclose(again, generic(network, x, labels=False), rtol=1e-5, atol=1e-6)
    weight[0, :] = -weight[0, :]
    np.testing.assert_array_equal(xpnet.predict(network, x), first)
    assert len(builds) == 2  # the first session, still cached


def test_negative_zero_weights_are_not_taken_for_positive_ones(builds):
    network = random_network(["sigmoid", "identity"], "float32")
    x = np.random.default_rng(2).normal(size=(5, network.sizes[0])).astype(np.float32)
    network.layers[1].bias[:] = 1.0
    xpnet.predict(network, x)
    network.layers[1].bias[:] = 0.0
    xpnet.predict(network, x)
    network.layers[1].bias[:] = -0.0  # equal as numbers, other bits
    xpnet.predict(network, x)
    assert len(builds) == 3


def test_a_weight_is_told_apart_by_its_values_whatever_its_memory_order(builds):
    rng = np.random.default_rng(4)
    square = rng.normal(size=(6, 6)).astype(np.float32)
    bias = np.zeros(6, np.float32)
    by_columns = xpnet.Network((xpnet.Layer(np.asfortranarray(square), bias, "identity"),))
    # The transpose, laid out by rows: the very bytes of by_columns' weight, other values.
    by_rows = xpnet.Network((xpnet.Layer(np.ascontiguousarray(square.T), bias, "identity"),))
    assert by_rows.layers[0].weight.tobytes("C") == by_columns.layers[0].weight.tobytes("F")
    x = rng.normal(size=(4, 6)).astype(np.float32)
    for network in (by_columns, by_rows, by_columns):
        np.testing.assert_allclose(
            xpnet.predict(network, x), generic(network, x, labels=False), rtol=1e-5, atol=1e-6
        )
    assert len(builds) == 2
    weight = by_columns.layers[0].weight
    weight[0, 1] = -weight[0, 1]  # in place, in a Fortran-ordered array
    np.testing.assert_allclose(
        xpnet.predict(by_columns, x), generic(by_columns, x, labels=False), rtol=1e-5, atol=1e-6
    )
    assert len(builds) == 3


def test_other_inputs_and_shapes_take_the_generic_path_or_convert_as_it_does(builds):
    network = random_network(["sigmoid", "softmax"], "float32")
    rng = np.random.default_rng(3)
    ints = rng.integers(-3, 4, (20, network.sizes[0]))
    np.testing.assert_allclose(
        xpnet.predict(network, ints),
        generic(network, ints, labels=False),
        rtol=1e-5,
        atol=1e-7,
    )
    columns = np.asfortranarray(rng.normal(size=(20, network.sizes[0])).astype(np.float32))
    np.testing.assert_array_equal(
        xpnet.predict_labels(network, columns), generic(network, columns, labels=True)
    )
    assert xpnet.predict_labels(network, columns[:0]).shape == (0,)
    one = xpnet.predict(network, columns[0])  # one sample: the generic path
    assert one.shape == (network.sizes[-1],)
    half = xpnet.Network(
        tuple(
            xpnet.Layer(
                layer.weight.astype(np.float16), layer.bias.astype(np.float16), layer.activation
            )
            for layer in network.layers
        )
    )
    assert not engine.accepts(half, columns.astype(np.float16))
    assert len(builds) == 2  # probabilities (ints converted first) and labels, float32


def test_rows_beyond_a_block_are_run_block_by_block(builds, monkeypatch):
    monkeypatch.setattr(engine, "BLOCK_ROWS", 7)
    network = random_network(["relu", "softmax"], "float64")
    x = np.random.default_rng(4).normal(size=(30, network.sizes[0]))
    np.testing.assert_allclose(
        xpnet.predict(network, x), generic(network, x, labels=False), rtol=1e-12, atol=1e-14
    )
    np.testing.assert_array_equal(
        xpnet.predict_labels(network, x), generic(network, x, labels=True)
    )


def test_threads_calling_at_once_share_a_session_and_get_the_main_threads_answers(builds):
    network = random_network(["sigmoid", "sigmoid", "softmax"], "float32")
    x = np.random.default_rng(5).normal(size=(300, network.sizes[0])).astype(np.float32)
    expected = xpnet.predict_labels(network, x)
    results: list[np.ndarray] = []
    start = threading.Barrier(4)

    def work() -> None:
        start.wait()
        results.append(xpnet.predict_labels(network, x))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    for result in results:
        np.testing.assert_array_equal(result, expected)
    threads = {engine.THREADS, 1}  # the other threads run on their own
    assert sorted(b[2] for b in builds) == sorted(threads)


BITS = """
import hashlib, numpy as np, xpnet
network = xpnet.init_network((784, 50, 100, 10), seed=7)
x = np.random.default_rng(8).random((3000, 784), dtype=np.float32)
print(hashlib.sha256(xpnet.predict(network, x).tobytes()).hexdigest())
"""


def test_every_process_gives_the_same_bits():
    runs = [
        subprocess.run([sys.executable, "-c", BITS], capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    network = xpnet.init_network((784, 50, 100, 10), seed=7)
    x = np.random.default_rng(8).random((3000, 784), dtype=np.float32)
    here = hashlib.sha256(xpnet.predict(network, x).tobytes()).hexdigest()
    assert runs[0].stdout.strip() == runs[1].stdout.strip() == here


FORKED = """
import multiprocessing, numpy as np, xpnet
from xpnet import _onnxruntime_engine as engine

def child(queue, network, x):
    queue.put((len(engine._entries), xpnet.predict_labels(network, x).tolist()))

if __name__ == "__main__":
    network = xpnet.init_network((30, 12, 5), seed=1)
    x = np.random.default_rng(6).normal(size=(40, 30)).astype(np.float32)
    expected = xpnet.predict_labels(network, x).tolist()
    assert len(engine._entries) == 1
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=child, args=(queue, network, x))
    process.start()
    inherited, labels = queue.get(timeout=120)
    process.join(timeout=60)
    print(process.exitcode, inherited, labels == expected)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_builds_its_own_session(tmp_path):
    # In a fresh process of its own: other libraries' threads (JAX's) make forking unsafe.
    script = tmp_path / "forked.py"
    script.write_text(FORKED)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=True
    )
    assert done.stdout.split() == ["0", "0", "True"]  # exit 0, no inherited session, same labels


def test_a_pickled_network_carries_no_session(builds):
    network = random_network(["sigmoid", "softmax"], "float32")
    before = pickle.dumps(network)
    x = np.random.default_rng(6).normal(size=(40, network.sizes[0])).astype(np.float32)
    xpnet.predict_labels(network, x)
    after = pickle.dumps(network)
    assert after == before and b"onnxruntime" not in after and len(builds) == 1


WITHOUT = """
import sys
sys.modules["onnxruntime"] = None  # as if not installed
import numpy as np, xpnet
print(xpnet.numpy_engine())
network = xpnet.init_network((30, 12, 5), seed=1)
x = np.random.default_rng(2).normal(size=(25, 30)).astype(np.float32)
np.save(sys.argv[1], xpnet.predict(network, x))
"""


def test_without_onnxruntime_numpy_runs_the_generic_path(tmp_path, monkeypatch):
    out = tmp_path / "out.npy"
    monkeypatch.delenv("XPNET_ENGINE")
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT, str(out)], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == (
        "('auto', \"xpnet's array-API code: onnxruntime not installed "
        "(pip install 'xpnet[fast]')\")"
    )
    network = xpnet.init_network((30, 12, 5), seed=1)
    x = np.random.default_rng(2).normal(size=(25, 30)).astype(np.float32)
    np.testing.assert_array_equal(np.load(out), generic(network, x, labels=False))
    name, detail = xpnet.numpy_engine()
    assert name == "auto" and detail.startswith(f"onnxruntime {ort.__version__} for ")


@pytest.mark.needs_session("dask", reason="dask, distributed and zarr are the dask session's")
def test_dask_worker_processes_build_their_own_sessions(builds):
    da = pytest.importorskip("dask.array")
    distributed = pytest.importorskip("distributed")
    network = random_network(["sigmoid", "sigmoid", "softmax"], "float32")
    rng = np.random.default_rng(9)
    x = rng.normal(size=(400, network.sizes[0])).astype(np.float32)
    expected = xpnet.predict_labels(network, x)
    on_dask = xpnet.to_backend(network, "dask")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        labels = xpnet.predict_labels(on_dask, da.from_array(x, chunks=(100, -1)))
        np.testing.assert_array_equal(to_host(labels.compute()), expected)

        def sessions_here() -> tuple[int, int]:
            from xpnet import _onnxruntime_engine

            return os.getpid(), len(_onnxruntime_engine._entries)

        seen = client.run(sessions_here)
    assert all(pid != os.getpid() for pid, _ in seen.values())
    assert sum(count for _, count in seen.values()) >= 1


@pytest.mark.parametrize("in_graph", [False, True])
def test_raw_pixels_convert_in_numpy_or_in_the_graph_with_the_same_answers(
    in_graph, builds, monkeypatch
):
    monkeypatch.setattr(engine, "CAST_IN_GRAPH", in_graph)
    network = random_network(["sigmoid", "sigmoid", "softmax"], "float32").scale_input(1 / 255)
    pixels = np.random.default_rng(7).integers(0, 256, (60, network.sizes[0]), dtype=np.uint8)
    np.testing.assert_array_equal(
        xpnet.predict_labels(network, pixels), generic(network, pixels, labels=True)
    )
    fed = np.dtype(np.uint8 if in_graph else np.float32)
    assert builds == [(True, fed, engine.THREADS)]


# The engine switch ---------------------------------------------------------------------------


@needs_mnist
def test_each_way_to_choose_the_engine_gives_the_books_labels_image_for_image(
    book_weights, test_split, builds, monkeypatch
):
    network = xpnet.load_weights(book_weights)
    pixels, t = test_split
    x = pixels.astype(np.float32) / 255.0
    expected = book_labels({k: np.asarray(v) for k, v in network.to_mapping().items()}, x)
    monkeypatch.delenv("XPNET_ENGINE")
    by_argument = {"array-api": xpnet.predict_labels(network, x, engine="array-api")}
    assert builds == []
    by_argument["onnxruntime"] = xpnet.predict_labels(network, x, engine="onnxruntime")
    assert len(builds) == 1
    by_argument["auto"] = xpnet.predict_labels(network, x, engine="auto")  # its session is built
    for labels in by_argument.values():
        np.testing.assert_array_equal(labels, expected)
    for name in ("array-api", "onnxruntime"):
        with xpnet.use_engine(name):
            np.testing.assert_array_equal(xpnet.predict_labels(network, x), expected)
            assert xpnet.count_correct(network, x, t) == BOOK_CORRECT
        monkeypatch.setenv("XPNET_ENGINE", name)
        np.testing.assert_array_equal(xpnet.predict_labels(network, x), expected)
        assert xpnet.accuracy(network, x, t, engine=name) == BOOK_CORRECT / len(t)
    assert len(builds) == 1  # the array-API runs built nothing


def test_the_array_api_engine_runs_the_written_once_code(builds, monkeypatch):
    network = random_network(["sigmoid", "relu", "softmax"], "float32")
    x = np.random.default_rng(3).normal(size=(50, 30)).astype(np.float32)
    ran = []
    real = xpnet.inference.forward
    monkeypatch.setattr(xpnet.inference, "forward", lambda *a, **k: ran.append(1) or real(*a, **k))
    expected = generic(network, x, labels=False)
    np.testing.assert_array_equal(xpnet.predict(network, x, engine="array-api"), expected)
    assert ran and builds == []


def test_auto_weighs_the_rows_against_onnxruntimes_start_up(builds, monkeypatch):
    monkeypatch.delenv("XPNET_ENGINE")
    monkeypatch.setattr(xpnet.inference, "AUTO_ROWS", 100)
    monkeypatch.setattr(xpnet.inference, "_generic_rows", 0)
    network = random_network(["sigmoid", "softmax"], "float32")
    other = random_network(["sigmoid", "softmax"], "float32", seed=1)
    x = np.random.default_rng(4).normal(size=(100, 30)).astype(np.float32)
    assert xpnet.choose_engine(network, x[:60]) == "array-api"
    xpnet.predict_labels(network, x[:60])  # 60 rows given to the array-API code
    assert builds == [] and xpnet.inference._generic_rows == 60
    assert xpnet.choose_engine(other, x[:39]) == "array-api"
    assert xpnet.choose_engine(other, x[:40]) == "onnxruntime"  # 60 + 40: the rule's rows
    monkeypatch.setattr(xpnet.inference, "_generic_rows", 0)
    assert xpnet.choose_engine(network, x) == "onnxruntime"  # one call of 100 rows
    labels = xpnet.predict_labels(network, x)
    assert len(builds) == 1
    np.testing.assert_array_equal(labels, generic(network, x, labels=True))
    assert xpnet.choose_engine(network, x[:1]) == "onnxruntime"  # its session is built
    assert xpnet.choose_engine(other, x[:1]) == "array-api"
    assert xpnet.choose_engine(network, x[0]) == "array-api"  # one sample: no rows to run


def test_other_backends_run_the_array_api_code_whatever_the_setting(builds):
    xp = pytest.importorskip("array_api_strict")
    network = xpnet.to_backend(random_network(["sigmoid", "softmax"]), "array_api_strict")
    x = xp.asarray(np.random.default_rng(5).normal(size=(20, 30)))
    assert xpnet.choose_engine(network, x, "onnxruntime") == "array-api"
    labels = xpnet.predict_labels(network, x, engine="onnxruntime")
    assert builds == [] and labels.shape == (20,)


@pytest.mark.parametrize("where", ["argument", "context", "environment"])
def test_an_unknown_engine_is_one_line_naming_the_choices(where, monkeypatch):
    network = random_network(["softmax"])
    x = np.zeros((2, 30))
    with pytest.raises(ValueError) as info:
        if where == "argument":
            xpnet.predict(network, x, engine="numba")
        elif where == "context":
            with xpnet.use_engine("numba"):
                pass
        else:
            monkeypatch.setenv("XPNET_ENGINE", "numba")
            xpnet.predict(network, x)
    message = str(info.value)
    assert "\n" not in message and "'numba' is not an engine" in message
    assert "choose one of auto, array-api, onnxruntime" in message
    assert message.startswith("XPNET_ENGINE=" if where == "environment" else "engine=")


def test_onnxruntime_chosen_where_it_is_missing_says_so(monkeypatch):
    monkeypatch.setattr(engine, "_AVAILABLE", False)
    monkeypatch.setattr(engine, "why_not", lambda: "onnxruntime not installed (pip install x)")
    network = random_network(["softmax"])
    x = np.zeros((2, 30))
    with pytest.raises(xpnet.BackendUnavailableError, match="engine 'onnxruntime' cannot run: "):
        xpnet.predict(network, x, engine="onnxruntime")
    assert xpnet.choose_engine(network, x, "auto") == "array-api"
    reason = "cannot run: onnxruntime not installed (pip install x)"
    assert xpnet.numpy_engine() == ("onnxruntime", reason)


# The graph's bytes, written without onnx ------------------------------------------------------


def helper_model(network, *, labels, input_dtype):
    """The graph built by ``onnx.helper`` and serialized by protobuf: the reference."""
    import json

    from onnx import TensorProto, helper, numpy_helper

    dtype = network.layers[0].weight.dtype
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    source = dtype if input_dtype is None else np.dtype(input_dtype)
    nodes, weights, a = [], [], "input"
    if source != dtype:
        nodes.append(helper.make_node("Cast", ["input"], ["cast"], to=elem))
        a = "cast"
    operators = {"identity": "Identity", "sigmoid": "Sigmoid", "relu": "Relu", "tanh": "Tanh"}
    for number, layer in enumerate(network.layers, start=1):
        last = number == len(network.layers)
        weights += [
            numpy_helper.from_array(np.asarray(layer.weight), f"W{number}"),
            numpy_helper.from_array(np.asarray(layer.bias), f"b{number}"),
        ]
        z = f"z{number}"
        nodes.append(helper.make_node("Gemm", [a, f"W{number}", f"b{number}"], [z]))
        if last and labels and layer.activation in ("softmax", "identity"):
            a = z
            break
        a = "output" if last and not labels else f"a{number}"
        if layer.activation == "step":
            if not any(w.name == "zero" for w in weights):
                weights.append(numpy_helper.from_array(np.zeros((), dtype), "zero"))
            nodes.append(helper.make_node("Greater", [z, "zero"], [f"{z}_positive"]))
            nodes.append(helper.make_node("Cast", [f"{z}_positive"], [a], to=elem))
        elif layer.activation == "softmax":
            nodes.append(helper.make_node("Softmax", [z], [a], axis=-1))
        else:
            nodes.append(helper.make_node(operators[layer.activation], [z], [a]))
    if labels:  # the non-finite rule: -1 where a row's last sums z are not all finite
        weights += [
            numpy_helper.from_array(np.array([1], np.int64), "last_axis"),
            numpy_helper.from_array(np.array(-1, np.int64), "no_class"),
        ]
        nodes += [
            helper.make_node("ArgMax", [a], ["classes"], axis=1, keepdims=0),
            helper.make_node("Sub", [z, z], ["z_less_z"]),
            helper.make_node("ReduceSum", ["z_less_z", "last_axis"], ["z_check"], keepdims=0),
            helper.make_node("IsNaN", ["z_check"], ["not_finite"]),
            helper.make_node("Where", ["not_finite", "no_class", "classes"], ["labels"]),
        ]
        result = helper.make_tensor_value_info("labels", TensorProto.INT64, ["rows"])
    else:
        result = helper.make_tensor_value_info("output", elem, ["rows", network.sizes[-1]])
    inputs = helper.make_tensor_value_info(
        "input", helper.np_dtype_to_tensor_dtype(source), ["rows", network.sizes[0]]
    )
    graph = helper.make_graph(nodes, "xpnet", [inputs], [result], initializer=weights)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="xpnet",
        producer_version=xpnet.__version__,
    )
    activations = json.dumps(network.activations)
    helper.set_model_props(model, {"xpnet_version": xpnet.__version__, "activations": activations})
    return model.SerializeToString()


@pytest.mark.parametrize("labels", [False, True])
@pytest.mark.parametrize("input_dtype", [None, np.uint8, np.float64])
@pytest.mark.parametrize(
    ("activations", "dtype"),
    [
        (["sigmoid", "sigmoid", "softmax"], "float32"),
        (["relu", "step", "tanh", "identity"], "float64"),
        (["step", "step", "softmax"], "float32"),
        (["identity"], "float16"),
    ],
)
def test_the_graphs_bytes_are_those_onnx_helper_writes(activations, dtype, input_dtype, labels):
    from xpnet.onnx_export import onnx_bytes

    network = random_network(activations, dtype)
    expected = helper_model(network, labels=labels, input_dtype=input_dtype)
    assert onnx_bytes(network, labels=labels, input_dtype=input_dtype) == expected
    onnx.checker.check_model(onnx.load_from_string(expected), full_check=True)


def test_a_weight_with_negative_zero_nan_and_big_endian_bytes_is_written_as_its_values():
    from xpnet.onnx_export import onnx_bytes

    network = random_network(["sigmoid", "softmax"], "float64")
    weight = np.array(network.layers[0].weight, dtype=">f8")
    weight[0, :3] = [-0.0, np.nan, np.inf]
    first = xpnet.Layer(weight, network.layers[0].bias.astype(">f8"), "sigmoid")
    last = network.layers[1]
    second = xpnet.Layer(last.weight.astype(">f8"), last.bias.astype(">f8"), "softmax")
    model = onnx.load_from_string(onnx_bytes(xpnet.Network((first, second))))
    written = onnx.numpy_helper.to_array(model.graph.initializer[0])
    assert written.dtype == np.float64
    assert written.astype("<f8").tobytes() == weight.astype("<f8").tobytes()
