"""The Network type: construction, validation, seeded init, moving, and mismatch errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from array_api_extra.testing import assert_equal

import xpnet
from xpnet.backends import to_host

TEXTBOOK = (784, 50, 100, 10)

lazy_xp_modules = [xpnet]


def test_init_network_is_seeded_and_the_same_on_every_backend(backend):
    network = xpnet.init_network(TEXTBOOK, seed=7, backend=backend.name, device=backend.device_name)
    reference = xpnet.init_network(TEXTBOOK, seed=7)
    assert network.sizes == TEXTBOOK
    assert network.activations == ("sigmoid", "sigmoid", "softmax")
    for mine, theirs in zip(network.layers, reference.layers):
        np.testing.assert_array_equal(to_host(mine.weight), to_host(theirs.weight))
        assert mine.weight.dtype == backend.xp.float32
    assert str(network.backend) == str(backend)
    other = xpnet.init_network(TEXTBOOK, seed=8)
    assert not np.array_equal(to_host(other.layers[0].weight), to_host(reference.layers[0].weight))


def test_init_network_places_on_non_default_device():
    network = xpnet.init_network(
        (6, 4, 3), seed=0, dtype="float64", backend="array_api_strict", device="device1"
    )
    assert str(network.backend) == "array_api_strict on device1"
    assert network.dtype == network.xp.float64


def test_init_network_scales_by_activation():
    network = xpnet.init_network(
        (4000, 500, 500), activations=("relu", "sigmoid"), seed=0, dtype="float64"
    )
    assert np.std(to_host(network.layers[0].weight)) == pytest.approx(np.sqrt(2 / 4000), rel=0.02)
    assert np.std(to_host(network.layers[1].weight)) == pytest.approx(np.sqrt(1 / 500), rel=0.02)
    assert not np.any(to_host(network.layers[0].bias))


def test_to_backend_moves_values_and_keeps_dtype(backend):
    source = xpnet.init_network((6, 5, 3), seed=1, dtype="float64")
    moved = xpnet.to_backend(source, backend.name, backend.device_name)
    assert moved.backend.name == backend.name
    for mine, theirs in zip(moved.layers, source.layers):
        assert_equal(mine.weight, backend.asarray(to_host(theirs.weight)))


def test_to_backend_accepts_the_textbook_dict():
    params = xpnet.init_network((6, 5, 3), seed=1).to_mapping()
    assert sorted(params) == ["W1", "W2", "b1", "b2"]
    moved = xpnet.to_backend(params, "array_api_strict", "device1")
    assert str(moved.backend) == "array_api_strict on device1"


def test_mismatched_namespace_names_both_sides_and_the_fix():
    network = xpnet.init_network((6, 3), seed=0)
    x = xpnet.get_backend("array_api_strict", "device1").asarray(np.zeros((2, 6)), dtype="float32")
    with pytest.raises(xpnet.BackendMismatchError) as info:
        xpnet.predict(network, x)
    message = str(info.value)
    assert "network is on numpy on cpu" in message
    assert "x is on array_api_strict on device1" in message
    assert "xpnet.to_backend(network, 'array_api_strict', device='device1')" in message


def test_mismatched_device_of_one_backend_is_refused():
    network = xpnet.init_network((6, 3), seed=0, backend="array_api_strict")
    x = xpnet.get_backend("array_api_strict", "device1").asarray(np.zeros((2, 6)), dtype="float32")
    with pytest.raises(xpnet.BackendMismatchError, match=r"CPU_DEVICE but x is on .*device1"):
        xpnet.accuracy(network, x, xpnet.get_backend("array_api_strict", "device1").asarray([0, 1]))


def test_host_array_for_a_device_network_is_refused():
    network = xpnet.init_network((6, 3), seed=0, backend="array_api_strict", device="device1")
    with pytest.raises(xpnet.BackendMismatchError, match="x is on numpy on cpu"):
        xpnet.predict(network, np.zeros((2, 6), dtype=np.float32))
    with pytest.raises(xpnet.BackendMismatchError, match="got list"):
        xpnet.predict(network, [[0.0] * 6])


def test_network_arrays_must_share_a_device():
    strict = xpnet.get_backend("array_api_strict", "device1")
    params = xpnet.init_network((6, 4, 3), seed=0, backend="array_api_strict").to_mapping()
    params["W2"] = strict.asarray(np.zeros((4, 3)), dtype="float32")
    with pytest.raises(xpnet.BackendMismatchError, match="share one backend and device"):
        xpnet.Network.from_mapping(params)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.pop("b2"), "lack the bias"),
        (lambda p: p.pop("W1"), "expected weight keys W1"),
        (lambda p: p.pop("W2"), r"the parameter\(s\) b2 fit no layer \(the weights are W1 to W1\)"),
        (lambda p: p.update(W_out=p["W2"]), "W_out fit no layer"),
        (
            lambda p: p.update(W2=np.zeros((5, 3), np.float32)),
            "layer 2 takes 5 inputs but layer 1 gives 4",
        ),
        (lambda p: p.update(b1=np.zeros(3, np.float32)), "bias \\(out,\\)"),
        (lambda p: p.update(b1=np.zeros(4, np.float64)), "one floating dtype"),
    ],
)
def test_malformed_parameters_are_explained(change, message):
    params = xpnet.init_network((6, 4, 3), seed=0).to_mapping()
    change(params)
    with pytest.raises(xpnet.XpnetError, match=message):
        xpnet.Network.from_mapping(params)


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ([(784, 0), (0, 10)], r"^layer 1 has the shape \(784, 0\): no units$"),
        ([(784, 50), (50, 0)], r"^layer 2 has the shape \(50, 0\): no units$"),
        ([(0, 50), (50, 10)], r"^layer 1 has the shape \(0, 50\): no units$"),
    ],
)
def test_zero_width_layers_are_refused_by_every_constructor(backend, shapes, message):
    params = {}
    for number, (inputs, outputs) in enumerate(shapes, start=1):
        params[f"W{number}"] = backend.asarray(np.zeros((inputs, outputs), np.float32))
        params[f"b{number}"] = backend.asarray(np.zeros(outputs, np.float32))
    with pytest.raises(xpnet.NetworkError, match=message):
        xpnet.Network.from_mapping(params)
    layers = tuple(
        xpnet.Layer(params[f"W{n}"], params[f"b{n}"], "sigmoid") for n in range(1, len(shapes) + 1)
    )
    with pytest.raises(xpnet.NetworkError, match=message):
        xpnet.Network(layers)
    sizes = (shapes[0][0], *(outputs for _, outputs in shapes))
    with pytest.raises(xpnet.NetworkError, match="positive layer widths"):
        xpnet.init_network(sizes, backend=backend.name, device=backend.device_name)


def test_unknown_activation_and_wrong_width():
    params = xpnet.init_network((6, 4, 3), seed=0).to_mapping()
    with pytest.raises(xpnet.NetworkError, match="unknown activation 'tanhh'"):
        xpnet.Network.from_mapping(params, ["tanhh", "softmax"])
    with pytest.raises(xpnet.NetworkError, match=r"shape \(2, 5\).*expects 6 features") as flat:
        xpnet.predict(params, np.zeros((2, 5), np.float32))
    assert "flatten" not in str(flat.value)
    with pytest.raises(xpnet.NetworkError) as square:  # images as the IDX files hold them
        xpnet.predict(params, np.zeros((4, 2, 3), np.float32))
    assert str(square.value) == (
        "x has shape (4, 2, 3) but the network's first layer expects 6 features in the last "
        "axis; flatten each sample first: shape (4, 6)"
    )


@pytest.mark.needs_session(
    "numpy",
    "torch",
    "jax",
    "dask",
    reason="a library can be loaded only where it is installed: each of these sessions has others",
)
def test_import_loads_no_optional_backend():
    code = (
        "import sys, xpnet; "
        "print(sorted(m for m in ('torch', 'jax', 'cupy', 'dask', 'array_api_strict', "
        "'matplotlib', 'pooch', 'tqdm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_scale_input_takes_raw_pixels(backend):
    network = xpnet.to_backend(
        xpnet.init_network((12, 5, 3), seed=2), backend.name, backend.device_name
    )
    pixels = np.random.default_rng(3).integers(0, 256, (9, 12), dtype=np.uint8)
    raw = xpnet.predict(network.scale_input(1 / 255), backend.asarray(pixels))
    scaled = xpnet.predict(network, backend.asarray(pixels / 255.0, dtype="float32"))
    assert raw.dtype == backend.xp.float32
    np.testing.assert_allclose(to_host(raw), to_host(scaled), rtol=1e-5, atol=1e-6)
    assert network.layers[0].weight is not network.scale_input(2.0).layers[0].weight
