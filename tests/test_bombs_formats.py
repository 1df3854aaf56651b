"""Small hostile files in other frameworks' formats must cost little memory to refuse.

Each bomb is a small file declaring gigabytes (a zip member, a config's layer size, a
tensor's view, a pickle's opcodes, a store chunk's zstd frame). Each is loaded in a fresh
process under an address-space limit (so a loader that inflates it fails there, never on
the machine), which reports its peak resident memory after importing the reader and after
the load: ``VmHWM``, since ``ru_maxrss`` carries over the parent's peak across ``exec``.
The load must be refused in one line, and the peak may grow by at most
:data:`GROWTH_BOUND_MB`: far above what refusing takes, far below what each bomb declares.
No timings.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="peak memory is read from /proc/self/status"
)

MB = 1 << 20
GROWTH_BOUND_MB = 256
"""How far loading a bomb may raise a process's peak memory past its imports."""

ADDRESS_LIMIT = 4096 * MB
"""The child's address space: room for the libraries, never for the bombs."""

_CHILD = """
import json, os, resource, sys
limit = int(os.environ["BOMB_ADDRESS_LIMIT"])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

def peak():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0

exec(sys.argv[1])
result = {"base_mb": peak()}
try:
    exec(sys.argv[2])
    result["error"] = None
except BaseException as exc:
    result["error"] = type(exc).__name__
    result["message"] = str(exc)
result["peak_mb"] = peak()
print(json.dumps(result))
"""


def run_child(setup: str, code: str, tmp_path: Path) -> dict[str, object]:
    env = {
        **os.environ,
        "XPNET_CACHE_DIR": str(tmp_path / "cache"),
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        # the session's Keras backend (torch or jax: Keras's numpy backend imports jax)
        "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "torch"),
        "BOMB_ADDRESS_LIMIT": str(ADDRESS_LIMIT),
    }
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, setup, code],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def refused_cheaply(
    name: str, path: Path, tmp_path: Path, *, setup: str, code: str, bomb: Path | None = None
) -> str:
    """Load the bomb at ``path`` (the file that is the bomb: ``bomb``, else ``path``) in a
    child; assert a one-line refusal and a small peak."""
    result = run_child(setup, code.format(path=str(path)), tmp_path)
    growth = float(result["peak_mb"]) - float(result["base_mb"])
    print(
        f"\n{name}: {(bomb or path).stat().st_size} bytes; peak {result['peak_mb']:.0f} MB, "
        f"{growth:.0f} MB past the imports; {result['error']}: "
        f"{str(result.get('message')).replace(str(path), '<file>')[:150]}"
    )
    message = str(result.get("message"))
    assert result["error"] in ("WeightsError", "DataError"), result
    assert "\n" not in message
    assert growth < GROWTH_BOUND_MB, result
    return message


LOAD = "import xpnet"
LOAD_WEIGHTS = "xpnet.load_weights({path!r}, activations='relu,softmax')"
SKOPS = "import skops.io, sklearn.neural_network"
TORCH = "import xpnet, torch"
KERAS = "import xpnet, keras, h5py"


IN_TORCH = pytest.mark.needs_session("torch", reason="torch is the torch session's")
IN_KERAS = pytest.mark.needs_session(
    "torch", "jax", reason="keras runs in the torch and jax sessions, on their library"
)
IN_DASK = pytest.mark.needs_session("dask", reason="zarr is the dask session's")


def needs(*modules: str) -> None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")


# ---- building bombs cheaply: gigabytes declared, megabytes written ------------------------


