"""Activations: ``ReLU``, ``LeakyReLU``, ``GELU``, ``Tanh``, ``Sigmoid``, ``Identity`` (element-wise), ``Softmax``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_backend
from .base import Layer, Shape, as_float


class ReLU(Layer):
    r"""Rectified linear unit, any shape.

    .. math:: y = \max(x, 0), \qquad \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\,[x > 0]

    The derivative at exactly 0 is taken as 0 (as in PyTorch).

    Args:
        trainable: unused (the layer has no parameters); kept for the common layer signature.
        name: the layer's name (default: derived from the class name).

    Shape:
        - Input: ``(N, *)``, any shape.
        - Output: the same shape.

    Example::

        >>> import numpy as np
        >>> layer = ReLU()
        >>> layer.build((3,), dtype="float64")
        (3,)
        >>> layer.forward(np.array([[-1.0, 0.0, 2.0]])).tolist()
        [[0.0, 0.0, 2.0]]
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        y, self._ctx = get_backend().relu(x)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return get_backend().relu_backward(self._ctx, grad_out)


class LeakyReLU(Layer):
    r"""Leaky rectifier: a small slope ``a`` (``negative_slope``) instead of zero for negative inputs.

    .. math:: y = \begin{cases} x & x > 0 \\ a x & x \le 0 \end{cases}, \qquad
              \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y} \cdot (1 \text{ or } a)

    Any shape. The slope at exactly 0 is ``a`` (as in PyTorch); default ``a = 0.01`` (PyTorch's).

    Args:
        negative_slope: the slope ``a`` for inputs at or below 0.

    Shape:
        - Input: ``(N, *)``, any shape.
        - Output: the same shape.

    Example::

        >>> import numpy as np
        >>> layer = LeakyReLU(0.5)
        >>> layer.build((3,), dtype="float64")
        (3,)
        >>> layer.forward(np.array([[-1.0, 0.0, 2.0]])).tolist()
        [[-0.5, 0.0, 2.0]]
    """

    def __init__(self, negative_slope: float = 0.01, *, trainable: bool = True, name: str | None = None) -> None:
        super().__init__(trainable=trainable, name=name)
        self.negative_slope = as_float(negative_slope, "negative_slope", self.name, low=0.0)

    def get_config(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        self._slope = np.where(x > 0, 1.0, self.negative_slope).astype(x.dtype)
        return x * self._slope

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * self._slope


class GELU(Layer):
    r"""Gaussian error linear unit (Hendrycks & Gimpel, 2016), any shape: ``x`` weighted by ``Φ(x)``.

    .. math:: y = x\,\Phi(x) = \tfrac{x}{2}\big(1 + \operatorname{erf}(x/\sqrt 2)\big), \qquad
              \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\big(\Phi(x) + x\,\varphi(x)\big)

    With ``approximate="tanh"``, ``Φ(x)`` is replaced by ``½(1 + tanh(√(2/π)(x + 0.044715 x³)))``
    (the form GPT-2 and BERT were trained with), and the backward differentiates that form exactly.
    The names and both formulas are PyTorch's (``torch.nn.GELU(approximate=...)``); Keras spells the
    option ``approximate=True/False``. The backend computes both (``gelu``): the NumPy backend's exact
    form takes ``erf`` from SciPy (installed with scikit-learn, which minidl requires), the ``fast``
    backend compiles its own for float32 (see :mod:`minidl.backend.fast_sequence`).

    Args:
        approximate: ``"none"`` (exact, the default) or ``"tanh"``.

    Shape:
        - Input: ``(N, *)``, any shape.
        - Output: the input's shape.

    Example::

        >>> layer = GELU()
        >>> layer.build((3,), dtype="float64")
        (3,)
        >>> layer.forward(np.array([[-1.0, 0.0, 1.0]])).round(4)
        array([[-0.1587,  0.    ,  0.8413]])
    """

    def __init__(self, approximate: str = "none", *, trainable: bool = True, name: str | None = None) -> None:
        super().__init__(trainable=trainable, name=name)
        if approximate not in ("none", "tanh"):
            raise ValueError(f'{self.name}: approximate must be "none" or "tanh", got {approximate!r}')
        self.approximate = approximate

    def get_config(self) -> dict[str, Any]:
        return {"approximate": self.approximate}

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        y, self._ctx = get_backend().gelu(x, self.approximate)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return get_backend().gelu_backward(self._ctx, grad_out)




class Tanh(Layer):
    r"""Hyperbolic tangent, any shape.

    .. math:: y = \tanh x, \qquad \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\,(1 - y^2)

    Args:
        trainable: unused (the layer has no parameters); kept for the common layer signature.
        name: the layer's name (default: derived from the class name).

    Shape:
        - Input: ``(N, *)``, any shape.
        - Output: the same shape.

    Example::

        >>> import numpy as np
        >>> layer = Tanh()
        >>> layer.build((1,), dtype="float64")
        (1,)
        >>> layer.forward(np.array([[0.0]])).tolist()
        [[0.0]]
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        self._y = np.tanh(x)
        return self._y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * (1 - self._y * self._y)


class Sigmoid(Layer):
    r"""Logistic sigmoid, any shape.

    .. math:: y = \frac{1}{1 + e^{-x}} = e^{-\log(1 + e^{-x})}, \qquad
              \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\,y(1 - y)

    Computed in the second form with ``logaddexp``: no overflow for large ``|x|`` and full
    relative precision in the left tail (``x = -40`` gives ``4.2e-18``, not 0).

    Args:
        trainable: unused (the layer has no parameters); kept for the common layer signature.
        name: the layer's name (default: derived from the class name).

    Shape:
        - Input: ``(N, *)``, any shape.
        - Output: the same shape.

    Example::

        >>> import numpy as np
        >>> layer = Sigmoid()
        >>> layer.build((1,), dtype="float64")
        (1,)
        >>> layer.forward(np.array([[0.0]])).tolist()
        [[0.5]]
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        self._y = np.exp(-np.logaddexp(0, -x))
        return self._y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out * self._y * (1 - self._y)


class Identity(Layer):
    """``y = x``, any shape: a placeholder where a layer is optional (Keras' and PyTorch's ``Identity``).

    Args:
        trainable: unused (the layer has no parameters); kept for the common layer signature.
        name: the layer's name (default: derived from the class name).

    Shape:
        - Input: ``(N, *)``, any shape.
        - Output: the same shape.

    Example::

        >>> import numpy as np
        >>> layer = Identity()
        >>> layer.build((2,), dtype="float64")
        (2,)
        >>> layer.forward(np.array([[1.0, -2.0]])).tolist()
        [[1.0, -2.0]]
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        return x

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return grad_out


def log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """``log softmax(z)`` along ``axis``, shifted by the maximum so logits of ±1e4 stay finite."""
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax_backward(p: np.ndarray, grad_out: np.ndarray, axis: int = -1) -> np.ndarray:
    """Vector-Jacobian product of softmax: ``p ⊙ (g - Σ g ⊙ p)`` along ``axis``, for output ``p``."""
    return p * (grad_out - (grad_out * p).sum(axis=axis, keepdims=True))


class Softmax(Layer):
    r"""Softmax along one axis: turns scores into probabilities (for inference or a custom loss).

    .. math:: y_k = \frac{e^{x_k - \max_j x_j}}{\sum_j e^{x_j - \max_j x_j}}, \qquad
              \frac{\partial L}{\partial x} = y \odot \Big(g - \sum_k g_k y_k\Big)

    ``axis`` counts the batch axis as 0, like Keras (default ``-1``, the last); for NCHW
    images ``axis=1`` normalises over channels. To train a classifier end with
    :class:`~minidl.layers.SoftmaxCE` instead, whose fused gradient is more accurate.

    Args:
        axis: the axis to normalise over, counting the batch axis as 0 (default ``-1``, the last); not 0.

    Shape:
        - Input: ``(N, *)``, any shape with at least the ``axis``.
        - Output: the same shape; entries along ``axis`` sum to 1.

    Example::

        >>> import numpy as np
        >>> layer = Softmax()
        >>> layer.build((2,), dtype="float64")
        (2,)
        >>> layer.forward(np.array([[0.0, np.log(3.0)]])).round(6).tolist()
        [[0.25, 0.75]]
    """

    def __init__(self, axis: int = -1, *, trainable: bool = True, name: str | None = None) -> None:
        super().__init__(trainable=trainable, name=name)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or axis == 0:
            raise ValueError(f"{self.name}: axis must be a non-zero int (0 is the batch axis), got {axis!r}")
        self.axis = int(axis)

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis}

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        ndim = len(input_shape) + 1
        if not -ndim <= self.axis < ndim or self.axis % ndim == 0:
            raise ValueError(
                f"{self.name}: axis {self.axis} does not name a non-batch axis of inputs (N, "
                f"{', '.join(map(str, input_shape))})"
            )
        return tuple(input_shape)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        self._y = np.exp(log_softmax(x, self.axis))
        return self._y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return softmax_backward(self._y, grad_out, self.axis)
