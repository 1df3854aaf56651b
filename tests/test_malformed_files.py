"""Malformed files of every format xpnet reads end in one line naming the file, never a
traceback: valid files of each format mutated every way a damaged disk, a cut download or a
hostile writer mutates them (cut at every byte, bytes flipped, inserted, deleted), metadata
nested deep, and a catalogue of malformed ONNX nodes.

A mutated file may still be a valid one (a flipped bit of a weight); what may not happen is
any exception but xpnet's own (``XpnetError``), or a message over several lines or without
the file's name. The mutations are drawn from fixed seeds, so every run tries the same files.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import random
import struct
import traceback
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from importing import save_keras
from realdata import needs_mnist

import xpnet
from xpnet.datasets.idx import idx_bytes, read_idx
from xpnet.datasets.labelled_csv import read_labelled_csv
from xpnet.errors import NetworkError, WeightsError, XpnetError
from xpnet.training_record import MAX_NESTING
from xpnet.weights import HEADER_KEY

# ---- the mutations --------------------------------------------------------------------------


def mutations(data: bytes, seed: int, count: int = 300, cuts: int = 700) -> Iterator[bytes]:
    """``data`` cut at every byte (or at ``cuts`` evenly spaced places of a longer file), then
    ``count`` copies each with a few bytes flipped, overwritten, inserted or deleted."""
    step = max(1, len(data) // cuts)
    for end in range(0, len(data), step):
        yield data[:end]
    rng = random.Random(seed)
    for _ in range(count):
        copy = bytearray(data)
        for _ in range(rng.choice((1, 1, 2, 3, 8))):
            at = rng.randrange(len(copy))
            how = rng.randrange(4)
            if how == 0:
                copy[at] ^= 1 << rng.randrange(8)
            elif how == 1:
                copy[at] = rng.randrange(256)
            elif how == 2:
                copy.insert(at, rng.randrange(256))
            elif len(copy) > 1:
                del copy[at]
        yield bytes(copy)


def escapes(read: Callable[[Path], object], path: Path, variants: Iterator[bytes]) -> list[str]:
    """Each variant written to ``path`` and read: what went wrong other than a one-line
    ``XpnetError`` naming the file (at most a few, with where they were raised)."""
    found: list[str] = []
    for number, data in enumerate(variants):
        path.write_bytes(data)
        try:
            read(path)
        except XpnetError as exc:
            message = str(exc)
            if "\n" in message or str(path) not in message:
                found.append(f"variant {number}: {type(exc).__name__} {message!r}")
        except Exception as exc:  # the failure this test exists to find
            where = traceback.extract_tb(exc.__traceback__)[-1]
            found.append(
                f"variant {number}: {type(exc).__name__}: {str(exc)[:200]} "
                f"({where.filename}:{where.lineno})"
            )
        if len(found) >= 5:
            break
    return found


# ---- one valid file of each format --------------------------------------------------------


def _network() -> xpnet.Network:
    return xpnet.init_network([6, 4, 3], activations=["relu", "softmax"], seed=2)


def _npz() -> bytes:
    buffer = io.BytesIO()
    network = _network()
    header = {
        "format": "xpnet-weights",
        "version": 1,
        "sizes": list(network.sizes),
        "activations": list(network.activations),
        "dtype": "float32",
        "metadata": {"seed": 2, "history": [{"epoch": 1, "loss": 0.5}]},
    }
    np.savez(buffer, **network.to_mapping(), **{HEADER_KEY: np.array(json.dumps(header))})
    return buffer.getvalue()


def _plain_npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **_network().to_mapping())
    return buffer.getvalue()


def _pickle(protocol: int) -> Callable[[], bytes]:
    return lambda: pickle.dumps(dict(_network().to_mapping()), protocol=protocol)


def _through_file(write: Callable[[Path], object]) -> Callable[[], bytes]:
    def make() -> bytes:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model"
            write(path)
            return path.read_bytes()

    return make


def _safetensors(path: Path) -> None:
    pytest.importorskip("safetensors", reason="safetensors is not installed")
    xpnet.save_weights(_network(), path, format="safetensors", metadata={"seed": 2})


def _onnx(path: Path) -> None:
    pytest.importorskip("onnx", reason="onnx is not installed")
    xpnet.export_onnx(_network(), path)


def _skl2onnx_binary() -> bytes:
    skl2onnx = pytest.importorskip("skl2onnx", reason="skl2onnx is not installed")
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(0)
    x = rng.random((40, 6)).astype(np.float32)
    model = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0)
    with pytest.warns(Warning):  # not converged in 3 iterations, on purpose
        model.fit(x, (x[:, 0] > 0.5).astype(int))
    return bytes(skl2onnx.to_onnx(model, x[:1]).SerializeToString())


def _weights(path: Path) -> object:
    return xpnet.load_weights(path)


WEIGHT_FORMATS: dict[str, Callable[[], bytes]] = {
    "npz": _npz,
    "plain-npz": _plain_npz,
    "pickle-2": _pickle(2),
    "pickle-4": _pickle(4),
    "pickle-5": _pickle(5),
    "safetensors": _through_file(_safetensors),
    "onnx": _through_file(_onnx),
    "onnx-skl2onnx-binary": _skl2onnx_binary,
}


@pytest.mark.parametrize("kind", sorted(WEIGHT_FORMATS))
def test_every_mutation_of_a_weights_file_is_read_or_refused_in_one_line(tmp_path, kind):
    data = WEIGHT_FORMATS[kind]()
    assert xpnet.load_weights(_write(tmp_path / "valid", data)).sizes[0] == 6
    found = escapes(_weights, tmp_path / "mutated", mutations(data, seed=len(kind)))
    assert not found, found


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _images() -> np.ndarray:
    return np.arange(2 * 5 * 4, dtype=np.uint8).reshape(2, 5, 4)


DATA_FORMATS: dict[str, tuple[Callable[[], bytes], Callable[[Path], object]]] = {
    "idx": (lambda: idx_bytes(_images()), read_idx),
    "idx-gzip": (lambda: gzip.compress(idx_bytes(_images()), mtime=0), read_idx),
    "idx-labels": (lambda: idx_bytes(np.arange(9, dtype=np.uint8)), read_idx),
    "csv": (lambda: b"0,255,7,3\n12,0,0,9\n1,2,3,4\n", read_labelled_csv),
    "csv-gzip": (
        lambda: gzip.compress(b"0,255,7,3\n12,0,0,9\n1,2,3,4\n", mtime=0),
        read_labelled_csv,
    ),
}


@pytest.mark.parametrize("kind", sorted(DATA_FORMATS))
def test_every_mutation_of_a_data_file_is_read_or_refused_in_one_line(tmp_path, kind):
    make, read = DATA_FORMATS[kind]
    data = make()
    assert np.asarray(read(_write(tmp_path / "valid", data))).size > 0
    found = escapes(read, tmp_path / "mutated", mutations(data, seed=len(kind), count=400))
    assert not found, found


@pytest.mark.parametrize("entry", ["W1.npy", f"{HEADER_KEY}.npy"])
def test_an_npz_with_an_entry_twice_is_refused(tmp_path, entry):
    """Two entries of one name: which one a reader sees depends on the reader."""
    path = tmp_path / "twice.npz"
    path.write_bytes(_npz())
    with zipfile.ZipFile(path) as archive:
        again = archive.read(entry)
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "a") as archive:
        archive.writestr(entry, again)
    with pytest.raises(WeightsError, match="is in the archive twice") as info:
        xpnet.load_weights(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def _long_layer_number(kind: str, path: Path) -> None:
    """The textbook's names, with a layer number of 5,000 digits (past what ``int`` parses)."""
    network = _network()
    arrays = dict(network.to_mapping())
    arrays["W" + "1" * 5000] = arrays.pop("W2")
    if kind == "pickle":
        path.write_bytes(pickle.dumps(arrays, protocol=4))
    elif kind == "plain-npz":
        with path.open("wb") as file:
            np.savez(file, **arrays)
    else:
        safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="needs safetensors")
        path.write_bytes(safetensors_numpy.save(arrays))


