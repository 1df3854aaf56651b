"""Gradient-descent optimizers (SGD, Momentum, Adam) that return new parameter arrays.

An optimizer never writes into an array: :meth:`Optimizer.step` returns new parameters and
replaces its state, so read-only arrays and immutable ones (JAX) work, and a frozen
:class:`~xpnet.Network` is rebuilt from the result. The state (velocities, moment
estimates) is created on the first step with each parameter's dtype and device, so it lives
wherever the network does. Weight decay is part of the loss (see
:func:`xpnet.gradients.loss_and_gradients`), so every optimizer applies it alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import array_api_compat as compat

from xpnet._array_api import namespace_of
from xpnet._device import on_device_of
from xpnet._typing import Array


class Optimizer:
    """Turns gradients into new parameters, keeping per-parameter state arrays.

    Subclasses name their state arrays in ``slots`` and implement :meth:`update`.
    """

    slots: ClassVar[tuple[str, ...]] = ()
    default_lr: ClassVar[float]

    def __init__(self, lr: float | None = None) -> None:
        self.lr = self.default_lr if lr is None else float(lr)
        if not self.lr > 0:
            raise ValueError(f"the learning rate must be positive, got {lr}")
        self.steps = 0
        self.state: dict[str, tuple[Array, ...]] = {}

    def step(self, params: Sequence[Array], grads: Sequence[Array]) -> list[Array]:
        """Return the parameters after one step; the state advances only once all are done.

        Runs under the device rule (on the first parameter's device), so the state it
        creates lives there.
        """
        if len(params) != len(grads):
            raise ValueError(f"{len(params)} parameters but {len(grads)} gradients")
        if not params:
            return []
        with on_device_of(params[0]):
            return self._step(params, grads)

    def _step(self, params: Sequence[Array], grads: Sequence[Array]) -> list[Array]:
        state = self.state or {slot: tuple(_zeros_like(p) for p in params) for slot in self.slots}
        for slot, arrays in state.items():
            if [tuple(a.shape) for a in arrays] != [tuple(p.shape) for p in params]:
                raise ValueError(
                    f"this optimizer's {slot!r} state was made for other parameter shapes; "
                    "use a new optimizer for another network"
                )
        steps = self.steps + 1
        updated = [
            self.update(steps, p, g, *(state[slot][i] for slot in self.slots))
            for i, (p, g) in enumerate(zip(params, grads))
        ]
        self.state = {
            slot: tuple(new[k + 1] for new in updated) for k, slot in enumerate(self.slots)
        }
        self.steps = steps
        return [new[0] for new in updated]

    def update(self, step: int, param: Array, grad: Array, *state: Array) -> tuple[Array, ...]:
        """``(new param, *new state)`` for one parameter at step number ``step`` (from 1)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr={self.lr})"


class SGD(Optimizer):
    """Plain gradient descent: ``param - lr * grad`` (the textbook's learning rate 0.1)."""

    default_lr = 0.1

    def update(self, step: int, param: Array, grad: Array, *state: Array) -> tuple[Array, ...]:
        return (param - self.lr * grad,)


class Momentum(Optimizer):
    """Gradient descent with momentum: ``v = momentum * v - lr * grad; param + v``."""

    slots = ("velocity",)
    default_lr = 0.01

    def __init__(self, lr: float | None = None, momentum: float = 0.9) -> None:
        super().__init__(lr)
        self.momentum = momentum

    def update(self, step: int, param: Array, grad: Array, *state: Array) -> tuple[Array, ...]:
        (velocity,) = state
        velocity = self.momentum * velocity - self.lr * grad
        return param + velocity, velocity


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias-corrected first and second moment estimates."""

    slots = ("m", "v")
    default_lr = 0.001

    def __init__(
        self,
        lr: float | None = None,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def update(self, step: int, param: Array, grad: Array, *state: Array) -> tuple[Array, ...]:
        m, v = state
        xp = namespace_of(param)
        m = self.beta1 * m + (1.0 - self.beta1) * grad
        v = self.beta2 * v + (1.0 - self.beta2) * grad * grad
        # Bias correction folded into the step size, a Python float (no device round trip).
        rate = self.lr * math.sqrt(1.0 - self.beta2**step) / (1.0 - self.beta1**step)
        return param - rate * m / (xp.sqrt(v) + self.eps), m, v


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "momentum": Momentum, "adam": Adam}
"""Optimizer classes by the names :func:`xpnet.training.train` accepts."""


def make_optimizer(optimizer: str | Optimizer, lr: float | None = None) -> Optimizer:
    """An optimizer from its name (``lr=None``: its default rate) or the object itself.

    Parameters
    ----------
    optimizer : str or Optimizer
        ``"sgd"``, ``"momentum"`` or ``"adam"``, or an optimizer object (returned as it is).
    lr : float, optional
        The learning rate of a named optimizer.

    Returns
    -------
    Optimizer

    Raises
    ------
    ValueError
        If the name is unknown, or ``lr`` is given beside an optimizer object.

    Examples
    --------
    >>> import xpnet
    >>> xpnet.make_optimizer("adam")
    Adam(lr=0.001)
    >>> xpnet.make_optimizer("sgd", lr=0.5)
    SGD(lr=0.5)
    """
    if isinstance(optimizer, Optimizer):
        if lr is not None:
            raise ValueError("pass lr to the optimizer object, not beside it")
        return optimizer
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[optimizer](lr)


def _zeros_like(x: Array) -> Array:
    xp = namespace_of(x)
    return xp.zeros(x.shape, dtype=x.dtype, device=compat.device(x))
