"""What every importer shares: ``import xpnet`` loads none of their libraries, the new tanh
activation, files recognised by content, and damaged or hostile files refused in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from array_api_extra.testing import assert_close
from importing import digits, quiet_fit, save_keras

import xpnet
from xpnet.backends import to_host
from xpnet.errors import WeightsError

OPTIONAL = ("sklearn", "torch", "keras", "onnx", "safetensors", "skops", "onnxruntime", "jax")

lazy_xp_modules = [xpnet]


@pytest.mark.needs_session(
    "numpy",
    "torch",
    "jax",
    reason="a library can be loaded only where it is installed: the numpy session has "
    "onnxruntime, the torch and jax sessions torch, jax and keras",
)
def test_import_xpnet_loads_no_importer_library():
    code = (
        "import sys, json, xpnet; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {OPTIONAL!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
    assert callable(xpnet.from_sklearn) and callable(xpnet.from_keras)


# ---- tanh -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(), (7,), (3, 4)])
def test_tanh_values_dtype_and_device(backend, dtype, shape):
    host = np.random.default_rng(0).normal(scale=4.0, size=shape).astype(dtype)
    result = xpnet.activations.tanh(backend.asarray(host))
    expected = np.tanh(host.astype(np.float64)).astype(dtype)
    rtol = {"float16": 2e-3, "float32": 2e-6, "float64": 1e-13}[dtype]
    assert_close(result, backend.asarray(expected), rtol=rtol, atol=1e-30)


def test_tanh_saturates_without_warnings_and_propagates_nan(backend):
    host = np.array([-1e30, -1000.0, -20.0, -0.0, 0.0, 1e-30, 20.0, 1e30, np.inf, -np.inf, np.nan])
    x = backend.asarray(host, dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = to_host(xpnet.activations.tanh(x))
    np.testing.assert_array_equal(values[[0, 1, 2, 7, 8, 9]], [-1, -1, -1, 1, 1, -1])
    assert np.isnan(values[-1]) and values[5] == np.float32(1e-30)
    np.testing.assert_array_equal(to_host(x)[:-1], host.astype(np.float32)[:-1])  # untouched
    assert "tanh" in xpnet.activations.ACTIVATIONS


def test_tanh_of_integers_is_default_float(backend):
    xp = backend.xp
    result = xpnet.activations.tanh(backend.asarray(np.array([-2, 0, 3])))
    default = xp.__array_namespace_info__().default_dtypes(device=backend.device)["real floating"]
    assert result.dtype == default
    np.testing.assert_allclose(to_host(result), np.tanh([-2.0, 0.0, 3.0]), rtol=1e-6)


# ---- one file of each format, recognised by content --------------------------------------


EVERY_FORMAT = pytest.mark.needs_session(
    "torch",
    "jax",
    reason="reads the files of every format whose library is installed: the torch and jax "
    "sessions have torch's and keras's besides the importers every session has",
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One model file per format, from a scikit-learn MLP trained on the digits (skipping the
    formats whose library is missing)."""
    sklearn_mlp = pytest.importorskip("sklearn.neural_network")
    folder = tmp_path_factory.mktemp("formats")
    x, t = digits()
    mlp = quiet_fit(
        sklearn_mlp.MLPClassifier(hidden_layer_sizes=(12,), activation="tanh", max_iter=10), x, t
    )
    network = xpnet.from_sklearn(mlp, dtype="float32")
    made = {"npz": folder / "a.npz"}
    xpnet.save_weights(network, made["npz"])
    try:
        import skops.io

        made["skops"] = folder / "a.skops"
        skops.io.dump(mlp, made["skops"])
    except ImportError:
        pass
    try:
        made["safetensors"] = folder / "a.safetensors"
        xpnet.save_weights(network, made["safetensors"], format="safetensors")
    except WeightsError:
        del made["safetensors"]
    try:
        import skl2onnx

        made["onnx"] = folder / "a.onnx"
        made["onnx"].write_bytes(
            skl2onnx.to_onnx(mlp, x[:1], options={"zipmap": False}).SerializeToString()
        )
    except ImportError:
        pass
    try:
        import torch

        made["torch"] = folder / "a.pt"
        torch.save(
            {
                "0.weight": torch.from_numpy(network.layers[0].weight.T.copy()),
                "0.bias": torch.from_numpy(network.layers[0].bias),
                "2.weight": torch.from_numpy(network.layers[1].weight.T.copy()),
                "2.bias": torch.from_numpy(network.layers[1].bias),
            },
            made["torch"],
        )
    except ImportError:
        pass
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import keras

        model = keras.Sequential(
            [
                keras.Input((64,)),
                keras.layers.Dense(12, activation="tanh"),
                keras.layers.Dense(10, activation="softmax"),
            ]
        )
        model.set_weights([np.asarray(a) for a in network.to_mapping().values()])
        made["keras"] = folder / "a.keras"
        save_keras(model, made["keras"])
    except ImportError:
        pass
    return network, made


@EVERY_FORMAT
def test_every_format_is_recognised_by_content_whatever_its_name(files, tmp_path):
    network, made = files
    x, _ = digits()
    expected = xpnet.predict(network, x)
    for kind, path in made.items():
        renamed = tmp_path / f"{kind}.weights"
        renamed.write_bytes(path.read_bytes())
        activations = "tanh,softmax" if kind == "torch" else None
        loaded = xpnet.load_weights(renamed, activations=activations)
        assert loaded.activations == ("tanh", "softmax"), kind
        np.testing.assert_allclose(xpnet.predict(loaded, x), expected, atol=1e-5, err_msg=kind)
        info = xpnet.read_weights_info(renamed, activations=activations)
        assert info["format"] == {"npz": "xpnet-weights"}.get(kind, kind)
        assert info["sizes"] == [64, 12, 10]


@EVERY_FORMAT
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_files_of_each_format_are_refused_in_one_line(files, tmp_path, keep):
    _, made = files
    for kind, path in made.items():
        data = path.read_bytes()
        cut = tmp_path / f"cut{path.suffix}"
        cut.write_bytes(data[: max(1, int(len(data) * keep))])
        with pytest.raises(WeightsError) as info:
            xpnet.load_weights(cut, activations="tanh,softmax" if kind == "torch" else None)
        message = str(info.value)
        assert "\n" not in message and str(cut) in message, (kind, message)


def test_folders_fifos_and_empty_files_are_refused(tmp_path):
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    for path in (tmp_path, fifo, empty, tmp_path / "missing.keras"):
        with pytest.raises(WeightsError) as info:
            xpnet.load_weights(path)  # a FIFO must not block: it is never opened for reading
        assert "\n" not in str(info.value) and str(path) in str(info.value)
