"""The GPU paths that a CPU machine can check: device names, a backend whose import fails,
the batching rule, CuPy's float16 sigmoid, dtypes a backend lacks.

Each GPU library is replaced by a stand-in (a fake module, patched device counts), so these
tests pass on any machine and none asserts that an installed, usable backend fails.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import json
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

import xpnet
import xpnet.batching as batching
import xpnet.inference as inference
from xpnet._backend_records import RECORDS, native_sigmoid, parse_device
from xpnet.backends import Backend, free_device_memory

# --- device names: one rule for cupy, torch and jax -------------------------------------------

ACCEPTED = {"cuda": 0, "cuda:0": 0, "0": 0, "1": 1, "cuda:1": 1, "gpu": 0, "gpu:1": 1}
REFUSED_NAMES = ["cuda:", "cuda:-1", "-1", "cuda0", "cuda:x", "CUDA:0", " 0", "cuda:1:0", ""]


class FakeCudaDevice:
    """What ``cupy.cuda.Device(n)`` and a JAX GPU device are to the resolvers."""

    def __init__(self, index: int) -> None:
        self.id = index
        self.platform = "gpu"

    def __enter__(self) -> FakeCudaDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


FRAMEWORKS = pytest.mark.needs_session(
    "torch",
    "jax",
    reason="compares CuPy with PyTorch and JAX: the torch and jax sessions have them",
)


def fake_cuda_libraries(
    monkeypatch: pytest.MonkeyPatch,
    nvrtc_error: BaseException | None = None,
    cublas_error: BaseException | None = None,
) -> None:
    """CuPy's loaders of NVRTC and cuBLAS (``cupy_backends.cuda.libs``), failing as CuPy 14's
    do where a library is missing: NVRTC when first called, cuBLAS when first imported."""

    def get_version() -> int:
        if nvrtc_error is not None:
            raise nvrtc_error
        return 13000

    def load(name: str) -> types.ModuleType:
        if name == "cublas" and cublas_error is not None:
            raise ImportError(str(cublas_error)) from cublas_error
        if name in ("nvrtc", "cublas"):
            module = types.ModuleType(f"cupy_backends.cuda.libs.{name}")
            module.getVersion = get_version  # type: ignore[attr-defined]
            return module
        raise AttributeError(name)

    libs = types.ModuleType("cupy_backends.cuda.libs")
    libs.__getattr__ = load  # type: ignore[attr-defined]
    for name, module in (
        ("cupy_backends", types.ModuleType("cupy_backends")),
        ("cupy_backends.cuda", types.ModuleType("cupy_backends.cuda")),
        ("cupy_backends.cuda.libs", libs),
    ):
        monkeypatch.setitem(sys.modules, name, module)
    for name in ("nvrtc", "cublas"):
        monkeypatch.delitem(sys.modules, f"cupy_backends.cuda.libs.{name}", raising=False)


@pytest.fixture
def two_gpus(monkeypatch):
    """CuPy, PyTorch and JAX each made to see two GPUs; returns how to read a device's index."""
    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 2), Device=FakeCudaDevice
    )
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    fake_cuda_libraries(monkeypatch)
    monkeypatch.setitem(sys.modules, "array_api_compat.cupy", types.ModuleType("fake_compat"))
    readers = {"cupy": lambda device: device.id}
    try:
        import torch
    except ImportError:
        pass
    else:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
        readers["torch"] = lambda device: device.index if device.type == "cuda" else None
    try:
        import jax
    except ImportError:
        pass
    else:
        real = jax.devices

        def devices(platform=None):
            return [FakeCudaDevice(0), FakeCudaDevice(1)] if platform == "gpu" else real(platform)

        monkeypatch.setattr(jax, "devices", devices)
        readers["jax"] = lambda device: device.id if isinstance(device, FakeCudaDevice) else None
    return readers


@pytest.mark.parametrize(("text", "index"), ACCEPTED.items())
@FRAMEWORKS
def test_gpu_names_mean_the_same_on_cupy_torch_and_jax(two_gpus, text, index):
    assert parse_device(text) == ("cuda", index)
    for name, index_of in two_gpus.items():
        assert index_of(xpnet.get_backend(name, text).device) == index, name


@pytest.mark.parametrize("text", REFUSED_NAMES)
@FRAMEWORKS
def test_malformed_names_are_refused_alike(two_gpus, text):
    messages = set()
    for name in two_gpus:
        with pytest.raises(xpnet.BackendUnavailableError) as caught:
            xpnet.get_backend(name, text)
        messages.add(str(caught.value))
        assert "\n" not in str(caught.value)
    assert messages == {f"device {text!r} is not a device name; use 'cpu', 'cuda', 'cuda:N' or 'N'"}


