"""A network's ONNX graph as the bytes of a serialized ``ModelProto``, without ``onnx``.

The graph is one ``Gemm`` per dense layer and its activation; with ``labels``, an
``ArgMax`` (the last activation skipped where it preserves order, as in
:func:`xpnet.predict_labels`), and ``-1`` for a row whose last layer's sums are not all
finite (the non-finite rule of :func:`xpnet.forward_pass.labels_of`). It is written here
in protobuf's wire format by hand, since its few message types (model, graph, node,
integer attribute, tensor, value info) are all the graph needs, and importing ``onnx`` to
build it costs a process more than running the network on the MNIST test split.
:func:`xpnet.onnx_export.onnx_model` parses these same bytes with ``onnx`` and checks them
with ``onnx.checker``; the tests compare them with the bytes ``onnx.helper`` writes for the
same graph.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import numpy as np

OPSET = 17
"""The ``ai.onnx`` opset of the graphs: what ONNX Runtime 1.12 and later run."""

IR_VERSION = 8
"""The ONNX file format version written, which ONNX Runtime 1.10 and later read."""

ORDER_PRESERVING = frozenset({"softmax", "identity"})
"""Output activations whose argmax is the argmax of their input: labels skip them."""

OPERATORS = {
    "identity": "Identity",
    "sigmoid": "Sigmoid",
    "relu": "Relu",
    "tanh": "Tanh",
    "softmax": "Softmax",  # along the last axis, as xpnet.softmax (opset 13 and later)
}
"""ONNX operators of the activations that have one; ``step`` is ``Greater`` then ``Cast``."""

_ELEMENT_TYPES = {
    "float32": 1,
    "uint8": 2,
    "int8": 3,
    "uint16": 4,
    "int16": 5,
    "int32": 6,
    "int64": 7,
    "bool": 9,
    "float16": 10,
    "float64": 11,
    "uint32": 12,
    "uint64": 13,
}
"""ONNX's ``TensorProto.DataType`` of each NumPy dtype a graph may take or hold."""

INT64 = _ELEMENT_TYPES["int64"]


def element_type(dtype: np.dtype) -> int:
    """ONNX's element type number of ``dtype``; ValueError for a dtype ONNX has none for."""
    try:
        return _ELEMENT_TYPES[np.dtype(dtype).name]
    except KeyError:
        raise ValueError(f"ONNX graphs cannot hold {np.dtype(dtype)} arrays") from None


Layer = tuple[np.ndarray, np.ndarray, str]
"""A dense layer on the host: weight ``(inputs, outputs)``, bias ``(outputs,)``, activation."""