def deflated_zeros(head: bytes, mebibytes: int) -> tuple[bytes, int, int]:
    """Raw deflate data of ``head`` then ``mebibytes`` MiB of zeros, its CRC and size: one
    compressed MiB repeated (each piece flushed whole), so gigabytes cost a CRC pass."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = deflate.compress(head) + deflate.flush(zlib.Z_FULL_FLUSH)
    piece = deflate.compress(bytes(MB)) + deflate.flush(zlib.Z_FULL_FLUSH)
    assert piece == deflate.compress(bytes(MB)) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc, block = zlib.crc32(head), bytes(MB)
    for _ in range(mebibytes):
        crc = zlib.crc32(block, crc)
    return first + piece * mebibytes + deflate.flush(), crc, len(head) + mebibytes * MB


def write_zip(path: Path, members: list[tuple[str, int, bytes, int, int]], copies: int = 1) -> None:
    """A zip of ``(name, method, data, crc, size)`` members, written by hand so a member's
    data can be deflated ahead (``size`` < 4 GiB); ``copies`` lists each member that many
    times in the central directory (every copy naming the same local entry)."""
    local, central = b"", b""
    for name, method, data, crc, size in members:
        raw = name.encode()
        offset = len(local)
        local += (
            struct.pack(
                "<4sHHHHHIIIHH",
                b"PK\x03\x04",
                20,
                0,
                method,
                0,
                0x21,
                crc,
                len(data),
                size,
                len(raw),
                0,
            )
            + raw
            + data
        )
        entry = (
            struct.pack(
                "<4sHHHHHHIIIHHHHHII",
                b"PK\x01\x02",
                20,
                20,
                0,
                method,
                0,
                0x21,
                crc,
                len(data),
                size,
                len(raw),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + raw
        )
        central += entry * copies
    count = min(len(members) * copies, 0xFFFF)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, len(central), len(local), 0)
    path.write_bytes(local + central + end)


def stored(name: str, data: bytes) -> tuple[str, int, bytes, int, int]:
    return name, 0, data, zlib.crc32(data), len(data)


def npy_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    import io

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return header.getvalue()


def zstd_zeros(size: int, declared: int | None = None) -> bytes:
    """A zstd frame of ``size`` zero bytes in RLE blocks (4 bytes each 128 KiB), declaring
    ``declared`` (default ``size``) as its content size: a gigabyte in 32 KB."""
    declared = size if declared is None else declared
    frame = b"\x28\xb5\x2f\xfd" + bytes([0xE0]) + struct.pack("<Q", declared)  # single segment
    block = 1 << 17
    left = size
    while left:
        count = min(left, block)
        left -= count
        frame += struct.pack("<I", (count << 3) | (1 << 1) | int(left == 0))[:3] + b"\0"
    return frame


# ---- pickles: opcodes that cost memory without bytes to match -----------------------------


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("marks", b"(" * (16 * MB)),  # MARK: a new list on the unpickler's metastack each
        ("memo", b"]\x94" * (8 * MB)),  # EMPTY_LIST, MEMOIZE: a list and a memo entry each
        ("nesting", b"]" + b"]\x94a" * (4 * MB)),  # each list appended into the one before
    ],
)
def test_a_pickle_of_millions_of_opcodes_is_refused_before_it_runs(tmp_path, kind, body):
    path = tmp_path / "sample_weight.pkl"
    path.write_bytes(b"\x80\x04" + body + b".")
    message = refused_cheaply(
        f"pickle {kind}", path, tmp_path, setup=LOAD, code="xpnet.load_weights({path!r})"
    )
    assert "pickle opcodes" in message and str(path) in message


# ---- PyTorch: pickled opcodes, expanded views, shared storages, many records -------------


def _torch_file(path: Path, state: dict) -> Path:
    import torch

    torch.save(state, path)
    return path


@IN_TORCH
def test_a_torch_zip_whose_pickle_is_millions_of_marks_is_refused(tmp_path):
    needs("torch")
    import torch

    real = _torch_file(tmp_path / "real.pt", {"0.weight": torch.zeros(2, 2)})
    with zipfile.ZipFile(real) as archive:
        members = [
            stored(
                name,
                b"\x80\x02" + b"(" * (16 * MB) + b"." if name.endswith("data.pkl") else data,
            )
            for name, data in ((n, archive.read(n)) for n in archive.namelist())
        ]
    path = tmp_path / "model.pt"
    write_zip(path, members)
    message = refused_cheaply("torch zip marks", path, tmp_path, setup=TORCH, code=LOAD_WEIGHTS)
    assert "pickle opcodes" in message


@IN_TORCH
def test_a_legacy_torch_file_of_millions_of_marks_is_refused(tmp_path):
    needs("torch")
    import pickle

    path = tmp_path / "legacy.pt"
    head = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
    head += pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
    path.write_bytes(head + b"\x80\x02" + b"(" * (16 * MB) + b".")
    message = refused_cheaply("torch legacy marks", path, tmp_path, setup=TORCH, code=LOAD_WEIGHTS)
    assert "pickle opcodes" in message


@IN_TORCH
@pytest.mark.parametrize("view", ["expanded", "overlapping", "shared"])
def test_torch_views_that_declare_gigabytes_are_refused_before_copying(tmp_path, view):
    """A stride-0 ``expand`` of one number, an ``as_strided`` window sliding one element at
    a time, and a thousand full views of one storage: each file is a few bytes or MB."""
    needs("torch")
    import torch

    if view == "expanded":
        state = {"0.weight": torch.zeros(1).expand(40_000, 40_000), "0.bias": torch.zeros(1)}
    elif view == "overlapping":
        base = torch.zeros(80_000)
        state = {"0.weight": base.as_strided((40_000, 40_000), (1, 1)), "0.bias": base[:1]}
    else:
        base = torch.zeros(1024, 1024)
        state = {f"{n}.weight": base[:, :] for n in range(1000)}
    path = _torch_file(tmp_path / f"{view}.pt", state)
    assert path.stat().st_size < 8 * MB
    activations = "'relu,softmax'" if view != "shared" else "['relu'] * 1000"
    message = refused_cheaply(
        f"torch {view} views",
        path,
        tmp_path,
        setup=TORCH,
        code=f"xpnet.load_weights({{path!r}}, activations={activations})",
    )
    assert ("expanded or overlapping view" in message) == (view != "shared")
    if view == "shared":
        assert "declares" in message


@IN_TORCH
def test_a_torch_zip_listing_a_hundred_thousand_records_is_refused(tmp_path):
    needs("torch")
    import torch

    real = _torch_file(tmp_path / "real.pt", {"0.weight": torch.zeros(2, 2)})
    with zipfile.ZipFile(real) as archive:
        members = [stored(n, archive.read(n)) for n in archive.namelist()]
    path = tmp_path / "model.pt"
    write_zip(path, members, copies=20_000)
    message = refused_cheaply("torch zip records", path, tmp_path, setup=TORCH, code=LOAD_WEIGHTS)
    assert "zip directory" in message


# ---- Keras: the config's layer sizes and the HDF5 arrays, read before Keras builds -------


def _keras_file(path: Path, units: int, h5: bytes) -> Path:
    from importlib.metadata import version

    def dense(name: str, units: int, activation: str) -> dict:
        return {
            "module": "keras.layers",
            "class_name": "Dense",
            "config": {"name": name, "units": units, "activation": activation},
            "registered_name": None,
        }

    config = {
        "module": "keras",
        "class_name": "Sequential",
        "config": {
            "name": "sequential",
            "layers": [
                {
                    "module": "keras.layers",
                    "class_name": "InputLayer",
                    "config": {"batch_shape": [None, 784], "dtype": "float32", "name": "input"},
                    "registered_name": None,
                },
                dense("dense", units, "relu"),
                dense("dense_1", 10, "softmax"),
            ],
        },
        "registered_name": None,
    }
    metadata = {"keras_version": version("keras"), "date_saved": "2026-01-01@00:00:00"}
    write_zip(
        path,
        [
            stored("metadata.json", json.dumps(metadata).encode()),
            stored("config.json", json.dumps(config).encode()),
            stored("model.weights.h5", h5),
        ],
    )
    return path


def _h5(tmp_path: Path, shapes: dict[str, tuple[int, ...]]) -> bytes:
    """An HDF5 file declaring datasets of ``shapes``, chunked and gzipped, none written:
    read back, each is its fill value, the whole declared size."""
    import h5py

    file = tmp_path / "weights.h5"
    with h5py.File(file, "w") as h5:
        for name, shape in shapes.items():
            h5.create_dataset(name, shape=shape, dtype="f4", chunks=True, compression="gzip")
    return file.read_bytes()


@IN_KERAS
def test_a_keras_config_asking_for_300000_units_is_refused_before_keras_builds(tmp_path):
    needs("keras", "h5py")
    h5 = _h5(tmp_path, {})
    path = _keras_file(tmp_path / "model.keras", 300_000, h5)
    assert path.stat().st_size < 64 * 1024
    message = refused_cheaply("keras config units", path, tmp_path, setup=KERAS, code=LOAD_WEIGHTS)
    assert "config.json declares" in message


@IN_KERAS
def test_a_keras_weights_file_declaring_a_gigabyte_array_is_refused(tmp_path):
    needs("keras", "h5py")
    h5 = _h5(
        tmp_path,
        {
            "layers/dense/vars/0": (300_000, 784),
            "layers/dense/vars/1": (10,),
            "layers/dense_1/vars/0": (10, 10),
            "layers/dense_1/vars/1": (10,),
        },
    )
    path = _keras_file(tmp_path / "model.keras", 10, h5)
    assert path.stat().st_size < 64 * 1024
    message = refused_cheaply("keras h5 arrays", path, tmp_path, setup=KERAS, code=LOAD_WEIGHTS)
    assert "model.weights.h5 declares" in message


@IN_KERAS
def test_a_keras_config_with_a_layer_xpnet_does_not_read_is_refused_before_keras_builds(
    tmp_path,
):
    """An ``Embedding`` of two million rows: Keras would build it (1.5 GB at its peak)
    before xpnet saw it."""
    needs("keras", "h5py")
    path = _keras_file(tmp_path / "model.keras", 10, _h5(tmp_path, {}))
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    config["config"]["layers"].insert(
        1,
        {
            "module": "keras.layers",
            "class_name": "Embedding",
            "config": {"name": "embedding", "input_dim": 2_000_000, "output_dim": 64},
            "registered_name": None,
        },
    )
    members["config.json"] = json.dumps(config).encode()
    write_zip(path, [stored(name, data) for name, data in members.items()])
    message = refused_cheaply("keras foreign layer", path, tmp_path, setup=KERAS, code=LOAD_WEIGHTS)
    assert "'embedding' (Embedding) is not Dense" in message


# ---- skops and npz: deflated members, lying .npy headers, huge directories ---------------


@pytest.fixture(scope="module")
def skops_members(tmp_path_factory):
    needs("skops", "sklearn")
    import skops.io as sio
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(60, 4)), rng.integers(0, 3, 60)
    model = MLPClassifier((5,), max_iter=5, random_state=0).fit(x, t)
    path = tmp_path_factory.mktemp("skops") / "real.skops"
    sio.dump(model, path)
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _weight_member(members: dict[str, bytes]) -> str:
    """The .npy member holding the first layer's weights (shape (4, 5))."""
    import io

    for name, data in members.items():
        if name.endswith(".npy") and np.load(io.BytesIO(data)).shape == (4, 5):
            return name
    raise AssertionError("no (4, 5) array in the skops file")


