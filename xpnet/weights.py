"""Save and load a network's weights: xpnet's own ``.npz`` files and the textbook's pickles.

xpnet writes ``numpy.savez`` archives (no pickle inside) holding ``W1, b1, W2, ...`` and a
JSON header with the format, layer sizes, activations, dtype and the caller's provenance
(dataset, command, seed, accuracy...), so a trained network says how it was made. Loading
reads them with ``allow_pickle=False`` and the textbook's ``sample_weight.pkl`` through
:func:`~xpnet._safe_pickle.load_textbook_pickle`: no weights file can run code. Files are
recognised, and read or written, by the table of formats (:mod:`xpnet._formats`), whose
xpnet ``.npz`` and textbook entries are the readers and writer here.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import reprlib
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xpnet import _budget as budget
from xpnet import _formats as formats
from xpnet._atomic import atomic_write
from xpnet._safe_pickle import load_textbook_pickle
from xpnet.errors import NetworkError, WeightsError
from xpnet.importers._common import activation_names
from xpnet.network import Network, NetworkLike, as_network, check_finite, to_backend
from xpnet.training_record import MAX_NESTING, check_nesting, json_types, load_json

FORMAT = "xpnet-weights"
"""The ``format`` field of xpnet's header, which tells its ``.npz`` files from others."""

VERSION = 1
"""The header version this xpnet writes and reads."""

HEADER_KEY = "xpnet_header"
"""The ``.npz`` entry holding the JSON header, a 0-d unicode array."""

MAX_HEADER_CHARS = 1 << 20
"""The longest header read: far more than any provenance needs, checked before parsing."""

