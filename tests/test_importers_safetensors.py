"""safetensors: xpnet writes them atomically, safetensors and xpnet read them back bit for
bit; files written by others (textbook names, PyTorch names) load with their activations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from importing import check_agreement, device_of, digits, odd_network, quiet_fit

import xpnet
from xpnet.backends import to_host
from xpnet.errors import WeightsError

safetensors_numpy = pytest.importorskip(
    "safetensors.numpy", reason="safetensors is not installed (xpnet[safetensors])"
)


def test_round_trip_is_bitwise_for_safetensors_and_xpnet(backend, tmp_path, dtype):
    if dtype == "float64" and backend.name == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            pytest.skip("JAX without x64 holds no float64")
    host = odd_network(dtype, ("tanh", "identity"))
    network = xpnet.to_backend(host, backend.name, device_of(backend))
    path = tmp_path / "net.safetensors"
    xpnet.save_weights(network, path, format="safetensors", metadata={"dataset": "digits"})
    theirs = safetensors_numpy.load_file(path)
    assert sorted(theirs) == ["W1", "W2", "b1", "b2"]
    for key, value in host.to_mapping().items():
        assert theirs[key].dtype == value.dtype and theirs[key].tobytes() == value.tobytes()
    again = xpnet.load_weights(path, backend=backend.name, device=device_of(backend))
    assert again.activations == ("tanh", "identity")
    for key, value in again.to_mapping().items():
        assert to_host(value).tobytes() == host.to_mapping()[key].tobytes()
    info = xpnet.read_weights_info(path)
    assert info["format"] == "safetensors" and info["metadata"] == {"dataset": "digits"}
    assert info["sizes"] == [5, 4, 3] and info["dtype"] == dtype


def test_trained_network_through_safetensors_predicts_the_same(backend, tmp_path):
    mlp_module = pytest.importorskip("sklearn.neural_network")
    x, t = digits()
    mlp = quiet_fit(mlp_module.MLPClassifier(hidden_layer_sizes=(16,), max_iter=15), x, t)
    path = tmp_path / "mlp.safetensors"
    xpnet.save_weights(xpnet.from_sklearn(mlp), path, format="safetensors")
    network = xpnet.load_weights(path, backend=backend.name, device=device_of(backend))
    labels = np.searchsorted(mlp.classes_, mlp.predict(x))
    check_agreement(network, backend, x, mlp.predict_proba(x), labels)


def test_files_from_other_writers(tmp_path):
    rng = np.random.default_rng(0)
    textbook = {"W1": rng.random((6, 4), dtype=np.float32), "b1": np.zeros(4, np.float32)}
    textbook |= {"W2": rng.random((4, 3), dtype=np.float32), "b2": np.ones(3, np.float32)}
    path = tmp_path / "book.safetensors"
    safetensors_numpy.save_file(textbook, path)
    assert xpnet.load_weights(path).activations == ("sigmoid", "softmax")  # the textbook's
    safetensors_numpy.save_file(textbook, path, metadata={"activations": "relu,identity"})
    assert xpnet.load_weights(path).activations == ("relu", "identity")
    with pytest.raises(WeightsError, match="stores the activations relu,identity"):
        xpnet.load_weights(path, activations="sigmoid,softmax")
    torch_names = {
        "layers.0.weight": textbook["W1"].T.copy(),
        "layers.0.bias": textbook["b1"],
        "layers.2.weight": textbook["W2"].T.copy(),
        "layers.2.bias": textbook["b2"],
    }
    torch_path = tmp_path / "torch.safetensors"
    safetensors_numpy.save_file(torch_names, torch_path)
    with pytest.raises(WeightsError, match="stores no activations"):
        xpnet.load_weights(torch_path)
    network = xpnet.load_weights(torch_path, activations=["relu", "softmax"])
    for key, value in network.to_mapping().items():
        np.testing.assert_array_equal(value, textbook[key])


def test_malformed_files_are_refused(tmp_path):
    path = tmp_path / "net.safetensors"
    xpnet.save_weights(odd_network("float32"), path, format="safetensors")
    data = path.read_bytes()
    cases = {
        "truncated": data[: len(data) - 7],
        "header-cut": data[:20],
    }
    bad = {"W1": np.zeros((5, 4), np.float32), "b1": np.zeros(4, np.float32)}
    bad |= {"W2": np.zeros((3, 3), np.float32), "b2": np.zeros(3, np.float32)}
    mismatch = tmp_path / "mismatch.safetensors"
    safetensors_numpy.save_file(bad, mismatch)
    for name, content in cases.items():
        broken = tmp_path / f"{name}.safetensors"
        broken.write_bytes(content)
        with pytest.raises(WeightsError) as info:
            xpnet.load_weights(broken)
        assert "\n" not in str(info.value) and str(broken) in str(info.value)
    with pytest.raises(WeightsError, match="takes 3 inputs but layer 1 gives 4"):
        xpnet.load_weights(mismatch)
    header = {"xpnet_header": json.dumps({"activations": ["relu", "identity"], "sizes": [5, 9, 3]})}
    lying = tmp_path / "lying.safetensors"
    safetensors_numpy.save_file(odd_network("float32").to_mapping(), lying, metadata=header)
    with pytest.raises(WeightsError, match="header says"):
        xpnet.load_weights(lying)


def test_failed_save_leaves_the_existing_file(tmp_path, monkeypatch):
    path = tmp_path / "net.safetensors"
    xpnet.save_weights(odd_network("float32"), path, format="safetensors")
    before = path.read_bytes()
    import safetensors.numpy as writer

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer, "save", broken)
    with pytest.raises(WeightsError, match="No space left"):
        xpnet.save_weights(odd_network("float64"), path, format="safetensors")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.safetensors"]
    with pytest.raises(WeightsError, match="unknown weights format 'h5'"):
        xpnet.save_weights(odd_network("float32"), path, format="h5")
