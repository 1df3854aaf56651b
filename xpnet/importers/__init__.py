"""Bring your own network: dense models from scikit-learn, PyTorch, Keras 3, ONNX and
safetensors as an :class:`~xpnet.Network` on any backend and device.

Live objects go through :func:`from_sklearn`, :func:`from_torch`, :func:`from_keras` and
:func:`from_onnx`; files through :func:`xpnet.load_weights`, which recognises each format by
its content (the table of formats in ``xpnet._formats``). Each source library is imported
only when one of its models or files is read, and belongs to an extra (``sklearn``,
``torch``, ``keras``, ``onnx``, ``safetensors``). What xpnet cannot represent is refused
in one line naming the first layer or operator at fault: :class:`~xpnet.NetworkError` for
live objects, :class:`~xpnet.WeightsError` for files. No importer runs code from a file:
pickles are never loaded, skops trusts only an MLP's types, PyTorch files are read with
``torch.load(weights_only=True)`` and ``.keras`` files with ``safe_mode=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xpnet.importers._common import Unsupported, live
from xpnet.network import Network

__all__ = ["from_keras", "from_onnx", "from_sklearn", "from_torch"]


def from_sklearn(
    model: Any, *, backend: str = "numpy", device: str | None = None, dtype: str | None = None
) -> Network:
    """A fitted scikit-learn ``MLPClassifier`` or ``MLPRegressor`` as an xpnet network.

    Parameters
    ----------
    model : MLPClassifier or MLPRegressor
        Fitted. Its hidden ``activation`` (``identity``, ``logistic``, ``tanh``, ``relu``)
        and ``out_activation_`` (``softmax``, ``logistic``, ``identity``) map to xpnet's
        names. A binary classifier's single logistic output becomes two softmax outputs
        ``[1 - p, p]``, so labels (argmax) index ``model.classes_`` as ``predict`` does and
        probabilities are ``predict_proba``'s.
    backend, device : str
        Where the network's arrays go (see :func:`xpnet.get_backend`).
    dtype : str, optional
        Cast the weights (``"float32"``...); ``None`` keeps scikit-learn's (float64 usually).

    Returns
    -------
    Network
        The same layers, copied (later training of ``model`` does not change it).

    Raises
    ------
    NetworkError
        For another estimator, an unfitted one or an activation xpnet lacks.

    Examples
    --------
    Needs scikit-learn (``pip install 'xpnet[sklearn]'``):

    >>> import numpy as np
    >>> from sklearn.neural_network import MLPClassifier  # doctest: +SKIP
    >>> import xpnet
    >>> x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]] * 10)
    >>> t = np.array([0, 1, 1, 0] * 10)
    >>> model = MLPClassifier((8,), max_iter=50, random_state=0).fit(x, t)  # doctest: +SKIP
    >>> network = xpnet.from_sklearn(model, backend="array_api_strict")  # doctest: +SKIP
    >>> network.sizes, network.activations  # doctest: +SKIP
    ((2, 8, 2), ('relu', 'softmax'))
    """
    from xpnet.importers.sklearn import read_mlp

    return live(read_mlp, model, backend, device, dtype)


def from_torch(
    module: Any,
    *,
    activations: Sequence[str] | str | None = None,
    backend: str = "numpy",
    device: str | None = None,
    dtype: str | None = None,
) -> Network:
    """A PyTorch ``nn.Sequential`` (or its ``state_dict``) as an xpnet network.

    Parameters
    ----------
    module : torch.nn.Sequential or Mapping[str, torch.Tensor]
        ``Linear`` layers with ``Sigmoid``, ``ReLU``, ``Tanh``, ``Softmax`` (feature axis),
        ``Identity``, ``Dropout`` and a leading ``Flatten``; a ``Linear`` followed by no
        activation gets ``identity`` (logits). The network computes what the module computes
        in evaluation mode: a ``Dropout`` left in training mode (``p > 0``) is refused,
        since PyTorch would drop values at random (call ``module.eval()`` first). Or a
        state dict of ``Linear`` weights and biases, in order, with ``activations``.
    activations : sequence of str or str, optional
        One per layer (``["relu", "softmax"]`` or ``"relu,softmax"``), for a state dict only.
    backend, device, dtype : str
        As in :func:`from_sklearn`.

    Returns
    -------
    Network

    Raises
    ------
    NetworkError
        Naming the first module (or state-dict entry) xpnet cannot represent.

    Examples
    --------
    Needs PyTorch (``pip install 'xpnet[torch]'``):

    >>> import torch  # doctest: +SKIP
    >>> import xpnet
    >>> module = torch.nn.Sequential(  # doctest: +SKIP
    ...     torch.nn.Linear(784, 50), torch.nn.ReLU(), torch.nn.Linear(50, 10)
    ... )
    >>> network = xpnet.from_torch(module, backend="numpy")  # doctest: +SKIP
    >>> network.sizes, network.activations  # doctest: +SKIP
    ((784, 50, 10), ('relu', 'identity'))
    """
    from xpnet.importers import torch as reader

    def read(source: Any) -> Network:
        if isinstance(source, dict) or hasattr(source, "keys"):
            return reader.read_state_dict(source, activations)
        if activations is not None:
            raise Unsupported("activations=... is for a state dict; a module names its own")
        return reader.read_module(source)

    return live(read, module, backend, device, dtype)


def from_keras(
    model: Any, *, backend: str = "numpy", device: str | None = None, dtype: str | None = None
) -> Network:
    """A Keras 3 ``Sequential`` or functional model of ``Dense`` layers as an xpnet network.

    Parameters
    ----------
    model : keras.Model
        A chain of ``Dense`` layers (activations ``linear``, ``sigmoid``, ``relu``, ``tanh``,
        ``softmax``), ``Activation``/``ReLU``/``Softmax`` layers after them, ``Dropout``,
        and an ``Input``/``Flatten`` before the first ``Dense``.
    backend, device, dtype : str
        As in :func:`from_sklearn`.

    Returns
    -------
    Network

    Raises
    ------
    NetworkError
        Naming the first layer xpnet cannot represent.

    Examples
    --------
    Needs Keras 3 and one of its backends (``pip install 'xpnet[keras,jax]'``):

    >>> import keras  # doctest: +SKIP
    >>> import xpnet
    >>> model = keras.Sequential(  # doctest: +SKIP
    ...     [keras.Input((784,)), keras.layers.Dense(50, activation="sigmoid"),
    ...      keras.layers.Dense(10, activation="softmax")]
    ... )
    >>> network = xpnet.from_keras(model, backend="numpy")  # doctest: +SKIP
    >>> network.sizes, network.activations  # doctest: +SKIP
    ((784, 50, 10), ('sigmoid', 'softmax'))
    """
    from xpnet.importers.keras import read_model

    return live(read_model, model, backend, device, dtype)


def from_onnx(
    model: Any, *, backend: str = "numpy", device: str | None = None, dtype: str | None = None
) -> Network:
    """An ``onnx.ModelProto`` of dense layers as an xpnet network (files: :func:`load_weights`).

    Parameters
    ----------
    model : onnx.ModelProto
        See ``xpnet.importers.onnx`` for the operators and opsets read.
    backend, device, dtype : str
        As in :func:`from_sklearn`.

    Returns
    -------
    Network

    Raises
    ------
    NetworkError
        Naming the first node xpnet cannot represent.

    Examples
    --------
    A model that :func:`xpnet.export_onnx` wrote, read back with ``onnx``:

    >>> import pathlib, tempfile
    >>> import onnx
    >>> import xpnet
    >>> network = xpnet.init_network([4, 3, 2], activations=["relu", "softmax"])
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     model = onnx.load(xpnet.export_onnx(network, pathlib.Path(folder) / "net.onnx"))
    >>> for name in ("numpy", "array_api_strict"):
    ...     imported = xpnet.from_onnx(model, backend=name)
    ...     print(imported.backend, imported.sizes, imported.activations)
    numpy on cpu (4, 3, 2) ('relu', 'softmax')
    array_api_strict on CPU_DEVICE (4, 3, 2) ('relu', 'softmax')
    """
    from xpnet.importers.onnx import read_model

    return live(read_model, model, backend, device, dtype)
