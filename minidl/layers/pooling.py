"""Pooling: ``MaxPool2D``, ``AvgPool2D``, ``GlobalAvgPool2D``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_backend
from .base import Layer, Shape, as_pair
from .conv import conv_output_size
from .images import image_shape


class _PoolWindows(Layer, register=False):
    """What every sliding-window pooling layer shares: its arguments and its output shape.

    ``pool_size``, ``stride`` (default ``pool_size``) and ``padding`` (at most half the window)
    are ints or ``(h, w)`` pairs; windows that do not fit at the edge are dropped. An abstract
    base: ``register=False`` keeps it out of the layer registry.
    """

    def __init__(
        self,
        pool_size: int | tuple[int, int] = 2,
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        *,
        trainable: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__(trainable=trainable, name=name)
        self.pool_size = as_pair(pool_size, "pool_size", self.name)
        self.stride = self.pool_size if stride is None else as_pair(stride, "stride", self.name)
        self.padding = as_pair(padding, "padding", self.name, minimum=0)
        if any(p > k // 2 for p, k in zip(self.padding, self.pool_size, strict=True)):
            raise ValueError(
                f"{self.name}: padding must be at most half the pool size {self.pool_size}, got {padding!r}"
            )

    def get_config(self) -> dict[str, Any]:
        return {"pool_size": self.pool_size, "stride": self.stride, "padding": self.padding}

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        c, h, w = image_shape(input_shape, self.name)
        (kh, kw), (ph, pw) = self.pool_size, self.padding
        if kh > h + 2 * ph or kw > w + 2 * pw:
            raise ValueError(
                f"{self.name}: pool window {self.pool_size} is bigger than its padded input "
                f"{(h + 2 * ph, w + 2 * pw)} (input shape {input_shape})"
            )
        return (c, conv_output_size(h, kh, self.stride[0], 2 * ph), conv_output_size(w, kw, self.stride[1], 2 * pw))


class MaxPool2D(_PoolWindows, Layer):
    r"""Max over each ``kh × kw`` window, per channel.

    .. math:: y_{n,c,i,j} = \max_{u<k_h,\,v<k_w} x^{pad}_{n,c,\,i s_h+u,\,j s_w+v}

    Shapes: (N, C, H, W) → (N, C, OH, OW), ``OH = (H + 2p - kh) // s + 1`` (windows
    that do not fit at the edge are dropped, as in PyTorch). Padding counts as
    ``-inf``. ``stride`` defaults to ``pool_size``.

    The gradient flows to the arg-max of each window (the first one in row-major order on
    a tie); overlapping windows add up.

    Args:
        pool_size: window height and width, an int or ``(kh, kw)``.
        stride: step between windows, an int or a pair; ``None`` means ``pool_size``.
        padding: padding on each side, an int or ``(p_h, p_w)``; at most half the window.

    Shape:
        - Input: ``(N, C, H, W)``.
        - Output: ``(N, C, OH, OW)``.

    Example::

        >>> import numpy as np
        >>> pool = MaxPool2D(2)
        >>> pool.build((1, 4, 4), dtype="float64")
        (1, 2, 2)
        >>> pool.forward(np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4))
        array([[[[ 5.,  7.],
                 [13., 15.]]]])
    """

    def create_parameters(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> None:
        self._ctx = None  # what the backend keeps for backward

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        y, self._ctx = get_backend().max_pool2d(x, self.pool_size, self.stride, self.padding, self._ctx)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return get_backend().max_pool2d_backward(self._ctx, grad_out)


class AvgPool2D(_PoolWindows, Layer):
    r"""Mean over each ``kh × kw`` window, per channel.

    .. math:: y_{n,c,i,j} = \frac{1}{k_h k_w} \sum_{u<k_h,\,v<k_w} x^{pad}_{n,c,\,i s_h+u,\,j s_w+v}

    Shapes and arguments as :class:`MaxPool2D`: (N, C, H, W) → (N, C, OH, OW),
    ``OH = (H + 2p - kh) // s + 1``, ``stride`` defaults to ``pool_size``. Padding counts as
    zeros and the divisor is always ``kh·kw`` (PyTorch's default ``count_include_pad=True``).

    Args:
        pool_size: window height and width, an int or ``(kh, kw)``.
        stride: step between windows, an int or a pair; ``None`` means ``pool_size``.
        padding: padding on each side, an int or ``(p_h, p_w)``; at most half the window.

    Shape:
        - Input: ``(N, C, H, W)``.
        - Output: ``(N, C, OH, OW)``.

    Example::

        >>> import numpy as np
        >>> pool = AvgPool2D(2)
        >>> pool.build((1, 4, 4), dtype="float64")
        (1, 2, 2)
        >>> pool.forward(np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4))
        array([[[[ 2.5,  4.5],
                 [10.5, 12.5]]]])
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        y, self._ctx = get_backend().avg_pool2d(x, self.pool_size, self.stride, self.padding)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return get_backend().avg_pool2d_backward(self._ctx, grad_out)


class GlobalAvgPool2D(Layer):
    r"""Mean over all pixels of each channel: (N, C, H, W) → (N, C).

    .. math:: y_{n,c} = \frac{1}{HW} \sum_{i,j} x_{n,c,i,j}, \qquad
              \frac{\partial L}{\partial x_{n,c,i,j}} = \frac{1}{HW} \frac{\partial L}{\partial y_{n,c}}

    Replaces ``Flatten`` before the classifier in all-convolutional networks (Keras'
    ``GlobalAveragePooling2D``; PyTorch's ``AdaptiveAvgPool2d(1)`` followed by a flatten).

    Args:
        trainable: unused (the layer has no parameters); kept for the common layer signature.
        name: the layer's name (default: derived from the class name).

    Shape:
        - Input: ``(N, C, H, W)``.
        - Output: ``(N, C)``.

    Example::

        >>> import numpy as np
        >>> pool = GlobalAvgPool2D()
        >>> pool.build((2, 3, 3), dtype="float64")
        (2,)
        >>> pool.forward(np.ones((1, 2, 3, 3))).tolist()
        [[1.0, 1.0]]
    """

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (image_shape(input_shape, self.name)[0],)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        y, self._ctx = get_backend().global_avg_pool2d(x)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return get_backend().global_avg_pool2d_backward(self._ctx, grad_out)
