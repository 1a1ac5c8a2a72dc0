"""Fully connected layers: ``Dense`` and the ``Flatten`` that feeds it."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_backend
from .base import Layer, Parameter, Shape, check_bool


class Flatten(Layer):
    """Collapse every axis but the batch one: (N, d1, d2, ...) → (N, d1·d2·...).

    Args:
        trainable: unused (the layer has no parameters); kept for the common layer signature.
        name: the layer's name (default: derived from the class name).

    Shape:
        - Input: ``(N, d1, d2, ...)``.
        - Output: ``(N, d1·d2·...)``.

    Example::

        >>> import numpy as np
        >>> flat = Flatten()
        >>> flat.build((2, 3, 4), dtype="float64")
        (24,)
        >>> flat.forward(np.zeros((5, 2, 3, 4))).shape
        (5, 24)
    """

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (int(np.prod(input_shape)),)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out.reshape(grad_out.shape[0], *(self.input_shape or ()))


class Dense(Layer):
    r"""Affine map of the last axis: ``y = x W + b`` for every position of ``x``.

    .. math:: y_{\dots, u} = \sum_d x_{\dots, d} W_{d, u} + b_u

    Applies to the last axis of any rank, as ``torch.nn.Linear`` and Keras' ``Dense`` do: feature
    vectors ``(N, D)``, or sequences ``(N, T, D)`` position by position. ``weight`` is stored
    ``(D, units)`` (Keras' layout; PyTorch's ``Linear.weight`` is its transpose). With the leading
    axes flattened into ``M`` rows, backward is ``dW = xᵀ dY``, ``db = Σ_m dY``, ``dX = dY Wᵀ``.
    Weights start He-normal (std ``sqrt(2 / D)``), biases at zero.

    Args:
        units: the size of the output's last axis.
        use_bias: add the bias ``b``.

    Shape:
        - Input: ``(N, *, D)``.
        - Output: ``(N, *, units)``.
        - ``weight``: ``(D, units)``; ``bias``: ``(units,)``.

    Example::

        >>> layer = Dense(3)
        >>> layer.build((5, 4), dtype="float64")
        (5, 3)
        >>> layer.forward(np.ones((2, 5, 4))).shape
        (2, 5, 3)
    """

    def __init__(self, units: int, use_bias: bool = True, *, trainable: bool = True, name: str | None = None) -> None:
        super().__init__(trainable=trainable, name=name)
        if not isinstance(units, (int, np.integer)) or isinstance(units, bool) or units < 1:
            raise ValueError(f"{self.name}: units must be a positive int, got {units!r}")
        self.units = int(units)
        self.use_bias = check_bool(use_bias, "use_bias", self.name)
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None

    def get_config(self) -> dict[str, Any]:
        return {"units": self.units, "use_bias": self.use_bias}

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (*input_shape[:-1], self.units)

    def create_parameters(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> None:
        d = input_shape[-1]
        self.weight = Parameter((rng.standard_normal((d, self.units)) * np.sqrt(2.0 / d)).astype(dtype))
        self.bias = Parameter(np.zeros(self.units, dtype=dtype)) if self.use_bias else None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        assert self.weight is not None  # built
        self._x = x
        return get_backend().linear(x, self.weight.data, None if self.bias is None else self.bias.data)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        assert self.weight is not None  # built
        weight_grad = self.weight.grad if self.weight.trainable else None
        bias_grad = self.bias.grad if self.bias is not None and self.bias.trainable else None
        return get_backend().linear_backward(self._x, self.weight.data, grad_out, weight_grad, bias_grad)
