"""Kernels a backend has natively where the array API standard has none.

The generic sigmoid in :mod:`xpnet.activations` takes eight elementwise passes, each
allocating a temporary; PyTorch's, JAX's and CuPy's own sigmoid take one pass. Where ``xp``
has one it runs instead; the generic
formula stays the reference, and the tests hold each native kernel to it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import array_api_compat as compat
import numpy as np

from xpnet._typing import Array, Namespace


@functools.cache
def native_sigmoid(xp: Namespace) -> Callable[[Array], Array] | None:
    """``xp``'s own logistic function, or ``None`` where it has none (NumPy, the standard)."""
    if compat.is_torch_namespace(xp):
        import torch

        return torch.sigmoid
    if compat.is_jax_namespace(xp):
        import jax

        return jax.nn.sigmoid
    if compat.is_cupy_namespace(xp):
        try:
            from cupyx.scipy.special import expit
        except ImportError:  # a CuPy build without its SciPy layer
            return None
        return functools.partial(_dtype_kept, expit)
    return None


def _dtype_kept(kernel: Callable[[Array], Array], x: Array) -> Array:
    """``kernel(x)`` in ``x``'s dtype: CuPy's ``expit`` has no float16 loop and returns
    float64 for it, so float16 is computed in float32 and rounded back once."""
    if x.dtype == np.float16:
        return kernel(x.astype(np.float32)).astype(np.float16)
    result = kernel(x)
    return result if result.dtype == x.dtype else result.astype(x.dtype)
