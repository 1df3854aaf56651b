"""PyTorch: an ``nn.Sequential`` of ``Linear`` and activation modules, or its ``state_dict``.

A state dict holds no activations, so the caller names them; a file is read with
``torch.load(weights_only=True)``, which builds tensors and containers but runs no code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xpnet import _budget as budget
from xpnet.importers._common import (
    DAMAGED_ZIP,
    HostLayer,
    Unsupported,
    build_network,
    chosen_activations,
    host_array,
    short,
)
from xpnet.network import Network


def _host(tensor: Any, what: str) -> np.ndarray:
    return host_array(_numpy(tensor), what)


def _numpy(tensor: Any) -> np.ndarray:
    import torch

    tensor = tensor.detach().to("cpu")
    if tensor.dtype == torch.bfloat16:  # NumPy has no bfloat16; float32 holds it exactly
        tensor = tensor.to(torch.float32)
    return np.array(tensor.numpy(), copy=True)


def _odd_kind(tensor: Any) -> str:
    """What makes ``tensor`` other than a dense tensor of values on a device (``""`` if
    nothing): NumPy holds none of these, and converting them fails in many ways."""
    import torch

    if tensor.is_nested:
        return "nested"
    if tensor.is_quantized:
        return "quantized"
    if tensor.is_meta:
        return "meta (data-less)"
    if tensor.layout != torch.strided:
        return str(tensor.layout).removeprefix("torch.")
    return ""


def read_module(module: Any) -> Network:
    """The dense layers of an ``nn.Sequential`` (nested ones are read in order).

    Admitted: ``Linear``; ``Sigmoid``, ``ReLU``, ``Tanh``, ``Softmax`` over the feature axis
    (``dim`` -1 or 1) and ``Identity`` after it; ``Dropout`` (a no-op at inference); and a
    ``Flatten`` of each sample before the first ``Linear`` (the network then takes flattened
    rows).

    xpnet computes what the module computes in evaluation mode, so a module whose layers
    would compute otherwise in training mode is refused rather than converted: of the
    admitted layers only ``Dropout`` differs, and one in training mode with ``p > 0`` is
    refused (call ``module.eval()``); every layer kind with running statistics
    (``BatchNorm``...) is refused in either mode.
    """
    from torch import nn

    if isinstance(module, Mapping):
        raise Unsupported("a state dict stores no activations: use read_state_dict")
    if type(module) is not nn.Sequential:
        raise Unsupported(f"{type(module).__name__} is not an nn.Sequential (subclasses neither)")
    activation_of = {nn.Sigmoid: "sigmoid", nn.ReLU: "relu", nn.Tanh: "tanh", nn.Softmax: "softmax"}
    layers: list[list[Any]] = []  # [weight, bias, activation or None]
    for name, child in _flat(module, ""):
        # Exact types: a subclass may compute anything in its forward.
        if type(child) is nn.Linear:
            weight = _host(child.weight, f"{name}.weight").T.copy()
            bias = (
                np.zeros(weight.shape[1], dtype=weight.dtype)
                if child.bias is None
                else _host(child.bias, f"{name}.bias")
            )
            layers.append([weight, bias, None])
        elif type(child) is nn.Identity:
            continue
        elif type(child) is nn.Dropout:
            if child.training and child.p > 0:  # PyTorch would zero values at random
                raise Unsupported(
                    f"module {name} (Dropout(p={child.p})) is in training mode, where it "
                    "drops values at random; call module.eval() first"
                )
            continue
        elif type(child) is nn.Flatten:
            if layers or (child.start_dim, child.end_dim) != (1, -1):
                raise Unsupported(
                    f"module {name} (Flatten(start_dim={child.start_dim}, "
                    f"end_dim={child.end_dim})): xpnet admits only Flatten() before the first "
                    "Linear"
                )
        elif type(child) in activation_of:
            kind = activation_of[type(child)]
            if kind == "softmax" and child.dim not in (None, -1, 1):
                raise Unsupported(
                    f"module {name} (Softmax(dim={child.dim})) is not over the feature axis"
                )
            if not layers or layers[-1][2] is not None:
                where = "before any Linear" if not layers else "right after another activation"
                raise Unsupported(f"module {name} ({type(child).__name__}) comes {where}")
            layers[-1][2] = kind
        else:
            raise Unsupported(
                f"module {name} ({type(child).__name__}) is not Linear, Sigmoid, ReLU, Tanh, "
                "Softmax, Identity, Dropout or a leading Flatten"
            )
    return build_network([(w, b, a or "identity") for w, b, a in layers])


def _flat(module: Any, prefix: str) -> list[tuple[str, Any]]:
    from torch import nn

    found = []
    for name, child in module.named_children():
        full = f"{prefix}{name}"
        if type(child) is nn.Sequential:
            found.extend(_flat(child, f"{full}."))
        else:
            found.append((full, child))
    return found


def read_state_dict(
    state: Mapping[str, Any], activations: Sequence[str] | str | None, where: str = "the state dict"
) -> Network:
    """The dense layers of a ``state_dict`` (``"0.weight"``, ``"0.bias"``, ``"2.weight"``...)
    in the order it lists them, with the caller's ``activations``, one per layer."""
    import torch

    arrays = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise Unsupported(f"{where} holds {key!r}, which is a {type(value).__name__}")
        odd = _odd_kind(value)
        if odd:
            raise Unsupported(f"{where} holds {key!r}, a {odd} tensor, not a dense one")
        arrays[str(key)] = _numpy(value)  # checked by read_state_dict_arrays
    return read_state_dict_arrays(arrays, activations, where)


