"""Keras 3: Sequential and functional models trained here on scikit-learn's digits, live and
as .keras files. Keras runs on JAX here (KERAS_BACKEND, unless the environment sets it)."""

from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pytest
from importing import NUMPYS_COPY_WARNING, check_agreement, device_of, digits

import xpnet
from xpnet.errors import NetworkError, WeightsError

pytestmark = [
    pytest.mark.needs_session(
        "torch", "jax", reason="keras runs in the torch and jax sessions, on their library"
    ),
    pytest.mark.filterwarnings(f"ignore:{NUMPYS_COPY_WARNING}:DeprecationWarning"),
]

os.environ.setdefault("KERAS_BACKEND", "jax")
try:
    import keras
except ImportError as exc:  # keras missing, or no backend for it (jax, torch, tensorflow)
    pytest.skip(f"keras 3 with a backend is not importable here: {exc}", allow_module_level=True)

layers = keras.layers


def sequential():  # type: ignore[no-untyped-def]
    return keras.Sequential(
        [
            keras.Input((8, 8)),
            layers.Flatten(),
            layers.Dense(32, activation="relu"),
            layers.Dropout(0.1),
            layers.Dense(16, activation="tanh"),
            layers.Dense(10, activation="softmax"),
        ]
    )


def functional():  # type: ignore[no-untyped-def]
    inputs = keras.Input((64,))
    hidden = layers.Dense(24, activation="sigmoid")(inputs)
    logits = layers.Dense(10)(hidden)
    return keras.Model(inputs, layers.Softmax()(logits))


def with_activation_layers():  # type: ignore[no-untyped-def]
    return keras.Sequential(
        [
            keras.Input((64,)),
            layers.Dense(20),
            layers.ReLU(),
            layers.Dense(10),
            layers.Activation("softmax"),
        ]
    )


BUILDERS = {"sequential": sequential, "functional": functional, "layers": with_activation_layers}


@pytest.fixture(scope="module", params=list(BUILDERS))
def trained(request):
    keras.utils.set_random_seed(0)
    model = BUILDERS[request.param]()
    x, t = digits()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(_inputs(model, x), t, epochs=3, batch_size=64, verbose=0)
    return model


def _inputs(model, x: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    return x.reshape(-1, *model.inputs[0].shape[1:])


def test_live_model_matches_keras(trained, backend):
    x, _ = digits()
    network = xpnet.from_keras(trained, backend=backend.name, device=device_of(backend))
    assert network.activations[-1] == "softmax"
    expected = np.asarray(trained.predict(_inputs(trained, x), verbose=0))
    check_agreement(network, backend, x, expected, expected.argmax(axis=1))


def test_keras_file_matches_keras(trained, backend, tmp_path):
    path = tmp_path / "model.keras"
    trained.save(path)
    network = xpnet.load_weights(path, backend=backend.name, device=device_of(backend))
    x, _ = digits()
    expected = np.asarray(trained.predict(_inputs(trained, x), verbose=0))
    check_agreement(network, backend, x, expected, expected.argmax(axis=1))
    renamed = tmp_path / "model.weights"  # recognised by content, whatever its name
    shutil.copy(path, renamed)
    assert xpnet.read_weights_info(renamed)["format"] == "keras"


def test_weights_are_taken_without_numpys_copy_keyword_warning(trained, tmp_path):
    path = tmp_path / "model.keras"
    expected = [array for layer in trained.layers for array in layer.get_weights()]
    trained.save(path)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", NUMPYS_COPY_WARNING, DeprecationWarning)
        network = xpnet.from_keras(trained)
        from_file = xpnet.load_weights(path)
    taken = [array for layer in network.layers for array in (layer.weight, layer.bias)]
    assert len(taken) == len(expected)
    for mine, theirs in zip(taken, expected, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    for mine, theirs in zip(from_file.layers, network.layers, strict=True):
        np.testing.assert_array_equal(mine.weight, theirs.weight)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (
            lambda: keras.Sequential([keras.Input((64,)), layers.Dense(4, activation="gelu")]),
            r"\(Dense\) uses the activation 'gelu'",
        ),
        (
            lambda: keras.Sequential(
                [keras.Input((64,)), layers.Dense(4), layers.BatchNormalization()]
            ),
            r"\(BatchNormalization\) is not Dense",
        ),
        (
            lambda: keras.Sequential([keras.Input((8, 8)), layers.Dense(4)]),
            "rank-3 input: flatten first",
        ),
    ],
)
def test_unrepresentable_models_are_refused(build, match):
    with pytest.raises(NetworkError, match=match) as info:
        xpnet.from_keras(build())
    assert "\n" not in str(info.value)


class Doubled(layers.Dense):
    def call(self, x):  # type: ignore[no-untyped-def]
        return 2 * super().call(x)


def test_subclassed_layers_and_models_are_refused():
    with pytest.raises(NetworkError, match=r"\(test_importers_keras\.Doubled\)"):
        xpnet.from_keras(keras.Sequential([keras.Input((64,)), Doubled(3)]))

    class Custom(keras.Model):
        def __init__(self):  # type: ignore[no-untyped-def]
            super().__init__()
            self.dense = layers.Dense(3)

        def call(self, x):  # type: ignore[no-untyped-def]
            return self.dense(x)

    with pytest.raises(NetworkError, match="subclassed model"):
        xpnet.from_keras(Custom())


def test_branching_functional_model_is_refused():
    inputs = keras.Input((64,))
    left, right = layers.Dense(4)(inputs), layers.Dense(4)(inputs)
    model = keras.Model(inputs, layers.Add()([left, right]))
    with pytest.raises(NetworkError, match="not a graph"):
        xpnet.from_keras(model)


def test_lambda_layer_file_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    # The path is a constant of the lambda's code, which the file carries (marshalled).
    touch = eval(f"lambda x: x + (__import__('os').makedirs({str(marker)!r}, exist_ok=True) or 0)")
    model = keras.Sequential([keras.Input((64,)), layers.Lambda(touch), layers.Dense(3)])
    path = tmp_path / "lambda.keras"
    model.save(path)
    os.rmdir(marker)  # made while keras built the model; loading must not make it again
    with pytest.raises(WeightsError, match=r"\(Lambda\) is not Dense") as info:
        xpnet.load_weights(path)  # refused from its config.json, before keras reads it
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_config_naming_objects_outside_keras_is_refused_before_keras_reads_it(tmp_path):
    import json
    import zipfile

    model = keras.Sequential([keras.Input((64,)), layers.Dense(3, activation="softmax")])
    path = tmp_path / "model.keras"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(entries["config.json"])
    dense = config["config"]["layers"][-1]
    for change, match in (
        ({"module": "subprocess", "class_name": "Popen"}, "'Popen' from the module 'subprocess'"),
        ({"registered_name": "evil>Layer"}, "custom object 'evil>Layer'"),
    ):
        edited = tmp_path / "edited.keras"
        with zipfile.ZipFile(edited, "w") as archive:
            for name, data in entries.items():
                if name == "config.json":
                    data = json.dumps(
                        {
                            **config,
                            "config": {
                                **config["config"],
                                "layers": [*config["config"]["layers"][:-1], {**dense, **change}],
                            },
                        }
                    ).encode()
                archive.writestr(name, data)
        with pytest.raises(WeightsError, match=match) as info:
            xpnet.load_weights(edited)
        assert "\n" not in str(info.value)
