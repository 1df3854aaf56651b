"""ONNX: a chain of dense layers, parsed with the ``onnx`` package (no code runs).

Admitted operators (default domain, opsets :data:`OPSETS`): ``Gemm`` (``transA=0``, any
``transB``, ``alpha``, ``beta``), ``MatMul`` with an initializer, optionally followed by
``Add`` of a bias; ``Sigmoid``, ``Relu``, ``Tanh``, ``Softmax`` over the last axis and
``Identity``; at the start a ``Cast`` of the input to a float type and a ``Flatten`` (axis 1)
or ``Reshape`` to ``(N, features)``; after a layer, a ``Reshape`` that keeps its
``(N, outputs)`` shape (as skl2onnx ends a regressor). A single ``Sigmoid`` output ``p``
followed by ``Sub(1, p)`` and ``Concat`` of ``[1 - p, p]`` (skl2onnx's binary classifier) is
the two-output softmax ``softmax([0, z])``, as :func:`xpnet.from_sklearn` reads the same
model. Nodes that only turn the output into labels (``ArgMax`` over the last axis and what
follows it: ``ArrayFeatureExtractor``, ``Cast``, ``Reshape``, ``Squeeze``, ``Identity``; a
``ZipMap``; a ``Binarizer``, as a multilabel classifier's) are read and left out: xpnet's
labels are indices, the argmax of its output.

Every node is checked for its structure before it is used (its number of inputs and
outputs, the types of the attributes read, each value written once), so a malformed graph
is refused in one line naming the node, never a traceback.
"""

from __future__ import annotations

import math
import os
import reprlib
import stat
from pathlib import Path
from typing import Any

import numpy as np

