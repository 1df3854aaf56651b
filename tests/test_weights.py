"""Weights files: xpnet's .npz round trip, the textbook's pickles, and pickles that attack."""

from __future__ import annotations

import builtins
import dataclasses
import functools
import io
import json
import math
import os
import pickle
import struct
import subprocess
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from importing import odd_network

import xpnet
from xpnet.backends import backend_of, to_host
from xpnet.errors import DataError, WeightsError, XpnetError
from xpnet.weights import HEADER_KEY, load_weights, read_weights_info, save_weights

PACKAGE = Path(xpnet.__file__).parent


def _assert_bitwise_equal(mine: xpnet.Network, theirs: xpnet.Network) -> None:
    assert mine.activations == theirs.activations
    for a, b in zip(mine.to_mapping().values(), theirs.to_mapping().values()):
        a, b = to_host(a), to_host(b)
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()


def _error(call, *args, kind: type[XpnetError] = WeightsError, **kwargs) -> str:
    """The message of the ``kind`` error that ``call`` raises; xpnet's messages are one line."""
    with pytest.raises(kind) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---- the textbook's sample_weight.pkl -------------------------------------------------


@pytest.mark.data
def test_book_weights_load_as_the_textbook_network(book_weights):
    network = load_weights(book_weights)
    assert network.sizes == (784, 50, 100, 10)
    assert network.activations == ("sigmoid", "sigmoid", "softmax")
    shapes = {key: value.shape for key, value in network.to_mapping().items()}
    assert shapes == {
        "W1": (784, 50), "b1": (50,), "W2": (50, 100), "b2": (100,), "W3": (100, 10), "b3": (10,)
    }  # fmt: skip
    for value in network.to_mapping().values():
        assert value.dtype == np.float32 and np.isfinite(value).all()
    assert read_weights_info(book_weights) == {
        "format": "textbook-pickle",
        "sizes": [784, 50, 100, 10],
        "activations": ["sigmoid", "sigmoid", "softmax"],
        "dtype": "float32",
        "metadata": {},
    }


@pytest.mark.data
def test_book_weights_load_onto_a_non_default_device(book_weights):
    network = load_weights(book_weights, backend="array_api_strict", device="device1")
    assert str(network.backend) == "array_api_strict on device1"
    for value in network.to_mapping().values():
        assert backend_of(value).device_name == "device1"
        assert value.dtype == network.xp.float32
    _assert_bitwise_equal(network, load_weights(book_weights))


@pytest.mark.data
def test_book_weights_survive_the_npz_round_trip(book_weights, tmp_path):
    save_weights(load_weights(book_weights), tmp_path / "book.npz", metadata={"source": "book"})
    _assert_bitwise_equal(load_weights(tmp_path / "book.npz"), load_weights(book_weights))


# ---- xpnet's .npz --------------------------------------------------------------------


def test_npz_round_trips_bitwise_on_every_backend(backend, tmp_path):
    network = xpnet.to_backend(odd_network(), backend.name, backend.device_name)
    path = tmp_path / "weights.npz"
    save_weights(network, path)
    loaded = load_weights(path, backend=backend.name, device=backend.device_name)
    assert str(loaded.backend) == str(backend)
    assert loaded.sizes == (5, 4, 3)
    _assert_bitwise_equal(loaded, network)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_npz_keeps_the_dtype_and_metadata(tmp_path, dtype):
    path = tmp_path / "weights.npz"
    metadata = {"dataset": "mnist", "sha256": "ab" * 32, "seed": 7, "accuracy": 0.9352}
    save_weights(odd_network(dtype), path, metadata=metadata)
    assert read_weights_info(path) == {
        "format": "xpnet-weights",
        "version": 1,
        "sizes": [5, 4, 3],
        "activations": ["relu", "identity"],
        "dtype": dtype,
        "metadata": metadata,
    }
    assert load_weights(path).dtype == np.dtype(dtype)
    with pytest.raises(WeightsError, match="b1: 1 of its 4 values are not finite"):
        load_weights(path, dtype="float16")  # its largest value overflows float16
    plain = tmp_path / "plain.npz"
    save_weights(xpnet.init_network([5, 4, 3], activations=["relu", "identity"]), plain)
    cast = load_weights(plain, dtype="float16")
    assert cast.dtype == np.float16 and cast.activations == ("relu", "identity")


