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

    Args:
        momentum: weight of the batch statistics in the running ones (PyTorch's convention, 0.1).
        eps: added to the variance before the square root.
        trainable: learn ``weight`` and ``bias`` and update the running statistics; ``False`` freezes both.

    Shape:
        - Input: ``(N, C, H, W)``.
        - Output: ``(N, C, H, W)``.
        - ``weight``, ``bias``, ``running_mean``, ``running_var``: ``(C,)``.

    Example::

        >>> import numpy as np
        >>> bn = BatchNorm2D()
        >>> bn.build((3, 4, 4), dtype="float64")
        (3, 4, 4)
        >>> y = bn.forward(np.random.default_rng(0).normal(5.0, 2.0, (8, 3, 4, 4)), training=True)
        >>> bool(abs(y.mean()) < 1e-12), bool(abs(y.std() - 1) < 1e-3)
        (True, True)
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
        assert self.weight is not None and self.bias is not None  # built
        assert self.running_mean is not None and self.running_var is not None
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
        assert self.weight is not None and self.bias is not None  # built
        dx, dweight, dbias = get_backend().batch_norm2d_backward(self._ctx, grad_out)
        if self.weight.trainable:
            self.weight.grad[...] = dweight
        if self.bias.trainable:
            self.bias.grad[...] = dbias
        return dx


class LayerNorm(Layer):
    r"""Layer normalisation (Ba, Kiros & Hinton, 2016): each position normalised over its last axis.

    For every vector ``x`` of the last axis (``D`` values), with no batch statistics:

    .. math::
        \mu = \frac{1}{D}\sum_d x_d, \quad \sigma^2 = \frac{1}{D}\sum_d (x_d - \mu)^2, \quad
        \hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}, \quad y = \gamma \odot \hat x + \beta

    Training and inference compute the same thing, so there are no buffers. Backward, with
    ``ĝ = γ ⊙ ∂L/∂y`` and bars for means over the last axis:

    .. math:: \frac{\partial L}{\partial x} = \frac{\hat g - \overline{\hat g} - \hat x\,\overline{\hat g \hat x}}
              {\sqrt{\sigma^2 + \epsilon}}, \quad
              \frac{\partial L}{\partial \gamma} = \sum g \odot \hat x, \quad \frac{\partial L}{\partial \beta} = \sum g

    (sums over every axis but the last). This is ``torch.nn.LayerNorm(D, eps)`` and Keras'
    ``LayerNormalization(axis=-1)``; the default ``eps`` is PyTorch's (Keras' is ``1e-3``).

    Args:
        eps: added to the variance before the square root; a number > 0.

    Shape:
        - Input: ``(N, *, D)``, any rank of at least 2 (a transformer's ``(N, T, D)``).
        - Output: the input's shape.
        - ``weight`` (γ, ones) and ``bias`` (β, zeros): ``(D,)``.

    Example::

        >>> layer = LayerNorm()
        >>> layer.build((2, 4), dtype="float64")
        (2, 4)
        >>> y = layer.forward(np.arange(8.0).reshape(1, 2, 4))
        >>> y.mean(axis=-1).round(12), y.std(axis=-1).round(4)
        (array([[0., 0.]]), array([[1., 1.]]))
    """

    def __init__(self, eps: float = 1e-5, *, trainable: bool = True, name: str | None = None) -> None:
        super().__init__(trainable=trainable, name=name)
        self.eps = as_float(eps, "eps", self.name, low=0.0, low_inclusive=False)
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None

    def get_config(self) -> dict[str, Any]:
        return {"eps": self.eps}

    def create_parameters(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> None:
        d = input_shape[-1]
        self.weight = Parameter(np.ones(d, dtype=dtype))
        self.bias = Parameter(np.zeros(d, dtype=dtype))

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        assert self.weight is not None and self.bias is not None  # built
        y, self._ctx = get_backend().layer_norm(x, self.weight.data, self.bias.data, self.eps)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        assert self.weight is not None and self.bias is not None  # built
        dx, dweight, dbias = get_backend().layer_norm_backward(self._ctx, grad_out)
        if self.weight.trainable:
            self.weight.grad[...] = dweight
        if self.bias.trainable:
            self.bias.grad[...] = dbias
        return dx
