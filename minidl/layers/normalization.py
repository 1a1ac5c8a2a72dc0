"""Normalisation: ``BatchNorm2D``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_backend
from .base import Buffer, Layer, Parameter, Shape, as_float
from .images import image_shape


class BatchNorm2D(Layer):
    r"""Batch normalisation of images, per channel (Ioffe & Szegedy, 2015).

    For each channel ``c``, over the ``M = N·H·W`` values of the batch:

    .. math::
        \mu = \frac{1}{M}\sum x, \quad \sigma^2 = \frac{1}{M}\sum (x - \mu)^2, \quad
        \hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}, \quad y = \gamma \hat x + \beta

    Shapes: (N, C, H, W) → (N, C, H, W); ``weight`` (γ) and ``bias`` (β) of shape (C,), starting
    at 1 and 0; buffers ``running_mean`` and ``running_var`` of shape (C,), starting at 0 and 1.

    - **Training** (``forward(x, training=True)``) normalises with the batch statistics and
      updates the buffers as PyTorch does: ``running ← (1 - momentum)·running + momentum·batch``,
      with the unbiased variance ``σ²·M/(M-1)``. Backward differentiates through ``μ`` and ``σ²``:

      .. math:: \frac{\partial L}{\partial x} = \frac{\gamma}{\sqrt{\sigma^2+\epsilon}}
                \Big(g - \overline{g} - \hat x\,\overline{g \hat x}\Big),\quad
                \frac{\partial L}{\partial \gamma} = \sum g \hat x,\quad
                \frac{\partial L}{\partial \beta} = \sum g

      (bars are per-channel means over ``M``, ``g = ∂L/∂y``).
    - **Inference** uses the running statistics: a fixed per-channel affine map, whose backward
      is ``γ g / sqrt(running_var + ε)``.
    - **Frozen** (``trainable=False``): inference behaviour even when training, and the running
      statistics stay as they are (Keras' rule for fine-tuning a pre-trained network).
    """

    def __init__(
        self, momentum: float = 0.1, eps: float = 1e-5, *, trainable: bool = True, name: str | None = None
    ) -> None:
        super().__init__(trainable=trainable, name=name)
        self.momentum = as_float(momentum, "momentum", self.name, low=0.0, high=1.0)
        self.eps = as_float(eps, "eps", self.name, low=0.0, low_inclusive=False)
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None
        self.running_mean: Buffer | None = None
        self.running_var: Buffer | None = None

    def get_config(self) -> dict[str, Any]:
        return {"momentum": self.momentum, "eps": self.eps}

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return image_shape(input_shape, self.name)

    def create_parameters(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> None:
        c = input_shape[0]
        self.weight = Parameter(np.ones(c, dtype=dtype))
        self.bias = Parameter(np.zeros(c, dtype=dtype))
        self.running_mean = Buffer(np.zeros(c, dtype=dtype))
        self.running_var = Buffer(np.ones(c, dtype=dtype))
        self._ctx = None  # what the backend keeps for backward; its arrays are reused step after step

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        batch_stats = training and self.trainable
        m = x.shape[0] * x.shape[2] * x.shape[3]
        if batch_stats and m < 2:
            raise ValueError(
                f"{self.name}: training needs more than one value per channel to take batch statistics, "
                f"got input of shape {x.shape}"
            )
        stats = None if batch_stats else (self.running_mean.data, self.running_var.data)
        y, mean, var, self._ctx = get_backend().batch_norm2d(x, self.weight.data, self.bias.data, self.eps, stats,
                                                             self._ctx)
        if batch_stats:
            self.running_mean.data *= 1 - self.momentum
            self.running_mean.data += self.momentum * mean
            self.running_var.data *= 1 - self.momentum
            self.running_var.data += (self.momentum * m / (m - 1)) * var
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        dx, dweight, dbias = get_backend().batch_norm2d_backward(self._ctx, grad_out)
        if self.weight.trainable:
            self.weight.grad[...] = dweight
        if self.bias.trainable:
            self.bias.grad[...] = dbias
        return dx
