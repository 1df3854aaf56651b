"""Save and load a network's weights: xpnet's own ``.npz`` files and the textbook's pickles.

xpnet writes ``numpy.savez`` archives (no pickle inside) holding ``W1, b1, W2, ...`` and a
JSON header with the format, layer sizes, activations, dtype and the caller's provenance
(dataset, command, seed, accuracy...), so a trained network says how it was made. Loading
reads them with ``allow_pickle=False`` and the textbook's ``sample_weight.pkl`` through
:func:`~xpnet._safe_pickle.load_textbook_pickle`: no weights file can run code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xpnet._atomic import atomic_write
from xpnet.errors import NetworkError, WeightsError
from xpnet.importers import check_activations, read_file, read_textbook_pickle
from xpnet.network import Network, NetworkLike, as_network, to_backend

FORMAT = "xpnet-weights"
"""The ``format`` field of xpnet's header, which tells its ``.npz`` files from others."""

VERSION = 1
"""The header version this xpnet writes and reads."""

HEADER_KEY = "xpnet_header"
"""The ``.npz`` entry holding the JSON header, a 0-d unicode array."""

PathLike = str | os.PathLike[str]


def save_weights(
    network: NetworkLike,
    path: PathLike,
    *,
    metadata: Mapping[str, Any] | None = None,
    format: str = "npz",
) -> None:
    """Write ``network`` (or the textbook's dict) to ``path`` as xpnet's ``.npz``, atomically.

    ``format="safetensors"`` writes a safetensors file instead (``W1, b1, ...``, the header
    in its metadata), which ``safetensors.numpy.load_file`` reads too (extra ``safetensors``).

    The arrays are copied to the host; ``metadata`` (JSON-serializable: dataset, hash,
    command, seed, epochs, accuracy...) is stored in the header beside the layer sizes,
    activations and dtype. The file appears whole or not at all: it is written beside
    ``path`` (whose folder is created) and renamed over it, so a failed save leaves an
    existing file intact.
    """
    host = to_backend(as_network(network), "numpy")
    header = {
        "format": FORMAT,
        "version": VERSION,
        **_describe(host),
        "metadata": dict(metadata or {}),
    }
    try:
        text = json.dumps(header)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"weights metadata must be JSON-serializable: {exc}") from None
    if format not in ("npz", "safetensors"):
        raise WeightsError(f"unknown weights format {format!r}; choose 'npz' or 'safetensors'")
    if format == "safetensors":
        from xpnet.importers._common import Unsupported
        from xpnet.importers.safetensors import write

        try:
            write(host, Path(path), text)
        except Unsupported as exc:
            raise WeightsError(str(exc)) from None
        except OSError as exc:
            raise WeightsError(f"cannot write weights file {path}: {exc.strerror or exc}") from None
        return
    entries = {**host.to_mapping(), HEADER_KEY: np.array(text)}
    try:
        with atomic_write(Path(path)) as file:
            np.savez(file, **entries)
    except OSError as exc:
        raise WeightsError(f"cannot write weights file {path}: {exc.strerror or exc}") from None


def load_weights(
    path: PathLike,
    *,
    backend: str = "numpy",
    device: str | None = None,
    dtype: str | None = None,
    activations: Sequence[str] | str | None = None,
) -> Network:
    """Load a weights file onto ``backend`` and ``device``, running no code from it.

    Also reads models from other frameworks, recognised by content (see
    :mod:`xpnet.importers`): ONNX, ``.keras``, skops, safetensors and a PyTorch state dict,
    which stores no activations: pass them as ``activations`` (``"relu,softmax"`` or a list).

    Reads xpnet's ``.npz`` (with its stored activations) or the textbook's dict of
    ``W1, b1, ...`` (sigmoid hidden layers, softmax output) as its pickle
    (``sample_weight.pkl``) or a plain ``numpy.savez`` of it, told apart by content.
    ``dtype`` (``"float64"``...) casts the weights; ``None`` keeps the stored dtype.
    Raises :class:`WeightsError` naming the file if it is unreadable, unsafe or malformed.
    """
    network = _read(Path(path), activations)[0]
    if dtype is not None:
        params = {key: value.astype(dtype) for key, value in network.to_mapping().items()}
        network = Network.from_mapping(params, network.activations)
    return to_backend(network, backend, device)


def read_weights_info(
    path: PathLike, *, activations: Sequence[str] | str | None = None
) -> dict[str, Any]:
    """The header of a weights file, checked against its arrays, without choosing a backend.

    ``{"format", "version", "sizes", "activations", "dtype", "metadata"}`` for xpnet's
    ``.npz``; ``{"format": "textbook-pickle", ...}`` or ``"plain-npz"``, with empty
    metadata (and no version), for the textbook's dict; ``"onnx"``, ``"keras"``, ``"skops"``,
    ``"torch"`` or ``"safetensors"`` for other frameworks' files (``activations`` as in
    :func:`load_weights`).
    """
    return _read(Path(path), activations)[1]


