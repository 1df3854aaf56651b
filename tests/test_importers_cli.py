"""``xpnet infer --weights`` with models from other frameworks: a scikit-learn MLP trained
here on the MNIST 5k subset, written as skops, ONNX, safetensors, a PyTorch state dict and a
.keras file, classifies the test images as scikit-learn does."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from importing import quiet_fit, save_keras
from realdata import MNIST_DIR, needs_mnist_5k

import xpnet
from xpnet.cli import main
from xpnet.datasets import load_mnist

LIMIT = 2000


TORCH = pytest.mark.needs_session("torch", reason="torch is the torch session's")
KERAS = pytest.mark.needs_session(
    "torch", "jax", reason="keras runs in the torch and jax sessions, on their library"
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    sklearn_mlp = pytest.importorskip("sklearn.neural_network")
    x, t = load_mnist(split="train", dataset="mnist-5k", data_dir=MNIST_DIR, download=False)
    model = sklearn_mlp.MLPClassifier(hidden_layer_sizes=(32,), max_iter=8, random_state=0)
    quiet_fit(model, x, t)
    x_test, t_test = load_mnist(split="test", data_dir=MNIST_DIR, download=False)
    x_test, t_test = x_test[:LIMIT], t_test[:LIMIT]
    probabilities = model.predict_proba(x_test)
    top = np.sort(probabilities, axis=1)[:, -2:]
    ties = int(np.count_nonzero(top[:, 1] - top[:, 0] < 1e-4))
    correct = int(np.count_nonzero(model.predict(x_test) == t_test))
    return model, tmp_path_factory.mktemp("cli"), correct, ties


def _write(kind: str, model, folder):  # type: ignore[no-untyped-def]
    network = xpnet.from_sklearn(model, dtype="float32")
    path = folder / f"model-{kind}"
    if kind == "skops":
        pytest.importorskip("skops.io").dump(model, path)
    elif kind == "onnx":
        skl2onnx = pytest.importorskip("skl2onnx")
        x = np.zeros((1, 784), np.float32)
        path.write_bytes(skl2onnx.to_onnx(model, x, options={"zipmap": False}).SerializeToString())
    elif kind == "safetensors":
        pytest.importorskip("safetensors")
        xpnet.save_weights(network, path, format="safetensors")
    elif kind == "torch":
        torch = pytest.importorskip("torch")
        state = {}
        for n, layer in enumerate(network.layers):
            state[f"{2 * n}.weight"] = torch.from_numpy(layer.weight.T.copy())
            state[f"{2 * n}.bias"] = torch.from_numpy(layer.bias)
        torch.save(state, path)
    else:
        os.environ.setdefault("KERAS_BACKEND", "jax")
        try:
            import keras
        except ImportError as exc:
            pytest.skip(f"keras is not importable: {exc}")
        dense = [
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
        keras_model = keras.Sequential([keras.Input((784,)), *dense])
        keras_model.set_weights([np.asarray(a) for a in network.to_mapping().values()])
        path = folder / "model.keras"
        save_keras(keras_model, path)
    return path


@needs_mnist_5k
@pytest.mark.parametrize(
    "kind",
    [
        "skops",
        "onnx",
        "safetensors",
        pytest.param("torch", marks=TORCH),
        pytest.param("keras", marks=KERAS),
    ],
)
def test_infer_takes_other_frameworks_files(trained, kind, capsys):
    model, folder, correct, ties = trained
    path = _write(kind, model, folder)
    options = ["--activations", "relu,softmax"] if kind == "torch" else []
    argv = ["infer", "--weights", str(path), *options, "--data-dir", str(MNIST_DIR)]
    status = main([*argv, "--limit", str(LIMIT), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0 and report["images"] == LIMIT
    assert abs(report["correct"] - correct) <= ties


@needs_mnist_5k
@TORCH
def test_infer_refuses_a_state_dict_without_activations_in_one_line(trained, capsys):
    model, folder, _, _ = trained
    path = _write("torch", model, folder)
    status = main(["infer", "--weights", str(path), "--data-dir", str(MNIST_DIR), "--limit", "5"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("xpnet: error")]
    assert status != 0 and len(errors) == 1 and "stores no activations" in errors[0]
