"""xpnet: the textbook's neural network on any array-API backend (NumPy, CuPy, PyTorch, ...).

Every function takes its array namespace from its inputs, so the same call runs on the
CPU or a GPU. ``import xpnet`` loads no optional backend.
"""

from xpnet.activations import identity_function, relu, sigmoid, softmax, step_function
from xpnet.backends import (
    BACKENDS,
    Backend,
    available_backends,
    backend_status,
    get_backend,
    to_host,
)
from xpnet.errors import BackendMismatchError, BackendUnavailableError, NetworkError, XpnetError
from xpnet.inference import (
    accuracy,
    count_correct,
    iter_batches,
    predict,
    predict_labels,
)
from xpnet.network import Layer, Network, init_network, to_backend

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendMismatchError",
    "BackendUnavailableError",
    "Layer",
    "Network",
    "NetworkError",
    "XpnetError",
    "accuracy",
    "available_backends",
    "backend_status",
    "count_correct",
    "get_backend",
    "identity_function",
    "init_network",
    "iter_batches",
    "predict",
    "predict_labels",
    "relu",
    "sigmoid",
    "softmax",
    "step_function",
    "to_backend",
    "to_host",
]
