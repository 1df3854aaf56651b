"""xpnet: the textbook's neural network on any array-API backend (NumPy, CuPy, PyTorch, ...).

Every function takes its array namespace from its inputs, so the same call runs on the
CPU or a GPU. ``import xpnet`` loads no optional backend.
"""

from xpnet._safe_pickle import load_textbook_pickle
from xpnet.activations import identity_function, relu, sigmoid, softmax, step_function
from xpnet.backends import (
    BACKENDS,
    Backend,
    available_backends,
    backend_status,
    get_backend,
    to_host,
)
from xpnet.errors import (
    BackendMismatchError,
    BackendUnavailableError,
    DataError,
    NetworkError,
    WeightsError,
    XpnetError,
)
from xpnet.inference import (
    accuracy,
    count_correct,
    iter_batches,
    predict,
    predict_labels,
    predict_labels_streaming,
)
from xpnet.network import Layer, Network, init_network, to_backend
from xpnet.weights import load_weights, read_weights_info, save_weights

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendMismatchError",
    "BackendUnavailableError",
    "DataError",
    "Layer",
    "Network",
    "NetworkError",
    "WeightsError",
    "XpnetError",
    "accuracy",
    "available_backends",
    "backend_status",
    "count_correct",
    "get_backend",
    "identity_function",
    "init_network",
    "iter_batches",
    "load_textbook_pickle",
    "load_weights",
    "predict",
    "predict_labels",
    "predict_labels_streaming",
    "read_weights_info",
    "relu",
    "save_weights",
    "sigmoid",
    "softmax",
    "step_function",
    "to_backend",
    "to_host",
]
