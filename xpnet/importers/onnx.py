"""ONNX: a chain of dense layers, parsed with the ``onnx`` package (no code runs).

Admitted operators (default domain, opsets :data:`OPSETS`): ``Gemm`` (``transA=0``, any
``transB``, ``alpha``, ``beta``), ``MatMul`` with an initializer, optionally followed by
``Add`` of a bias; ``Sigmoid``, ``Relu``, ``Tanh``, ``Softmax`` over the last axis and
``Identity``; at the start a ``Cast`` of the input to a float type and a ``Flatten`` (axis 1)
or ``Reshape`` to ``(N, features)``. Nodes that only turn the output into labels
(``ArgMax`` over the last axis and what follows it: ``ArrayFeatureExtractor``, ``Cast``,
``Reshape``, ``Squeeze``, ``Identity``; or a ``ZipMap``) are read and left out: xpnet's
labels are indices, the argmax of its output.
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np

from xpnet.importers._common import HostLayer, Unsupported, build_network, host_array, short
from xpnet.network import Network

OPSETS = range(13, 26)
"""Default-domain opsets read: the operators above mean the same in each (later versions
only add types)."""

ACTIVATIONS = {"Sigmoid": "sigmoid", "Relu": "relu", "Tanh": "tanh", "Softmax": "softmax"}
LABEL_TAIL = frozenset(
    {"ArrayFeatureExtractor", "Cast", "Reshape", "Squeeze", "Unsqueeze", "Identity", "ZipMap"}
)
"""Operators admitted after an ``ArgMax`` (or on the output, ``ZipMap``) that only map the
label index to the class the graph stores, and feed only graph outputs."""
KNOWN = frozenset(
    {"Constant", "Cast", "Flatten", "Reshape", "Gemm", "MatMul", "Add", "Identity", "ArgMax"}
    | set(ACTIVATIONS)
    | LABEL_TAIL
)
FLOAT_TYPES = {1: "float32", 10: "float16", 11: "float64"}
"""ONNX ``TensorProto`` element types xpnet's networks hold."""


def read_file(path: str | os.PathLike[str]) -> Network:
    """The network in an ONNX file (external tensor data is refused)."""
    onnx = _import_onnx()
    _check_messages(path)
    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise Unsupported(f"not a valid ONNX model, truncated or corrupt ({short(exc)})") from None
    return read_model(model, Path(path).parent)


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise Unsupported(
            "reading ONNX needs the onnx package: pip install 'xpnet[onnx]'"
        ) from None
    return onnx


def read_model(model: Any, folder: Path | None = None) -> Network:
    """The dense layers of an ``onnx.ModelProto``; tensors kept outside the model (as
    ``torch.onnx.export`` writes large ones) are read from files in ``folder``, the model
    file's own (see :func:`_external`)."""
    onnx = _import_onnx()
    from onnx import numpy_helper

    if not isinstance(model, onnx.ModelProto):
        raise Unsupported(f"{type(model).__name__} is not an onnx.ModelProto")
    opsets = {entry.domain or "ai.onnx": entry.version for entry in model.opset_import}
    opset = opsets.get("ai.onnx")
    if opset not in OPSETS:
        raise Unsupported(
            f"it imports opset {opset} of the default domain; xpnet reads opsets "
            f"{OPSETS.start} to {OPSETS.stop - 1}"
        )
    graph = model.graph
    constants: dict[str, np.ndarray] = {}
    for tensor in graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            tensor = _external(tensor, folder)
        constants[tensor.name] = numpy_helper.to_array(_within_budget(tensor))
    if graph.sparse_initializer:
        raise Unsupported(f"the sparse initializer {graph.sparse_initializer[0].values.name!r}")
    inputs = [value for value in graph.input if value.name not in constants]
    if len(inputs) != 1:
        raise Unsupported(f"the graph takes {len(inputs)} inputs, not one tensor of samples")
    (source,) = inputs
    tensor_type = source.type.tensor_type if source.type.HasField("tensor_type") else None
    if tensor_type is None or tensor_type.elem_type not in FLOAT_TYPES:
        raise Unsupported(f"the input {source.name!r} is not a float tensor")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
    return _walk(graph, constants, source.name, dims)


