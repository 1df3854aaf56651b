"""A network as an ONNX graph: one ``Gemm`` per dense layer and its activation.

:func:`export_onnx` writes the graph to a file that any ONNX runtime runs; the NumPy engine
(:mod:`xpnet._onnxruntime_engine`) runs the same graph, as :func:`onnx_bytes` writes it
without the ``onnx`` package (:mod:`xpnet._onnx_graph`), in ONNX Runtime.
:func:`onnx_model` and :func:`export_onnx` check the graph with ``onnx`` (extra ``onnx``),
imported only when called.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from xpnet._onnx_graph import IR_VERSION, OPSET, ORDER_PRESERVING, model_bytes
from xpnet.backends import to_host
from xpnet.network import NetworkLike, as_network

__all__ = ["IR_VERSION", "OPSET", "ORDER_PRESERVING", "export_onnx", "onnx_bytes", "onnx_model"]


def onnx_bytes(network: NetworkLike, *, labels: bool = False, input_dtype: Any = None) -> bytes:
    """The serialized ONNX model of ``network``, written without the ``onnx`` package.

    The graph is :func:`onnx_model`'s (see there); the weights are copied to the host.
    """
    net = as_network(network)
    layers = [
        (
            np.ascontiguousarray(to_host(layer.weight)),
            np.ascontiguousarray(to_host(layer.bias)),
            layer.activation,
        )
        for layer in net.layers
    ]
    dtype = layers[0][0].dtype
    source = dtype if input_dtype is None else np.dtype(input_dtype)
    return model_bytes(layers, labels=labels, input_dtype=source, producer_version=_version())


def onnx_model(network: NetworkLike, *, labels: bool = False, input_dtype: Any = None) -> Any:
    """The ONNX ``ModelProto`` of ``network``, checked by ``onnx.checker``.

    Input ``input`` is ``(rows, features)`` in the network's dtype, or in ``input_dtype``
    (raw ``uint8`` pixels, say) with a ``Cast`` to the network's dtype first. Output
    ``output`` is the last layer's activation; with ``labels``, ``labels`` is its argmax
    (int64), the last activation skipped where it preserves order, and ``-1`` for a row
    whose last layer's sums are not all finite, as in :func:`xpnet.predict_labels`. The
    weights are copied to the host. The model is :func:`onnx_bytes` parsed by ``onnx``.
    """
    import onnx

    model = onnx.load_from_string(onnx_bytes(network, labels=labels, input_dtype=input_dtype))
    onnx.checker.check_model(model, full_check=True)
    return model


def export_onnx(network: NetworkLike, path: str | os.PathLike[str]) -> Path:
    """Write ``network`` (or the textbook's dict) to ``path`` as an ONNX model, atomically.

    Parameters
    ----------
    network
        A :class:`~xpnet.Network` on any backend, or the textbook's ``W1, b1, ...`` dict.
    path
        The file to write, in a folder that exists (a missing one is ``FileNotFoundError``,
        never created). An existing file is replaced only once the new one is complete.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ImportError
        If ``onnx`` is not installed.
    OSError
        If the file cannot be written, or ``path`` is something other than a regular file
        (a folder, a device): nothing but a regular file is replaced.

    Notes
    -----
    The graph takes ``input`` ``(rows, features)`` in the network's dtype and gives
    ``output``, the last layer's activation: ``Gemm`` per layer, then ``Sigmoid``,
    ``Relu``, ``Tanh``, ``Softmax``, ``Identity``, or ``Greater`` and ``Cast`` for
    ``step``; opset ``xpnet.onnx_export.OPSET``. The model's metadata holds xpnet's version and the
    activations. Needs ``onnx`` (``pip install 'xpnet[fast]'``).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import xpnet
    >>> network = xpnet.init_network([4, 3, 2], backend="array_api_strict")
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     written = xpnet.export_onnx(network, pathlib.Path(folder) / "net.onnx")
    ...     back = xpnet.load_weights(written)
    >>> written.name, back.sizes, back.activations
    ('net.onnx', (4, 3, 2), ('sigmoid', 'softmax'))
    """
    from xpnet._atomic import atomic_write

    target = Path(path)
    data = onnx_model(network).SerializeToString()
    with atomic_write(target) as file:
        file.write(data)
    return target


def _version() -> str:
    from xpnet import __version__

    return __version__