MAX_NPZ_MEMBERS = 4097
"""The most entries an ``.npz`` may have: a header and two arrays per layer, for thousands."""

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
    ``path`` and renamed over it, so a failed save leaves an existing file intact. The
    folder must exist: a missing one is an error, never created.

    Parameters
    ----------
    network : Network or dict
        A :class:`~xpnet.Network` on any backend, or the textbook's dict ``W1, b1, ...``.
    path : str or os.PathLike
        The file to write.
    metadata : mapping, optional
        JSON-serializable provenance stored in the header.
    format : {"npz", "safetensors"}, optional
        The file format; xpnet's ``.npz`` by default.

    Raises
    ------
    WeightsError
        If ``metadata`` is not JSON-serializable, ``format`` is unknown, or the file
        cannot be written.

    See Also
    --------
    load_weights : Reads the file back.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import xpnet
    >>> network = xpnet.init_network([4, 3, 2], seed=1)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder) / "net.npz"
    ...     xpnet.save_weights(network, path, metadata={"seed": 1})
    ...     info = xpnet.read_weights_info(path)
    >>> info["sizes"], info["activations"], info["metadata"]
    ([4, 3, 2], ['sigmoid', 'softmax'], {'seed': 1})
    """
    host = to_backend(as_network(network), "numpy")
    header = {
        "format": FORMAT,
        "version": VERSION,
        **formats.describe(host),
        "metadata": dict(metadata or {}),
    }
    try:
        check_nesting(header, f"it is nested too deeply (more than {MAX_NESTING} levels)")
        text = json.dumps(header)
    except (TypeError, ValueError) as exc:
        raise WeightsError(f"weights metadata must be JSON-serializable: {exc}") from None
    formats.write(host, Path(path), text, format)


def write_npz(network: Network, path: Path, header_text: str) -> None:
    """Write a host network as xpnet's ``.npz``, atomically (:func:`save_weights`)."""
    with atomic_write(path) as file:
        np.savez(file, **{**network.to_mapping(), HEADER_KEY: np.array(header_text)})


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
    ``xpnet.importers``): ONNX, ``.keras``, skops, safetensors and a PyTorch state dict,
    which stores no activations: pass them as ``activations`` (``"relu,softmax"`` or a list).

    Reads xpnet's ``.npz`` (with its stored activations) or the textbook's dict of
    ``W1, b1, ...`` (sigmoid hidden layers, softmax output) as its pickle
    (``sample_weight.pkl``) or a plain ``numpy.savez`` of it, told apart by content.
    ``dtype`` (``"float64"``...) casts the weights; ``None`` keeps the stored dtype.
    Raises :class:`WeightsError` naming the file if it is unreadable, unsafe or malformed,
    or if any array holds a NaN or an infinity (also after the cast to ``dtype``).

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.
    backend, device : str, optional
        Where the network's arrays go (see :func:`~xpnet.get_backend`).
    dtype : str, optional
        The floating dtype to cast to; ``None`` keeps the stored one.
    activations : str or sequence of str, optional
        Activation names for a file that stores none (a PyTorch state dict).

    Returns
    -------
    Network
        The network on ``backend`` and ``device``.

    Raises
    ------
    WeightsError
        If the file is unreadable, unsafe or malformed.
    BackendUnavailableError
        If ``backend`` or ``device`` cannot run here.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import xpnet
    >>> network = xpnet.init_network([4, 3, 2], seed=1)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder) / "net.npz"
    ...     xpnet.save_weights(network, path)
    ...     for name in ("numpy", "array_api_strict"):
    ...         loaded = xpnet.load_weights(path, backend=name, dtype="float64")
    ...         same = (xpnet.to_host(loaded.layers[1].weight) == network.layers[1].weight).all()
    ...         print(loaded.backend, loaded.sizes, loaded.activations, bool(same))
    numpy on cpu (4, 3, 2) ('sigmoid', 'softmax') True
    array_api_strict on CPU_DEVICE (4, 3, 2) ('sigmoid', 'softmax') True
    """
    network = _read(Path(path), activations)[0]
    return _place(Path(path), network, backend, device, dtype)


def load_weights_and_info(
    path: PathLike,
    *,
    backend: str = "numpy",
    device: str | None = None,
    dtype: str | None = None,
    activations: Sequence[str] | str | None = None,
) -> tuple[Network, dict[str, Any]]:
    """:func:`load_weights` and :func:`read_weights_info` from one reading of the file, so
    the header always describes the arrays loaded (a file replaced between two readings
    would pair one file's arrays with another's provenance).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import xpnet
    >>> from xpnet.weights import load_weights_and_info
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder) / "net.npz"
    ...     xpnet.save_weights(xpnet.init_network([4, 3, 2]), path, metadata={"seed": 0})
    ...     network, info = load_weights_and_info(path, backend="array_api_strict")
    >>> network.sizes, info["sizes"], info["metadata"]
    ((4, 3, 2), [4, 3, 2], {'seed': 0})
    """
    network, header = _read(Path(path), activations)
    return _place(Path(path), network, backend, device, dtype), header


def _place(
    path: Path, network: Network, backend: str, device: str | None, dtype: str | None
) -> Network:
    """A host network read from ``path`` cast to ``dtype`` (checked again: a cast can
    overflow to infinity) and copied onto the backend."""
    if dtype is not None:
        with np.errstate(over="ignore"):  # an overflow is refused just below, by name
            params = {key: value.astype(dtype) for key, value in network.to_mapping().items()}
        network = Network.from_mapping(params, network.activations)
        try:
            check_finite(network)
        except NetworkError as exc:
            raise WeightsError(f"{path}: {exc}") from None
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

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.
    activations : str or sequence of str, optional
        As in :func:`load_weights`.

    Returns
    -------
    dict
        The header's fields.

    Raises
    ------
    WeightsError
        If the file is unreadable, unsafe or malformed.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import xpnet
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder) / "net.npz"
    ...     xpnet.save_weights(xpnet.init_network([4, 3, 2]), path)
    ...     info = xpnet.read_weights_info(path)
    >>> info["format"], info["sizes"], info["dtype"]
    ('xpnet-weights', [4, 3, 2], 'float32')
    """
    return _read(Path(path), activations)[1]