from xpnet import _budget as budget
from xpnet.importers._common import (
    HostLayer,
    Unsupported,
    build_network,
    host_array,
    short,
    two_class_softmax,
)
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
TAPS = {"ArgMax": "ai.onnx", "ZipMap": "ai.onnx.ml", "Binarizer": "ai.onnx.ml"}
"""Operators admitted on the network's output that only turn it into labels, and their
domains."""
ARITY = {
    "Constant": (0, 0),
    "Cast": (1, 1),
    "Flatten": (1, 1),
    "Reshape": (2, 2),
    "Gemm": (2, 3),
    "MatMul": (2, 2),
    "Add": (2, 2),
    "Sub": (2, 2),
    "Concat": (1, 2**31),
    "Identity": (1, 1),
    "ArgMax": (1, 1),
    "ArrayFeatureExtractor": (2, 2),
    "Squeeze": (1, 2),
    "Unsqueeze": (1, 2),
    "ZipMap": (1, 1),
    "Binarizer": (1, 1),
    **{op: (1, 1) for op in ACTIVATIONS},
}
"""The operators read, each with the least and most inputs it takes; each has one output."""
KNOWN = frozenset(ARITY)
ATTRIBUTES = {
    "Gemm": {"alpha", "beta", "transA", "transB"},
    "Softmax": {"axis"},
    "Flatten": {"axis"},
    "Reshape": {"allowzero"},
    "Cast": {"to", "saturate", "round_mode"},  # the last two concern only float8 and less
    "Concat": {"axis"},
    "ArgMax": {"axis", "keepdims", "select_last_index"},
}
"""The attributes read of the operators that compute the network's values (or its labels,
``ArgMax``); each other operator of the chain takes none. An attribute the operator does
not define could change what the node computes, so it is refused, not ignored."""
CHAIN_ONLY = frozenset({"Constant", "ArrayFeatureExtractor", "Squeeze", "Unsqueeze"})
"""Operators whose attributes are not checked against :data:`ATTRIBUTES`: ``Constant``
(:func:`_constant_node` reads its own) and the label tail, whose values xpnet leaves out."""
READS = (
    "xpnet reads Gemm, MatMul+Add, Sigmoid, Relu, Tanh, Softmax, Identity, a leading "
    "Cast/Flatten/Reshape and a trailing ArgMax"
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
    return read_model(model, Path(path))


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise Unsupported(
            "reading ONNX needs the onnx package: pip install 'xpnet[onnx]'"
        ) from None
    return onnx


def read_model(model: Any, path: Path | None = None) -> Network:
    """The dense layers of an ``onnx.ModelProto``; tensors kept outside the model (as
    ``torch.onnx.export`` writes large ones) are read from files beside the model's file
    ``path`` (see :func:`_external`)."""
    onnx = _import_onnx()

    if not isinstance(model, onnx.ModelProto):
        raise Unsupported(f"{type(model).__name__} is not an onnx.ModelProto")
    _check_text(model)
    for function in model.functions:  # a local function may stand in for an operator
        if (function.domain or "ai.onnx") in ("ai.onnx", "ai.onnx.ml"):
            raise Unsupported(
                f"it defines its own operator {function.name!r} in the domain "
                f"{function.domain or 'ai.onnx'!r}, which a runtime may run instead of ONNX's"
            )
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
        label = f"the initializer {tensor.name!r}"
        if not tensor.name or tensor.name in constants:
            raise Unsupported(f"{label} is unnamed or named twice")
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            tensor = _external(tensor, path)
        constants[tensor.name] = _array(tensor, label)
    if graph.sparse_initializer:
        raise Unsupported(f"the sparse initializer {graph.sparse_initializer[0].values.name!r}")
    inputs = [value for value in graph.input if value.name not in constants]
    if len(inputs) != 1:
        raise Unsupported(f"the graph takes {len(inputs)} inputs, not one tensor of samples")
    (source,) = inputs
    if not source.name:
        raise Unsupported("the graph's input has no name")
    tensor_type = source.type.tensor_type if source.type.HasField("tensor_type") else None
    if tensor_type is None or tensor_type.elem_type not in FLOAT_TYPES:
        raise Unsupported(f"the input {source.name!r} is not a float tensor")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
    return _walk(graph, constants, source.name, dims)


def _check_text(model: Any) -> None:
    """Every name the graph's structure is read by is text: protobuf hands a string field
    that is not UTF-8 over as bytes, which no name in the graph can match."""
    graph = model.graph
    named = [*graph.initializer, *graph.input, *graph.output, *graph.node]
    texts: list[tuple[str, Any]] = [("an opset domain", e.domain) for e in model.opset_import]
    texts += [("a name", item.name) for item in named]
    for tensor in graph.initializer:
        texts += [("an external data entry", e.key) for e in tensor.external_data]
        texts += [("an external data entry", e.value) for e in tensor.external_data]
    for node in graph.node:
        texts += [("an operator", node.op_type), ("a domain", node.domain)]
        texts += [("a value name", name) for name in (*node.input, *node.output)]
        texts += [("an attribute name", attribute.name) for attribute in node.attribute]
    for what, text in texts:
        if not isinstance(text, str):
            raise Unsupported(f"{what} in the graph, {_shown(text)}, is not UTF-8 text")


def _array(tensor: Any, label: str) -> np.ndarray:
    """The tensor's values; a tensor whose data do not fill its shape, of an unknown element
    type or with a negative dimension, is refused."""
    from onnx import numpy_helper

    if any(n < 0 for n in tensor.dims):
        raise Unsupported(f"{label} has the shape {list(tensor.dims)}")
    _within_budget(tensor, label)
    try:
        return numpy_helper.to_array(tensor)
    except Exception as exc:  # ValueError, TypeError, KeyError... from a malformed tensor
        raise Unsupported(f"{label} is malformed ({short(exc)})") from None


def _external(tensor: Any, model_path: Path | None) -> Any:
    """A copy of ``tensor`` with its raw data read from its external file, which must hold
    exactly the bytes the tensor's shape needs and be a regular file in the model's folder.

    A name that leads out of the folder (``../``, an absolute path) is refused, and so is a
    symbolic link unless it leads to a file beside the model's own real file (a download
    cache whose files all link into one folder of blobs): a file that links out of the
    folder would read another file of the user's as weights. A FIFO or a device is no
    regular file. A hard link is read like any file of the folder: it is one, and only
    someone who may already read and write the file it names can make it.
    """
    from onnx import TensorProto, helper

    label = f"the initializer {tensor.name!r}"
    if model_path is None:
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
    if any(n < 0 for n in tensor.dims):
        raise Unsupported(f"{label} has the shape {list(tensor.dims)}")
    need = math.prod(tensor.dims) * dtype.itemsize
    if length not in (-1, need) or offset < 0:
        raise Unsupported(f"{label} needs {need} bytes but its external data says {length}")
    path = _beside(model_path, location, label)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | _NOFOLLOW)
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


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _beside(model_path: Path, location: str, label: str) -> str:
    """The real path of the file ``location`` beside the model, which must lie in the model's
    folder or in the folder of the model's real file (when the model is a link itself)."""
    named = model_path.parent / location
    real = os.path.realpath(named)
    folders = {os.path.realpath(model_path.parent), os.path.dirname(os.path.realpath(model_path))}
    if os.path.dirname(real) not in folders:
        raise Unsupported(
            f"{label} keeps its data in {location!r}, a link that leads out of the model's "
            "folder; xpnet reads external data only from files in that folder"
        )
    return real


