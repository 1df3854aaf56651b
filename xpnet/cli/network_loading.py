"""The network a command runs on: what ``--weights`` names, loaded on the chosen backend.

``infer`` and ``inspect`` (and the benchmarks) take ``--weights``: a file, ``book`` for the
textbook's weights (fetched once into the cache), or nothing for the bundled weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xpnet.network import Network
from xpnet.pretrained import BUNDLED_WEIGHTS


def load_network(
    path: str | None, backend: str, device: str | None, activations: str | None = None
) -> Network:
    """The weights at ``path`` on the target backend (see :func:`weights_file`)."""
    from xpnet.weights import load_weights

    return load_weights(weights_file(path), backend=backend, device=device, activations=activations)


def load_network_and_info(
    path: Path, backend: str, device: str | None, activations: str | None = None
) -> tuple[Network, dict[str, Any]]:
    """The network at ``path`` on the target backend and its file's header, from one
    reading (see :func:`xpnet.weights.load_weights_and_info`)."""
    from xpnet.weights import load_weights_and_info

    return load_weights_and_info(path, backend=backend, device=device, activations=activations)


def weights_file(path: str | None) -> Path:
    """The file ``--weights`` names: ``"book"`` fetches the textbook's; ``None`` is the
    bundled ``mnist_5k.npz`` (trained on the MNIST 5k subset; its header says how)."""
    if path == "book":
        from xpnet.pretrained import fetch_book_weights

        return fetch_book_weights()
    return BUNDLED_WEIGHTS if path is None else Path(path)