@pytest.mark.parametrize("kind", ["pickle", "plain-npz", "safetensors"])
def test_a_layer_number_of_thousands_of_digits_is_one_line(tmp_path, kind):
    path = tmp_path / "long"
    _long_layer_number(kind, path)
    with pytest.raises(WeightsError) as info:
        xpnet.load_weights(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


OTHER_FRAMEWORKS = pytest.mark.needs_session(
    "torch", "jax", reason="PyTorch and Keras files need torch or keras, which these sessions have"
)


def _torch_file() -> bytes:
    torch = pytest.importorskip("torch", reason="torch is not installed")
    network = _network()
    state = {}
    for number, layer in enumerate(network.layers):
        state[f"{2 * number}.weight"] = torch.from_numpy(np.ascontiguousarray(layer.weight.T))
        state[f"{2 * number}.bias"] = torch.from_numpy(layer.bias)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _keras_file() -> bytes:
    keras = pytest.importorskip("keras", reason="keras is not installed")

    def write(path: Path) -> None:
        model = keras.Sequential(
            [
                keras.Input((6,)),
                keras.layers.Dense(4, activation="relu"),
                keras.layers.Dense(3, activation="softmax"),
            ]
        )
        save_keras(model, path.with_suffix(".keras"))
        path.with_suffix(".keras").rename(path)

    return _through_file(write)()


def _skops_file() -> bytes:
    sio = pytest.importorskip("skops.io", reason="skops is not installed")
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(0)
    x = rng.random((30, 6))
    model = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    with pytest.warns(Warning):
        model.fit(x, np.arange(30) % 3)
    buffer = io.BytesIO()
    sio.dump(model, buffer)
    return buffer.getvalue()


@OTHER_FRAMEWORKS
@pytest.mark.parametrize(
    ("kind", "suffix"), [("torch", ".pt"), ("keras", ".keras"), ("skops", ".skops")]
)
def test_every_mutation_of_another_frameworks_file_is_read_or_refused_in_one_line(
    tmp_path, kind, suffix
):
    data = {"torch": _torch_file, "keras": _keras_file, "skops": _skops_file}[kind]()

    def read(path: Path) -> object:
        return xpnet.load_weights(path, activations="relu,softmax" if kind == "torch" else None)

    assert read(_write(tmp_path / f"valid{suffix}", data)).sizes == (6, 4, 3)
    found = escapes(read, tmp_path / f"mutated{suffix}", mutations(data, 7, count=150, cuts=200))
    assert not found, found


def _odd_tensor(torch, kind: str):  # type: ignore[no-untyped-def]
    weight = torch.randn(3, 6)
    if kind == "sparse-coo":
        return weight.to_sparse()
    if kind == "sparse-csr":
        return weight.to_sparse_csr()
    if kind == "quantized":
        return torch.quantize_per_tensor(weight, 0.1, 0, torch.qint8)
    if kind == "meta":
        return torch.empty(3, 6, device="meta")
    if kind == "nested":
        return torch.nested.nested_tensor([weight, weight])
    raise AssertionError(kind)


@OTHER_FRAMEWORKS
@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("sparse-coo", "a sparse_coo tensor, not a dense one"),
        ("sparse-csr", "a sparse_csr tensor, not a dense one"),
        ("quantized", "a quantized tensor"),
        ("meta", "a meta .data-less. tensor"),
        ("nested", "a nested tensor"),
    ],
)
def test_a_state_dict_of_tensors_numpy_cannot_hold_is_refused_in_one_line(tmp_path, kind, match):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    state = {"0.weight": _odd_tensor(torch, kind), "0.bias": torch.zeros(3)}
    with pytest.raises(NetworkError, match=match):
        xpnet.from_torch(state, activations="relu")
    path = tmp_path / "odd.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=match) as info:
        xpnet.load_weights(path, activations="relu")
    assert "\n" not in str(info.value) and str(path) in str(info.value)