def test_a_deflated_skops_file_inflating_to_gigabytes_is_refused(tmp_path, skops_members):
    target = _weight_member(skops_members)
    head = npy_header((1024, 204_800))  # 1600 MiB of float64 zeros
    data, crc, size = deflated_zeros(head, 1600)
    members = [
        (name, 8, data, crc, size) if name == target else stored(name, content)
        for name, content in skops_members.items()
    ]
    path = tmp_path / "model.skops"
    write_zip(path, members)
    assert path.stat().st_size < 4 * MB
    message = refused_cheaply(
        "skops deflated member", path, tmp_path, setup=f"{LOAD}; {SKOPS}", code=LOAD_WEIGHTS
    )
    assert "declares" in message and target in message


def test_a_skops_array_whose_header_claims_gigabytes_is_refused(tmp_path, skops_members):
    target = _weight_member(skops_members)
    members = [
        stored(name, npy_header((40_000, 40_000)) + bytes(160) if name == target else content)
        for name, content in skops_members.items()
    ]
    path = tmp_path / "model.skops"
    write_zip(path, members)
    message = refused_cheaply(
        "skops lying .npy header",
        path,
        tmp_path,
        setup=f"{LOAD}; {SKOPS}",
        code=LOAD_WEIGHTS,
    )
    assert "(40000, 40000)" in message