def _walk(graph: Any, constants: dict[str, np.ndarray], current: str, dims: list) -> Network:
    """Follow the chain of nodes from the input, one value at a time."""
    layers: list[list[Any]] = []  # [weight, bias, activation or None]
    flat = len(dims) == 2
    labels: set[str] = set()  # values computed from labels or the output: only to outputs
    steps: list[str] = []  # the chain's operators that changed its value, in order
    taps: list[tuple[str, str, int]] = []  # (op, label, len(steps)) of each ArgMax, ZipMap...
    pending_add = False  # the last layer is a MatMul whose bias may follow as an Add
    complement: tuple[str, str] | None = None  # (1 - p, p) of a Sub awaiting its Concat
    one_per_row = ""  # the Reshape that laid the outputs out one per row: nothing may follow
    defined = set(constants) | {value.name for value in graph.input}
    for node in graph.node:
        op = node.op_type
        label = f"node {node.name or '(unnamed)'!r} ({op if op.isidentifier() else repr(op)})"
        domain = node.domain or "ai.onnx"
        if domain not in ("ai.onnx", "ai.onnx.ml"):
            raise Unsupported(f"{label} is from the domain {domain!r}")
        if op not in KNOWN:
            raise Unsupported(f"{label}: {READS}")
        attrs = _attributes(node, label)
        _check_node(node, label, defined)
        if op not in CHAIN_ONLY and domain == "ai.onnx":
            unknown = sorted(set(attrs) - ATTRIBUTES.get(op, set()))
            if unknown:
                raise Unsupported(f"{label} has the attribute {unknown[0]!r}, which {op} lacks")
        data = [name for name in node.input if name and name not in constants]
        if op == "Constant" and domain == "ai.onnx":
            constants[node.output[0]] = _constant_node(attrs, label)
            continue
        if one_per_row:
            raise Unsupported(f"{label} follows {one_per_row}, which lays the outputs one per row")
        if complement is not None and op != "Concat":
            raise Unsupported(f"{label} comes between a Sub of 1 - p and its Concat")
        if data and all(name in labels for name in data) and op in LABEL_TAIL | {"ArgMax"}:
            labels.update(node.output)
            continue
        if data == [current] and op in TAPS and layers:
            if op == "ArgMax" and (
                _int(attrs, "axis", 0, label) not in (1, -1)
                or _int(attrs, "select_last_index", 0, label)
            ):
                raise Unsupported(f"{label} is not over the last axis, first index")
            if TAPS[op] != domain:
                raise Unsupported(f"{label} is from the domain {domain!r}")
            taps.append((op, label, len(steps)))
            labels.update(node.output)
            continue
        if domain != "ai.onnx":
            raise Unsupported(f"{label} is from the domain {domain!r}")
        if op == "Concat" and complement is not None:
            layers[-1][:2] = _concat_complement(node, attrs, label, complement, layers[-1])
            layers[-1][2] = "softmax"
            complement = None
            steps.append(op)  # an ArgMax of the single sigmoid output is not the labels
            current = node.output[0]
            continue
        if data != [current] or (op in ("Gemm", "MatMul") and node.input[0] != current):
            raise Unsupported(
                f"{label} reads {list(node.input)}, not only the output of the previous "
                f"layer ({current!r}): xpnet reads a chain of dense layers"
            )
        pending, pending_add = pending_add, False
        if op == "Cast" and not layers and _int(attrs, "to", 0, label) in FLOAT_TYPES:
            pass  # the network casts its input to its own dtype
        elif op in ("Flatten", "Reshape") and not layers:
            dims = _flatten(label, op, attrs, node, constants, dims)
            flat = True
        elif op == "Reshape" and layers:
            if not _keeps_rows(label, attrs, node, constants, layers[-1][0].shape[1]):
                one_per_row = label
            pending_add = pending  # the same values: a bias may still follow
        elif op == "Gemm":
            _need_flat(flat, label)
            layers.append(_gemm(label, attrs, node, constants))
            _check_width(label, layers, dims)
        elif op == "MatMul":
            _need_flat(flat, label)
            weight = _constant(node.input[1], constants, label, "weight")
            if weight.ndim != 2:
                raise Unsupported(f"{label}: its weight has shape {weight.shape}, not (in, out)")
            layers.append([weight, np.zeros(weight.shape[1], dtype=weight.dtype), None])
            _check_width(label, layers, dims)
            pending_add = True
        elif op == "Add" and pending:
            (other,) = (name for name in node.input if name != current)
            bias = _constant(other, constants, label, "bias")
            layers[-1][1] = _bias(bias, layers[-1][0].shape[1], label)
        elif op == "Sub":
            _check_complement(node, label, constants, current, layers, steps)
            complement = (node.output[0], current)
            continue  # the chain's value stays p until the Concat
        elif op in ACTIVATIONS:
            if op == "Softmax" and _int(attrs, "axis", -1, label) not in (1, -1):
                raise Unsupported(f"{label} is over axis {attrs['axis']}, not the features")
            if not layers or layers[-1][2] is not None:
                where = "before any dense layer" if not layers else "right after an activation"
                raise Unsupported(f"{label} comes {where}")
            layers[-1][2] = ACTIVATIONS[op]
        elif op == "Identity":
            pending_add = pending
        else:
            raise Unsupported(f"{label}: {READS}")
        if op in ("Gemm", "MatMul", "Add", *ACTIVATIONS):
            steps.append(op)
        current = node.output[0]
    if complement is not None:
        raise Unsupported(f"the value {complement[0]!r} (1 - p) feeds no Concat")
    if not layers:
        raise Unsupported("it holds no dense layer")
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