# ---- headers with each value replaced ---------------------------------------------------------

SUBSTITUTES: list[object] = [None, True, 0, -1, 2**70, 1e308, "", "x" * 300, [], {}, [[[[1]]]]]
"""What replaces each value of a JSON header in turn: every JSON type, bounds of numbers."""


def json_variants(value: object) -> Iterator[object]:
    """Copies of ``value`` with one of its values (at any depth) replaced by each substitute,
    and each of its objects with one key left out."""
    for substitute in SUBSTITUTES:
        if substitute != value:
            yield substitute
    if isinstance(value, dict):
        for key in value:
            yield {k: v for k, v in value.items() if k != key}
            for variant in json_variants(value[key]):
                yield {**value, key: variant}
    elif isinstance(value, list):
        for at, item in enumerate(value):
            for variant in json_variants(item):
                yield [*value[:at], variant, *value[at + 1 :]]


def _record_header() -> dict:
    """xpnet's header of :func:`_network` with a training record's kinds of metadata."""
    return {
        "format": "xpnet-weights",
        "version": 1,
        "sizes": [6, 4, 3],
        "activations": ["relu", "softmax"],
        "dtype": "float32",
        "metadata": {
            "dataset": "mnist",
            "dataset_md5": {"train-images": "0" * 32},
            "seed": 2,
            "test_accuracy": 0.5,
            "interrupted": False,
            "history": [{"epoch": 1, "loss": 0.5}],
        },
    }


def test_every_value_of_an_npz_header_replaced_is_read_or_refused_in_one_line(tmp_path):
    network = _network()
    variants = []
    for header in json_variants(_record_header()):
        buffer = io.BytesIO()
        text = np.array(json.dumps(header))
        np.savez(buffer, **network.to_mapping(), **{HEADER_KEY: text})
        variants.append(buffer.getvalue())
    assert len(variants) > 200, len(variants)
    found = escapes(_weights, tmp_path / "header.npz", iter(variants))
    assert not found, found


def test_every_value_of_a_safetensors_header_replaced_is_read_or_refused_in_one_line(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="needs safetensors")
    data = safetensors_numpy.save(
        dict(_network().to_mapping()), metadata={"xpnet_header": json.dumps(_record_header())}
    )
    (length,) = struct.unpack("<Q", data[:8])
    header, arrays = json.loads(data[8 : 8 + length]), data[8 + length :]
    header["__metadata__"]["xpnet_header"] = _record_header()  # varied as JSON, then as text
    variants = []
    for changed in json_variants(header):
        if isinstance(changed, dict) and isinstance(changed.get("__metadata__"), dict):
            inner = changed["__metadata__"].get("xpnet_header")
            if not isinstance(inner, str):
                changed["__metadata__"] = {
                    **changed["__metadata__"],
                    "xpnet_header": json.dumps(inner),
                }
        text = json.dumps(changed).encode()
        variants.append(struct.pack("<Q", len(text)) + text + arrays)
    assert len(variants) > 200, len(variants)
    found = escapes(_weights, tmp_path / "header.safetensors", iter(variants))
    assert not found, found


# ---- metadata nested deep -------------------------------------------------------------------