@pytest.mark.parametrize(
    "suffix",
    [
        ".npz",
        pytest.param(".keras", marks=IN_KERAS),
        ".skops",
        pytest.param(".pt", marks=IN_TORCH),
    ],
)
def test_a_zip_listing_a_million_entries_is_refused_before_zipfile_reads_them(tmp_path, suffix):
    """A 60 MB central directory whose entries all name one local entry: zipfile would build
    a ZipInfo for each (gigabytes for a few million)."""
    path = tmp_path / f"many{suffix}"
    write_zip(path, [stored("W1.npy", npy_header((1,)) + bytes(8))], copies=1 << 20)
    reader = {".keras": "import keras", ".skops": SKOPS, ".pt": "import torch"}.get(suffix, "")
    needs(*{".keras": ["keras"], ".skops": ["skops"], ".pt": ["torch"]}.get(suffix, []))
    message = refused_cheaply(
        f"zip of 1M entries ({suffix})",
        path,
        tmp_path,
        setup=f"{LOAD}; {reader}",
        code=LOAD_WEIGHTS,
    )
    assert "zip directory" in message


def test_a_deflated_npz_member_is_refused(tmp_path):
    """xpnet's own format, which had the budget first: the same rule, in the same table."""
    data, crc, size = deflated_zeros(npy_header((1024, 204_800)), 1600)
    path = tmp_path / "w.npz"
    write_zip(path, [("W1.npy", 8, data, crc, size), stored("b1.npy", npy_header((204_800,)))])
    message = refused_cheaply("npz deflated member", path, tmp_path, setup=LOAD, code=LOAD_WEIGHTS)
    assert "inflate" in message