def _attributes(node: Any, label: str) -> dict[str, Any]:
    """The node's attributes by name; one given twice, or that cannot be decoded, is refused."""
    from onnx import helper

    attrs: dict[str, Any] = {}
    for attribute in node.attribute:
        if attribute.name in attrs or attribute.ref_attr_name:
            raise Unsupported(
                f"{label} gives its attribute {attribute.name!r} twice or by reference"
            )
        try:
            attrs[attribute.name] = helper.get_attribute_value(attribute)
        except Exception as exc:  # ValueError for an undefined type, and others
            raise Unsupported(
                f"{label}: its attribute {attribute.name!r} is malformed ({short(exc)})"
            ) from None
    return attrs


def _check_node(node: Any, label: str, defined: set[str]) -> None:
    """The node takes as many inputs as its operator does, writes one named value, and that
    value is written nowhere else (a graph is a chain of values, each written once)."""
    least, most = ARITY[node.op_type]
    count = len(node.input)
    if not least <= count <= most or not all(node.input[:least]):
        wanted = f"{least}" if least == most else f"{least} to {most}"
        raise Unsupported(f"{label} has the inputs {list(node.input)}; it takes {wanted}")
    if len(node.output) != 1 or not node.output[0]:
        raise Unsupported(f"{label} has the outputs {list(node.output)}, not one named value")
    if node.output[0] in defined:
        raise Unsupported(f"{label} writes {node.output[0]!r}, a value written before")
    defined.add(node.output[0])


