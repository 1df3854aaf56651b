"""scikit-learn: a fitted ``MLPClassifier`` / ``MLPRegressor``, live or saved with skops.

A model file is read with ``skops.io.load`` and only the types an MLP is made of trusted;
pickles (``pickle.dump``, ``joblib.dump``) are never loaded, since loading one runs any
code it names.
"""

from __future__ import annotations

import os
from typing import Any

from xpnet import _budget as budget
from xpnet.importers._common import (
    HostLayer,
    Unsupported,
    build_network,
    host_array,
    short,
    two_class_softmax,
)
from xpnet.network import Network

ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
"""scikit-learn's hidden activations by xpnet's names."""

OUTPUTS = {"softmax": "softmax", "logistic": "sigmoid", "identity": "identity"}
"""scikit-learn's ``out_activation_`` by xpnet's names."""

SKOPS_TRUSTED = frozenset(
    {
        "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
        "sklearn.neural_network._multilayer_perceptron.MLPRegressor",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn.preprocessing._label.LabelBinarizer",
    }
)
"""The types a fitted MLP's skops file may name beyond skops's own default-trusted ones."""

SKOPS_HINT = (
    "save a scikit-learn model with skops instead: "
    "skops.io.dump(model, 'model.skops') (pip install 'xpnet[sklearn]')"
)


def read_mlp(model: Any) -> Network:
    """The dense layers of a fitted ``MLPClassifier`` or ``MLPRegressor``, on the host.

    A binary classifier's single logistic output ``p = sigmoid(z)`` becomes the two softmax
    outputs ``softmax([0, z]) = [1 - p, p]``: its probabilities are ``predict_proba``'s two
    columns and its labels (argmax) index ``model.classes_`` as ``predict`` does.
    A multilabel classifier keeps its logistic outputs, one per label (``sigmoid``).
    """
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    if not isinstance(model, MLPClassifier | MLPRegressor):
        raise Unsupported(
            f"{type(model).__module__}.{type(model).__name__} is not an MLPClassifier "
            "or MLPRegressor"
        )
    if not hasattr(model, "coefs_"):
        raise Unsupported(f"this {type(model).__name__} is not fitted (call fit first)")
    hidden = _name(ACTIVATIONS, model.activation, "hidden activation")
    output = _name(OUTPUTS, model.out_activation_, "output activation")
    count = len(model.coefs_)
    layers: list[HostLayer] = []
    for number, (coef, intercept) in enumerate(
        zip(model.coefs_, model.intercepts_, strict=True), start=1
    ):
        weight = host_array(coef, f"coefs_[{number - 1}]")
        bias = host_array(intercept, f"intercepts_[{number - 1}]")
        layers.append((weight, bias, hidden if number < count else output))
    if isinstance(model, MLPClassifier) and output == "sigmoid" and layers[-1][0].shape[1] == 1:
        layers[-1] = (*two_class_softmax(*layers[-1][:2]), "softmax")
    return build_network(layers)


def _name(names: dict[str, str], name: object, what: str) -> str:
    try:
        return names[str(name)]
    except KeyError:
        raise Unsupported(
            f"its {what} {name!r} has no xpnet counterpart (xpnet has {', '.join(names)})"
        ) from None


def read_skops(path: str | os.PathLike[str]) -> Network:
    """The MLP in a skops file, loaded trusting only :data:`SKOPS_TRUSTED`, once what its
    archive declares fits the budget of :mod:`xpnet._budget` (members' inflated sizes, the
    schema's length, each array's shape against its bytes)."""
    try:
        import skops.io as sio
    except ImportError:
        raise Unsupported(
            "reading a skops file needs skops and scikit-learn: pip install 'xpnet[sklearn]'"
        ) from None
    try:
        with budget.open_zip(path, "the archive") as archive:
            schema = archive.getinfo("schema.json")
            budget.check_metadata(schema.file_size, "its schema.json")
            budget.check_npy_members(archive, "the archive")
    except (Unsupported, budget.OverBudget):
        raise
    except Exception as exc:  # zipfile, zlib and numpy raise many kinds for a damaged file
        raise Unsupported(f"not a readable skops file ({short(exc)})") from None
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # zipfile, json and skops raise many kinds for a damaged file
        raise Unsupported(f"not a readable skops file ({short(exc)})") from None
    refused = sorted(set(untrusted) - SKOPS_TRUSTED)
    if refused:
        raise Unsupported(
            f"the skops file names the type {refused[0]}, which a fitted MLPClassifier or "
            "MLPRegressor does not hold; xpnet trusts no other types"
        )
    try:
        model = sio.load(path, trusted=list(untrusted))
    except Exception as exc:  # the same: a damaged archive or an inconsistent schema
        raise Unsupported(f"skops cannot load it ({short(exc)})") from None
    return read_mlp(model)