def _external(tensor: Any, folder: Path | None) -> Any:
    """A copy of ``tensor`` with its raw data read from its external file, which must be a
    regular file directly in ``folder`` and hold exactly the bytes the tensor's shape needs."""
    from onnx import TensorProto, helper

    label = f"the initializer {tensor.name!r}"
    if folder is None:
        raise Unsupported(f"{label} keeps its data in another file: load the model's file")
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    if not location or Path(location).name != location or location in (".", ".."):
        raise Unsupported(f"{label} keeps its data in {location!r}, not a file beside the model")
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type))
        offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
    except (TypeError, ValueError, KeyError) as exc:
        raise Unsupported(f"{label}: its external data is described wrongly ({exc})") from None
    need = math.prod(tensor.dims) * dtype.itemsize
    if length not in (-1, need) or offset < 0:
        raise Unsupported(f"{label} needs {need} bytes but its external data says {length}")
    path = folder / location
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as file:
            status = os.fstat(file.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise Unsupported(f"{label} keeps its data in {location!r}, not a regular file")
            if offset + need > status.st_size:  # checked before a buffer of that size is made
                raise Unsupported(f"{label}: {location!r} ends before its {need} bytes: truncated")
            file.seek(offset)
            data = file.read(need)
    except OSError as exc:
        raise Unsupported(f"{label}: cannot read {location!r}: {exc.strerror or exc}") from None
    if len(data) != need:
        raise Unsupported(f"{label}: {location!r} ends before its {need} bytes: truncated")
    copy = TensorProto()
    copy.CopyFrom(tensor)
    del copy.external_data[:]
    copy.data_location = TensorProto.DEFAULT
    copy.raw_data = data
    return copy


def _walk(graph: Any, constants: dict[str, np.ndarray], current: str, dims: list) -> Network:
    """Follow the chain of nodes from the input, one value at a time."""
    from onnx import helper, numpy_helper

    layers: list[list[Any]] = []  # [weight, bias, activation or None]
    flat = len(dims) == 2
    labels: set[str] = set()  # values computed from labels or the output: only to outputs
    steps: list[str] = []  # the chain's operators that changed its value, in order
    taps: list[tuple[str, str, int]] = []  # (op, label, len(steps)) of each ArgMax, ZipMap
    pending_add = False  # the last layer is a MatMul whose bias may follow as an Add
    for node in graph.node:
        op = node.op_type
        label = f"node {node.name or '(unnamed)'!r} ({op})"
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        domain = node.domain or "ai.onnx"
        if domain not in ("ai.onnx", "ai.onnx.ml"):
            raise Unsupported(f"{label} is from the domain {domain!r}")
        if op not in KNOWN:
            raise Unsupported(
                f"{label}: xpnet reads Gemm, MatMul+Add, Sigmoid, Relu, Tanh, Softmax, "
                "Identity, a leading Cast/Flatten/Reshape and a trailing ArgMax"
            )
        data = [name for name in node.input if name and name not in constants]
        if op == "Constant" and domain == "ai.onnx":
            if "value" not in attrs:
                raise Unsupported(f"{label} holds no tensor 'value'")
            constants[node.output[0]] = numpy_helper.to_array(_within_budget(attrs["value"]))
            continue
        if data and all(name in labels for name in data) and op in LABEL_TAIL | {"ArgMax"}:
            labels.update(node.output)
            continue
        if data == [current] and op in ("ArgMax", "ZipMap") and layers:
            if op == "ArgMax" and (
                attrs.get("axis", 0) not in (1, -1) or attrs.get("select_last_index", 0)
            ):
                raise Unsupported(f"{label} is not over the last axis, first index")
            taps.append((op, label, len(steps)))
            labels.update(node.output)
            continue
        if domain != "ai.onnx":
            raise Unsupported(f"{label} is from the domain {domain!r}")
        if data != [current] or (op in ("Gemm", "MatMul") and node.input[0] != current):
            raise Unsupported(
                f"{label} reads {list(node.input)}, not only the output of the previous "
                f"layer ({current!r}): xpnet reads a chain of dense layers"
            )
        pending, pending_add = pending_add, False
        if op == "Cast" and not layers and attrs.get("to") in FLOAT_TYPES:
            pass  # the network casts its input to its own dtype
        elif op in ("Flatten", "Reshape") and not layers:
            dims = _flatten(label, op, attrs, node, constants, dims)
            flat = True
        elif op == "Gemm":
            _need_flat(flat, label)
            layers.append(_gemm(label, attrs, node, constants))
        elif op == "MatMul":
            _need_flat(flat, label)
            weight = _constant(node.input[1], constants, label, "weight")
            if weight.ndim != 2:
                raise Unsupported(f"{label}: its weight has shape {weight.shape}, not (in, out)")
            layers.append([weight, np.zeros(weight.shape[1], dtype=weight.dtype), None])
            pending_add = True
        elif op == "Add" and pending:
            other = next(name for name in node.input if name != current)
            bias = _constant(other, constants, label, "bias")
            layers[-1][1] = _bias(bias, layers[-1][0].shape[1], label)
        elif op in ACTIVATIONS:
            if op == "Softmax" and attrs.get("axis", -1) not in (1, -1):
                raise Unsupported(f"{label} is over axis {attrs['axis']}, not the features")
            if not layers or layers[-1][2] is not None:
                where = "before any dense layer" if not layers else "right after an activation"
                raise Unsupported(f"{label} comes {where}")
            layers[-1][2] = ACTIVATIONS[op]
        elif op == "Identity":
            pending_add = pending
        else:
            raise Unsupported(
                f"{label}: xpnet reads Gemm, MatMul+Add, Sigmoid, Relu, Tanh, Softmax, "
                "Identity, a leading Cast/Flatten/Reshape and a trailing ArgMax"
            )
        if op in ("Gemm", "MatMul", "Add", *ACTIVATIONS):
            steps.append(op)
        current = node.output[0]
    for op, label, at in taps:
        # An argmax of the logits is the argmax of their softmax, sigmoid or tanh.
        before_activation = at == len(steps) - 1 and steps[-1] in ("Softmax", "Sigmoid", "Tanh")
        if at != len(steps) and not (op == "ArgMax" and before_activation):
            raise Unsupported(f"{label} reads a value inside the network, not its output")
    outputs = [value.name for value in graph.output]
    if current not in outputs and not (labels & set(outputs)):
        raise Unsupported(f"the graph's outputs {outputs} do not include the last layer's")
    strays = [name for name in outputs if name != current and name not in labels]
    if strays:
        raise Unsupported(f"the graph output {strays[0]!r} is not the network's or its labels")
    host: list[HostLayer] = [
        (host_array(w, f"weight {n}"), host_array(b, f"bias {n}"), a or "identity")
        for n, (w, b, a) in enumerate(layers, start=1)
    ]
    return build_network(host)


def _need_flat(flat: bool, label: str) -> None:
    if not flat:
        raise Unsupported(f"{label} takes an input that is not (samples, features): flatten first")


def _constant(name: str, constants: dict[str, np.ndarray], label: str, what: str) -> np.ndarray:
    if name not in constants:
        raise Unsupported(f"{label}: its {what} {name!r} is not an initializer")
    return constants[name]


def _bias(bias: np.ndarray, out: int, label: str) -> np.ndarray:
    """A bias that broadcasts over the rows (``(out,)``, ``(1, out)``, one value) as ``(out,)``."""
    if bias.size not in (1, out) or bias.ndim > 2 or (bias.ndim == 2 and bias.shape[0] != 1):
        raise Unsupported(f"{label}: its bias has shape {bias.shape}, not ({out},)")
    return np.broadcast_to(bias.reshape(-1), (out,)).copy()


def _gemm(label: str, attrs: dict, node: Any, constants: dict[str, np.ndarray]) -> list[Any]:
    if attrs.get("transA", 0):
        raise Unsupported(f"{label} transposes its input (transA=1)")
    weight = _constant(node.input[1], constants, label, "weight")
    if weight.ndim != 2:
        raise Unsupported(f"{label}: its weight has shape {weight.shape}")
    if attrs.get("transB", 0):
        weight = weight.T
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    if alpha != 1.0:
        weight = weight * np.asarray(alpha, dtype=weight.dtype)
    out = weight.shape[1]
    if len(node.input) > 2 and node.input[2]:
        bias = _bias(_constant(node.input[2], constants, label, "bias"), out, label)
        if beta != 1.0:
            bias = bias * np.asarray(beta, dtype=bias.dtype)
    else:
        bias = np.zeros(out, dtype=weight.dtype)
    return [np.ascontiguousarray(weight), bias, None]


def _flatten(
    label: str, op: str, attrs: dict, node: Any, constants: dict[str, np.ndarray], dims: list
) -> list:
    """The input's dims once flattened to ``(N, features)``; anything else is refused."""
    features = math.prod(dims[1:]) if dims and None not in dims[1:] else None
    if op == "Flatten":
        if attrs.get("axis", 1) != 1:
            raise Unsupported(f"{label} flattens at axis {attrs.get('axis')}, not 1")
        return [dims[0] if dims else None, features]
    shape = [int(n) for n in _constant(node.input[1], constants, label, "shape").reshape(-1)]
    zero_copies = not attrs.get("allowzero", 0)
    first_ok = shape[:1] in ([-1], [0]) if zero_copies else shape[:1] == [-1]
    if len(shape) != 2 or not (
        (first_ok and (shape[1] == -1 or shape[1] == features))
        or (shape[0] == -1 and features is not None and shape[1] == features)
    ):
        raise Unsupported(f"{label} reshapes to {shape}, not (samples, features)")
    return [dims[0] if dims else None, features]


def _within_budget(tensor: Any) -> Any:
    """``tensor``, once the array its dims and type declare fits the budget of
    :mod:`xpnet._budget` for the bytes it holds (a tensor's dims can declare gigabytes
    over a few bytes of data)."""
    from onnx import helper

    from xpnet import _budget as budget

    label = f"the tensor {tensor.name!r}"
    try:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
        declared = budget.array_bytes(tensor.dims, itemsize, label)
        budget.check(declared, tensor.ByteSize(), label)
    except budget.OverBudget as exc:
        raise Unsupported(str(exc)) from None
    except (KeyError, ValueError, TypeError) as exc:
        raise Unsupported(f"{label} has the element type {tensor.data_type} ({exc})") from None
    return tensor


_SCHEMA = {
    "Model": {7: "Graph", 20: "Training", 25: "Function"},
    "Graph": {1: "Node", 5: "Tensor", 15: "Sparse"},
    "Node": {5: "Attribute"},
    "Attribute": {5: "Tensor", 6: "Graph", 10: "Tensor", 11: "Graph", 22: "Sparse", 23: "Sparse"},
    "Sparse": {1: "Tensor", 2: "Tensor"},
    "Training": {1: "Graph", 3: "Graph"},
    "Function": {7: "Node"},
}
"""The fields of ONNX's messages (by number) that hold messages: graphs, nodes, their
attributes and tensors, the parts a file can repeat without end."""


def _check_messages(path: str | os.PathLike[str]) -> None:
    """Refuse a file of millions of tiny messages (an empty node is two bytes, and the
    parser builds an object for it) before ``onnx`` parses it (:mod:`xpnet._budget`)."""
    from xpnet import _budget as budget

    try:
        with open(path, "rb") as file:
            data = file.read()
        budget.check_protobuf(data, _SCHEMA, "Model", "it")
    except budget.OverBudget as exc:
        raise Unsupported(str(exc)) from None
    except OSError as exc:
        raise Unsupported(f"cannot read it: {exc.strerror or exc}") from None
