"""NumPy float64 oracles: the textbook's formulas, written independently of xpnet."""

from __future__ import annotations

import itertools

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    exps = np.exp(x - x.max(axis=axis, keepdims=True))
    return exps / exps.sum(axis=axis, keepdims=True)


ACTIVATIONS = {
    "identity": lambda x: np.asarray(x, dtype=np.float64),
    "step": lambda x: (np.asarray(x) > 0).astype(np.float64),
    "sigmoid": sigmoid,
    "relu": lambda x: np.maximum(np.asarray(x, dtype=np.float64), 0.0),
    "softmax": softmax,
    "tanh": lambda x: np.tanh(np.asarray(x, dtype=np.float64)),
}


def forward(params: dict[str, np.ndarray], activations: list[str], x: np.ndarray) -> np.ndarray:
    """The forward pass in float64, layer by layer, as the textbook writes it."""
    a = np.asarray(x, dtype=np.float64)
    for n, name in enumerate(activations, start=1):
        w = np.asarray(params[f"W{n}"], dtype=np.float64)
        b = np.asarray(params[f"b{n}"], dtype=np.float64)
        a = ACTIVATIONS[name](a @ w + b)
    return a


def random_params(
    sizes: tuple[int, ...], seed: int, weight_scale: float = 0.7, bias_scale: float = 0.3
) -> dict[str, np.ndarray]:
    """Gaussian float64 parameters ``W1, b1, ...`` for dense layers of ``sizes``."""
    rng = np.random.default_rng(seed)
    params = {}
    for n, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes), start=1):
        params[f"W{n}"] = rng.normal(scale=weight_scale, size=(fan_in, fan_out))
        params[f"b{n}"] = rng.normal(scale=bias_scale, size=fan_out)
    return params