def test_npz_holds_no_pickle(tmp_path):
    path = tmp_path / "weights.npz"
    save_weights(odd_network(), path, metadata={"epochs": 3})
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == ["W1", "W2", "b1", "b2", HEADER_KEY]
        header = archive[HEADER_KEY]
        assert header.shape == () and header.dtype.kind == "U"
        assert json.loads(header.item())["metadata"] == {"epochs": 3}


def test_save_accepts_the_textbook_dict(tmp_path):
    params = xpnet.init_network((6, 5, 3)).to_mapping()
    save_weights(params, tmp_path / "w.npz")
    assert load_weights(tmp_path / "w.npz").activations == ("sigmoid", "softmax")


def test_load_tells_formats_by_content_not_suffix(tmp_path):
    npz_named_pkl = tmp_path / "weights.pkl"
    save_weights(odd_network(), npz_named_pkl)
    assert load_weights(npz_named_pkl).activations == ("relu", "identity")
    pickle_named_npz = tmp_path / "weights.npz"
    pickle_named_npz.write_bytes(pickle.dumps(odd_network().to_mapping(), 3))
    assert load_weights(pickle_named_npz).activations == ("sigmoid", "softmax")


def _rewrite(path: Path, change) -> None:
    """Rewrite the .npz at ``path`` with its entries passed through ``change``."""
    with np.load(path, allow_pickle=False) as archive:
        entries = {key: archive[key] for key in archive.files}
    change(entries)
    np.savez(path, **entries)