def _describe(network: Network) -> dict[str, Any]:
    """The layer sizes, activations and dtype of a NumPy network, as headers store them."""
    return {
        "sizes": list(network.sizes),
        "activations": list(network.activations),
        "dtype": str(network.dtype),
    }


def _read(
    path: Path, activations: Sequence[str] | str | None = None
) -> tuple[Network, dict[str, Any]]:
    """The network (on NumPy) and the header of the weights file at ``path``."""
    foreign = read_file(path, activations)  # other frameworks' files, told by content
    if foreign is not None:
        return foreign
    network, header = _read_own(path)
    if activations is not None:
        network = check_activations(path, network, header, activations)
        header = {**header, "activations": list(network.activations)}
    return network, header


def _read_own(path: Path) -> tuple[Network, dict[str, Any]]:
    """:func:`_read` of xpnet's ``.npz`` and the textbook's pickle or plain ``.npz``."""
    try:
        with open(path, "rb") as file:
            magic = file.read(2)
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {path}: {exc.strerror or exc}") from None
    try:
        if magic == b"PK":  # a zip archive, as numpy.savez writes
            return _read_npz(path)
        if magic[:1] == b"\x80":  # the PROTO opcode that starts every pickle of protocol >= 2
            network = Network.from_mapping(read_textbook_pickle(path))
            return network, {"format": "textbook-pickle", **_describe(network), "metadata": {}}
    except NetworkError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    raise WeightsError(
        f"{path} is neither xpnet's .npz weights nor the textbook's pickle "
        f"(it starts with {magic!r})"
    )


def _read_npz(path: Path) -> tuple[Network, dict[str, Any]]:
    """Read xpnet's ``.npz`` with ``allow_pickle=False`` and check its arrays against its header."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            entries = {key: archive[key] for key in archive.files}
    except Exception as exc:  # zipfile, zlib and numpy raise many kinds for a damaged file
        raise WeightsError(f"cannot read {path} as .npz: {type(exc).__name__}: {exc}") from None
    strays = sorted(key for key, value in entries.items() if not isinstance(value, np.ndarray))
    if HEADER_KEY not in entries:
        return _read_plain_npz(path, entries, strays)
    header = _parse_header(path, entries.pop(HEADER_KEY))
    if strays:
        raise WeightsError(f"{path}: the entries {strays} are not arrays")
    network = Network.from_mapping(entries, header["activations"])
    found = _describe(network)
    stored = {key: header.get(key) for key in found}
    if stored != found:
        raise WeightsError(f"{path}: the header says {stored} but the arrays give {found}")
    return network, header


def _read_plain_npz(
    path: Path, entries: dict[str, Any], strays: list[str]
) -> tuple[Network, dict[str, Any]]:
    """An ``.npz`` without xpnet's header: the textbook's dict as ``numpy.savez(path,
    **params)`` writes it, read like its pickle (sigmoid hidden layers, softmax output).
    ``strays``: its entries that are not arrays."""
    try:
        if strays:
            raise NetworkError(f"the entries {strays} are not arrays")
        network = Network.from_mapping(entries)
    except NetworkError as exc:
        raise WeightsError(
            f"{path} is an .npz without an xpnet header, nor the textbook's W1, b1, ... arrays "
            f"({exc}); write weights with xpnet.save_weights"
        ) from None
    return network, {"format": "plain-npz", **_describe(network), "metadata": {}}


def _parse_header(path: Path, entry: object) -> dict[str, Any]:
    """The JSON header of xpnet's ``.npz``, checked for format, version and activations."""
    if not (isinstance(entry, np.ndarray) and entry.shape == () and entry.dtype.kind == "U"):
        raise WeightsError(
            f"{path} is an .npz without an xpnet header; write weights with xpnet.save_weights"
        )
    try:
        header = json.loads(entry.item())
    except ValueError as exc:
        raise WeightsError(f"{path}: the xpnet header is not valid JSON: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise WeightsError(f"{path}: the header does not name the format {FORMAT!r}")
    if header.get("version") != VERSION:
        raise WeightsError(
            f"{path} holds {FORMAT} version {header.get('version')!r}, but this xpnet reads "
            f"version {VERSION}; upgrade xpnet"
        )
    activations = header.get("activations")
    if not (isinstance(activations, list) and all(isinstance(a, str) for a in activations)):
        raise WeightsError(f"{path}: the header's activations {activations!r} are not names")
    return header