def _read(
    path: Path, activations: Sequence[str] | str | None = None
) -> tuple[Network, dict[str, Any]]:
    """The network (on NumPy) and the header of the weights file at ``path``, read once."""
    return formats.read(path, activations)


def read_textbook_pickle(
    path: Path, activations: Sequence[str] | str | None
) -> tuple[Network, dict[str, Any]]:
    """The textbook's pickled dict of arrays, read running no code; any other pickle (a
    scikit-learn model from ``pickle.dump`` or ``joblib.dump``...) is refused pointing to
    skops."""
    try:
        params = load_textbook_pickle(path)
    except WeightsError as exc:
        if not any(why in str(exc) for why in ("refused:", " holds a ", "not a NumPy array")):
            raise  # damaged, not foreign: the message says so
        raise WeightsError(
            f"{exc}. xpnet reads only the textbook's dict of arrays from a pickle, because "
            f"loading any other pickle (pickle.dump, joblib.dump) can run code; "
            f"{formats.skops_hint()}"
        ) from None
    return _textbook(path, params, activations, "textbook-pickle")


def _textbook(
    path: Path, params: dict[str, Any], activations: Sequence[str] | str | None, format: str
) -> tuple[Network, dict[str, Any]]:
    """The textbook's dict ``W1, b1, ...``: sigmoid hidden layers and a softmax output, or
    the caller's ``activations``, since the file stores none."""
    network = Network.from_mapping(params)
    if activations is not None:
        names = activation_names(activations)
        if len(names) != len(network.layers):
            raise WeightsError(
                f"{path} has {len(network.layers)} layers but {len(names)} activations were given"
            )
        network = Network.from_mapping(params, names)
    return network, {"format": format, **formats.describe(network), "metadata": {}}


def read_npz(path: Path, activations: Sequence[str] | str | None) -> tuple[Network, dict[str, Any]]:
    """Read xpnet's ``.npz`` with no pickle, each array's size checked before it is read.

    Every member's ``.npy`` header is read first: its shape and dtype must account exactly
    for the member's size in the zip directory, what a compressed member inflates to is
    bounded by its compressed size, and where xpnet's header is present each array must
    have the shape and dtype that its layer sizes give. Only then is anything inflated.
    """
    try:
        archive_size = budget.check_zip_directory(path, "the archive")
        with zipfile.ZipFile(path) as archive:
            members = _npz_members(path, archive, archive_size)
            strays = sorted(key for key, (info, _, _) in members.items() if info is None)
            if HEADER_KEY not in members:
                if strays:
                    return _read_plain_npz(path, {}, strays, activations)
                header = None
            else:
                header = _parse_header(path, _read_member(archive, members.pop(HEADER_KEY)[0]))
                if strays:
                    raise WeightsError(f"{path}: the entries {strays} are not arrays")
                _check_against_header(path, header, members)
            entries = {key: _read_member(archive, info) for key, (info, _, _) in members.items()}
    except (WeightsError, budget.OverBudget):
        raise
    except Exception as exc:  # zipfile, zlib and numpy raise many kinds for a damaged file
        raise WeightsError(f"cannot read {path} as .npz: {type(exc).__name__}: {exc}") from None
    if header is None:
        return _read_plain_npz(path, entries, [], activations)
    network = Network.from_mapping(entries, header["activations"])
    found = formats.describe(network)
    stored = {key: header.get(key) for key in found}
    if stored != found:
        raise WeightsError(f"{path}: the header says {stored} but the arrays give {found}")
    return network, header


_Member = tuple[zipfile.ZipInfo | None, tuple[int, ...], np.dtype | None]
"""A member of an ``.npz``: its zip entry (None when not ``.npy``), shape and dtype."""


