"""The weights and model formats xpnet reads and writes: one table, one entry per format.

Each entry in :data:`FORMATS` says how a file of its format is recognised (by content: its
first bytes and, for a zip archive, the names it holds; a damaged zip by its extension),
which function reads it and which writes it where xpnet writes the format. :func:`read`
sniffs a file once, takes the first entry that recognises it and applies the same rules to
every reader: a regular file only; a zip's directory within the budget of
:mod:`xpnet._budget` before anything reads it, and any budget refusal, wherever a reader
finds it, as one line naming the file; the caller's activations only where the file
stores none (the readers of such files apply them), refused where they differ from the
file's; and the non-finite rule. Readers import their libraries only when called, so
adding a format is one entry here and its reader.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import stat
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from xpnet import _budget as budget
from xpnet.errors import NetworkError, WeightsError
from xpnet.importers._common import DAMAGED_ZIP, Unsupported, activation_names
from xpnet.network import Network, check_finite

Activations = Sequence[str] | str | None


@dataclass(frozen=True)
class Probe:
    """What sniffing a file read: its first bytes, whether it is a zip and the names the zip
    holds (``None`` for a damaged one), its extension, and the open file (for recognisers
    only, which may look further: it is closed before a reader runs)."""

    head: bytes
    zipped: bool
    names: list[str] | None
    suffix: str
    file: BinaryIO


Reader = Callable[[Path, Activations, Probe], "Network | tuple[Network, dict[str, Any]]"]
Writer = Callable[[Network, Path, str], None]


@dataclass(frozen=True)
class Format:
    """One format: ``name`` (``save_weights(format=...)`` and the header's ``format`` of
    files that store no header), ``what`` (how a refusal names it), ``recognise``, ``read``
    (a network, or a network and its header) and ``write`` (``None`` where xpnet does not
    write the format: ``write(host_network, path, header_json)``)."""

    name: str
    what: str
    recognise: Callable[[Probe], bool]
    read: Reader
    write: Writer | None = None


def _reads(
    module: str, function: str, *, activations: bool = False, zipped: bool = False
) -> Reader:
    """The reader ``module.function``, imported when first called, given the path (and the
    caller's activations, and whether the file is a zip, where it takes them)."""

    def read(path: Path, chosen: Activations, probe: Probe) -> Any:
        target = getattr(importlib.import_module(module), function)
        extra = {"zipped": probe.zipped} if zipped else {}
        return target(path, chosen, **extra) if activations else target(path, **extra)

    return read


def _writes(module: str, function: str) -> Writer:
    """The writer ``module.function``, imported when first called."""
    return lambda *args: getattr(importlib.import_module(module), function)(*args)


def _zip_holding(test: Callable[[list[str]], bool], *suffixes: str) -> Callable[[Probe], bool]:
    """A zip whose names pass ``test``; a damaged zip with one of ``suffixes``."""
    return lambda p: p.zipped and (test(p.names) if p.names is not None else p.suffix in suffixes)


_TORCH_LEGACY = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
"""How ``torch.save(..., _use_new_zipfile_serialization=False)`` starts: a pickled magic number."""

_torch_zip = _zip_holding(
    lambda names: any(re.fullmatch(r"[^/]+/data\.pkl", name) for name in names), ".pt", ".pth"
)

_COMPRESSED = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bz2",
    b"\xfd7zXZ\x00": "xz",
    b"\x5d\x00\x00": "lzma",
    b"\x04\x22\x4d\x18": "lz4",
    **dict.fromkeys((b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda"), "zlib"),
}
"""Magic numbers of the compressions ``joblib.dump(..., compress=...)`` writes."""


def _compression(probe: Probe) -> str | None:
    return next((name for magic, name in _COMPRESSED.items() if probe.head.startswith(magic)), None)


def _refuse_compressed(path: Path, activations: Activations, probe: Probe) -> Network:
    raise WeightsError(
        f"{path} is {_compression(probe)}-compressed, as joblib.dump(..., compress=...) writes: "
        f"a pickle inside can run any code when loaded, so xpnet never opens one; {skops_hint()}"
    )


def skops_hint() -> str:
    """Where to turn instead of a pickle of a model."""
    from xpnet.importers.sklearn import SKOPS_HINT

    return SKOPS_HINT + "; other models: ONNX, .keras, safetensors or a torch state dict"


FORMATS: tuple[Format, ...] = (
    Format(
        "torch",
        "PyTorch state dict",
        lambda p: p.head.startswith(_TORCH_LEGACY) or _torch_zip(p),
        _reads("xpnet.importers.torch", "read_state_dict_file", activations=True, zipped=True),
    ),
    Format(
        "keras",
        ".keras file",
        _zip_holding(
            lambda n: "config.json" in n and bool({"model.weights.h5", "metadata.json"} & set(n)),
            ".keras",
        ),
        _reads("xpnet.importers.keras", "read_file"),
    ),
    Format(
        "skops",
        "skops file",
        _zip_holding(lambda n: "schema.json" in n, ".skops"),
        _reads("xpnet.importers.sklearn", "read_skops"),
    ),
    Format(  # xpnet's own, or the textbook's dict as numpy.savez writes it: any other zip
        "npz",
        ".npz file",
        lambda p: p.zipped,
        _reads("xpnet.weights", "read_npz", activations=True),
        _writes("xpnet.weights", "write_npz"),
    ),
    Format(
        "safetensors",
        "safetensors file",
        lambda p: len(p.head) >= 9 and p.head[8:9] == b"{" and p.head[4:8] == b"\0\0\0\0",
        _reads("xpnet.importers.safetensors", "read_file", activations=True),
        _writes("xpnet.importers.safetensors", "write"),
    ),
    Format(  # the PROTO opcode that starts every pickle of protocol >= 2
        "pickle",
        "pickle",
        lambda p: p.head[:1] == b"\x80",
        _reads("xpnet.weights", "read_textbook_pickle", activations=True),
    ),
    Format(
        "compressed", "compressed file", lambda p: _compression(p) is not None, _refuse_compressed
    ),
    Format(
        "onnx",
        "ONNX file",
        lambda p: _is_onnx(p.file) or (p.head[:1] == b"\x08" and p.suffix == ".onnx"),
        _reads("xpnet.importers.onnx", "read_file"),
    ),
)
"""Every format, in the order they are tried: the first that recognises a file reads it."""


def describe(network: Network) -> dict[str, Any]:
    """The layer sizes, activations and dtype of a NumPy network, as headers store them."""
    return {
        "sizes": list(network.sizes),
        "activations": list(network.activations),
        "dtype": str(network.dtype),
    }


def read(path: Path, activations: Activations = None) -> tuple[Network, dict[str, Any]]:
    """The host network and header of the weights or model file at ``path``, in any format
    of :data:`FORMATS`; :class:`WeightsError`, one line naming the file, for any refusal."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO would block
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise WeightsError(f"cannot read weights file {path}: it is not a regular file")
    with os.fdopen(fd, "rb") as file:
        try:
            probe = _sniff(path, file)
            entry = next((f for f in FORMATS if f.recognise(probe)), None)
        except budget.OverBudget as exc:
            raise WeightsError(str(exc)) from None
        except OSError as exc:
            raise WeightsError(f"cannot read weights file {path}: {exc.strerror or exc}") from None
    if entry is None:
        raise WeightsError(
            f"{path} is neither xpnet's .npz weights nor any other format xpnet reads "
            f"({', '.join(f.what for f in FORMATS if f.name != 'compressed')}): "
            f"it starts with {probe.head[:2]!r}"
        )
    try:
        result = entry.read(path, activations, probe)
        network, header = result if isinstance(result, tuple) else (result, None)
        if header is None:
            header = {"format": entry.name, **describe(network), "metadata": {}}
        if activations is not None and activation_names(activations) != list(network.activations):
            raise WeightsError(
                f"{path} stores the activations {','.join(network.activations)}, not "
                f"{','.join(activation_names(activations))}: leave activations out"
            )
        check_finite(network)
    except (Unsupported, budget.OverBudget) as exc:
        raise WeightsError(f"{path}: {entry.what}: {exc}") from None
    except NetworkError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    return network, header


def write(network: Network, path: Path, header_text: str, format: str) -> None:
    """Write the host ``network`` to ``path`` in ``format``, with xpnet's header."""
    writers = {f.name: f.write for f in FORMATS if f.write is not None}
    if format not in writers:
        raise WeightsError(
            f"unknown weights format {format!r}; choose {' or '.join(map(repr, writers))}"
        )
    try:
        writers[format](network, path, header_text)
    except Unsupported as exc:
        raise WeightsError(str(exc)) from None
    except OSError as exc:
        raise WeightsError(f"cannot write weights file {path}: {exc.strerror or exc}") from None


def _sniff(path: Path, file: BinaryIO) -> Probe:
    """The probe of a file: its first bytes and, for a zip, the names it holds, read
    once its directory fits the budget (before :mod:`zipfile` reads every entry)."""
    head = file.read(16)
    names = None
    if head[:2] == b"PK":
        budget.check_zip_directory(file, str(path))
        with contextlib.suppress(*DAMAGED_ZIP):
            names = zipfile.ZipFile(file).namelist()
    return Probe(head, head[:2] == b"PK", names, path.suffix.lower(), file)


_MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
"""ONNX ``ModelProto``'s field numbers and their protobuf wire types (0 varint, 2 bytes)."""

MAX_ONNX_FIELDS = 100_000
"""Top-level fields walked before a file is taken to be no ONNX model."""


def _is_onnx(file: BinaryIO) -> bool:
    """Whether the file is one protobuf ``ModelProto``: its top-level fields have ModelProto's
    numbers and wire types, end exactly at the end of the file and include a graph."""
    size = file.seek(0, os.SEEK_END)
    file.seek(0)
    position, seen = 0, set()
    for _ in range(MAX_ONNX_FIELDS):
        if position == size:
            return 7 in seen
        key, position = _varint(file, position)
        if key is None:
            return False
        number, wire = key >> 3, key & 7
        if _MODEL_FIELDS.get(number) != wire:
            return False
        value, position = _varint(file, position)
        if value is None:
            return False
        if wire == 2:
            position += value
            if position > size:
                return False
            file.seek(position)
        seen.add(number)
    return False


def _varint(file: BinaryIO, position: int) -> tuple[int | None, int]:
    value, shift = 0, 0
    while shift < 64:
        byte = file.read(1)
        if not byte:
            return None, position
        position += 1
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value, position
        shift += 7
    return None, position