def model_bytes(
    layers: Sequence[Layer],
    *,
    labels: bool,
    input_dtype: np.dtype,
    producer_version: str,
) -> bytes:
    """The serialized ``ModelProto`` of the network of ``layers``.

    Input ``input`` is ``(rows, features)`` in ``input_dtype``, with a ``Cast`` to the
    weights' dtype first where they differ. Output ``output`` is the last activation, or
    with ``labels``, ``labels``: its argmax (int64). The model's metadata holds the
    producer's version and the activations, as :func:`xpnet.export_onnx` writes them.
    """
    dtype = layers[0][0].dtype
    elem = element_type(dtype)
    nodes: list[bytes] = []
    weights: list[bytes] = []
    a = "input"
    if input_dtype != dtype:
        nodes.append(_node("Cast", ["input"], ["cast"], to=elem))
        a = "cast"
    has_zero = False
    for number, (weight, bias, activation) in enumerate(layers, start=1):
        last = number == len(layers)
        weights += [_tensor(f"W{number}", weight), _tensor(f"b{number}", bias)]
        z = f"z{number}"
        nodes.append(_node("Gemm", [a, f"W{number}", f"b{number}"], [z]))
        if last and labels and activation in ORDER_PRESERVING:
            a = z
            break
        a = "output" if last and not labels else f"a{number}"
        if activation == "step":
            if not has_zero:
                weights.append(_tensor("zero", np.zeros((), dtype)))
                has_zero = True
            nodes.append(_node("Greater", [z, "zero"], [f"{z}_positive"]))
            nodes.append(_node("Cast", [f"{z}_positive"], [a], to=elem))
        else:
            axis = {"axis": -1} if activation == "softmax" else {}
            nodes.append(_node(OPERATORS[activation], [z], [a], **axis))
    if labels:
        from xpnet.forward_pass import NO_CLASS

        # The non-finite rule (xpnet.forward_pass.labels_of): z - z is 0 where z is finite
        # and NaN elsewhere, so a row's sum of it is NaN exactly where the row has no class.
        weights += [
            _tensor("last_axis", np.array([1], np.int64)),
            _tensor("no_class", np.array(NO_CLASS, np.int64)),
        ]
        nodes += [
            _node("ArgMax", [a], ["classes"], axis=1, keepdims=0),
            _node("Sub", [z, z], ["z_less_z"]),
            _node("ReduceSum", ["z_less_z", "last_axis"], ["z_check"], keepdims=0),
            _node("IsNaN", ["z_check"], ["not_finite"]),
            _node("Where", ["not_finite", "no_class", "classes"], ["labels"]),
        ]
        result = _value_info("labels", INT64, ["rows"])
    else:
        result = _value_info("output", elem, ["rows", layers[-1][0].shape[1]])
    inputs = _value_info("input", element_type(input_dtype), ["rows", layers[0][0].shape[0]])
    graph = b"".join(
        [
            *(_field(1, node) for node in nodes),
            _field(2, b"xpnet"),
            *(_field(5, tensor) for tensor in weights),
            _field(11, inputs),
            _field(12, result),
        ]
    )
    activations = json.dumps([activation for _, _, activation in layers])
    properties = {"xpnet_version": producer_version, "activations": activations}
    return b"".join(
        [
            _varint_field(1, IR_VERSION),
            _field(2, b"xpnet"),
            _field(3, producer_version.encode()),
            _field(7, graph),
            _field(8, _field(1, b"") + _varint_field(2, OPSET)),
            *(
                _field(14, _field(1, key.encode()) + _field(2, value.encode()))
                for key, value in properties.items()
            ),
        ]
    )


# Protobuf's wire format: each field is a key (its number and wire type), then a varint or
# a length-delimited payload (strings, bytes and embedded messages).


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64: two's complement, ten bytes
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _strings(number: int, texts: Iterable[str]) -> bytes:
    return b"".join(_field(number, text.encode()) for text in texts)


def _node(op: str, inputs: Sequence[str], outputs: Sequence[str], **ints: int) -> bytes:
    """A ``NodeProto`` with integer attributes (``AttributeProto`` type INT is 2)."""
    attributes = b"".join(
        _field(5, _field(1, name.encode()) + _varint_field(3, value) + _varint_field(20, 2))
        for name, value in sorted(ints.items())
    )
    return _strings(1, inputs) + _strings(2, outputs) + _field(4, op.encode()) + attributes


def _tensor(name: str, array: np.ndarray) -> bytes:
    """A ``TensorProto`` holding ``array``'s values as little-endian raw data."""
    little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    dims = b"".join(_varint_field(1, side) for side in array.shape)
    return (
        dims
        + _varint_field(2, element_type(array.dtype))
        + _field(8, name.encode())
        + _field(9, little.tobytes())
    )


def _value_info(name: str, elem: int, shape: Sequence[int | str]) -> bytes:
    """A ``ValueInfoProto`` of a tensor of ``elem`` with sides fixed (int) or named (str)."""
    dims = b"".join(
        _field(1, _field(2, side.encode()) if isinstance(side, str) else _varint_field(1, side))
        for side in shape
    )
    tensor = _varint_field(1, elem) + _field(2, dims)
    return _field(1, name.encode()) + _field(2, _field(1, tensor))