def _nested(depth: int) -> object:
    value: object = 1
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


def _nested_text(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth  # past json.dumps' own reach, built as text


def _npz_with_metadata_text(path: Path, metadata: str) -> Path:
    network = _network()
    header = json.dumps(
        {
            "format": "xpnet-weights",
            "version": 1,
            "sizes": list(network.sizes),
            "activations": list(network.activations),
            "dtype": "float32",
            "metadata": "METADATA",
        }
    ).replace('"METADATA"', metadata)
    np.savez(path, **network.to_mapping(), **{HEADER_KEY: np.array(header)})
    return path


DEPTHS = [MAX_NESTING, 300, 900, 20_000]
"""Just past the bound (the header adds a level), a few hundred, near the interpreter's
recursion limit, and far past it."""


@pytest.mark.parametrize("depth", DEPTHS)
def test_deep_metadata_in_an_npz_header_is_one_line(tmp_path, depth):
    path = _npz_with_metadata_text(tmp_path / "deep.npz", _nested_text(depth))
    for read in (xpnet.load_weights, xpnet.read_weights_info):
        with pytest.raises(WeightsError, match="nested too deeply") as info:
            read(path)
        assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_metadata_nested_within_the_bound_is_kept(tmp_path):
    path = _npz_with_metadata_text(tmp_path / "ok.npz", _nested_text(MAX_NESTING - 2))
    metadata = xpnet.read_weights_info(path)["metadata"]
    for _ in range(MAX_NESTING - 2):
        metadata = metadata["a"]
    assert metadata == 1


@pytest.mark.parametrize("depth", DEPTHS)
def test_deep_metadata_in_a_safetensors_header_is_one_line(tmp_path, depth):
    safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="needs safetensors")
    network = _network()
    header = (
        json.dumps({"format": "xpnet-weights", "version": 1, "activations": ["relu", "softmax"]})[
            :-1
        ]
        + f', "metadata": {_nested_text(depth)}}}'
    )
    path = tmp_path / "deep.safetensors"
    path.write_bytes(
        safetensors_numpy.save(dict(network.to_mapping()), metadata={"xpnet_header": header})
    )
    with pytest.raises(WeightsError, match="nested too deeply") as info:
        xpnet.load_weights(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("depth", [300, 20_000])
def test_a_safetensors_file_header_nested_deep_is_one_line(tmp_path, depth):
    pytest.importorskip("safetensors", reason="needs safetensors")
    text = '{"W1": {"dtype": "F32", "shape": ' + "[" * depth + "]" * depth
    text += ', "data_offsets": [0, 0]}}'
    path = tmp_path / "deep.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text.encode())
    with pytest.raises(WeightsError) as info:
        xpnet.load_weights(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("depth", [MAX_NESTING, 300, 20_000])
def test_deep_metadata_is_refused_when_saved(tmp_path, depth):
    with pytest.raises(WeightsError, match="nested too deeply") as info:
        xpnet.save_weights(_network(), tmp_path / "deep.npz", metadata={"a": _nested(depth)})
    assert "\n" not in str(info.value)
    assert not (tmp_path / "deep.npz").exists()


@needs_mnist
@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
@pytest.mark.parametrize("json_output", [False, True])
def test_infer_reports_deep_metadata_in_one_line(tmp_path, capsys, fmt, json_output):
    from xpnet.cli import main

    network = xpnet.init_network([784, 10], seed=0)
    path = tmp_path / f"deep.{fmt}"
    if fmt == "npz":
        xpnet.save_weights(network, path)
        with np.load(path) as archive:
            entries = {key: archive[key] for key in archive.files}
        header = json.loads(entries[HEADER_KEY].item())
        text = json.dumps({**header, "metadata": "M"}).replace('"M"', _nested_text(300))
        np.savez(path, **{**entries, HEADER_KEY: np.array(text)})
    else:
        safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="needs safetensors")
        header = {"format": "xpnet-weights", "version": 1, "activations": ["softmax"]}
        text = json.dumps({**header, "metadata": "M"}).replace('"M"', _nested_text(300))
        path.write_bytes(
            safetensors_numpy.save(dict(network.to_mapping()), metadata={"xpnet_header": text})
        )
    argv = ["infer", "--weights", str(path), "--limit", "10", *(["--json"] if json_output else [])]
    assert main(argv) == 1
    err = capsys.readouterr().err  # without --json, a line on the backend comes first
    (error,) = [line for line in err.splitlines() if line.startswith("xpnet: error:")]
    assert "nested too deeply" in error and str(path) in error and "Traceback" not in err


# ---- malformed ONNX nodes -------------------------------------------------------------------


def _onnx_parts():  # type: ignore[no-untyped-def]
    onnx = pytest.importorskip("onnx", reason="onnx is not installed")
    from onnx import TensorProto, helper, numpy_helper

    return onnx, TensorProto, helper, numpy_helper


def _base(change: Callable[..., object]):  # type: ignore[no-untyped-def]
    """A valid two-layer graph (Gemm, Relu, Gemm, Softmax) passed through ``change``."""
    _, TensorProto, helper, numpy_helper = _onnx_parts()
    rng = np.random.default_rng(0)
    init = {
        "w1": rng.standard_normal((6, 4)).astype(np.float32),
        "b1": rng.standard_normal(4).astype(np.float32),
        "w2": rng.standard_normal((4, 3)).astype(np.float32),
        "b2": rng.standard_normal(3).astype(np.float32),
    }
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["z1"], name="dense1"),
        helper.make_node("Relu", ["z1"], ["h1"], name="relu1"),
        helper.make_node("Gemm", ["h1", "w2", "b2"], ["z2"], name="dense2"),
        helper.make_node("Softmax", ["z2"], ["p"], name="soft", axis=-1),
    ]
    initializers = [numpy_helper.from_array(v, k) for k, v in init.items()]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["n", 3])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    change(model.graph, helper, numpy_helper, TensorProto)
    return model