@pytest.mark.parametrize("text", ["cuda:2", "2", "gpu:7"])
@FRAMEWORKS
def test_a_gpu_that_is_not_there_is_refused_alike(two_gpus, text):
    index = parse_device(text)[1]
    for name in two_gpus:
        with pytest.raises(xpnet.BackendUnavailableError, match=f"no CUDA device {index}: "):
            xpnet.get_backend(name, text)


@FRAMEWORKS
def test_cpu_names(two_gpus):
    assert parse_device(None) == parse_device("cpu") == ("cpu", None)
    with pytest.raises(xpnet.BackendUnavailableError, match="only on CUDA devices"):
        xpnet.get_backend("cupy", "cpu")
    with pytest.raises(xpnet.BackendUnavailableError, match="has only the device 'cpu'"):
        xpnet.get_backend("numpy", "cuda")
    if "torch" in two_gpus:
        assert str(xpnet.get_backend("torch", "cpu").device) == "cpu"


# --- a CuPy that sees the GPU but cannot compile kernels or multiply matrices -------------------

NVRTC_MISSING = OSError(
    'Failure finding "libnvrtc.so.13 or libnvrtc.so.12": No such file: libnvrtc.so.13\nmore'
)
CUBLAS_MISSING = OSError('Failure finding "libcublasLt.so.13": No such file: libcublasLt.so.13')