# ---- ONNX and safetensors: declared shapes checked against the bytes held -----------------


@pytest.mark.parametrize("lie", ["raw_data", "external_length", "constant"])
def test_onnx_tensors_declaring_gigabytes_are_refused(tmp_path, lie):
    needs("onnx")
    import onnx
    from onnx import TensorProto, helper

    weight = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[40_000, 40_000])
    weight.raw_data = bytes(16)  # 6.4 GB declared
    if lie == "external_length":
        (tmp_path / "w.bin").write_bytes(bytes(64))
        weight.ClearField("raw_data")
        weight.data_location = TensorProto.EXTERNAL
        for key, value in (("location", "w.bin"), ("offset", "0"), ("length", str(1 << 40))):
            entry = weight.external_data.add()
            entry.key, entry.value = key, value
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"])]
    initializers = [weight]
    if lie == "constant":
        nodes.insert(0, helper.make_node("Constant", [], ["W"], value=weight))
        initializers = []
    graph = helper.make_graph(
        nodes,
        "bomb",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 40_000])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 40_000])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    refused_cheaply(f"onnx {lie}", path, tmp_path, setup=LOAD + "; import onnx", code=LOAD_WEIGHTS)


def _varint(value: int) -> bytes:
    out = b""
    while value >= 0x80:
        out += bytes([value & 0x7F | 0x80])
        value >>= 7
    return out + bytes([value])


def test_an_onnx_file_of_ten_million_empty_nodes_is_refused_before_it_is_parsed(tmp_path):
    """Two bytes on disk each, and an object each once parsed: 20 MB for 1.6 GB."""
    needs("onnx")
    from onnx import helper

    model = helper.make_model(helper.make_graph([], "g", [], []))
    model.ClearField("graph")
    graph = b"\x0a\x00" * 10_000_000  # GraphProto.node (field 1), each empty
    path = tmp_path / "model.onnx"
    path.write_bytes(model.SerializeToString() + b"\x3a" + _varint(len(graph)) + graph)
    message = refused_cheaply(
        "onnx empty nodes", path, tmp_path, setup=LOAD + "; import onnx", code=LOAD_WEIGHTS
    )
    assert "messages and strings" in message


