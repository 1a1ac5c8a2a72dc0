"""Regularisation: ``Dropout``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend.blocks import dropout_mask
from .base import Layer, Shape, as_float


class Dropout(Layer):
    r"""Inverted dropout: in training, zero each entry with probability ``rate`` and scale the rest up.

    .. math:: y = x \odot \frac{m}{1 - r}, \quad m_i \sim \mathrm{Bernoulli}(1 - r), \qquad
              \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y} \odot \frac{m}{1 - r}

    Any shape. The scaling keeps ``E[y] = x``, so at inference (``training=False``) the layer
    is the identity. Masks come from the layer's own ``Generator``, derived in
    ``create_parameters`` from the model's seed: the same seed gives the same masks, and
    NumPy's global random state is never touched. Big masks are drawn in blocks on minidl's threads
    (:func:`minidl.backend.blocks.dropout_mask`): the same bits as one draw, at any thread count.

    Args:
        rate: the probability of zeroing an entry, in ``[0, 1)``.

    Shape:
        - Input: ``(N, *)``, any shape.
        - Output: the same shape.

    Example::

        >>> import numpy as np
        >>> drop = Dropout(0.5)
        >>> drop.build((4,), rng=np.random.default_rng(0), dtype="float64")
        (4,)
        >>> drop.forward(np.ones((1, 4))).tolist()    # inference: the identity
        [[1.0, 1.0, 1.0, 1.0]]
        >>> set(drop.forward(np.ones((1, 4)), training=True).ravel().tolist()) <= {0.0, 2.0}
        True
    """

    def __init__(self, rate: float = 0.5, *, trainable: bool = True, name: str | None = None) -> None:
        super().__init__(trainable=trainable, name=name)
        self.rate = as_float(rate, "rate", self.name, low=0.0, high=1.0)
        self._rng: np.random.Generator | None = None

    def get_config(self) -> dict[str, Any]:
        return {"rate": self.rate}

    def create_parameters(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> None:
        self._rng = np.random.default_rng(rng.integers(2**63))

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        if not training or self.rate == 0:
            self._scale = None
            return x
        assert self._rng is not None  # built
        self._scale = dropout_mask(self._rng, x.shape, x.dtype, self.rate)
        return x * self._scale

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out if self._scale is None else grad_out * self._scale