@pytest.mark.parametrize(
    ("nvrtc", "cublas", "named"),
    [
        (NVRTC_MISSING, None, ["NVRTC, CUDA's kernel compiler, cannot load (OSError: Failure"]),
        (None, CUBLAS_MISSING, ["cuBLAS, CUDA's matrix library, cannot load (ImportError: "]),
        (NVRTC_MISSING, CUBLAS_MISSING, ["NVRTC", "cuBLAS"]),
    ],
)
def test_cupy_without_nvrtc_or_cublas_is_no_with_the_reason(
    monkeypatch, capsys, nvrtc, cublas, named
):
    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1), Device=FakeCudaDevice
    )
    cupy.ndarray = type("ndarray", (), {})  # type: ignore[attr-defined]  # dask looks for it
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "array_api_compat.cupy", types.ModuleType("fake_compat"))
    fake_cuda_libraries(monkeypatch, nvrtc, cublas)
    ok, reason = xpnet.backend_status("cupy")
    assert not ok and "\n" not in reason
    assert reason.startswith("backend 'cupy' sees 1 GPU(s) but ")
    for part in named:
        assert part in reason
    assert reason.endswith("it brings CuPy with the CUDA libraries it loads (CuPy's ctk extra)")
    from xpnet.cli import main

    assert main(["backends"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("cupy "))
    assert line.split()[1] == "no" and named[0] in line
    fake_cuda_libraries(monkeypatch)  # both load: cupy is available again
    assert xpnet.backend_status("cupy") == (True, "")


def test_the_cuda_extras_bring_the_libraries_cupy_loads():
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    for major in ("12", "13"):
        (requirement,) = map(Requirement, extras[f"cuda{major}"])
        assert requirement.name == f"cupy-cuda{major}x" and requirement.extras == {"ctk"}
        assert not requirement.specifier.contains("13.6.0")  # CuPy 13 has no ctk extra
        assert requirement.specifier.contains("14.2.0")


def test_a_real_cupy_without_its_libraries_says_which(monkeypatch):
    # Where CuPy is installed but the CUDA toolkit is not (the host-like rehearsal: CuPy 14
    # with no ctk extra and no GPU), the real loaders fail; with the GPU count faked, the
    # backend must name the library, not pass and fail at the first kernel.
    cupy = pytest.importorskip("cupy")
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception:
        pass
    else:
        pytest.skip("NVRTC loads here: nothing is missing to report")
    monkeypatch.setattr(cupy.cuda.runtime, "getDeviceCount", lambda: 1)
    monkeypatch.setattr(cupy.cuda, "Device", FakeCudaDevice)
    ok, reason = xpnet.backend_status("cupy")
    assert not ok and "NVRTC, CUDA's kernel compiler, cannot load" in reason, reason


# --- a backend whose import fails ---------------------------------------------------------------

BREAK_IMPORTS = """
import importlib.abc, importlib.machinery, sys

class Broken(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, failures):
        self.failures = failures
    def find_spec(self, name, path, target=None):
        if name in self.failures:
            return importlib.machinery.ModuleSpec(name, self)
        return None
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        raise self.failures[module.__name__]

sys.meta_path.insert(0, Broken(FAILURES))
"""


class BrokenImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``name`` and fails to import it, as a CuPy with a missing CUDA library does."""

    def __init__(self, name: str, error: BaseException) -> None:
        self.name, self.error = name, error

    def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
        return importlib.machinery.ModuleSpec(name, self) if name == self.name else None

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        return None

    def exec_module(self, module):  # type: ignore[no-untyped-def]
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        OSError("libcudart.so.13: cannot open shared object file: No such file or directory"),
        ImportError("CuPy failed to load: two CuPy packages are installed\nmore detail"),
        RuntimeError(""),
    ],
)
def test_a_cupy_that_fails_to_import_is_one_line(monkeypatch, error):
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    broken = BrokenImport("cupy", error)
    sys.meta_path.insert(0, broken)
    try:
        check_broken_cupy(error)
    finally:
        sys.meta_path.remove(broken)


def check_broken_cupy(error: BaseException) -> None:
    ok, reason = xpnet.backend_status("cupy")
    assert not ok and "\n" not in reason
    assert reason.startswith(
        f"backend 'cupy': the package 'cupy' is installed but cannot be imported "
        f"({type(error).__name__}: "
    )
    assert (str(error).splitlines() or ["no message"])[0] in reason


@pytest.mark.needs_session(
    "dask", reason="dask imports CuPy where it finds one, so dask must report the broken CuPy too"
)
def test_xpnet_backends_names_broken_backends_in_one_line_each():
    # A fresh process: dask imports CuPy where it is found, so a broken CuPy reaches dask
    # too, and a half-imported dask must not stay behind in the test process.
    failures = (
        '{"torch": OSError("libtorch_cuda.so: undefined symbol"),'
        ' "jax": ImportError("jaxlib version mismatch"),'
        ' "cupy": OSError("libcudart.so.13: cannot open shared object file")}'
    )
    script = BREAK_IMPORTS.replace("FAILURES", failures) + textwrap.dedent(
        """
        import xpnet
        from xpnet.cli import main
        available = xpnet.available_backends()
        assert "numpy" in available and not {"cupy", "torch", "jax"} & set(available), available
        code = main(["backends"])
        code += main(["backends", "--json"])
        sys.exit(code)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    table, document = result.stdout.rstrip("\n").rsplit("\n", 1)
    lines = table.splitlines()
    assert len(lines) == len(xpnet.BACKENDS) + 1 and lines[-1].startswith("numpy engine: ")
    lines = lines[:-1]
    torch_line = next(line for line in lines if line.startswith("torch "))
    jax_line = next(line for line in lines if line.startswith("jax "))
    assert " no " in torch_line and "OSError: libtorch_cuda.so: undefined symbol" in torch_line
    assert " no " in jax_line and "ImportError: jaxlib version mismatch" in jax_line
    statuses = {
        entry["backend"]: {"available": entry["available"], "reason": entry["reason"]}
        for entry in json.loads(document)["backends"]
    }
    assert statuses["torch"]["available"] is False and statuses["jax"]["available"] is False
    assert statuses["numpy"] == {"available": True, "reason": ""}
    assert statuses["cupy"]["reason"].startswith(
        "backend 'cupy': the package 'cupy' is installed but cannot be imported (OSError: "
    )
    if importlib.util.find_spec("dask") is not None:  # dask imports cupy where it finds one
        assert "libcudart.so.13" in statuses["dask"]["reason"]


# --- the batching rule --------------------------------------------------------------------------

ROW = 5056  # the textbook network in float32: (784 + 3 * (50 + 100 + 10)) * 4 bytes


def test_working_set_of_the_textbook_network():
    network = xpnet.init_network((784, 50, 100, 10))
    assert batching.working_set_per_row(network) == ROW
    assert batching.working_set_per_row(xpnet.init_network((784, 50, 100, 10), dtype="float64"))
    assert (
        batching.working_set_per_row(xpnet.init_network((784, 50, 100, 10), dtype="float64"))
        == 2 * ROW
    )


@pytest.mark.parametrize(
    ("rows", "gpu", "free", "expected"),
    [
        (10_000, False, None, 100),  # CPU backends: the textbook's batch, whatever the memory
        (10_000, False, 1 << 40, 100),
        (10_000, True, 1 << 40, 10_000),  # a GPU with room: the whole input
        (10_000, True, 2 * 1234 * ROW + ROW - 1, 1234),  # half of free memory: 1234 rows
        (10_000, True, ROW, 1),  # never less than one row
        (10_000, True, 0, 1),
        (10**9, True, None, (1 << 30) // ROW),  # no report: the fixed budget
        (0, True, 1 << 40, 1),
    ],
)
def test_batching_rule(rows, gpu, free, expected):
    assert batching.auto_batch_size(rows, ROW, gpu=gpu, free_bytes=free) == expected


def spy_on_batches(monkeypatch) -> list[int]:
    sizes: list[int] = []
    forward = inference.forward

    def recording(net, x, *, labels):
        sizes.append(int(x.shape[0]))
        return forward(net, x, labels=labels)

    monkeypatch.setattr(inference, "forward", recording)
    return sizes


def small_problem(backend: Backend, rows: int = 250):
    network = xpnet.init_network((16, 8, 4), backend="array_api_strict")
    rng = np.random.default_rng(0)
    x = backend.asarray(rng.standard_normal((rows, 16)), "float32")
    t = backend.asarray(rng.integers(0, 4, rows))
    return network, x, t


def test_count_correct_follows_the_rule_on_a_stand_in_gpu(monkeypatch):
    strict = xpnet.get_backend("array_api_strict")
    network, x, t = small_problem(strict)
    row = batching.working_set_per_row(network)
    reference = xpnet.count_correct(network, x, t, batch_size=250)
    sizes = spy_on_batches(monkeypatch)
    assert xpnet.count_correct(network, x, t) == reference  # a CPU backend: 100 at a time
    assert sizes == [100, 100, 50]
    asked: list[Backend] = []
    monkeypatch.setattr(RECORDS["array_api_strict"], "is_gpu", lambda device: True)

    def free_memory(backend):
        asked.append(backend)
        return free[0]

    monkeypatch.setattr(batching, "free_device_memory", free_memory)
    free = [1 << 40]
    sizes.clear()
    assert xpnet.count_correct(network, x, t) == reference  # room for all: one batch
    assert sizes == [250]
    free = [2 * 90 * row]  # half of it holds 90 rows
    sizes.clear()
    assert xpnet.accuracy(network, x, t) == reference / 250
    assert sizes == [90, 90, 70]
    assert [b.name for b in asked] == ["array_api_strict", "array_api_strict"]
    sizes.clear()
    assert xpnet.count_correct(network, x, t, batch_size=60) == reference  # given: obeyed
    assert sizes == [60, 60, 60, 60, 10]


def fake_cupy_module(mem_get_info) -> types.ModuleType:
    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
        runtime=types.SimpleNamespace(memGetInfo=mem_get_info)
    )
    pool = types.SimpleNamespace(free_bytes=lambda: 5)
    cupy.get_default_memory_pool = lambda: pool  # type: ignore[attr-defined]
    return cupy


def is_gpu(backend: Backend) -> bool:
    return RECORDS[backend.name].is_gpu(backend.device)


def test_gpu_kind_and_memory_queries(monkeypatch):
    assert not is_gpu(xpnet.get_backend("numpy"))
    assert free_device_memory(xpnet.get_backend("numpy")) is None
    fake_cupy = Backend("cupy", types.ModuleType("array_api_compat.cupy"), FakeCudaDevice(0))
    assert is_gpu(fake_cupy)
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy_module(lambda: (1000, 4000)))
    assert free_device_memory(fake_cupy) == 1005  # the driver's free memory and CuPy's pool

    def no_answer():
        raise RuntimeError("cudaErrorNoDevice")

    monkeypatch.setitem(sys.modules, "cupy", fake_cupy_module(no_answer))
    assert free_device_memory(fake_cupy) is None  # cannot ask: the caller's fixed budget
    torch_cuda = Backend("torch", types.ModuleType("t"), types.SimpleNamespace(type="cuda"))
    jax_gpu = Backend("jax", types.ModuleType("j"), types.SimpleNamespace(platform="gpu"))
    jax_cpu = Backend("jax", types.ModuleType("j"), types.SimpleNamespace(platform="cpu"))
    assert is_gpu(torch_cuda) and is_gpu(jax_gpu) and not is_gpu(jax_cpu)
    jax_gpu_stats = Backend(
        "jax",
        types.ModuleType("j"),
        types.SimpleNamespace(
            platform="gpu", memory_stats=lambda: {"bytes_limit": 1000, "bytes_in_use": 300}
        ),
    )
    assert free_device_memory(jax_gpu_stats) == 700


