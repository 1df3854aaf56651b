"""A network as an ONNX graph: one ``Gemm`` per dense layer and its activation.

:func:`export_onnx` writes the graph to a file that any ONNX runtime runs; the NumPy engine
(:mod:`xpnet._onnxruntime_engine`) runs the same graph, made by :func:`onnx_model`, in
ONNX Runtime. Needs the ``onnx`` package (extra ``fast``), imported only when called.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from xpnet.backends import to_host
from xpnet.network import NetworkLike, as_network

OPSET = 17
"""The ``ai.onnx`` opset of the graphs: what ONNX Runtime 1.12 and later run."""

IR_VERSION = 8
"""The ONNX file format version written, which ONNX Runtime 1.10 and later read."""

ORDER_PRESERVING = frozenset({"softmax", "identity"})
"""Output activations whose argmax is the argmax of their input: labels skip them."""

_OPERATORS = {
    "identity": "Identity",
    "sigmoid": "Sigmoid",
    "relu": "Relu",
    "tanh": "Tanh",
    "softmax": "Softmax",  # along the last axis, as xpnet.softmax (opset 13 and later)
}
"""ONNX operators of the activations that have one; ``step`` is ``Greater`` then ``Cast``."""


def onnx_model(network: NetworkLike, *, labels: bool = False, input_dtype: Any = None) -> Any:
    """The ONNX ``ModelProto`` of ``network``, checked by ``onnx.checker``.

    Input ``input`` is ``(rows, features)`` in the network's dtype, or in ``input_dtype``
    (raw ``uint8`` pixels, say) with a ``Cast`` to the network's dtype first. Output
    ``output`` is the last layer's activation; with ``labels``, ``labels`` is its argmax
    (int64), the last activation skipped where it preserves order, and ``-1`` for a row
    whose last layer's sums are not all finite, as in :func:`xpnet.predict_labels`. The
    weights are copied to the host.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from xpnet.forward_pass import NO_CLASS

    net = as_network(network)
    dtype = np.dtype(to_host(net.layers[0].weight).dtype)
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    source = dtype if input_dtype is None else np.dtype(input_dtype)
    nodes, weights, a = [], [], "input"
    if source != dtype:
        nodes.append(helper.make_node("Cast", ["input"], ["cast"], to=elem))
        a = "cast"
    *_, last = net.layers
    for number, layer in enumerate(net.layers, start=1):
        weights += [
            numpy_helper.from_array(np.ascontiguousarray(to_host(layer.weight)), f"W{number}"),
            numpy_helper.from_array(np.ascontiguousarray(to_host(layer.bias)), f"b{number}"),
        ]
        z = f"z{number}"
        nodes.append(helper.make_node("Gemm", [a, f"W{number}", f"b{number}"], [z]))
        if layer is last and labels and layer.activation in ORDER_PRESERVING:
            a = z
            break
        a = "output" if layer is last and not labels else f"a{number}"
        if layer.activation == "step":
            if not any(w.name == "zero" for w in weights):
                weights.append(numpy_helper.from_array(np.zeros((), dtype), "zero"))
            nodes.append(helper.make_node("Greater", [z, "zero"], [f"{z}_positive"]))
            nodes.append(helper.make_node("Cast", [f"{z}_positive"], [a], to=elem))
        else:
            axis: dict[str, Any] = {"axis": -1} if layer.activation == "softmax" else {}
            nodes.append(helper.make_node(_OPERATORS[layer.activation], [z], [a], **axis))
    if labels:
        # The non-finite rule (xpnet.forward_pass.labels_of): z - z is 0 where z is finite
        # and NaN elsewhere, so a row's sum of it is NaN exactly where the row has no class.
        weights += [
            numpy_helper.from_array(np.array([1], np.int64), "last_axis"),
            numpy_helper.from_array(np.array(NO_CLASS, np.int64), "no_class"),
        ]
        nodes += [
            helper.make_node("ArgMax", [a], ["classes"], axis=1, keepdims=0),
            helper.make_node("Sub", [z, z], ["z_less_z"]),
            helper.make_node("ReduceSum", ["z_less_z", "last_axis"], ["z_check"], keepdims=0),
            helper.make_node("IsNaN", ["z_check"], ["not_finite"]),
            helper.make_node("Where", ["not_finite", "no_class", "classes"], ["labels"]),
        ]
        result = helper.make_tensor_value_info("labels", TensorProto.INT64, ["rows"])
    else:
        result = helper.make_tensor_value_info("output", elem, ["rows", net.sizes[-1]])
    inputs = helper.make_tensor_value_info(
        "input", helper.np_dtype_to_tensor_dtype(source), ["rows", net.sizes[0]]
    )
    graph = helper.make_graph(nodes, "xpnet", [inputs], [result], initializer=weights)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="xpnet",
        producer_version=_version(),
    )
    helper.set_model_props(
        model, {"xpnet_version": _version(), "activations": json.dumps(net.activations)}
    )
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