def _npz_members(path: Path, archive: zipfile.ZipFile, archive_size: int) -> dict[str, _Member]:
    """Each member's ``.npy`` header, checked against the sizes the zip directory gives."""
    members: dict[str, _Member] = {}
    infos = archive.infolist()
    if len(infos) > MAX_NPZ_MEMBERS:
        raise WeightsError(f"{path} has {len(infos)} entries; a network's weights need fewer")
    inflated = 0
    for info in infos:
        if not info.filename.endswith(".npy"):
            members[info.filename] = (None, (), None)
            continue
        key = info.filename[: -len(".npy")]
        where = f"{path}: the entry {key!r}"
        if key in members:  # zip readers differ on which of the two they give
            raise WeightsError(f"{where} is in the archive twice")
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size or info.compress_size > archive_size:
                raise WeightsError(f"{where} claims more bytes than the file holds")
        elif info.file_size > budget.allowance(info.compress_size):
            raise WeightsError(
                f"{where} would inflate {info.compress_size} bytes to {info.file_size}; "
                f"xpnet reads no compressed entry that inflates over {budget.MAX_INFLATION}-fold"
            )
        inflated += info.file_size
        if inflated > budget.allowance(archive_size):
            raise WeightsError(f"{path}: its entries inflate too far beyond its size")
        with archive.open(info) as stream:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise WeightsError(f"{where} is .npy version {version}, not 1.0 or 2.0")
            header_bytes = stream.tell()
        kinds = "U" if key == HEADER_KEY else "biuf"
        if dtype.hasobject or dtype.kind not in kinds or dtype.fields is not None:
            raise WeightsError(
                f"{where} holds {dtype} values; xpnet reads no object (pickle) or record arrays"
                if dtype.hasobject
                else f"{where} holds {dtype} values, not numbers"
                if key != HEADER_KEY
                else f"{path} is an .npz without an xpnet header; write weights with "
                "xpnet.save_weights"
            )
        if key == HEADER_KEY and dtype.itemsize > 4 * MAX_HEADER_CHARS:
            raise WeightsError(
                f"{path}: the xpnet header is {dtype.itemsize // 4} characters long; xpnet "
                f"reads at most {MAX_HEADER_CHARS}"
            )
        if not all(type(n) is int and n >= 0 for n in shape):
            raise WeightsError(f"{where} has the shape {shape!r}")
        claimed = math.prod(shape) * dtype.itemsize
        if header_bytes + claimed != info.file_size:
            raise WeightsError(
                f"{where} claims {shape} {dtype} ({claimed} bytes) but holds "
                f"{info.file_size - header_bytes}"
            )
        members[key] = (info, shape, dtype)
    return members


def _check_against_header(path: Path, header: dict[str, Any], members: dict[str, _Member]) -> None:
    """Each array's shape and dtype must be those the header's layer sizes and dtype give."""
    sizes, dtype = header["sizes"], np.dtype(header["dtype"])
    expected: dict[str, tuple[int, ...]] = {}
    for number, (inputs, outputs) in enumerate(itertools.pairwise(sizes), start=1):
        expected[f"W{number}"] = (inputs, outputs)
        expected[f"b{number}"] = (outputs,)
    found = {key: shape for key, (_, shape, _) in members.items()}
    if found != expected:
        missing, extra = sorted(expected.keys() - found), sorted(found.keys() - expected)
        wrong = [
            f"{key} is {found[key]} where layer {key[1:]} needs {expected[key]}"
            for key in sorted(expected.keys() & found.keys())
            if expected[key] != found[key]
        ]
        raise WeightsError(
            f"{path}: the header says sizes {sizes} but the arrays do not fit them "
            f"(missing {missing}, unexpected {extra}{'; ' if wrong else ''}{'; '.join(wrong)})"
        )
    odd = sorted(key for key, (_, _, kind) in members.items() if kind != dtype)
    if odd:
        raise WeightsError(f"{path}: the header says dtype {dtype} but {odd} differ")


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo | None) -> np.ndarray:
    """The array of one member whose header :func:`_npz_members` checked."""
    assert info is not None
    with archive.open(info) as stream:
        return np.lib.format.read_array(stream, allow_pickle=False)


