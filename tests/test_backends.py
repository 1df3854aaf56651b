"""The backend registry: names, devices, availability reasons, host transfers."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet.backends import backend_of, to_host


def test_registry_names_every_backend():
    assert xpnet.BACKENDS == ("numpy", "cupy", "torch", "jax", "dask", "array_api_strict")
    assert "numpy" in xpnet.available_backends()


def test_every_backend_record_has_its_nox_session_and_knows_its_namespace():
    # Adding a backend is one record plus one nox session named for it (docs/design.md):
    # a record without its session would go untested, silently.
    import ast
    from pathlib import Path

    from xpnet._backend_records import RECORDS

    noxfile = Path(__file__).resolve().parents[1] / "noxfile.py"
    sessions = {
        node.name
        for node in ast.walk(ast.parse(noxfile.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef)
    }
    assert set(xpnet.BACKENDS) <= sessions
    for name in xpnet.available_backends():
        xp = xpnet.get_backend(name).xp
        assert [record.name for record in RECORDS.values() if record.is_namespace(xp)] == [name]


def test_unknown_backend_lists_the_choices():
    with pytest.raises(
        xpnet.BackendUnavailableError, match="unknown backend 'mxnet'; choose one of numpy"
    ):
        xpnet.get_backend("mxnet")


def test_status_gives_a_reason_for_what_cannot_run():
    for name in xpnet.BACKENDS:
        ok, reason = xpnet.backend_status(name)
        assert ok == (reason == ""), name
        if not ok:
            assert "not installed" in reason or "GPU" in reason or "device" in reason


def test_cupy_without_a_gpu_says_so():
    ok, reason = xpnet.backend_status("cupy")
    if ok:
        pytest.skip("this machine has a CUDA device, so cupy is available")
    assert "NVIDIA GPU" in reason


@pytest.mark.parametrize(
    ("name", "device", "message"),
    [
        ("numpy", "cuda:0", "has only the device 'cpu'"),
        ("array_api_strict", "device9", "no device 'device9'; choose one of CPU_DEVICE, device1"),
    ],
)
def test_bad_device_is_explained(name, device, message):
    with pytest.raises(xpnet.BackendUnavailableError, match=message):
        xpnet.get_backend(name, device)


def test_asarray_places_converts_and_copies_back(backend):
    host = np.arange(12, dtype=np.float64).reshape(3, 4)
    x = backend.asarray(host, dtype="float32")
    assert x.dtype == backend.xp.float32
    assert backend_of(x).name == backend.name
    assert str(backend_of(x)) == str(backend)
    back = to_host(x)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, host.astype(np.float32))
    backend.synchronize()


@pytest.mark.parametrize(
    ("module", "text", "name"),
    [
        ("jaxlib.xla_extension", "TFRT_CPU_0", "cpu:0"),  # jax 0.5 and older
        ("jaxlib._jax", "cpu:0", "cpu:0"),
        ("jaxlib.xla_extension", "cuda:1", "cuda:1"),
    ],
)
def test_jax_devices_are_named_as_xpnet_accepts_them(module, text, name):
    # What --device and to_backend(device=...) take back: jax.devices("cpu")[0] is "cpu:0".
    attributes = {"__module__": module, "__str__": lambda self: text, "platform": "cpu", "id": 0}
    device = type("Device", (), attributes)()
    assert xpnet.Backend("jax", None, device).device_name == name


def test_a_backends_device_name_gives_back_its_device(backend):
    again = xpnet.get_backend(backend.name, backend.device_name)
    assert again.device == backend.device and again.device_name == backend.device_name
    assert str(backend) == f"{backend.name} on {backend.device_name}"
