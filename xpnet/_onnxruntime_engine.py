"""The forward pass for NumPy arrays in ONNX Runtime, where the ``fast`` extra installs it.

The graph is :func:`xpnet.onnx_export.onnx_bytes`'s (written without importing ``onnx``),
so labels come from an in-graph ``ArgMax`` and probabilities from ``Softmax``. Sessions are
built once per network and kept in this process only (a network pickled to a dask worker
carries none; a forked child drops its parent's, whose threads it lacks). A cached session
is reused only while the network's arrays hold the same bits as when it was built, so
arrays changed in place get a new one. ``import xpnet`` imports neither onnx nor onnxruntime.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Literal

import numpy as np

from xpnet._onnx_graph import OPERATORS
from xpnet.network import Network

THREADS = 0
"""ONNX Runtime's intra-op threads on the main thread (0: one per physical core). Calls
from other threads (dask's chunk tasks, a caller's pool) run on their own thread."""

SPINNING = "1"
"""Whether ONNX Runtime's idle threads spin-wait for the next call ("1") or sleep ("0")."""

CAST_IN_GRAPH = False
"""Raw ``uint8`` input converted by an in-graph ``Cast`` (else by NumPy before the run)."""

BLOCK_ROWS = 65_536
"""Rows per run: bounds the hidden layers' working memory on inputs of any length."""

MAX_MODEL_BYTES = (1 << 31) - 1
"""The largest model ONNX Runtime is given: it reads one protobuf message, which holds at
most 2 GiB. A network whose graph would be larger runs on the generic path instead."""

LAYER_BYTES = 1 << 10
"""Bytes counted for each layer's nodes, names and shapes beside its weights (a bound:
they take a few hundred)."""

_CACHED = 8
"""Networks whose sessions are kept, most recently used first."""

_Kept = list[tuple[tuple[int, ...], np.dtype, Literal["C", "F"], bytes]]
"""The bits of a network's arrays when its sessions were built: each array's shape, dtype,
memory order and bytes in that order."""

_lock = threading.Lock()
_entries: list[tuple[_Kept, tuple[str, ...], dict[tuple, Any]]] = []


def why_not() -> str | None:
    """Why NumPy input cannot run in ONNX Runtime here; ``None`` where it can."""
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime not installed (pip install 'xpnet[fast]')"
    return None


def takes(network: Network, x: object) -> bool:
    """Whether this engine can run ``network`` on ``x``: 2-D NumPy rows, float32/64 weights,
    a graph that fits one protobuf message (:func:`fits`; whether ONNX Runtime is installed
    aside)."""
    return (
        isinstance(x, np.ndarray)
        and x.ndim == 2
        and network.layers[0].weight.dtype in (np.float32, np.float64)
        and all(a in OPERATORS or a == "step" for a in network.activations)
        and fits(network)
    )


def fits(network: Network) -> bool:
    """Whether the network's graph stays within :data:`MAX_MODEL_BYTES` (counted from its
    arrays' sizes, before any graph is built)."""
    weights = sum(layer.weight.nbytes + layer.bias.nbytes for layer in network.layers)
    return weights + LAYER_BYTES * (len(network.layers) + 1) <= MAX_MODEL_BYTES


def accepts(network: Network, x: object) -> bool:
    """Whether this engine can run ``network`` on ``x`` here: :func:`takes`, and installed."""
    return takes(network, x) and available()


def has_session(network: Network) -> bool:
    """Whether a session of ``network`` (its arrays' bits as they are now) is built."""
    if not _entries:
        return False
    arrays = [a for layer in network.layers for a in (layer.weight, layer.bias)]
    with _lock:
        return any(_holds(arrays, e[0]) and e[1] == network.activations for e in _entries)


def forward(network: Network, x: np.ndarray, *, labels: bool) -> np.ndarray:
    """``predict`` (with ``labels``, ``predict_labels``) of ``network`` on NumPy ``x``."""
    dtype = network.layers[0].weight.dtype
    convert = x.dtype != dtype and not (CAST_IN_GRAPH and x.dtype == np.uint8)
    fed = dtype if convert else x.dtype
    threads = THREADS if threading.current_thread() is threading.main_thread() else 1
    session = _session(network, labels, fed, threads)
    parts = []
    for start in range(0, max(1, x.shape[0]), BLOCK_ROWS):
        rows = x[start : start + BLOCK_ROWS]
        rows = rows.astype(dtype) if convert else np.ascontiguousarray(rows)
        parts.append(session.run(None, {"input": rows})[0])
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _session(network: Network, labels: bool, fed: np.dtype, threads: int) -> Any:
    """The network's session for this output, input dtype and thread count, built once."""
    arrays = [a for layer in network.layers for a in (layer.weight, layer.bias)]
    with _lock:
        entry = next(
            (e for e in _entries if _holds(arrays, e[0]) and e[1] == network.activations), None
        )
        if entry is None:
            entry = (_bits(arrays), network.activations, {})
        if not _entries or _entries[0] is not entry:
            _entries[:] = [entry, *(e for e in _entries if e is not entry)][:_CACHED]
        sessions = entry[2]
        key = (labels, fed, threads)
        if key not in sessions:
            sessions[key] = _build(network, labels, fed, threads)
        return sessions[key]


def _holds(arrays: list[np.ndarray], kept: _Kept) -> bool:
    """Whether ``arrays`` hold bit for bit (NaN payloads and zeros' signs too) the values
    ``kept`` recorded, in the same shapes and dtypes. Each array's bytes are read in the
    recorded order, whatever its own layout, so equal bytes mean equal values."""
    return len(arrays) == len(kept) and all(
        a.shape == shape and a.dtype == dtype and a.tobytes(order) == data
        for a, (shape, dtype, order, data) in zip(arrays, kept, strict=True)
    )


def _bits(arrays: list[np.ndarray]) -> _Kept:
    """What tells ``arrays`` apart bit for bit: each one's shape, dtype, memory order and
    bytes read in that order (a Fortran-ordered weight is copied as it lies)."""
    orders: list[Literal["C", "F"]] = [
        "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C" for a in arrays
    ]
    return [(a.shape, a.dtype, o, a.tobytes(o)) for a, o in zip(arrays, orders, strict=True)]


def _build(network: Network, labels: bool, fed: np.dtype, threads: int) -> Any:
    import onnxruntime

    from xpnet.onnx_export import onnx_bytes

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", SPINNING)
    model = onnx_bytes(network, labels=labels, input_dtype=fed)
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def available() -> bool:
    """Whether ONNX Runtime is installed (looked up once per process)."""
    global _AVAILABLE
    if _AVAILABLE is None:
        _AVAILABLE = why_not() is None
    return _AVAILABLE


_AVAILABLE: bool | None = None


def _forget_parents_sessions() -> None:
    """In a forked child: start an empty cache. The parent's sessions are kept unused, not
    freed, since freeing one joins its threads, which the child lacks (a hang). Such a
    child must still leave by ``os._exit``, as ``multiprocessing``'s do: ONNX Runtime
    hangs in a forked child's normal interpreter exit."""
    global _lock, _entries
    _inherited.append(_entries)
    _lock, _entries = threading.Lock(), []  # another thread may have held the lock


_inherited: list[Any] = []


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parents_sessions)
