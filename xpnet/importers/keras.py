"""Keras 3: a ``Sequential`` or functional model of ``Dense`` layers, live or as a ``.keras`` file.

A ``.keras`` file is loaded with ``keras.saving.load_model(safe_mode=True)``, which refuses
the ``Lambda`` layers that would run code from the file, and only once its content shows a
``.keras`` archive (a zip holding ``config.json``).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from xpnet import _budget as budget
from xpnet.importers._common import HostLayer, Unsupported, build_network, host_array, short
from xpnet.network import Network

ACTIVATIONS = {
    "linear": "identity",
    "sigmoid": "sigmoid",
    "relu": "relu",
    "tanh": "tanh",
    "softmax": "softmax",
}
"""Keras's activation names by xpnet's."""

NO_OPS = frozenset({"InputLayer", "Dropout", "Identity"})
"""Layers that change nothing at inference. Keras runs a model in inference mode unless a
call asks for ``training=True``, and a model (or its file) keeps no training mode, so a
``Dropout`` is always read as inference runs it; layers whose training and inference
differ otherwise (``BatchNormalization``...) are refused."""


def read_model(model: Any) -> Network:
    """The dense layers of a Keras ``Sequential`` or functional model, in order.

    Admitted: ``Dense`` with one of :data:`ACTIVATIONS`; ``Activation``, ``ReLU`` (plain)
    and ``Softmax`` (last axis) after it; ``Dropout`` and ``Identity``; an ``Input`` and a
    ``Flatten`` before the first ``Dense`` (the network then takes flattened rows).
    """
    import keras

    if not isinstance(model, keras.Model):
        raise Unsupported(f"{type(model).__name__} is not a keras.Model")
    if type(model) is not keras.Sequential and type(model).__name__ != "Functional":
        raise Unsupported(
            f"{type(model).__name__} is a subclassed model; xpnet reads Sequential and "
            "functional models"
        )
    if not isinstance(model, keras.Sequential):
        _check_chain(model)
    if len(model.inputs) != 1:
        raise Unsupported(f"it takes {len(model.inputs)} inputs, not one")
    rank = len(model.inputs[0].shape)
    layers: list[list[Any]] = []
    flattened = False
    for layer in model.layers:
        kind = type(layer).__name__
        if getattr(keras.layers, kind, None) is not type(layer):  # a subclass may call anything
            kind = f"{type(layer).__module__}.{kind}"
        config = layer.get_config()
        label = f"layer {layer.name!r} ({kind})"
        if kind in NO_OPS:
            continue
        if kind == "Flatten":
            if layers or flattened:
                raise Unsupported(f"{label}: xpnet admits a Flatten only before the first Dense")
            flattened = True
        elif kind == "Dense":
            if rank != 2 and not flattened:
                raise Unsupported(
                    f"{label} acts on the last axis of a rank-{rank} input: flatten first"
                )
            if getattr(layer, "quantization_mode", None):
                raise Unsupported(f"{label} is quantized ({layer.quantization_mode})")
            weights = [_to_numpy(keras, variable) for variable in layer.weights]
            kernel = host_array(weights[0], f"{layer.name}.kernel")
            if kernel.ndim != 2:
                raise Unsupported(f"{label}: its kernel has shape {kernel.shape}")
            bias = (
                host_array(weights[1], f"{layer.name}.bias")
                if config.get("use_bias", True)
                else np.zeros(kernel.shape[1], dtype=kernel.dtype)
            )
            layers.append([kernel, bias, _activation(config.get("activation"), label)])
        elif kind in ("Activation", "ReLU", "Softmax"):
            if kind == "Activation":
                name = _activation(config.get("activation"), label)
            elif kind == "Softmax":
                if config.get("axis", -1) not in (-1, 1, [-1], [1]):
                    raise Unsupported(f"{label} is over axis {config.get('axis')}, not features")
                name = "softmax"
            else:
                plain = (config.get("max_value"), config.get("negative_slope", 0.0))
                if plain != (None, 0.0) or config.get("threshold", 0.0) != 0.0:
                    raise Unsupported(f"{label} is clipped, leaky or thresholded")
                name = "relu"
            if not layers or layers[-1][2] != "identity":
                raise Unsupported(f"{label} follows no Dense with a linear activation")
            layers[-1][2] = name
        else:
            raise Unsupported(
                f"{label} is not Dense, Activation, ReLU, Softmax, Dropout, Identity or a "
                "leading Input/Flatten"
            )
    host: list[HostLayer] = [(w, b, a) for w, b, a in layers]
    return build_network(host)


def _to_numpy(keras: Any, variable: Any) -> np.ndarray:
    """A Keras variable's value as a NumPy array, without ``np.array(tensor)``.

    ``get_weights`` and ``keras.ops.convert_to_numpy`` call ``np.array`` on the backend's
    tensor, and a PyTorch tensor's ``__array__`` lacks NumPy 2's ``copy`` keyword, so each
    call warns (a ``DeprecationWarning``); the tensor's own ``numpy()`` does not.
    """
    value = variable.value
    if keras.backend.backend() == "torch":
        return np.asarray(value.detach().cpu().numpy())
    return np.asarray(keras.ops.convert_to_numpy(value))


def _activation(name: object, label: str) -> str:
    if isinstance(name, str) and name in ACTIVATIONS:
        return ACTIVATIONS[name]
    shown = name.get("class_name", name) if isinstance(name, dict) else name
    raise Unsupported(f"{label} uses the activation {shown!r}; xpnet has {', '.join(ACTIVATIONS)}")


def _check_chain(model: Any) -> None:
    """Refuse a functional model unless each layer feeds only the next (no branches)."""
    config = model.get_config()
    specs = config.get("layers") if isinstance(config, dict) else None
    if not isinstance(specs, list):
        raise Unsupported(
            f"{type(model).__name__} is a subclassed model; xpnet reads Sequential and "
            "functional models"
        )
    previous = None
    for spec in specs:
        nodes = spec.get("inbound_nodes", [])
        label = f"layer {spec.get('name')!r} ({spec.get('class_name')})"
        if previous is None:
            if nodes:
                raise Unsupported(f"{label} comes first but takes an input")
        else:
            sources = [_source(arg) for node in nodes for arg in node.get("args", [])]
            if len(nodes) != 1 or sources != [previous]:
                raise Unsupported(
                    f"{label} does not take exactly the output of {previous!r}: xpnet reads "
                    "a chain of layers, not a graph"
                )
        previous = spec.get("name")
    outputs = config.get("output_layers")
    if isinstance(outputs, list) and outputs and isinstance(outputs[0], str):
        outputs = [outputs]  # a model built with one output tensor, not a list of them
    if not (isinstance(outputs, list) and len(outputs) == 1 and outputs[0][0] == previous):
        raise Unsupported(f"its output is not the last layer {previous!r} alone")


def _source(arg: object) -> object:
    if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__":
        return arg.get("config", {}).get("keras_history", [None])[0]
    return arg


ADMITTED = frozenset({"Dense", "Activation", "ReLU", "Softmax", "Flatten"} | NO_OPS)
"""The layer classes :func:`read_model` reads: any other is refused before Keras builds it."""

MODELS = frozenset({"Sequential", "Functional"})
"""The model classes :func:`read_model` reads."""


def check_config(path: Path) -> None:
    """Refuse a ``.keras`` file before Keras reads it when its ``config.json`` names any
    object outside Keras itself (a custom or registered class, another module) or a layer
    xpnet does not read, or when what it declares does not fit the budget of
    :mod:`xpnet._budget`: the zip's members, the weights its ``Dense`` layers would build
    (Keras allocates them from the config alone) and the arrays its weights file holds."""
    try:
        with budget.open_zip(path, "the archive") as archive:
            info = archive.getinfo("config.json")
            budget.check_metadata(info.file_size, "its config.json")
            with archive.open(info) as file:
                config = json.loads(file.read(budget.MAX_METADATA_BYTES + 1))
            size = os.stat(path).st_size
            _check_objects(config)
            budget.check(_declared_bytes(config), size, "its config.json")
            if "model.weights.h5" in archive.namelist():
                with archive.open("model.weights.h5") as weights:
                    budget.check(_h5_bytes(weights), size, "its model.weights.h5")
    except (Unsupported, budget.OverBudget):
        raise
    except Exception as exc:  # zipfile, zlib, json and h5py raise many kinds for a damaged file
        raise Unsupported(f"cannot read its config.json ({short(exc)})") from None


def _check_objects(config: object) -> None:
    """Refuse any object outside Keras, named anywhere in the config."""
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            module = item.get("module")
            if isinstance(module, str) and not (module == "keras" or module.startswith("keras.")):
                raise Unsupported(
                    f"its config names {item.get('class_name')!r} from the module {module!r}, "
                    "outside Keras"
                )
            registered = item.get("registered_name")
            if isinstance(registered, str) and ">" in registered:
                raise Unsupported(f"its config names the registered custom object {registered!r}")
            stack.extend(reversed(list(item.values())))


ITEM_BYTES = 8
"""Bytes counted for each weight a config declares: float64's, the widest Keras holds."""


