"""What every importer shares: the refusal it raises and how it builds the network it returns.

An importer reads a source (a live model or a file) into host NumPy arrays, one
``(weight (in, out), bias (out,), activation)`` triple per dense layer, and
:func:`build_network` checks them as an :class:`~xpnet.Network` on the host before copying
them to the backend and device asked for, so nothing reaches a device unless all of it fits.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from xpnet.errors import NetworkError
from xpnet.network import Layer, Network, check_finite, to_backend


class Unsupported(Exception):
    """The source holds something xpnet cannot represent; the message names the first such
    layer or operator. Turned into :class:`NetworkError` (live objects) or
    :class:`WeightsError` (files, with the path) at the public boundary."""


DAMAGED_ZIP = (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError)
"""What :mod:`zipfile` raises for a damaged archive (a name not UTF-8 is a ValueError; an
entry claiming a zip version it lacks, NotImplementedError)."""

HostLayer = tuple[np.ndarray, np.ndarray, str]
"""One dense layer on the host: weight ``(in, out)``, bias ``(out,)`` and its activation."""


def host_array(value: Any, what: str) -> np.ndarray:
    """A private copy of ``value`` as a real floating NumPy array (never a view of the source,
    so a model trained on afterwards does not change the network taken from it)."""
    array = np.array(value, copy=True)
    if array.dtype.kind != "f":
        raise Unsupported(f"{what} has dtype {array.dtype}, not a real floating dtype")
    return array


def build_network(layers: Sequence[HostLayer]) -> Network:
    """The layers as a NumPy :class:`Network`; shape mismatches raise :class:`Unsupported`."""
    if not layers:
        raise Unsupported("it holds no dense layer")
    dtypes = {str(weight.dtype) for weight, bias, _ in layers} | {
        str(bias.dtype) for _, bias, _ in layers
    }
    if len(dtypes) > 1:
        raise Unsupported(f"its layers mix the dtypes {sorted(dtypes)}")
    try:
        return Network(tuple(Layer(weight, bias, name) for weight, bias, name in layers))
    except NetworkError as exc:
        raise Unsupported(str(exc)) from None


def two_class_softmax(weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A layer of one logistic output ``p = sigmoid(z)`` as the two softmax outputs
    ``softmax([0, z]) = [1 - p, p]`` (weight ``(in, 1)`` becomes ``(in, 2)``): a binary
    classifier's two class probabilities, whose argmax indexes its classes."""
    return (
        np.concatenate([np.zeros_like(weight), weight], axis=1),
        np.concatenate([np.zeros_like(bias), bias]),
    )


def place(network: Network, backend: str, device: str | None, dtype: str | None = None) -> Network:
    """A host network cast to ``dtype`` (``None`` keeps it) and copied onto ``backend``."""
    if dtype is not None:
        params = {key: value.astype(dtype) for key, value in network.to_mapping().items()}
        network = Network.from_mapping(params, network.activations)
    check_finite(network)  # the non-finite rule: after the cast, which can overflow
    return to_backend(network, backend, device)


def live(read: Any, source: object, backend: str, device: str | None, dtype: str | None) -> Network:
    """``read(source)`` placed on the backend; a refusal becomes one-line :class:`NetworkError`."""
    try:
        network = read(source)
    except Unsupported as exc:
        raise NetworkError(f"xpnet cannot represent this {type(source).__name__}: {exc}") from None
    return place(network, backend, device, dtype)


def activation_names(activations: Sequence[str] | str) -> list[str]:
    """The caller's activations, given as a list or as ``"sigmoid,sigmoid,softmax"``."""
    names = activations.split(",") if isinstance(activations, str) else list(activations)
    return [name.strip() for name in names]


def chosen_activations(
    activations: Sequence[str] | str | None, layers: int, where: str
) -> list[str]:
    """The caller's activations (a list, or ``"sigmoid,sigmoid,softmax"``) for ``layers``."""
    if activations is None:
        raise Unsupported(
            f"{where} stores no activations: pass activations=[...] with one name per "
            f"layer ({layers} layers; `xpnet infer --activations sigmoid,...,softmax`)"
        )
    names = activation_names(activations)
    if len(names) != layers:
        raise Unsupported(f"{where} has {layers} layers but {len(names)} activations were given")
    return names


def short(exc: BaseException, limit: int = 160) -> str:
    """``exc`` as ``Type: message``, on one line, without terminal escapes, cut at ``limit``."""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split())
    text = text if len(text) <= limit else text[: limit - 3].rstrip() + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