def _node(graph, name):  # type: ignore[no-untyped-def]
    return next(node for node in graph.node if node.name == name)


def _replace(graph, name, node):  # type: ignore[no-untyped-def]
    at = [n.name for n in graph.node].index(name)
    graph.node.remove(graph.node[at])
    graph.node.insert(at, node)


def _constant_first(graph, helper, attributes):  # type: ignore[no-untyped-def]
    """A Constant node with ``attributes`` that writes the first layer's bias."""
    graph.initializer.remove(next(t for t in graph.initializer if t.name == "b1"))
    node = helper.make_node("Constant", [], ["b1"], name="const")
    node.attribute.extend(attributes)
    graph.node.insert(0, node)


def _attribute(helper, name, value):  # type: ignore[no-untyped-def]
    return helper.make_attribute(name, value)


def _matmul_add(graph, helper, add_inputs):  # type: ignore[no-untyped-def]
    _replace(graph, "dense1", helper.make_node("MatMul", ["x", "w1"], ["m1"], name="mm"))
    graph.node.insert(1, helper.make_node("Add", add_inputs, ["z1"], name="bias"))


def _undefined_attribute(graph, helper):  # type: ignore[no-untyped-def]
    attribute = _node(graph, "dense1").attribute.add()
    attribute.name = "alpha"  # and no type: AttributeProto.UNDEFINED


def _raw(graph, numpy_helper, name, change):  # type: ignore[no-untyped-def]
    tensor = next(t for t in graph.initializer if t.name == name)
    change(tensor)


def _short_raw_data(tensor) -> None:  # type: ignore[no-untyped-def]
    tensor.raw_data = tensor.raw_data[:5]


def _short_tensor(numpy_helper):  # type: ignore[no-untyped-def]
    tensor = numpy_helper.from_array(np.zeros(4, np.float32))
    _short_raw_data(tensor)
    return tensor


def _unknown_type(tensor) -> None:  # type: ignore[no-untyped-def]
    tensor.data_type = 33


def _negative_dims(tensor) -> None:  # type: ignore[no-untyped-def]
    tensor.dims[0] = -6