def _int(attrs: dict[str, Any], name: str, default: int, label: str) -> int:
    value = attrs.get(name, default)
    if type(value) is not int:
        raise Unsupported(f"{label}: its attribute {name!r} is {_shown(value)}, not an integer")
    return value


def _float(attrs: dict[str, Any], name: str, default: float, label: str) -> float:
    value = attrs.get(name, default)
    if type(value) not in (int, float):
        raise Unsupported(f"{label}: its attribute {name!r} is {_shown(value)}, not a number")
    return float(value)


def _shown(value: object) -> str:
    """An attribute's value for a message: short, on one line (a graph or tensor by its type)."""
    if value is None or isinstance(value, int | float | bytes | str | list):
        return reprlib.repr(value)
    return f"a {type(value).__name__}"


def _constant_node(attrs: dict[str, Any], label: str) -> np.ndarray:
    """The value a ``Constant`` node holds: a tensor, or one or more floats or integers."""
    from onnx import TensorProto

    if len(attrs) != 1:
        raise Unsupported(f"{label} holds {sorted(attrs)}, not one value")
    ((name, value),) = attrs.items()
    if name == "value" and isinstance(value, TensorProto):
        return _array(value, label)
    kinds = {"value_float": float, "value_floats": float, "value_int": int, "value_ints": int}
    kind = kinds.get(name)
    many = name.endswith("s")
    items = value if many and isinstance(value, list) else [value]
    if kind is None or not all(type(item) in (kind, int) for item in items):
        raise Unsupported(f"{label} holds {name}={_shown(value)}, not a tensor or numbers")
    array = np.array(items, dtype=np.float32 if kind is float else np.int64)
    return array if many else array.reshape(())


def _check_complement(
    node: Any,
    label: str,
    constants: dict[str, np.ndarray],
    current: str,
    layers: list[list[Any]],
    steps: list[str],
) -> None:
    """A ``Sub`` that computes ``1 - p`` of a single sigmoid output ``p`` (and nothing else).

    skl2onnx writes a multilabel classifier of two labels as if it were binary: ``1 - p``
    of both sigmoid outputs joined to ``p``, four columns where the model has two
    probabilities. Such a graph computes something the model does not, so it is refused,
    saying so."""
    one = constants.get(node.input[0])
    is_one = (
        one is not None
        and one.dtype.kind == "f"
        and one.size == 1
        and one.ndim <= 2
        and bool(one.reshape(-1)[0] == 1)
    )
    after_sigmoid = bool(layers) and steps[-1:] == ["Sigmoid"] and node.input[1] == current
    width = layers[-1][0].shape[1] if layers else 0
    if is_one and after_sigmoid and width > 1:
        raise Unsupported(
            f"{label} computes 1 - p of {width} sigmoid outputs, joined to p, {2 * width} "
            f"columns where the classifier has {width} probabilities (skl2onnx writes a "
            f"multilabel classifier of two labels so): read the model with from_sklearn, "
            f"or save it with skops"
        )
    if not (is_one and after_sigmoid and width == 1):
        raise Unsupported(
            f"{label}: xpnet reads a Sub only as 1 - p of a single sigmoid output p, "
            "before a Concat of [1 - p, p] (a binary classifier's two probabilities)"
        )


def _concat_complement(
    node: Any, attrs: dict[str, Any], label: str, complement: tuple[str, str], layer: list[Any]
) -> tuple[np.ndarray, np.ndarray]:
    """The last layer's weight and bias as two softmax outputs, ordered as the Concat of
    ``1 - p`` and ``p`` orders them."""
    weight, bias = two_class_softmax(layer[0], layer[1])
    if _int(attrs, "axis", 0, label) not in (1, -1) or len(node.input) != 2:
        raise Unsupported(f"{label} does not join [1 - p, p] along the features")
    if list(node.input) == list(complement):
        return weight, bias
    if list(node.input) == list(reversed(complement)):  # [p, 1 - p]
        return weight[:, ::-1].copy(), bias[::-1].copy()
    raise Unsupported(f"{label} reads {list(node.input)}, not [1 - p, p] = {list(complement)}")


