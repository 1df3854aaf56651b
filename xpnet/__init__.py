"""xpnet: the textbook's neural network on any array-API backend (NumPy, CuPy, PyTorch, ...).

Every function takes its array namespace from its inputs, so the same call runs on the
CPU or a GPU. ``import xpnet`` loads no optional backend, and none of its own modules
until a name is first used (PEP 562): each public name below is imported from its module
on first access, so a process pays only for what it uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from xpnet._safe_pickle import load_textbook_pickle
    from xpnet.activations import identity_function, relu, sigmoid, softmax, step_function, tanh
    from xpnet.backends import (
        BACKENDS,
        Backend,
        available_backends,
        backend_status,
        get_backend,
        to_host,
    )
    from xpnet.batching import iter_batches
    from xpnet.errors import (
        BackendMismatchError,
        BackendUnavailableError,
        DataError,
        NetworkError,
        WeightsError,
        XpnetError,
    )
    from xpnet.gradients import loss_and_gradients
    from xpnet.importers import from_keras, from_onnx, from_sklearn, from_torch
    from xpnet.inference import (
        accuracy,
        choose_engine,
        count_correct,
        numpy_engine,
        predict,
        predict_labels,
        predict_labels_streaming,
        use_engine,
    )
    from xpnet.network import Layer, Network, init_network, to_backend
    from xpnet.onnx_export import export_onnx
    from xpnet.optimizers import SGD, Adam, Momentum, Optimizer, make_optimizer
    from xpnet.pretrained import BUNDLED_WEIGHTS
    from xpnet.training import BatchStats, EpochStats, History, evaluate, shift_images, train
    from xpnet.weights import load_weights, read_weights_info, save_weights

_EXPORTS = {
    "BACKENDS": "xpnet.backends",
    "BUNDLED_WEIGHTS": "xpnet.pretrained",
    "SGD": "xpnet.optimizers",
    "Adam": "xpnet.optimizers",
    "Backend": "xpnet.backends",
    "BackendMismatchError": "xpnet.errors",
    "BackendUnavailableError": "xpnet.errors",
    "BatchStats": "xpnet.training",
    "DataError": "xpnet.errors",
    "EpochStats": "xpnet.training",
    "History": "xpnet.training",
    "Layer": "xpnet.network",
    "Momentum": "xpnet.optimizers",
    "Network": "xpnet.network",
    "NetworkError": "xpnet.errors",
    "Optimizer": "xpnet.optimizers",
    "WeightsError": "xpnet.errors",
    "XpnetError": "xpnet.errors",
    "accuracy": "xpnet.inference",
    "available_backends": "xpnet.backends",
    "backend_status": "xpnet.backends",
    "choose_engine": "xpnet.inference",
    "count_correct": "xpnet.inference",
    "evaluate": "xpnet.training",
    "export_onnx": "xpnet.onnx_export",
    "from_keras": "xpnet.importers",
    "from_onnx": "xpnet.importers",
    "from_sklearn": "xpnet.importers",
    "from_torch": "xpnet.importers",
    "get_backend": "xpnet.backends",
    "identity_function": "xpnet.activations",
    "init_network": "xpnet.network",
    "iter_batches": "xpnet.batching",
    "load_textbook_pickle": "xpnet._safe_pickle",
    "load_weights": "xpnet.weights",
    "loss_and_gradients": "xpnet.gradients",
    "make_optimizer": "xpnet.optimizers",
    "numpy_engine": "xpnet.inference",
    "predict": "xpnet.inference",
    "predict_labels": "xpnet.inference",
    "predict_labels_streaming": "xpnet.inference",
    "read_weights_info": "xpnet.weights",
    "relu": "xpnet.activations",
    "save_weights": "xpnet.weights",
    "shift_images": "xpnet.training",
    "sigmoid": "xpnet.activations",
    "softmax": "xpnet.activations",
    "step_function": "xpnet.activations",
    "tanh": "xpnet.activations",
    "to_backend": "xpnet.network",
    "to_host": "xpnet.backends",
    "train": "xpnet.training",
    "use_engine": "xpnet.inference",
}
"""Each public name and the module that defines it."""

__all__ = [
    "BACKENDS",
    "BUNDLED_WEIGHTS",
    "SGD",
    "Adam",
    "Backend",
    "BackendMismatchError",
    "BackendUnavailableError",
    "BatchStats",
    "DataError",
    "EpochStats",
    "History",
    "Layer",
    "Momentum",
    "Network",
    "NetworkError",
    "Optimizer",
    "WeightsError",
    "XpnetError",
    "accuracy",
    "available_backends",
    "backend_status",
    "choose_engine",
    "count_correct",
    "evaluate",
    "export_onnx",
    "from_keras",
    "from_onnx",
    "from_sklearn",
    "from_torch",
    "get_backend",
    "identity_function",
    "init_network",
    "iter_batches",
    "load_textbook_pickle",
    "load_weights",
    "loss_and_gradients",
    "make_optimizer",
    "numpy_engine",
    "predict",
    "predict_labels",
    "predict_labels_streaming",
    "read_weights_info",
    "relu",
    "save_weights",
    "shift_images",
    "sigmoid",
    "softmax",
    "step_function",
    "tanh",
    "to_backend",
    "to_host",
    "train",
    "use_engine",
]


def __getattr__(name: str) -> Any:
    """The public name ``name``, imported from its module on first use and kept."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xpnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