def _declared_bytes(config: object) -> int:
    """The bytes of the weights the model's ``Dense`` layers declare, counted as Keras
    would build them: each kernel's input size is the largest the config gives anywhere
    (the previous layer, a ``build_config`` or an input's shape). Layers xpnet does not
    read are refused here, before Keras builds (and allocates) them."""
    model = config if isinstance(config, dict) else {}
    kind = model.get("class_name")
    inner = model.get("config")
    layers = inner.get("layers") if isinstance(inner, dict) else None
    if kind not in MODELS or not isinstance(layers, list):
        raise Unsupported(
            f"{kind!r} is not a Sequential or functional model; xpnet reads those"
            if isinstance(kind, str)
            else "its config.json describes no model"
        )
    total, features = 0, 0
    for spec in layers:
        spec = spec if isinstance(spec, dict) else {}
        kind, settings = spec.get("class_name"), spec.get("config")
        settings = settings if isinstance(settings, dict) else {}
        label = f"layer {settings.get('name')!r} ({kind})"
        if kind not in ADMITTED:
            raise Unsupported(
                f"{label} is not Dense, Activation, ReLU, Softmax, Dropout, Identity or a "
                "leading Input/Flatten"
            )
        shapes = [settings.get(key) for key in ("batch_shape", "batch_input_shape")]
        build = spec.get("build_config")
        shapes.append(build.get("input_shape") if isinstance(build, dict) else None)
        for shape in shapes:
            if isinstance(shape, list) and shape:
                dims = [n for n in shape[1:] if type(n) is int and n > 0]
                features = max(features, math.prod(dims) if dims else 0)
        if kind == "Dense":
            units = settings.get("units")
            if not (type(units) is int and units > 0):
                raise Unsupported(f"{label} has {units!r} units")
            total += (features + 1) * units * ITEM_BYTES
            features = units
    return total