def read_state_dict_arrays(
    state: Mapping[str, np.ndarray], activations: Sequence[str] | str | None, where: str
) -> Network:
    """:func:`read_state_dict` of host arrays (as a safetensors file holds them)."""
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        prefix, _, kind = key.rpartition(".")
        if kind not in ("weight", "bias"):
            raise Unsupported(
                f"{where} holds {key!r}, which is not the weight or bias of a Linear layer"
            )
        groups.setdefault(prefix, {})[kind] = value
    layers = []
    for prefix, tensors in groups.items():
        label = f"{prefix}." if prefix else ""
        if "weight" not in tensors:
            raise Unsupported(f"{where} holds {label}bias without {label}weight")
        weight = host_array(tensors["weight"], f"{label}weight")
        if weight.ndim != 2:
            raise Unsupported(
                f"{where} holds {label}weight of shape {weight.shape}, not a Linear's (out, in)"
            )
        weight = np.ascontiguousarray(weight.T)
        bias = (
            host_array(tensors["bias"], f"{label}bias")
            if "bias" in tensors
            else np.zeros(weight.shape[1], dtype=weight.dtype)
        )
        layers.append((weight, bias))
    if not layers:
        raise Unsupported(f"{where} holds no tensor")
    names = chosen_activations(activations, len(layers), where)
    host: list[HostLayer] = [(w, b, a) for (w, b), a in zip(layers, names)]
    return build_network(host)


def read_state_dict_file(
    path: str | os.PathLike[str], activations: Sequence[str] | str | None, *, zipped: bool
) -> Network:
    """A state dict saved with ``torch.save(model.state_dict(), path)``: a zip archive
    (``zipped``), or PyTorch's legacy format."""
    try:
        import torch
    except ImportError:
        raise Unsupported(
            "reading a PyTorch file needs torch: pip install 'xpnet[torch]'"
        ) from None
    check_file(path, zipped)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
    except Exception as exc:  # pickle, zip and torch raise many kinds for a damaged file
        raise Unsupported(
            f"torch.load(weights_only=True) refuses it ({short(exc)}); "
            "save model.state_dict(), not the model"
        ) from None
    if not isinstance(state, Mapping):
        raise Unsupported(
            f"it holds a {type(state).__name__}, not a state dict; "
            "save model.state_dict(), not the model"
        )
    check_tensors(state, os.stat(path).st_size)
    return read_state_dict(state, activations, "it")


LEGACY_PICKLES = 5
"""The pickles that start PyTorch's legacy (non-zip) format: a magic number, the protocol
version, the system's description, the objects and the storages' keys."""


def check_file(path: str | os.PathLike[str], zipped: bool) -> None:
    """Refuse a PyTorch file that declares more than the budget (:mod:`xpnet._budget`)
    before ``torch.load`` reads it: a zip's directory and records, and the opcodes of its
    pickle (or of the legacy format's pickles). The zip format's storages are then mapped
    from the file, not read into memory, so no storage outgrows the file."""
    try:
        if zipped:
            with budget.open_zip(path, "the archive") as archive:
                records = [n for n in archive.namelist() if n.endswith("/data.pkl")]
                if len(records) == 1:
                    info = archive.getinfo(records[0])
                    with archive.open(info) as stream:
                        budget.check_pickle(stream, info.file_size, "its data.pkl")
        else:
            with open(path, "rb") as file:
                size = os.fstat(file.fileno()).st_size
                budget.check_pickle(file, size, "it", pickles=LEGACY_PICKLES)
    except budget.OverBudget:
        raise
    except DAMAGED_ZIP as exc:
        raise Unsupported(f"cannot read it ({short(exc)})") from None


def check_tensors(state: Mapping[str, Any], held: int) -> None:
    """Refuse a loaded state dict whose tensors would copy into more than the budget allows
    for a file of ``held`` bytes, or that are expanded or overlapping views of their storage
    (a stride-0 ``expand`` of one number declares any size): each is checked before any
    is copied out of the file."""
    import torch

    declared = 0
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue  # read_state_dict refuses it
        if _odd_kind(value):  # named as read_state_dict names it, before any is copied
            raise Unsupported(f"it holds {key!r}, a {_odd_kind(value)} tensor, not a dense one")
        if _overlaps(value.shape, value.stride()):
            raise Unsupported(
                f"the tensor {key!r} of shape {tuple(value.shape)} is an expanded or "
                f"overlapping view (strides {value.stride()}); save plain tensors "
                "(.contiguous())"
            )
        declared += value.numel() * max(value.element_size(), 4)
    budget.check(declared, held, "the state dict")


def _overlaps(shape: Sequence[int], strides: Sequence[int]) -> bool:
    """Whether two elements of a view of this shape and strides share memory."""
    need = 1  # the extent, in elements, that the dimensions with smaller strides span
    for stride, size in sorted((t, s) for s, t in zip(shape, strides) if s > 1):
        if stride < need:
            return True
        need += stride * (size - 1)
    return False
