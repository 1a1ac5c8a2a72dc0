"""Optimizers update :class:`~minidl.layers.Parameter` objects in place from their ``.grad``."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from .layers.base import Parameter


class Optimizer:
    """Holds a list of parameters; ``step()`` updates the trainable ones, ``zero_grad()`` clears grads."""

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        bad = [p for p in self.params if not isinstance(p, Parameter)]
        if bad:
            raise TypeError(f"{type(self).__name__}: params must be Parameter objects, got {type(bad[0]).__name__}")
        self.lr = _check_float(lr, "lr", type(self).__name__, low=0.0, low_inclusive=False)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad.fill(0)

    def step(self) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    r"""Stochastic gradient descent with momentum, the update rule of ``torch.optim.SGD``.

    With gradient ``g``, parameter ``θ``, weight decay ``λ``, momentum ``μ``:

    .. math::
        g \leftarrow g + λθ, \qquad
        b \leftarrow \begin{cases} g & \text{first step} \\ μ b + g & \text{after} \end{cases}, \qquad
        θ \leftarrow θ - \mathrm{lr} \cdot \begin{cases} g + μ b & \text{nesterov} \\ b & \text{otherwise} \end{cases}

    With ``momentum=0`` this is plain ``θ ← θ - lr·(g + λθ)``. Frozen parameters
    (``trainable=False``) are skipped.
    """

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        self.momentum = _check_float(momentum, "momentum", "SGD", low=0.0, high=1.0)
        self.weight_decay = _check_float(weight_decay, "weight_decay", "SGD", low=0.0)
        if nesterov and self.momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)
        self._buffers: list[np.ndarray | None] = [None] * len(self.params)

    def step(self) -> None:
        for i, p in enumerate(self.params):
            if not p.trainable:
                continue
            g = p.grad
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            if self.momentum:
                buf = self._buffers[i]
                if buf is None:
                    buf = self._buffers[i] = g.copy()
                else:
                    buf *= self.momentum
                    buf += g
                g = g + self.momentum * buf if self.nesterov else buf
            p.data -= self.lr * g


def _check_float(
    value: float, arg: str, owner: str, low: float, high: float | None = None, low_inclusive: bool = True
) -> float:
    """Return ``value`` as a float, or raise naming the argument if it is not finite or out of range."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{owner}: {arg} must be a number, got {value!r}")
    value = float(value)
    too_low = value < low or (value == low and not low_inclusive)
    if not math.isfinite(value) or too_low or (high is not None and value >= high):
        span = f"{'(' if not low_inclusive else '['}{low}, {high if high is not None else 'inf'})"
        raise ValueError(f"{owner}: {arg} must be finite and in {span}, got {value!r}")
    return value