MAX_H5_OBJECTS = 1 << 16
"""The most groups and datasets walked in a ``.keras`` file's weights."""


def _h5_bytes(stream: Any) -> int:
    """The bytes of all the arrays an HDF5 weights file declares, read from its metadata."""
    import h5py

    total, seen = 0, 0

    def visit(name: str, item: Any) -> None:
        nonlocal total, seen
        seen += 1
        if seen > MAX_H5_OBJECTS:
            raise Unsupported(f"its model.weights.h5 holds more than {MAX_H5_OBJECTS} objects")
        if isinstance(item, h5py.Dataset):
            total += budget.array_bytes(item.shape or (), item.dtype.itemsize, name)

    with h5py.File(stream, "r") as weights:
        weights.visititems(visit)
    return total


def read_file(path: str | os.PathLike[str]) -> Network:
    """The model in a ``.keras`` file (loaded with ``safe_mode=True``, not compiled), after
    :func:`check_config`."""
    source = Path(path).resolve()
    check_config(source)
    keras = _import_keras()
    with tempfile.TemporaryDirectory(prefix="xpnet-keras-") as folder:
        # load_model goes by the name: a link named *.keras lets any file name through.
        named = source
        if source.suffix != ".keras":
            named = Path(folder) / "model.keras"
            os.symlink(source, named)
        try:
            model = keras.saving.load_model(named, compile=False, safe_mode=True)
        except Exception as exc:  # zip, h5py, json and keras raise many kinds
            raise Unsupported(f"keras cannot load it ({short(exc)})") from None
    return read_model(model)


def _import_keras() -> Any:
    try:
        import keras
    except ImportError as exc:
        raise Unsupported(
            f"reading a .keras file needs keras 3 and one of its backends ({exc}): "
            "pip install 'xpnet[keras]' jax, and set KERAS_BACKEND=jax"
        ) from None
    return keras