@pytest.mark.parametrize("lie", ["shape", "overlap", "header_length", "empty_tensors"])
def test_safetensors_headers_declaring_gigabytes_are_refused(tmp_path, lie):
    needs("safetensors")
    if lie == "shape":
        tensors = {"W1": {"dtype": "F32", "shape": [40_000, 40_000], "data_offsets": [0, 16]}}
    else:
        tensors = {
            f"W{n}": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]} for n in range(1, 3)
        }
    header = json.dumps(tensors).encode()
    data = bytes(16)
    if lie == "empty_tensors":  # 63 MB of header: a million tensors of no bytes, all valid
        entry = '"{}.weight":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}'
        header = ("{" + ",".join(entry.format(n) for n in range(1_000_000)) + "}").encode()
        data = b""
    length = len(header) if lie != "header_length" else (1 << 31)
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", length) + header + data)
    refused_cheaply(
        f"safetensors {lie}",
        path,
        tmp_path,
        setup=LOAD + "; import safetensors.numpy",
        code=LOAD_WEIGHTS,
    )


# ---- an image store: a chunk's zstd frame and its declared chunk shape -------------------


@pytest.fixture
def small_store(tmp_path):
    needs("zarr")
    from xpnet.scaleout.store import write_store

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (600, 784), dtype=np.uint8)
    t = rng.integers(0, 10, 600).astype(np.uint8)
    return Path(write_store(tmp_path / "s.zarr", x, t, chunk_rows=300).path)


READ_STORE = "from xpnet.scaleout import open_store; open_store({path!r}).read()"


@IN_DASK
def test_a_store_chunk_whose_frame_inflates_to_a_gigabyte_is_refused(tmp_path, small_store):
    """One 32 KB chunk file (zstd RLE blocks) inflating to 1 GiB in a 235 KB chunk."""
    (small_store / "images" / "c" / "0" / "0").write_bytes(zstd_zeros(1 << 30))
    message = refused_cheaply(
        "store chunk frame",
        small_store,
        tmp_path,
        setup=LOAD + "; import zarr",
        code=READ_STORE,
        bomb=small_store / "images" / "c" / "0" / "0",
    )
    assert "chunk images/c/0/0" in message and str(1 << 30) in message


@IN_DASK
@pytest.mark.parametrize("declared", ["padding", "rows"])
def test_a_store_declaring_a_gigabyte_chunk_is_refused(tmp_path, small_store, declared):
    """The store's metadata and manifest say one chunk of 1.4 million rows (holding the
    600 rows there are, the rest padding; or as many rows as the chunk), and the chunk's
    32 KB frame honestly inflates to that: over the budget either way."""
    rows = 1_400_000
    manifest_file = small_store / "xpnet-manifest.json"
    manifest = json.loads(manifest_file.read_text())
    for name, width in (("images", 784), ("labels", None)):
        meta_file = small_store / name / "zarr.json"
        meta = json.loads(meta_file.read_text())
        chunk = [rows, width] if width else [rows]
        meta["chunk_grid"]["configuration"]["chunk_shape"] = chunk
        entry = manifest["arrays"][name]
        entry["chunks"], entry["digests"] = chunk, entry["digests"][:1]
        if declared == "rows":
            meta["shape"] = entry["shape"] = chunk
        meta_file.write_text(json.dumps(meta))
        folder = small_store / name / "c"
        shutil.rmtree(folder)
        key = folder / "0" / "0" if width else folder / "0"
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_bytes(zstd_zeros(rows * (width or 1)))
    manifest_file.write_text(json.dumps(manifest))
    message = refused_cheaply(
        f"store chunk of 1.4M rows ({declared})",
        small_store,
        tmp_path,
        setup=LOAD + "; import zarr",
        code=READ_STORE,
        bomb=small_store / "images" / "c" / "0" / "0",
    )
    assert "declares" in message and str(rows * 784) in message
    assert ("padded chunk" in message) == (declared == "padding")


@IN_DASK
def test_the_zstd_bomb_builder_makes_frames_zstd_reads():
    """The RLE frames above are real zstd: numcodecs inflates a small one to its zeros."""
    needs("numcodecs")
    from numcodecs import Zstd

    assert bytes(Zstd().decode(zstd_zeros(300_000))) == bytes(300_000)


def test_the_address_limit_leaves_room_to_refuse():
    """The child's limit is far above a refusal's needs and below this machine's memory."""
    assert resource.RLIM_INFINITY != ADDRESS_LIMIT > 4 * GROWTH_BOUND_MB * MB