def _read_plain_npz(
    path: Path,
    entries: dict[str, Any],
    strays: list[str],
    activations: Sequence[str] | str | None,
) -> tuple[Network, dict[str, Any]]:
    """An ``.npz`` without xpnet's header: the textbook's dict as ``numpy.savez(path,
    **params)`` writes it, read like its pickle (sigmoid hidden layers, softmax output).
    ``strays``: its entries that are not arrays."""
    try:
        if strays:
            raise NetworkError(f"the entries {strays} are not arrays")
        Network.from_mapping(entries)
    except NetworkError as exc:
        raise WeightsError(
            f"{path} is an .npz without an xpnet header, nor the textbook's W1, b1, ... arrays "
            f"({exc}); write weights with xpnet.save_weights"
        ) from None
    return _textbook(path, entries, activations, "plain-npz")


def _parse_header(path: Path, entry: object) -> dict[str, Any]:
    """The JSON header of xpnet's ``.npz``, every field it returns checked for its type."""
    if not (isinstance(entry, np.ndarray) and entry.shape == () and entry.dtype.kind == "U"):
        raise WeightsError(
            f"{path} is an .npz without an xpnet header; write weights with xpnet.save_weights"
        )
    text = entry.item()
    if len(text) > MAX_HEADER_CHARS:
        raise WeightsError(
            f"{path}: the xpnet header is {len(text)} characters long; xpnet reads at most "
            f"{MAX_HEADER_CHARS}"
        )
    try:
        header = load_json(text)
    except ValueError as exc:
        raise WeightsError(f"{path}: the xpnet header: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise WeightsError(f"{path}: the header does not name the format {FORMAT!r}")
    version = header.get("version")
    if type(version) is not int or version != VERSION:
        raise WeightsError(
            f"{path} holds {FORMAT} version {_short(version)}, but this xpnet reads "
            f"version {VERSION}; upgrade xpnet"
        )
    activations = header.get("activations")
    if not (isinstance(activations, list) and all(isinstance(a, str) for a in activations)):
        raise WeightsError(f"{path}: the header's activations {_short(activations)} are not names")
    sizes = header.get("sizes")
    if not (
        isinstance(sizes, list)
        and len(sizes) == len(activations) + 1
        and all(type(n) is int and n >= 1 for n in sizes)
    ):
        raise WeightsError(
            f"{path}: the header says {_short({'sizes': sizes, 'activations': activations})}, "
            "not a positive layer size for each end of each layer"
        )
    dtype = header.get("dtype")
    if not (isinstance(dtype, str) and dtype in _FLOAT_DTYPES):
        raise WeightsError(
            f"{path}: the header says {_short({'dtype': dtype})}, not a floating dtype name"
        )
    if "metadata" not in header:
        raise WeightsError(f"{path}: the xpnet header has no metadata")
    _check_metadata(path, header["metadata"])
    return header


_FLOAT_DTYPES = ("float16", "float32", "float64")
"""The dtype names a header may give: those of the networks xpnet writes."""


def _check_metadata(path: Path, metadata: object) -> None:
    """The header's metadata: an object whose provenance fields have their JSON types."""
    if not isinstance(metadata, dict):
        raise WeightsError(
            f"{path}: the header's metadata is a JSON {_json_kind(metadata)}, not an object"
        )
    for key, kinds in json_types().items():
        if key not in metadata:
            continue
        value = metadata[key]
        fits = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if fits and isinstance(value, dict):
            fits = all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        if not fits:
            raise WeightsError(
                f"{path}: the header's metadata field {key!r} is a JSON "
                f"{_json_kind(value)}, not {' or '.join(_json_kind(k()) for k in kinds)}"
                + (" of strings" if dict in kinds else "")
            )


def _json_kind(value: object) -> str:
    return {
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _short(value: object) -> str:
    """A value from a file, for a message: repr'd (control characters escaped), cut short."""
    return reprlib.repr(value)
