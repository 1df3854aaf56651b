"""scikit-learn's MLPs, trained here on its digits, in xpnet on every backend; skops files;
pickles refused."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from importing import check_agreement, device_of, digits, quiet_fit

import xpnet
from xpnet.errors import NetworkError, WeightsError

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed (xpnet[sklearn])")
from sklearn.neural_network import MLPClassifier, MLPRegressor  # noqa: E402


@pytest.fixture(scope="module", params=["relu", "tanh", "logistic", "identity"])
def classifier(request):
    x, t = digits()
    model = MLPClassifier(
        hidden_layer_sizes=(24, 16), activation=request.param, max_iter=25, random_state=0
    )
    return quiet_fit(model, x, t)


def test_classifier_matches_predict_and_predict_proba(classifier, backend):
    x, _ = digits()
    network = xpnet.from_sklearn(classifier, backend=backend.name, device=device_of(backend))
    hidden = {"logistic": "sigmoid"}.get(classifier.activation, classifier.activation)
    assert network.activations == (hidden, hidden, "softmax")
    assert network.sizes == (64, 24, 16, 10)
    expected = classifier.predict(x)
    labels = np.searchsorted(classifier.classes_, expected)
    check_agreement(network, backend, x, classifier.predict_proba(x), labels)


def test_binary_classifier_labels_index_classes(backend):
    x, t = digits()
    names = np.where(t >= 5, "high", "low")  # string classes: labels index classes_
    model = quiet_fit(MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=1), x, names)
    network = xpnet.from_sklearn(model, backend=backend.name, device=device_of(backend))
    assert network.sizes == (64, 8, 2) and network.activations == ("relu", "softmax")
    labels = np.searchsorted(model.classes_, model.predict(x))
    check_agreement(network, backend, x, model.predict_proba(x), labels)


def test_multilabel_classifier_keeps_sigmoid_outputs(backend):
    x, t = digits()
    targets = np.stack([t % 2 == 0, t >= 5, t == 7], axis=1).astype(int)
    model = quiet_fit(
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=2), x, targets
    )
    network = xpnet.from_sklearn(model, backend=backend.name, device=device_of(backend))
    assert network.activations == ("relu", "sigmoid")
    probabilities = model.predict_proba(x)
    check_agreement(network, backend, x, probabilities, None)
    ours = xpnet.to_host(xpnet.predict(network, backend.asarray(x)))
    ties = np.abs(probabilities - 0.5) <= 1e-5
    assert np.array_equal((ours > 0.5)[~ties], model.predict(x).astype(bool)[~ties])


@pytest.mark.parametrize("outputs", [1, 2])
def test_regressor_matches_predict(backend, outputs):
    x, t = digits()
    target = t.astype(np.float64) if outputs == 1 else np.stack([t, t % 3], axis=1) * 1.0
    model = quiet_fit(
        MLPRegressor(hidden_layer_sizes=(12,), activation="tanh", max_iter=30, random_state=0),
        x,
        target,
    )
    network = xpnet.from_sklearn(model, backend=backend.name, device=device_of(backend))
    assert network.activations == ("tanh", "identity")
    ours = xpnet.to_host(xpnet.predict(network, backend.asarray(x)))
    tol = 1e-12 if ours.dtype == np.float64 else 1e-4  # predictions span 0..9
    np.testing.assert_allclose(ours.reshape(model.predict(x).shape), model.predict(x), atol=tol)


def test_dtype_cast_and_weights_are_copies():
    x, t = digits()
    model = quiet_fit(MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0), x, t)
    network = xpnet.from_sklearn(model, dtype="float32")
    assert network.dtype == np.float32
    before = network.layers[0].weight.copy()
    model.coefs_[0][...] = 0.0  # the model changes afterwards; the network does not
    np.testing.assert_array_equal(network.layers[0].weight, before)


def test_refusals_are_one_line_and_name_the_problem():
    x, t = digits()
    with pytest.raises(NetworkError, match="not fitted"):
        xpnet.from_sklearn(MLPClassifier())
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(NetworkError, match="LogisticRegression is not an MLPClassifier"):
        xpnet.from_sklearn(quiet_fit(LogisticRegression(max_iter=5), x, t))
    poisson = quiet_fit(MLPRegressor(loss="poisson", max_iter=3, hidden_layer_sizes=(4,)), x, t)
    with pytest.raises(NetworkError, match="output activation 'exp'") as info:
        xpnet.from_sklearn(poisson)
    assert "\n" not in str(info.value)


# ---- files --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model():
    x, t = digits()
    return quiet_fit(MLPClassifier(hidden_layer_sizes=(16,), max_iter=15, random_state=0), x, t)


def test_skops_file_loads_on_every_backend(small_model, backend, tmp_path):
    sio = pytest.importorskip("skops.io", reason="skops is not installed (xpnet[sklearn])")
    path = tmp_path / "model.skops"
    sio.dump(small_model, path)
    network = xpnet.load_weights(path, backend=backend.name, device=device_of(backend))
    x, _ = digits()
    labels = np.searchsorted(small_model.classes_, small_model.predict(x))
    check_agreement(network, backend, x, small_model.predict_proba(x), labels)
    info = xpnet.read_weights_info(path)
    assert info["format"] == "skops" and info["sizes"] == [64, 16, 10]


def test_skops_file_with_other_types_is_refused(tmp_path):
    sio = pytest.importorskip("skops.io", reason="skops is not installed (xpnet[sklearn])")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, t = digits()
    pipeline = quiet_fit(
        make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(4,), max_iter=3)), x, t
    )
    path = tmp_path / "pipeline.skops"
    sio.dump(pipeline, path)
    with pytest.raises(WeightsError, match="Pipeline") as info:
        xpnet.load_weights(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("writer", ["pickle", "joblib", "joblib-compressed"])
def test_pickled_model_is_refused_pointing_to_skops(small_model, tmp_path, writer):
    path = tmp_path / "model.pkl"
    if writer == "pickle":
        path.write_bytes(pickle.dumps(small_model))
    else:
        joblib = pytest.importorskip("joblib")
        joblib.dump(small_model, path, compress=3 if writer == "joblib-compressed" else 0)
    for call in (xpnet.load_weights, xpnet.read_weights_info):
        with pytest.raises(WeightsError, match=r"skops\.io\.dump") as info:
            call(path)
        message = str(info.value)
        assert "\n" not in message and str(path) in message and "code" in message


def test_textbook_style_pickle_still_loads(tmp_path):
    rng = np.random.default_rng(0)
    params = {"W1": rng.random((64, 5), dtype=np.float32), "b1": np.zeros(5, np.float32)}
    params |= {"W2": rng.random((5, 10), dtype=np.float32), "b2": np.ones(10, np.float32)}
    path = tmp_path / "sample_weight.pkl"
    path.write_bytes(pickle.dumps(params, protocol=3))
    network = xpnet.load_weights(path)
    assert network.activations == ("sigmoid", "softmax")
    for key, value in network.to_mapping().items():
        assert value.tobytes() == params[key].tobytes()
    relu = xpnet.load_weights(path, activations="relu,softmax")
    assert relu.activations == ("relu", "softmax")