MALFORMED: dict[str, tuple[Callable[..., object], str]] = {
    "add-one-input": (
        lambda g, h, n, t: _matmul_add(g, h, ["m1"]),
        r"node 'bias' \(Add\) has the inputs \['m1'\]",
    ),
    "add-same-input-twice": (
        lambda g, h, n, t: _matmul_add(g, h, ["m1", "m1"]),
        r"node 'bias' \(Add\) reads \['m1', 'm1'\]",
    ),
    "gemm-one-input": (
        lambda g, h, n, t: _replace(g, "dense2", h.make_node("Gemm", ["h1"], ["z2"], name="g")),
        r"node 'g' \(Gemm\) has the inputs \['h1'\]; it takes 2 to 3",
    ),
    "gemm-four-inputs": (
        lambda g, h, n, t: _replace(
            g, "dense2", h.make_node("Gemm", ["h1", "w2", "b2", "b2"], ["z2"], name="g")
        ),
        "it takes 2 to 3",
    ),
    "matmul-one-input": (
        lambda g, h, n, t: _replace(g, "dense1", h.make_node("MatMul", ["x"], ["z1"], name="m")),
        r"node 'm' \(MatMul\) has the inputs",
    ),
    "reshape-one-input": (
        lambda g, h, n, t: g.node.insert(0, h.make_node("Reshape", ["x"], ["x2"], name="r")),
        r"node 'r' \(Reshape\) has the inputs \['x'\]; it takes 2",
    ),
    "no-output": (
        lambda g, h, n, t: _replace(g, "relu1", h.make_node("Relu", ["z1"], [], name="relu1")),
        r"node 'relu1' \(Relu\) has the outputs \[\], not one named value",
    ),
    "empty-output-name": (
        lambda g, h, n, t: _replace(g, "relu1", h.make_node("Relu", ["z1"], [""], name="relu1")),
        "not one named value",
    ),
    "two-outputs": (
        lambda g, h, n, t: _replace(
            g, "relu1", h.make_node("Relu", ["z1"], ["h1", "h9"], name="relu1")
        ),
        "not one named value",
    ),
    "empty-required-input": (
        lambda g, h, n, t: _replace(
            g, "dense2", h.make_node("Gemm", ["h1", "", "b2"], ["z2"], name="g")
        ),
        r"has the inputs \['h1', '', 'b2'\]",
    ),
    "constant-float-is-not-a-tensor": (
        lambda g, h, n, t: _constant_first(g, h, [_attribute(h, "value", 1.5)]),
        r"node 'const' \(Constant\) holds value=1.5, not a tensor or numbers",
    ),
    "constant-string": (
        lambda g, h, n, t: _constant_first(g, h, [_attribute(h, "value_string", "x")]),
        "not a tensor or numbers",
    ),
    "constant-graph": (
        lambda g, h, n, t: _constant_first(
            g, h, [_attribute(h, "value", h.make_graph([], "sub", [], []))]
        ),
        "not a tensor or numbers",
    ),
    "constant-no-value": (
        lambda g, h, n, t: _constant_first(g, h, []),
        r"holds \[\], not one value",
    ),
    "constant-two-values": (
        lambda g, h, n, t: _constant_first(
            g, h, [_attribute(h, "value_float", 1.0), _attribute(h, "value_int", 1)]
        ),
        "not one value",
    ),
    "constant-no-output": (
        lambda g, h, n, t: g.node.insert(
            0, h.make_node("Constant", [], [], name="c", value_float=1.0)
        ),
        r"node 'c' \(Constant\) has the outputs \[\]",
    ),
    "constant-with-input": (
        lambda g, h, n, t: g.node.insert(
            0, h.make_node("Constant", ["x"], ["c"], name="c", value_float=1.0)
        ),
        r"node 'c' \(Constant\) has the inputs \['x'\]; it takes 0",
    ),
    "constant-bad-tensor": (
        lambda g, h, n, t: _constant_first(g, h, [_attribute(h, "value", _short_tensor(n))]),
        r"node 'const' \(Constant\) is malformed",
    ),
    "missing-initializer": (
        lambda g, h, n, t: g.initializer.remove(next(x for x in g.initializer if x.name == "w2")),
        r"node 'dense2' \(Gemm\) reads \['h1', 'w2', 'b2'\]",
    ),
    "duplicate-initializer": (
        lambda g, h, n, t: g.initializer.append(n.from_array(np.zeros((6, 4), np.float32), "w1")),
        "the initializer 'w1' is unnamed or named twice",
    ),
    "unnamed-initializer": (
        lambda g, h, n, t: g.initializer.append(n.from_array(np.zeros(3, np.float32), "")),
        "unnamed or named twice",
    ),
    "initializer-short-data": (
        lambda g, h, n, t: _raw(g, n, "w1", _short_raw_data),
        "the initializer 'w1' is malformed",
    ),
    "initializer-unknown-type": (
        lambda g, h, n, t: _raw(g, n, "w1", _unknown_type),
        "the initializer 'w1' is malformed",
    ),
    "initializer-negative-dims": (
        lambda g, h, n, t: _raw(g, n, "w1", _negative_dims),
        r"the initializer 'w1' has the shape \[-6, 4\]",
    ),
    "weight-rank-3": (
        lambda g, h, n, t: (
            g.initializer.remove(next(x for x in g.initializer if x.name == "w2")),
            g.initializer.append(n.from_array(np.zeros((4, 3, 1), np.float32), "w2")),
        ),
        r"node 'dense2' \(Gemm\): its weight has shape \(4, 3, 1\)",
    ),
    "weight-integers": (
        lambda g, h, n, t: (
            g.initializer.remove(next(x for x in g.initializer if x.name == "w2")),
            g.initializer.append(n.from_array(np.zeros((4, 3), np.int64), "w2")),
        ),
        "dtype int64, not a real floating dtype",
    ),
    "weight-no-units": (
        lambda g, h, n, t: (
            g.initializer.remove(next(x for x in g.initializer if x.name == "w2")),
            g.initializer.remove(next(x for x in g.initializer if x.name == "b2")),
            g.initializer.append(n.from_array(np.zeros((4, 0), np.float32), "w2")),
            g.initializer.append(n.from_array(np.zeros(0, np.float32), "b2")),
        ),
        r"layer 2 has the shape \(4, 0\): no units",
    ),
    "unknown-attribute": (
        lambda g, h, n, t: _node(g, "relu1").attribute.append(h.make_attribute("alpha", 0.1)),
        r"node 'relu1' \(Relu\) has the attribute 'alpha', which Relu lacks",
    ),
    "unknown-gemm-attribute": (
        lambda g, h, n, t: _node(g, "dense1").attribute.append(h.make_attribute("transC", 1)),
        "has the attribute 'transC', which Gemm lacks",
    ),
    "input-width": (
        lambda g, h, n, t: g.input[0].type.tensor_type.shape.dim[1].__setattr__("dim_value", 5),
        r"node 'dense1' \(Gemm\) takes 6 features but the graph's input has 5",
    ),
    "bias-wrong-shape": (
        lambda g, h, n, t: (
            g.initializer.remove(next(x for x in g.initializer if x.name == "b2")),
            g.initializer.append(n.from_array(np.zeros((2, 3), np.float32), "b2")),
        ),
        r"its bias has shape \(2, 3\)",
    ),
    "value-written-twice": (
        lambda g, h, n, t: _replace(g, "relu1", h.make_node("Relu", ["z1"], ["z1"], name="relu1")),
        r"node 'relu1' \(Relu\) writes 'z1', a value written before",
    ),
    "output-overwrites-initializer": (
        lambda g, h, n, t: _replace(g, "relu1", h.make_node("Relu", ["z1"], ["w2"], name="relu1")),
        "writes 'w2', a value written before",
    ),
    "cycle": (
        lambda g, h, n, t: _replace(
            g, "dense1", h.make_node("Gemm", ["h1", "w1", "b1"], ["z1"], name="dense1")
        ),
        r"node 'dense1' \(Gemm\) reads \['h1', 'w1', 'b1'\]",
    ),
    "undefined-attribute-type": (
        lambda g, h, n, t: _undefined_attribute(g, h),
        r"node 'dense1' \(Gemm\): its attribute 'alpha' is None, not a number",
    ),
    "attribute-twice": (
        lambda g, h, n, t: _node(g, "soft").attribute.append(h.make_attribute("axis", 1)),
        r"node 'soft' \(Softmax\) gives its attribute 'axis' twice",
    ),
    "alpha-string": (
        lambda g, h, n, t: _node(g, "dense1").attribute.append(h.make_attribute("alpha", "2")),
        r"its attribute 'alpha' is b'2', not a number",
    ),
    "transB-float": (
        lambda g, h, n, t: _node(g, "dense1").attribute.append(h.make_attribute("transB", 1.0)),
        "its attribute 'transB' is 1.0, not an integer",
    ),
    "softmax-axis-list": (
        lambda g, h, n, t: (
            _node(g, "soft").ClearField("attribute"),
            _node(g, "soft").attribute.append(h.make_attribute("axis", [1])),
        ),
        r"its attribute 'axis' is \[1\], not an integer",
    ),
    "cast-to-list": (
        lambda g, h, n, t: (
            g.node.insert(0, h.make_node("Cast", ["x"], ["xc"], name="cast", to=[1])),
            _node(g, "dense1").input.__setitem__(0, "xc"),
        ),
        r"node 'cast' \(Cast\): its attribute 'to' is \[1\], not an integer",
    ),
    "reshape-float-shape": (
        lambda g, h, n, t: (
            g.initializer.append(n.from_array(np.array([np.nan, 6.0], np.float32), "shape")),
            g.node.insert(0, h.make_node("Reshape", ["x", "shape"], ["xr"], name="r")),
            _node(g, "dense1").input.__setitem__(0, "xr"),
        ),
        r"node 'r' \(Reshape\): its shape is float32 \(2,\), not integers",
    ),
    "reshape-matrix-shape": (
        lambda g, h, n, t: (
            g.initializer.append(n.from_array(np.array([[-1, 6]], np.int64), "shape")),
            g.node.insert(0, h.make_node("Reshape", ["x", "shape"], ["xr"], name="r")),
            _node(g, "dense1").input.__setitem__(0, "xr"),
        ),
        r"its shape is int64 \(1, 2\), not integers",
    ),
    "empty-graph": (
        lambda g, h, n, t: g.ClearField("node"),
        "no dense layer",
    ),
    "no-graph-output": (
        lambda g, h, n, t: g.ClearField("output"),
        r"the graph's outputs \[\] do not include",
    ),
    "unnamed-input": (
        lambda g, h, n, t: (setattr(g.input[0], "name", ""),),
        "the graph's input has no name",
    ),
    "newline-in-operator": (
        lambda g, h, n, t: setattr(_node(g, "relu1"), "op_type", "Relu\nxpnet: ok"),
        r"node 'relu1' \('Relu\\nxpnet: ok'\)",
    ),
    "control-characters-in-name": (
        lambda g, h, n, t: (
            setattr(_node(g, "relu1"), "name", "\x1b[2J\nrelu"),
            _node(g, "\x1b[2J\nrelu").ClearField("output"),
        ),
        r"node '\\x1b\[2J\\nrelu' \(Relu\)",
    ),
}