def _set_header(entries: dict, **fields) -> None:
    entries[HEADER_KEY] = np.array(json.dumps({**json.loads(entries[HEADER_KEY].item()), **fields}))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda e: e.pop("b2"), "b2"),
        (lambda e: e.update(W2=np.zeros((3, 3), np.float32)), "layer 2"),
        (lambda e: e.update(W2=np.zeros((4, 3), np.int32)), "dtype"),
        (lambda e: (e.pop(HEADER_KEY), e.pop("W2")), "without an xpnet header, nor the"),
        (lambda e: e.update({HEADER_KEY: np.array("{not json")}), "not valid JSON"),
        (lambda e: e.update({HEADER_KEY: np.array(["[]"])}), "without an xpnet header"),
        (lambda e: _set_header(e, format="other"), "format"),
        (lambda e: _set_header(e, version=2), "version 2"),
        (lambda e: _set_header(e, sizes=[5, 4, 2]), "header says"),
        (lambda e: _set_header(e, dtype=None), "header says"),
        (lambda e: _set_header(e, activations=[["relu"], 1]), "activations"),
        (lambda e: _set_header(e, activations=["relu", "gelu"]), "gelu"),
    ],
)
def test_malformed_npz_is_refused(tmp_path, change, expected):
    path = tmp_path / "weights.npz"
    save_weights(odd_network(), path)
    _rewrite(path, change)
    message = _error(load_weights, path)
    assert expected in message and str(path) in message


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_npz_is_refused(tmp_path, keep):
    path = tmp_path / "weights.npz"
    save_weights(odd_network(), path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    assert str(path) in _error(load_weights, path)


def test_npz_with_pickled_objects_is_refused_unrun(tmp_path):
    marker = tmp_path / "MARKER"
    path = tmp_path / "weights.npz"
    attack = np.empty(1, dtype=object)
    attack[0] = _Reduce(os.system, (f"touch {marker}",))
    np.savez(path, W1=attack)
    assert "pickle" in _error(load_weights, path)
    assert not marker.exists()


def test_plain_npz_of_the_textbook_dict_loads_as_its_pickle_does(tmp_path):
    # As the book's readers save their own weights: numpy.savez("params.npz", **network).
    params = {key: to_host(value) for key, value in odd_network().to_mapping().items()}
    np.savez(tmp_path / "params.npz", **params)
    (tmp_path / "params.pkl").write_bytes(pickle.dumps(params, protocol=4))
    plain, pickled = load_weights(tmp_path / "params.npz"), load_weights(tmp_path / "params.pkl")
    assert plain.activations == ("sigmoid", "softmax")
    _assert_bitwise_equal(plain, pickled)
    assert read_weights_info(tmp_path / "params.npz") == {
        **read_weights_info(tmp_path / "params.pkl"),
        "format": "plain-npz",
    }


def test_zip_that_is_not_an_npz_is_refused(tmp_path):
    path = tmp_path / "weights.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("W1.txt", "1 2 3")
    assert "without an xpnet header" in _error(load_weights, path)


def test_npz_entry_that_is_not_an_array_is_refused(tmp_path):
    path = tmp_path / "weights.npz"
    save_weights(odd_network(), path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("W3", b"not an .npy member")
    assert "['W3'] are not arrays" in _error(load_weights, path)


@pytest.mark.parametrize("content", [b"", b"hello", b"\x00" * 20])
def test_unknown_content_is_refused(tmp_path, content):
    path = tmp_path / "weights.bin"
    path.write_bytes(content)
    assert "neither" in _error(load_weights, path)


def test_missing_file_is_a_weights_error(tmp_path):
    assert "cannot read" in _error(load_weights, tmp_path / "absent.npz")


# ---- atomic saving ---------------------------------------------------------------------


def test_save_replaces_the_file_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "weights.npz"
    path.write_bytes(b"old")
    save_weights(odd_network(), path)
    assert os.listdir(tmp_path) == ["weights.npz"]
    assert load_weights(path).sizes == (5, 4, 3)


def test_failed_save_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "weights.npz"
    save_weights(odd_network(), path)
    before = path.read_bytes()

    def fail_midway(file, **entries):
        file.write(b"PK\x03\x04 half an archive")
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez", fail_midway)
    with pytest.raises(RuntimeError, match="disk full"):
        save_weights(odd_network("float64"), path)
    assert os.listdir(tmp_path) == ["weights.npz"]
    assert path.read_bytes() == before


def test_unserializable_metadata_writes_nothing(tmp_path):
    path = tmp_path / "weights.npz"
    assert "JSON" in _error(save_weights, odd_network(), path, metadata={"when": object()})
    assert os.listdir(tmp_path) == []


def test_save_under_a_file_is_a_weights_error(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    assert "cannot write" in _error(save_weights, odd_network(), tmp_path / "file" / "w.npz")
    assert os.listdir(tmp_path) == ["file"]


# ---- the textbook's mnist.pkl cache ------------------------------------------------------


def _mnist_like() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "train_img": rng.integers(0, 256, (6, 784), dtype=np.uint8),
        "train_label": rng.integers(0, 10, 6, dtype=np.uint8),
        "test_img": rng.integers(0, 256, (3, 784), dtype=np.uint8),
        "test_label": rng.integers(0, 10, 3, dtype=np.uint8),
    }


@pytest.mark.parametrize("protocol", [-1, 2, 3, 4, 5])
def test_mnist_cache_loads(tmp_path, protocol):
    dataset = _mnist_like()
    path = tmp_path / "mnist.pkl"
    with open(path, "wb") as file:
        pickle.dump(dataset, file, protocol)
    loaded = xpnet.load_textbook_pickle(path)
    assert loaded.keys() == dataset.keys()
    for key, value in dataset.items():
        assert loaded[key].dtype == np.uint8
        np.testing.assert_array_equal(loaded[key], value)


@pytest.mark.parametrize("fix_imports", [True, False])
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickled_layouts_load_native_and_writable(tmp_path, protocol, fix_imports):
    arrays = {
        "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        "big_endian": np.arange(5, dtype=">i4"),
        "empty": np.zeros((0, 3), np.float32),
        "scalar": np.array(2.5),
        "bool": np.array([True, False]),
    }
    path = tmp_path / "arrays.pkl"
    path.write_bytes(pickle.dumps(arrays, protocol, fix_imports=fix_imports))
    loaded = xpnet.load_textbook_pickle(path)
    for key, value in arrays.items():
        assert loaded[key].dtype == value.dtype.newbyteorder("=") and loaded[key].dtype.isnative
        assert loaded[key].flags.writeable
        np.testing.assert_array_equal(loaded[key], value)
    assert loaded["fortran"].flags.f_contiguous


def test_python2_pickle_loads(tmp_path):
    """Python 2 wrote byte strings as BINSTRING, which needs encoding="latin1" to read."""
    values = np.array([-1.5, 255.0, 1e-3], dtype="<f4")  # raw bytes above 0x7f
    raw = values.tobytes()
    stream = b"".join([
        b"\x80\x02}U\x02W1",
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R",
        b"(K\x01K\x03\x85cnumpy\ndtype\nU\x02f4\x89\x88\x87R",
        b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb",
        b"\x89T", struct.pack("<i", len(raw)), raw, b"tbs.",
    ])  # fmt: skip
    path = tmp_path / "py2.pkl"
    path.write_bytes(stream)
    np.testing.assert_array_equal(xpnet.load_textbook_pickle(path)["W1"], values)


def test_the_error_kind_is_the_callers(tmp_path):
    path = tmp_path / "mnist.pkl"
    path.write_bytes(pickle.dumps([1, 2]))
    assert "list" in _error(xpnet.load_textbook_pickle, path, error=DataError, kind=DataError)


# ---- pickles that attack ---------------------------------------------------------------


class _Reduce:
    """Pickles as ``func(*args)``, then ``BUILD`` with ``state`` when given."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def _name(func) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def _attacks(marker: Path) -> dict[str, tuple[object, str]]:
    """Objects whose pickles run code or forge arrays, and what the refusal must name."""
    touch = f"touch {marker}"
    create = f"open({str(marker)!r}, 'w').close()"
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    return {
        "os.system": (_Reduce(os.system, (touch,)), _name(os.system)),
        "eval": (_Reduce(builtins.eval, (create,)), "builtins.eval"),
        "exec": (_Reduce(builtins.exec, (create,)), "builtins.exec"),
        "Popen": (_Reduce(subprocess.Popen, (["touch", str(marker)],)), "subprocess.Popen"),
        "getattr": (_Reduce(builtins.getattr, ("", "join")), "builtins.getattr"),
        "__import__": (_Reduce(builtins.__import__, ("os",)), "builtins.__import__"),
        "partial": (
            _Reduce(functools.partial(os.system, touch), ()),
            "functools.partial",
        ),
        "numpy.load": (_Reduce(np.load, (str(marker), None, True)), "numpy.load"),
        "numpy.testing": (
            _Reduce(np.testing.assert_equal, (1, 1)),
            _name(np.testing.assert_equal),
        ),
        "in array state": (
            _Reduce(
                reconstruct,
                (np.ndarray, (0,), b"b"),
                (1, (1,), np.dtype("u1"), False, _Reduce(os.system, (touch,))),
            ),
            _name(os.system),
        ),
        "ndarray from a buffer": (
            _Reduce(np.ndarray, ((1,), np.dtype("u8"), b"\x01" * 8)),
            "numpy.ndarray",
        ),
        "dtype with fields": (
            _Reduce(np.dtype, ("f4", False, True), (3, "<", None, ("a",), {}, 4, 1, 16)),
            "state",
        ),
        "dtype with object flags": (
            _Reduce(np.dtype, ("u8", False, True), (3, "|", None, None, None, -1, -1, 63)),
            "state",
        ),
        "object array": ({"W1": np.array([1, "x"], dtype=object)}, "'O8' (object arrays"),
        "structured array": ({"W1": np.zeros(2, [("a", "f4")])}, "'V4'"),
        "numpy scalar": ({"W1": np.float32(1)}, "multiarray.scalar"),
    }


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("attack", list(_attacks(Path("MARKER"))))
def test_attacking_pickles_are_refused_unrun(tmp_path, monkeypatch, attack, protocol):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "MARKER"
    payload, expected = _attacks(marker)[attack]
    path = tmp_path / "sample_weight.pkl"
    # fix_imports=False keeps Python 3's module names (else builtins -> __builtin__) at protocol 2
    path.write_bytes(pickle.dumps(payload, protocol, fix_imports=False))
    message = _error(load_weights, path)
    assert expected in message and str(path) in message
    assert "never runs code" in message
    assert not marker.exists()


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (b"\x80\x02cnumpy\ndtype\n}b.", "set the state of numpy.dtype"),
        (b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R.", "rot13"),
        (b"\x80\x02c__builtin__\nbytes\nJ\x00\x00\x00\x7f\x85R.", "not a valid pickle"),
    ],
)
def test_abusing_admitted_globals_is_refused(tmp_path, stream, expected):
    path = tmp_path / "w.pkl"
    path.write_bytes(stream)
    assert expected in _error(xpnet.load_textbook_pickle, path)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ([np.zeros(2)], "holds a list"),
        ({"W1": [1.0, 2.0]}, "'W1' is not a NumPy array"),
        ({1: np.zeros(2)}, "entry 1"),
        ({"train_img": np.zeros((2, 3), np.uint8)}, "W1"),
    ],
)
def test_pickles_that_are_not_textbook_weights_are_refused(tmp_path, payload, expected):
    path = tmp_path / "sample_weight.pkl"
    path.write_bytes(pickle.dumps(payload))
    assert expected in _error(load_weights, path)


@pytest.mark.parametrize("keep", [1, 2, 0.25, 0.5, 0.99])
def test_truncated_pickles_are_refused(tmp_path, keep):
    data = pickle.dumps(odd_network().to_mapping(), 3)
    path = tmp_path / "sample_weight.pkl"
    path.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])
    message = _error(load_weights, path)
    assert "not a valid pickle" in message and str(path) in message


def test_no_module_of_xpnet_unpickles_unsafely():
    for source in PACKAGE.rglob("*.py"):
        text = source.read_text()
        for unsafe in ("pickle.load(", "pickle.loads(", "allow_pickle=True", "Unpickler("):
            allowed = source.name == "_safe_pickle.py" and unsafe == "Unpickler("
            assert allowed or unsafe not in text, f"{source} uses {unsafe}"


# ---- hostile sizes and headers: refused before anything is inflated or parsed -------------


def _npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return header.getvalue()


def _deflated_zeros_npz(path: Path, shape: tuple[int, ...], header: dict | None = None) -> None:
    """An .npz whose ``W1`` really is ``shape`` float64 zeros, deflated (a zip bomb), beside
    the arrays of a small network and, when given, an xpnet header."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("W1.npy", "w", force_zip64=True) as member:
            member.write(_npy_header(shape))
            left, zeros = math.prod(shape) * 8, bytes(1 << 20)
            while left:
                member.write(zeros[: min(left, len(zeros))])
                left -= min(left, len(zeros))
        for key, value in (("b1", np.zeros(shape[1])), ("W2", np.zeros((shape[1], 2)))):
            with archive.open(f"{key}.npy", "w") as member:
                np.lib.format.write_array(member, value)
        if header is not None:
            with archive.open(f"{HEADER_KEY}.npy", "w") as member:
                np.lib.format.write_array(member, np.array(json.dumps(header)))


@pytest.mark.parametrize("with_header", [False, True], ids=["plain", "xpnet"])
def test_a_deflate_bomb_is_refused_before_it_inflates(tmp_path, with_header):
    path = tmp_path / "bomb.npz"
    header = {
        "format": "xpnet-weights",
        "version": 1,
        "sizes": [3000, 3000, 2],
        "activations": ["sigmoid", "softmax"],
        "dtype": "float64",
        "metadata": {},
    }
    _deflated_zeros_npz(path, (3000, 3000), header if with_header else None)
    assert path.stat().st_size < 200_000  # 72 MB of zeros inside
    tracemalloc.start()
    try:
        message = _error(load_weights, path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "would inflate" in message and "'W1'" in message
    assert peak < 8_000_000  # nothing near the claimed 72 MB was allocated


def _lying_member_npz(path: Path, shape: tuple[int, ...], compression: int) -> None:
    """An .npz whose ``W1`` header claims ``shape`` float64 but holds 1 KB of data."""
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        archive.writestr("W1.npy", _npy_header(shape) + bytes(1024))
        archive.writestr("b1.npy", _npy_header((shape[1],)) + bytes(8 * shape[1]))


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_member_claiming_20000_by_20000_is_refused_before_allocating(tmp_path, compression):
    path = tmp_path / "lying.npz"
    _lying_member_npz(path, (20000, 20000), compression)
    tracemalloc.start()
    try:
        message = _error(load_weights, path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "claims (20000, 20000) float64 (3200000000 bytes) but holds 1024" in message
    assert peak < 8_000_000


def _valid_header(**changes: object) -> str:
    header = {
        "format": "xpnet-weights",
        "version": 1,
        "sizes": [5, 4, 3],
        "activations": ["relu", "identity"],
        "dtype": "float32",
        "metadata": {},
    }
    header.update(changes)
    return json.dumps(header)


def _without(key: str) -> str:
    header = json.loads(_valid_header())
    del header[key]
    return json.dumps(header)


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (_without("metadata"), "has no metadata"),
        (_valid_header(metadata=["a"]), "metadata is a JSON array, not an object"),
        (_valid_header(metadata="a"), "metadata is a JSON string, not an object"),
        (_valid_header(metadata={"dataset_md5": ["x"]}), "'dataset_md5' is a JSON array"),
        (_valid_header(metadata={"dataset_md5": {"f": 1}}), "'dataset_md5'"),
        (_valid_header(metadata={"seed": "1"}), "'seed' is a JSON string, not number"),
        (_valid_header(metadata={"interrupted": 1}), "'interrupted' is a JSON number"),
        (_valid_header(metadata={"epochs": True}), "'epochs' is a JSON boolean"),
        (_valid_header(metadata=json.loads('{"a":' * 60 + "1" + "}" * 60)), None),
        (_valid_header(metadata=json.loads('{"a":' * 900 + "1" + "}" * 900)), "too deeply"),
        ('{"format": "xpnet-weights", "version": 1, "x": ' + DEEP + "}", "nested too deeply"),
        (DEEP, "nested too deeply"),
        (_valid_header(version=True), "version True"),
        (_valid_header(sizes=["5", 4, 3]), "not a positive layer size"),
        (_valid_header(sizes=[5, 4]), "not a positive layer size"),
        (_valid_header(dtype=["float32"]), "not a floating dtype name"),
        (_valid_header(dtype="object"), "not a floating dtype name"),
        (_without("activations"), "activations None are not names"),
        (_valid_header(metadata={"note": "x" * (1 << 20)}), "characters long"),
    ],
    ids=[
        "no-metadata",
        "metadata-list",
        "metadata-string",
        "md5-list",
        "md5-values",
        "seed-string",
        "interrupted-number",
        "epochs-boolean",
        "deep-but-allowed",
        "deep-metadata",
        "deep-inside",
        "deep-top",
        "version-true",
        "sizes-strings",
        "sizes-short",
        "dtype-list",
        "dtype-object",
        "no-activations",
        "huge-string",
    ],
)
def test_malformed_headers_are_one_line_weights_errors(tmp_path, text, expected):
    path = tmp_path / "weights.npz"
    save_weights(odd_network(), path)
    _rewrite(path, lambda entries: entries.update({HEADER_KEY: np.array(text)}))
    if expected is None:  # JSON nested within MAX_NESTING is just metadata
        assert read_weights_info(path)["metadata"]["a"]["a"]
        return
    for read in (read_weights_info, load_weights):
        message = _error(read, path)
        assert expected in message and str(path) in message


def test_infer_prints_one_line_for_metadata_that_is_not_an_object(tmp_path, capsys):
    from xpnet.cli import main

    path = tmp_path / "weights.npz"
    save_weights(xpnet.init_network((784, 10), seed=0), path)
    _rewrite(path, lambda entries: _set_header(entries, metadata=["not", "an", "object"]))
    assert main(["infer", "--weights", str(path), "--limit", "10", "--json"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "metadata is a JSON array" in err


def test_the_metadata_types_are_read_from_the_training_record():
    from xpnet.training_record import TrainingRecord, json_types

    kinds = json_types()
    assert set(kinds) == {f.name for f in dataclasses.fields(TrainingRecord)}
    # Written out by hand from the annotations, a few of each shape.
    assert kinds["seed"] == (int,) and kinds["command"] == (str,)
    assert kinds["interrupted"] == (bool,) and kinds["history"] == (list,)
    assert set(kinds["lr"]) == {int, float} and kinds["dataset_md5"] == (dict,)
    assert set(kinds["test_accuracy"]) == {int, float, type(None)}
    assert set(kinds["cpu_threads"]) == {int, type(None)}


def test_a_pickle_whose_lengths_lie_allocates_nothing(tmp_path):
    path = tmp_path / "sample_weight.pkl"
    # PROTO 4, then BINBYTES8 claiming 2**40 bytes, where the file holds a few.
    path.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"tiny")
    tracemalloc.start()
    try:
        message = _error(load_weights, path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "asks for 1099511627776 bytes where 4 remain" in message
    assert peak < 1_000_000


def test_a_pickle_path_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    path = tmp_path / "mnist.pkl"
    os.mkfifo(path)
    message = _error(xpnet.load_textbook_pickle, path, kind=DataError, error=DataError)
    assert message == f"cannot read {path}: it is not a regular file"
