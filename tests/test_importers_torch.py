"""PyTorch: an nn.Sequential trained here on scikit-learn's digits, and its state dict file."""

from __future__ import annotations

import numpy as np
import pytest
from importing import check_agreement, device_of, digits

import xpnet
from xpnet.errors import NetworkError, WeightsError

torch = pytest.importorskip("torch", reason="torch is not installed (xpnet[torch])")
nn = torch.nn

pytestmark = pytest.mark.needs_session("torch", reason="torch is the torch session's")


def train(model, epochs: int = 8):  # type: ignore[no-untyped-def]
    """A few epochs of Adam on the digits, so the weights are a trained model's."""
    x, t = digits()
    torch.manual_seed(0)
    inputs = torch.from_numpy(x)
    if isinstance(model[0], nn.Flatten):
        inputs = inputs.reshape(-1, 8, 8)
    targets = torch.from_numpy(t)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(epochs):
        for start in range(0, len(x), 128):
            optimizer.zero_grad()
            out = (
                model[:-1](inputs[start : start + 128])
                if _ends_in_softmax(model)
                else model(inputs[start : start + 128])
            )
            nn.functional.cross_entropy(out, targets[start : start + 128]).backward()
            optimizer.step()
    return model.eval()


def _ends_in_softmax(model) -> bool:  # type: ignore[no-untyped-def]
    return isinstance(model[-1], nn.Softmax)


def reference(model, x: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    inputs = torch.from_numpy(x)
    if isinstance(model[0], nn.Flatten):
        inputs = inputs.reshape(-1, 8, 8)
    with torch.no_grad():
        return model(inputs).numpy()


MODELS = {
    "sigmoid-softmax": lambda: nn.Sequential(
        nn.Linear(64, 32),
        nn.Sigmoid(),
        nn.Linear(32, 16),
        nn.Sigmoid(),
        nn.Linear(16, 10),
        nn.Softmax(dim=1),
    ),
    "flatten-relu-logits": lambda: nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 10)
    ),
    "tanh-nested-identity": lambda: nn.Sequential(
        nn.Sequential(nn.Linear(64, 20), nn.Tanh()),
        nn.Identity(),
        nn.Linear(20, 10, bias=False),
        nn.Softmax(dim=-1),
    ),
}


@pytest.fixture(scope="module", params=list(MODELS))
def trained(request):
    return request.param, train(MODELS[request.param]())


def test_sequential_matches_torch(trained, backend):
    name, model = trained
    x, _ = digits()
    network = xpnet.from_torch(model, backend=backend.name, device=device_of(backend))
    expected = reference(model, x)
    if name == "flatten-relu-logits":
        assert network.activations == ("relu", "identity")
    check_agreement(network, backend, x, expected, expected.argmax(axis=1))


def test_state_dict_file_with_activations(trained, backend, tmp_path):
    name, model = trained
    activations = {
        "sigmoid-softmax": "sigmoid,sigmoid,softmax",
        "flatten-relu-logits": ["relu", "identity"],
        "tanh-nested-identity": "tanh,softmax",
    }[name]
    path = tmp_path / "state.pt"
    torch.save(model.state_dict(), path)
    network = xpnet.load_weights(
        path, backend=backend.name, device=device_of(backend), activations=activations
    )
    x, _ = digits()
    expected = reference(model, x)
    check_agreement(network, backend, x, expected, expected.argmax(axis=1))
    live = xpnet.from_torch(model.state_dict(), activations=activations)
    for mine, theirs in zip(live.to_mapping().values(), network.to_mapping().values()):
        np.testing.assert_array_equal(mine, xpnet.to_host(theirs))


def test_state_dict_without_activations_is_refused(tmp_path):
    model = MODELS["sigmoid-softmax"]()
    path = tmp_path / "state.pt"
    torch.save(model.state_dict(), path)
    for call in (xpnet.load_weights, xpnet.read_weights_info):
        with pytest.raises(WeightsError, match="stores no activations") as info:
            call(path)
        assert "\n" not in str(info.value)
    with pytest.raises(WeightsError, match="3 layers but 2 activations"):
        xpnet.load_weights(path, activations="sigmoid,softmax")


def test_whole_module_file_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(MODELS["sigmoid-softmax"](), path)  # pickles the module's classes: code
    with pytest.raises(WeightsError, match=r"weights_only=True.*state_dict\(\)") as info:
        xpnet.load_weights(path, activations="sigmoid,sigmoid,softmax")
    assert "\n" not in str(info.value)


def test_legacy_serialization_is_read(tmp_path):
    model = MODELS["tanh-nested-identity"]()
    path = tmp_path / "legacy.pt"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=False)
    network = xpnet.load_weights(path, activations="tanh,softmax")
    x, _ = digits()
    np.testing.assert_allclose(xpnet.predict(network, x), reference(model, x), atol=1e-5)


class Doubled(nn.Linear):
    """A Linear whose forward computes something else: not a Linear to xpnet."""

    def forward(self, x):  # type: ignore[no-untyped-def]
        return 2 * super().forward(x)


@pytest.mark.parametrize(
    ("module", "match"),
    [
        (lambda: nn.Sequential(nn.Linear(64, 8), nn.GELU()), r"module 1 \(GELU\)"),
        (lambda: nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Sigmoid()), "after another"),
        (lambda: nn.Sequential(nn.ReLU(), nn.Linear(64, 8)), "before any Linear"),
        (lambda: nn.Sequential(nn.Linear(64, 8), nn.Softmax(dim=0)), r"Softmax\(dim=0\)"),
        (lambda: nn.Sequential(nn.Linear(64, 8), nn.Flatten()), "only Flatten"),
        (lambda: nn.Sequential(nn.Linear(64, 8), nn.Linear(9, 3)), "takes 9 inputs"),
        (lambda: nn.Linear(64, 8), "not an nn.Sequential"),
        (lambda: nn.Sequential(Doubled(64, 8)), r"module 0 \(Doubled\)"),
    ],
)
def test_unrepresentable_modules_are_refused_naming_the_module(module, match):
    with pytest.raises(NetworkError, match=match) as info:
        xpnet.from_torch(module())
    assert "\n" not in str(info.value)


def test_state_dict_shape_mismatch_and_stray_entries(tmp_path):
    model = MODELS["sigmoid-softmax"]()
    state = model.state_dict()
    state["2.weight"] = torch.zeros(16, 31)  # layer 2 now takes 31 inputs, layer 1 gives 32
    path = tmp_path / "mismatch.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="takes 31 inputs but layer 1 gives 32"):
        xpnet.load_weights(path, activations="sigmoid,sigmoid,softmax")
    bn = nn.Sequential(nn.Linear(64, 8), nn.BatchNorm1d(8)).state_dict()
    with pytest.raises(NetworkError, match="running_mean"):
        xpnet.from_torch(bn, activations="relu,relu")