def onnx_variants(model):  # type: ignore[no-untyped-def]
    """Copies of ``model`` each changed in one place of its structure: a node's inputs cut
    or added to, its outputs dropped or doubled, its operator replaced by another xpnet reads,
    its attributes given every type, the node left out or repeated; an initializer's shape,
    element type or data changed; the input's type or shape changed."""
    from onnx import AttributeProto, ModelProto, TensorProto, helper

    from xpnet.importers.onnx import KNOWN

    def copy() -> ModelProto:
        changed = ModelProto()
        changed.CopyFrom(model)
        return changed

    attributes = [
        helper.make_attribute("axis", 5),
        helper.make_attribute("axis", 0.5),
        helper.make_attribute("axis", "s"),
        helper.make_attribute("axis", [1, 2]),
        helper.make_attribute("axis", helper.make_tensor("t", TensorProto.FLOAT, [1], [1.0])),
        AttributeProto(name="axis"),
    ]
    for at, node in enumerate(model.graph.node):
        for keep in range(len(node.input)):
            changed = copy()
            del changed.graph.node[at].input[keep:]
            yield changed
        for extra in node.input[:1] or ["x"]:
            changed = copy()
            changed.graph.node[at].input.append(extra)
            yield changed
        for outputs in ([], [*node.output, *node.output], [""]):
            changed = copy()
            changed.graph.node[at].output[:] = outputs
            yield changed
        for op in sorted(KNOWN - {node.op_type}):
            changed = copy()
            changed.graph.node[at].op_type = op
            yield changed
        for attribute in attributes:
            changed = copy()
            target = changed.graph.node[at]
            kept = [a for a in target.attribute if a.name != "axis"]
            target.ClearField("attribute")
            target.attribute.extend([*kept, attribute])
            yield changed
        changed = copy()
        del changed.graph.node[at]
        yield changed
        changed = copy()
        changed.graph.node.insert(at, changed.graph.node[at])
        yield changed
    for at, tensor in enumerate(model.graph.initializer):
        for dims in ([], [*tensor.dims, 1], list(tensor.dims)[1:], [-1, *tensor.dims][:2]):
            changed = copy()
            changed.graph.initializer[at].dims[:] = dims
            yield changed
        for data_type in (0, 2, 7, 8, 9, 16, 33):
            changed = copy()
            changed.graph.initializer[at].data_type = data_type
            yield changed
        changed = copy()
        changed.graph.initializer[at].raw_data = tensor.raw_data[: len(tensor.raw_data) // 2]
        yield changed
    for elem_type in (0, 6, 8, 10, 11):
        changed = copy()
        changed.graph.input[0].type.tensor_type.elem_type = elem_type
        yield changed
    changed = copy()
    changed.graph.input[0].type.tensor_type.shape.ClearField("dim")
    yield changed


ONNX_SOURCES = {"xpnet-export": _onnx, "skl2onnx-binary": _skl2onnx_binary}


@pytest.mark.parametrize("source", sorted(ONNX_SOURCES))
def test_every_structural_change_of_an_onnx_graph_is_read_or_refused_in_one_line(source):
    onnx = _onnx_parts()[0]
    make = ONNX_SOURCES[source]
    data = _through_file(make)() if source == "xpnet-export" else make()
    model = onnx.load_from_string(data)
    found, count = [], 0
    for count, variant in enumerate(onnx_variants(model), start=1):
        try:
            xpnet.from_onnx(variant)
        except NetworkError as exc:
            if "\n" in str(exc):
                found.append(f"variant {count}: {str(exc)!r}")
        except Exception as exc:  # the failure this test exists to find
            where = traceback.extract_tb(exc.__traceback__)[-1]
            found.append(f"variant {count}: {type(exc).__name__}: {exc} ({where.lineno})")
    assert count > 150 and not found[:5], found[:5]


def test_a_model_that_redefines_an_onnx_operator_is_refused(tmp_path):
    """A model-local function named as a standard operator, which a runtime could run in
    place of the operator xpnet reads."""
    helper = _onnx_parts()[2]
    model = _base(lambda *parts: None)
    body = [helper.make_node("Neg", ["X"], ["Y"])]
    model.functions.append(helper.make_function("", "Relu", ["X"], ["Y"], body, []))
    with pytest.raises(NetworkError, match="defines its own operator 'Relu'"):
        xpnet.from_onnx(model)


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_onnx_nodes_are_refused_in_one_line(tmp_path, kind):
    _onnx_parts()
    change, match = MALFORMED[kind]
    model = _base(change)
    with pytest.raises(NetworkError, match=match) as info:
        xpnet.from_onnx(model)
    assert "\n" not in str(info.value)
    path = tmp_path / "malformed.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(WeightsError, match=match) as info:
        xpnet.load_weights(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_the_unchanged_onnx_graph_loads():
    network = xpnet.from_onnx(_base(lambda *parts: None))
    assert network.sizes == (6, 4, 3) and network.activations == ("relu", "softmax")


@pytest.mark.parametrize(
    ("attribute", "value", "expected"),
    [("value_float", 0.5, [0.5]), ("value_floats", [0.5, -1.0, 2.0, 0.0], None)],
)
def test_constant_nodes_of_numbers_are_read_as_onnx_defines_them(attribute, value, expected):
    """``Constant`` may hold its value as floats instead of a tensor: the same bias."""
    _onnx_parts()

    def change(graph, helper, numpy_helper, tensor_type):  # type: ignore[no-untyped-def]
        graph.initializer.remove(next(t for t in graph.initializer if t.name == "b1"))
        graph.node.insert(0, helper.make_node("Constant", [], ["b1"], **{attribute: value}))

    network = xpnet.from_onnx(_base(change))
    bias = network.layers[0].bias
    assert bias.dtype == np.float32
    np.testing.assert_array_equal(bias, np.broadcast_to(np.float32(expected or value), (4,)))
