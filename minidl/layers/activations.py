"""Element-wise activations: ``ReLU``."""

from __future__ import annotations

import numpy as np

from .base import Layer


class ReLU(Layer):
    r"""Rectified linear unit, any shape.

    .. math:: y = \max(x, 0), \qquad \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\,[x > 0]

    The derivative at exactly 0 is taken as 0 (as in PyTorch).
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        self._mask = x > 0
        return x * self._mask

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * self._mask