def test_xpnet_infer_follows_the_rule(monkeypatch, capsys):
    from realdata import MNIST_DIR, TEST_FILES

    if not all((MNIST_DIR / name).is_file() for name in TEST_FILES):
        pytest.skip(f"the MNIST test files are not in {MNIST_DIR} (set XPNET_DATA_DIR)")
    import xpnet.cli.infer as infer_cli
    from xpnet.cli import main

    seen: list[object] = []
    real = infer_cli.count_correct_and_unlabelled

    def counting(network, x, t, *, batch_size=None, engine=None):
        seen.append(batch_size)
        return real(network, x, t, batch_size=batch_size, engine=engine)

    monkeypatch.setattr(infer_cli, "count_correct_and_unlabelled", counting)
    monkeypatch.setattr(RECORDS["array_api_strict"], "is_gpu", lambda device: True)
    monkeypatch.setattr(batching, "free_device_memory", lambda backend: 2 * 700 * ROW)
    argv = ["infer", "--backend", "array_api_strict", "--data-dir", str(MNIST_DIR)]
    assert main([*argv, "--limit", "2000", "--no-download", "--json"]) == 0
    assert seen[-1] == 700  # the rule's batch on a stand-in GPU
    assert json.loads(capsys.readouterr().out)["images"] == 2000
    assert main([*argv, "--limit", "300", "--no-download", "--json", "--batch-size", "7"]) == 0
    assert seen[-1] == 7