def _check_width(label: str, layers: list[list[Any]], dims: list) -> None:
    """The first layer takes as many features as the graph's input declares (where it does)."""
    declared = dims[1] if len(dims) == 2 else None
    if len(layers) == 1 and declared is not None and layers[0][0].shape[0] != declared:
        raise Unsupported(
            f"{label} takes {layers[0][0].shape[0]} features but the graph's input has {declared}"
        )


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
    if _int(attrs, "transA", 0, label):
        raise Unsupported(f"{label} transposes its input (transA=1)")
    weight = _constant(node.input[1], constants, label, "weight")
    if weight.ndim != 2:
        raise Unsupported(f"{label}: its weight has shape {weight.shape}")
    if _int(attrs, "transB", 0, label):
        weight = weight.T
    alpha, beta = _float(attrs, "alpha", 1.0, label), _float(attrs, "beta", 1.0, label)
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
        if _int(attrs, "axis", 1, label) != 1:
            raise Unsupported(f"{label} flattens at axis {attrs.get('axis')}, not 1")
        return [dims[0] if dims else None, features]
    shape = _shape(label, node, constants)
    zero_copies = not _int(attrs, "allowzero", 0, label)
    first_ok = shape[:1] in ([-1], [0]) if zero_copies else shape[:1] == [-1]
    if len(shape) != 2 or not (
        (first_ok and (shape[1] == -1 or shape[1] == features))
        or (shape[0] == -1 and features is not None and shape[1] == features)
    ):
        raise Unsupported(f"{label} reshapes to {shape}, not (samples, features)")
    return [dims[0] if dims else None, features]


def _shape(label: str, node: Any, constants: dict[str, np.ndarray]) -> list[int]:
    """The target shape of a ``Reshape``: a constant of integers."""
    shape = _constant(node.input[1], constants, label, "shape")
    if shape.dtype.kind not in "iu" or shape.ndim != 1:
        raise Unsupported(f"{label}: its shape is {shape.dtype} {shape.shape}, not integers")
    return [int(n) for n in shape]


def _keeps_rows(
    label: str, attrs: dict, node: Any, constants: dict[str, np.ndarray], width: int
) -> bool:
    """Whether a ``Reshape`` after a layer keeps its ``(N, width)`` shape (skl2onnx ends a
    regressor with a ``Reshape`` to ``[-1, outputs]``), or (False) lays the outputs out one per
    row, ``[-1, 1]``, as skl2onnx does for a regressor of several outputs (sklearn-onnx
    issue 474): the same values in the same order, read as the ``(N, width)`` output
    scikit-learn's ``predict`` gives, where the Reshape is the graph's last node. Any other
    target shape is refused."""
    shape = _shape(label, node, constants)
    copies = not _int(attrs, "allowzero", 0, label)
    rows_kept = shape[:1] == [-1] or (copies and shape[:1] == [0])
    if len(shape) == 2 and rows_kept and (shape[1] == width or shape == [0, -1]):
        return True
    if shape == [-1, 1]:
        return False
    raise Unsupported(f"{label} reshapes the ({width} wide) output to {shape}")


def _within_budget(tensor: Any, label: str) -> Any:
    """``tensor``, once the array its dims and type declare fits the budget of
    :mod:`xpnet._budget` for the bytes it holds (a tensor's dims can declare gigabytes
    over a few bytes of data)."""
    from onnx import helper

    try:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
        declared = budget.array_bytes(tensor.dims, itemsize, label)
        budget.check(declared, tensor.ByteSize(), label)
    except budget.OverBudget as exc:
        raise Unsupported(str(exc)) from None
    except (KeyError, ValueError, TypeError):
        raise Unsupported(f"{label} is malformed (element type {tensor.data_type})") from None
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
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise Unsupported(f"cannot read it: {exc.strerror or exc}") from None
    budget.check_protobuf(data, _SCHEMA, "Model", "it")
