"""xpnet: the textbook's neural network on any array-API backend (NumPy, CuPy, PyTorch, ...).

Every function takes its array namespace from its inputs, so the same call runs on the
CPU or a GPU. ``import xpnet`` loads no optional backend.
"""

from xpnet._onnxruntime_engine import numpy_engine
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
    count_correct,
    predict,
    predict_labels,
    predict_labels_streaming,
)
from xpnet.network import Layer, Network, init_network, to_backend
from xpnet.onnx_export import export_onnx
from xpnet.optimizers import SGD, Adam, Momentum, Optimizer, make_optimizer
from xpnet.pretrained import BUNDLED_WEIGHTS
from xpnet.training import BatchStats, EpochStats, History, evaluate, shift_images, train
from xpnet.weights import load_weights, read_weights_info, save_weights

__version__ = "0.1.0"

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
]