# --- CuPy's sigmoid keeps float16 -------------------------------------------------------------


def test_cupy_sigmoid_keeps_float16(monkeypatch):
    loops: list[str] = []

    def expit(x):  # as CuPy's: no float16 loop, so float16 input comes back float64
        loops.append(str(x.dtype))
        out = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
        return out if x.dtype == np.float16 else out.astype(x.dtype)

    special = types.ModuleType("cupyx.scipy.special")
    special.expit = expit  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cupyx", types.ModuleType("cupyx"))
    monkeypatch.setitem(sys.modules, "cupyx.scipy", types.ModuleType("cupyx.scipy"))
    monkeypatch.setitem(sys.modules, "cupyx.scipy.special", special)
    kernel = native_sigmoid(types.ModuleType("array_api_compat.cupy"))
    assert kernel is not None
    x = np.array([-12.0, -1.0, 0.0, 0.5, 3.0, 11.0], dtype=np.float16)
    y = kernel(x)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype("e"))
    assert loops == ["float32"]  # computed in float32, rounded to float16 once
    for dtype in ("float32", "float64"):
        assert kernel(x.astype(dtype)).dtype == np.dtype(dtype)


# --- a dtype the target backend lacks ----------------------------------------------------------


@pytest.mark.needs_session("torch", reason="torch is the torch session's")
def test_a_longdouble_network_moved_to_torch_is_one_line():
    pytest.importorskip("torch")
    if np.dtype(np.longdouble).itemsize <= 8:
        pytest.skip("long double is float64 on this platform")
    network = xpnet.init_network((4, 3, 2), dtype=str(np.dtype(np.longdouble)))
    with pytest.raises(xpnet.BackendUnavailableError, match=r"has no dtype float(96|128)") as e:
        xpnet.to_backend(network, "torch")
    assert "\n" not in str(e.value)


# --- dask with CuPy chunks (runs where CuPy has a GPU: the GPU check's cupy step) ---------------


@pytest.mark.only_backends("cupy", reason="dask with CuPy chunks needs CuPy on a GPU")
def test_dask_with_cupy_chunks_counts_as_numpy_does(backend):
    da = pytest.importorskip("dask.array")
    import cupy

    rng = np.random.default_rng(7)
    host_net = xpnet.init_network((16, 8, 3), seed=3)
    x_host = rng.random((250, 16)).astype(np.float32)
    t_host = rng.integers(0, 3, 250)
    expected = xpnet.count_correct(host_net, x_host, t_host)
    lazy = xpnet.to_backend(host_net, "dask")
    on_gpu = xpnet.Network(
        tuple(
            xpnet.Layer(
                layer.weight.map_blocks(cupy.asarray),
                layer.bias.map_blocks(cupy.asarray),
                layer.activation,
            )
            for layer in lazy.layers
        )
    )
    x = da.from_array(x_host, chunks=(60, 16)).map_blocks(cupy.asarray)
    t = da.from_array(t_host, chunks=60).map_blocks(cupy.asarray)
    labels = xpnet.predict_labels(on_gpu, x)
    assert isinstance(labels._meta, cupy.ndarray)  # the chunks stayed on the GPU
    assert xpnet.count_correct(on_gpu, x, t) == expected
    host_labels = xpnet.predict_labels(host_net, x_host)
    np.testing.assert_array_equal(cupy.asnumpy(labels.compute()), host_labels)
