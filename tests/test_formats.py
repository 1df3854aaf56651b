"""The table of formats: a file is sniffed once and read by the one entry that recognises
it; a format added as one entry gets every rule (budget, one-line refusals, activations,
the non-finite rule) without code of its own."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

import xpnet
from xpnet import _budget, _formats
from xpnet.errors import WeightsError
from xpnet.importers._common import Unsupported


def _error(call, *args, **kwargs) -> str:
    with pytest.raises(WeightsError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def _read_toy(path, activations):
    """A toy format: ``TOY`` then JSON ``{"W1": [[...]], "b1": [...], "why": ...}``."""
    document = json.loads(path.read_bytes()[3:])
    if document.get("why") == "bomb":
        _budget.check(1 << 40, path.stat().st_size, "its JSON")
    if document.get("why") == "odd":
        raise Unsupported("it holds a layer xpnet cannot represent")
    weight = np.array(document["W1"], dtype=np.float64)
    bias = np.array(document["b1"], dtype=np.float64)
    return xpnet.Network.from_mapping({"W1": weight, "b1": bias}, ["relu"])


@pytest.fixture
def toy_format(monkeypatch):
    entry = _formats.Format(
        "toy", "toy file", lambda p: p.head.startswith(b"TOY"), lambda p, a, _: _read_toy(p, a)
    )
    monkeypatch.setattr(_formats, "FORMATS", (entry, *_formats.FORMATS))


def _toy(tmp_path, **document):
    path = tmp_path / "net.toy"
    path.write_bytes(
        b"TOY" + json.dumps({"W1": [[1.0, 2.0]], "b1": [0.5, 0.0]} | document).encode()
    )
    return path


def test_a_format_added_as_one_entry_is_read_with_a_header(toy_format, tmp_path):
    network, info = xpnet.weights.load_weights_and_info(_toy(tmp_path), backend="numpy")
    assert network.sizes == (1, 2) and network.activations == ("relu",)
    assert info == {
        "format": "toy",
        "sizes": [1, 2],
        "activations": ["relu"],
        "dtype": "float64",
        "metadata": {},
    }
    np.testing.assert_array_equal(network.layers[0].weight, [[1.0, 2.0]])


def test_a_format_added_as_one_entry_gets_every_refusal(toy_format, tmp_path):
    bomb = _error(xpnet.load_weights, _toy(tmp_path, why="bomb"))
    assert bomb.startswith(f"{tmp_path / 'net.toy'}: toy file: its JSON declares 1099511627776")
    odd = _error(xpnet.load_weights, _toy(tmp_path, why="odd"))
    assert odd == f"{tmp_path / 'net.toy'}: toy file: it holds a layer xpnet cannot represent"
    path = tmp_path / "nan.toy"
    path.write_bytes(b'TOY{"W1": [[NaN, 1.0]], "b1": [0.0, 0.0]}')
    assert "W1: 1 of its 2 values are not finite" in _error(xpnet.load_weights, path)
    wrong = _error(xpnet.load_weights, _toy(tmp_path), activations="sigmoid")
    assert wrong.endswith("stores the activations relu, not sigmoid: leave activations out")


def test_every_file_is_sniffed_once(monkeypatch, tmp_path):
    calls = []
    real = _formats._sniff
    monkeypatch.setattr(_formats, "_sniff", lambda *args: calls.append(args) or real(*args))
    network = xpnet.init_network([4, 3, 2], seed=0)
    npz, pkl = tmp_path / "w.npz", tmp_path / "w.pkl"
    xpnet.save_weights(network, npz)
    pkl.write_bytes(pickle.dumps({k: np.asarray(v) for k, v in network.to_mapping().items()}))
    for path, activations in ((npz, "sigmoid,softmax"), (pkl, "relu,softmax")):
        calls.clear()
        loaded, info = xpnet.weights.load_weights_and_info(path, activations=activations)
        assert len(calls) == 1, path
        assert info["activations"] == list(loaded.activations) == activations.split(",")


def test_each_format_is_recognised_by_its_entry_alone(tmp_path):
    """The samples of xpnet's formats are each claimed by their own entry; entries before it
    in the table do not claim them (the order is part of the table)."""
    network = xpnet.init_network([4, 3, 2], seed=0)
    samples = {"npz": tmp_path / "w.npz", "pickle": tmp_path / "w.pkl"}
    xpnet.save_weights(network, samples["npz"])
    samples["pickle"].write_bytes(pickle.dumps(network.to_mapping()))
    for name, path in samples.items():
        with open(path, "rb") as file:
            probe = _formats._sniff(path, file)
            claimed = [entry.name for entry in _formats.FORMATS if entry.recognise(probe)]
        assert claimed[0] == name, (name, claimed)


def test_the_writers_are_the_tables(tmp_path):
    message = _error(xpnet.save_weights, xpnet.init_network([2, 2]), tmp_path / "w", format="onnx")
    writers = [entry.name for entry in _formats.FORMATS if entry.write is not None]
    assert writers == ["npz", "safetensors"]
    assert message == "unknown weights format 'onnx'; choose 'npz' or 'safetensors'"
    assert not (tmp_path / "w").exists()
