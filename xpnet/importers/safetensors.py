"""safetensors: dense layers named as xpnet and the textbook name them, activations in the
file's metadata; and xpnet's own writer of them.

A file holds ``W1, b1, W2, b2, ...`` (weights ``(in, out)``), or a PyTorch state dict's
``0.weight, 0.bias, ...`` (weights ``(out, in)``, in the order the file lists them). The
activations come from the metadata (``__metadata__``): xpnet's JSON header under
``xpnet_header``, or ``activations`` as ``"sigmoid,sigmoid,softmax"``; else from the caller;
else, for ``W1, b1, ...`` only, the textbook's (sigmoid hidden layers, softmax output).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xpnet import _budget as budget
from xpnet._atomic import atomic_write
from xpnet._formats import describe
from xpnet.importers._common import Unsupported, activation_names, build_network, short
from xpnet.network import Network, textbook_activations
from xpnet.training_record import load_json

HEADER_KEY = "xpnet_header"
"""The metadata entry holding xpnet's JSON header (the same as in its ``.npz`` files)."""


def _import() -> Any:
    try:
        import safetensors.numpy
    except ImportError:
        raise Unsupported(
            "reading or writing safetensors needs the safetensors package: "
            "pip install 'xpnet[safetensors]'"
        ) from None
    return safetensors


def write(network: Network, path: Path, header_text: str) -> None:
    """Write a host network as ``W1, b1, ...`` with xpnet's header in the metadata, atomically."""
    safetensors = _import()
    tensors = {key: np.ascontiguousarray(value) for key, value in network.to_mapping().items()}
    metadata = {
        HEADER_KEY: header_text,
        "activations": ",".join(network.activations),
    }
    data = safetensors.numpy.save(tensors, metadata=metadata)
    with atomic_write(path) as file:
        file.write(data)


def read_file(
    path: str | os.PathLike[str], activations: Sequence[str] | str | None
) -> tuple[Network, dict[str, Any]]:
    """The network in a safetensors file and its header (xpnet's, or one made from the file)."""
    safetensors = _import()
    _check_header_length(path)
    try:
        with safetensors.safe_open(os.fspath(path), framework="numpy") as file:
            metadata = dict(file.metadata() or {})
            tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118
    except Exception as exc:  # SafetensorError, or a dtype NumPy lacks (bfloat16)
        raise Unsupported(
            f"not a readable safetensors file, truncated or corrupt ({short(exc)})"
        ) from None
    header = _header(metadata)
    stored = header.get("activations")
    textbook = all(
        re.fullmatch(r"[Wb]\d{1,9}", key) for key in tensors
    )  # layer numbers, not 5,000 digits
    if textbook:
        numbers = sorted(int(key[1:]) for key in tensors if key[0] == "W")
        if numbers != list(range(1, len(numbers) + 1)) or not numbers:
            raise Unsupported(f"its tensors {sorted(tensors)} are not W1, b1, W2, ...")
        if len(tensors) != 2 * len(numbers) or any(f"b{n}" not in tensors for n in numbers):
            raise Unsupported(f"its tensors {sorted(tensors)} lack or add a bias")
        names = activation_names(stored or activations or textbook_activations(len(numbers)))
        if len(names) != len(numbers):
            raise Unsupported(
                f"it has {len(numbers)} layers but {len(names)} activations {list(names)}"
            )
        layers = [(tensors[f"W{n}"], tensors[f"b{n}"], a) for n, a in zip(numbers, names)]
        network = build_network(layers)
    else:
        from xpnet.importers.torch import read_state_dict_arrays

        network = read_state_dict_arrays(tensors, stored or activations, "the safetensors file")
    found = describe(network)
    if "sizes" in header and {key: header.get(key) for key in found} != found:
        said = {key: header.get(key) for key in found}
        raise Unsupported(f"its header says {said} but the tensors give {found}")
    return network, {"format": "safetensors", **found, "metadata": header.get("metadata", {})}


def _header(metadata: dict[str, str]) -> dict[str, Any]:
    """xpnet's header from the metadata, or ``{"activations": [...]}`` from another writer."""
    if HEADER_KEY in metadata:
        try:
            header = load_json(metadata[HEADER_KEY])
        except ValueError as exc:
            raise Unsupported(f"its xpnet header: {exc}") from None
        names = header.get("activations") if isinstance(header, dict) else None
        if not (isinstance(names, list) and all(isinstance(name, str) for name in names)):
            raise Unsupported(f"its xpnet header's activations {names!r} are not names")
        return header
    if "activations" in metadata:
        return {"activations": [name.strip() for name in metadata["activations"].split(",")]}
    return {}


def _check_header_length(path: str | os.PathLike[str]) -> None:
    """Refuse a header longer than :data:`xpnet._budget.MAX_METADATA_BYTES` before the
    library parses it (it admits 100 MB: a million empty tensors, each then an array)."""
    with open(path, "rb") as file:
        head = file.read(8)
    length = int.from_bytes(head, "little") if len(head) == 8 else 0
    budget.check_metadata(length, "its header")
