"""Upsampling: ``Upsample2D`` (nearest neighbour), the decoder's counterpart of pooling."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Layer, Shape, as_pair
from .images import image_shape

__all__ = ["Upsample2D"]


class Upsample2D(Layer):
    r"""Nearest-neighbour upsampling of images: every pixel becomes an ``fh × fw`` block.

    .. math:: y_{n,c,i,j} = x_{n,c,\lfloor i / f_h \rfloor,\lfloor j / f_w \rfloor}, \qquad
              \frac{\partial L}{\partial x_{n,c,a,b}} = \sum_{u<f_h,\,v<f_w}
              \frac{\partial L}{\partial y_{n,c,\,a f_h+u,\,b f_w+v}}

    Keras' ``UpSampling2D(size)``, PyTorch's ``nn.Upsample(scale_factor, mode="nearest")``.
    With a ``Conv2D`` after it, the decoder half of a convolutional autoencoder. No parameters.

    Args:
        factor: how many times to repeat each row and column: an int, or an ``(fh, fw)``
            pair of ints, each ``>= 1``.

    Shape:
        - Input: ``(N, C, H, W)``.
        - Output: ``(N, C, H·fh, W·fw)``.

    Example::

        >>> layer = Upsample2D(2)
        >>> layer.build((1, 2, 2), dtype="float64")
        (1, 4, 4)
        >>> layer.forward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))[0, 0]
        array([[1., 1., 2., 2.],
               [1., 1., 2., 2.],
               [3., 3., 4., 4.],
               [3., 3., 4., 4.]])
    """

    def __init__(self, factor: int | tuple[int, int] = 2, *, trainable: bool = True, name: str | None = None) -> None:
        super().__init__(trainable=trainable, name=name)
        self.factor = as_pair(factor, "factor", self.name)

    def get_config(self) -> dict[str, Any]:
        return {"factor": self.factor}

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        c, h, w = image_shape(input_shape, self.name)
        return (c, h * self.factor[0], w * self.factor[1])

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        n, c, h, w = x.shape
        fh, fw = self.factor
        # A broadcast view (N, C, H, fh, W, fw) whose reshape is the one copy: row-major order puts
        # the fh copies of row a and the fw copies of column b next to each other.
        blocks = np.broadcast_to(x[:, :, :, None, :, None], (n, c, h, fh, w, fw))
        return blocks.reshape(n, c, h * fh, w * fw)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        assert self.input_shape is not None  # built
        n, c = grad_out.shape[:2]
        _, h, w = self.input_shape
        fh, fw = self.factor
        return grad_out.reshape(n, c, h, fh, w, fw).sum(axis=(3, 5))
