"""Shared by the tests of weights files and importers: small real data, a network of the
values a lossy format would change, and the check that xpnet predicts as the source
framework does.

Tolerance: probabilities agree within ``ATOL[dtype]`` of the network's dtype on the backend
(float32: 1e-5, about 80 float32 steps at 1.0, for sums of up to 784 products rounded in
another order; float64: 1e-12). Labels are equal on every row, except that a row whose two
largest reference probabilities lie within that tolerance of each other may go either
way (a tie at this precision); the tests count such rows and they are rare.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

import xpnet
from xpnet.backends import Backend, to_host

ATOL = {"float32": 1e-5, "float64": 1e-12}

NUMPYS_COPY_WARNING = "__array__ implementation doesn't accept a copy keyword"
"""NumPy 2 warns so where ``np.array`` meets an ``__array__`` without ``copy`` (PyTorch's
tensors, Keras's variables): Keras's own fit, predict and save do, a thousand times a
session; xpnet must not (see the test that turns it into an error)."""


def save_keras(model, path) -> None:  # type: ignore[no-untyped-def]
    """``model.save(path)``, without the warning Keras's own saver gives on PyTorch
    (:data:`NUMPYS_COPY_WARNING`): what xpnet then does with the file stays watched."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", NUMPYS_COPY_WARNING, DeprecationWarning)
        model.save(path)


@functools.cache
def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits (it ships them), pixels scaled to [0, 1] as float32."""
    from sklearn.datasets import load_digits

    x, t = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), t.astype(np.int64)


def odd_network(
    dtype: str = "float32", activations: tuple[str, str] = ("relu", "identity")
) -> xpnet.Network:
    """A small network whose arrays hold the values a lossy writer or reader would change:
    signed zero, the largest finite values, subnormals (in ``dtype``). No NaN or infinity:
    no loader accepts those (the non-finite rule)."""
    rng = np.random.default_rng(3)
    info = np.finfo(dtype)
    params = {
        "W1": rng.standard_normal((5, 4)).astype(dtype),
        "b1": np.array([-0.0, info.max, info.smallest_subnormal, 1e-40], dtype),
        "W2": rng.standard_normal((4, 3)).astype(dtype),
        "b2": np.array([-info.max, info.smallest_subnormal * 3, 1.0], dtype),
    }
    return xpnet.Network.from_mapping(params, activations)


def device_of(backend: Backend) -> str | None:
    """The ``device=`` to pass for ``backend`` (``None`` for NumPy and dask)."""
    return None if backend.name in ("numpy", "dask") else backend.device_name


def quiet_fit(model, x, t):  # type: ignore[no-untyped-def]
    """``model.fit(x, t)`` without the convergence warning of a deliberately short fit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(x, t)


def check_agreement(
    network: xpnet.Network,
    backend: Backend,
    x: np.ndarray,
    probabilities: np.ndarray,
    labels: np.ndarray | None,
) -> int:
    """Assert that ``network`` on ``backend`` gives the source's ``probabilities`` and, where
    given, label indices; returns the number of tied rows allowed to differ."""
    assert network.backend.name == backend.name
    assert str(network.backend.device) == str(backend.device)
    tol = ATOL[str(network.dtype).rsplit(".", 1)[-1]]
    rows = backend.asarray(x)
    ours = to_host(xpnet.predict(network, rows))
    np.testing.assert_allclose(ours, probabilities.reshape(ours.shape), rtol=0, atol=tol)
    if labels is None:
        return 0
    predicted = to_host(xpnet.predict_labels(network, rows))
    top = np.sort(probabilities, axis=1)[:, -2:]
    tied = top[:, 1] - top[:, 0] <= 2 * tol
    differ = predicted != labels
    assert not np.any(differ & ~tied), np.flatnonzero(differ & ~tied)[:10]
    assert np.count_nonzero(tied) <= len(x) // 100
    return int(np.count_nonzero(differ))
