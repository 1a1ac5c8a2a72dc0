"""Fully connected layers: ``Dense`` and the ``Flatten`` that feeds it."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Layer, Parameter, Shape, check_bool


class Flatten(Layer):
    """Collapse every axis but the batch one: (N, d1, d2, ...) → (N, d1·d2·...)."""

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (int(np.prod(input_shape)),)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out.reshape(grad_out.shape[0], *self.input_shape)


class Dense(Layer):
    r"""Affine map of feature vectors.

    .. math:: y = x W + b

    Shapes: ``x`` (N, D) → ``y`` (N, units); ``weight`` (D, units), ``bias`` (units,).
    Backward: ``dW = xᵀ dY``, ``db = Σ_n dY``, ``dX = dY Wᵀ``.
    Weights start He-normal (std ``sqrt(2 / D)``), biases at zero.
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
        if len(input_shape) != 1:
            raise ValueError(
                f"{self.name}: expects feature vectors (N, features), got per-sample shape {input_shape}; "
                "put a Flatten() before it"
            )
        return (self.units,)

    def create_parameters(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> None:
        (d,) = input_shape
        self.weight = Parameter((rng.standard_normal((d, self.units)) * np.sqrt(2.0 / d)).astype(dtype))
        self.bias = Parameter(np.zeros(self.units, dtype=dtype)) if self.use_bias else None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        self._x = x
        out = x @ self.weight.data
        if self.bias is not None:
            out += self.bias.data
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self.weight.trainable:
            np.matmul(self._x.T, grad_out, out=self.weight.grad)
        if self.bias is not None and self.bias.trainable:
            np.add.reduce(grad_out, axis=0, out=self.bias.grad)  # the ufunc itself: np.sum adds ~1 µs of wrapping
        return grad_out @ self.weight.data.T
