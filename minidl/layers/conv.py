"""Convolution: ``Conv2D``, computed as one matrix product over an im2col view."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_backend
from .base import Layer, Parameter, Shape, as_pair, check_bool
from .images import image_shape


def conv_output_size(size: int, kernel: int, stride: int, pad_total: int) -> int:
    """Number of window positions along one axis (PyTorch's floor rule)."""
    return (size + pad_total - kernel) // stride + 1


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Keras/TensorFlow "same": output ``ceil(size / stride)``, the odd pixel of padding at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def resolve_padding(
    padding: Any, size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((top, bottom), (left, right))`` for an int, a pair, ``"same"`` or ``"valid"``."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        return same_padding(size[0], kernel[0], stride[0]), same_padding(size[1], kernel[1], stride[1])
    ph, pw = padding
    return (ph, ph), (pw, pw)


def check_padding(padding: Any, owner: str) -> Any:
    """Validate a padding argument; returns ``"same"``, ``"valid"`` or an ``(h, w)`` pair."""
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f'{owner}: padding must be an int, a pair, "same" or "valid", got {padding!r}')
        return padding
    return as_pair(padding, "padding", owner, minimum=0)


class Conv2D(Layer):
    r"""2-D convolution (cross-correlation, as in every framework).

    .. math::
        y_{n,f,i,j} = b_f + \sum_{c,u,v} W_{f,c,u,v}\; x^{pad}_{n,c,\,i s_h + u,\,j s_w + v}

    Shapes: ``x`` (N, C, H, W) → ``y`` (N, F, OH, OW) with
    ``OH = (H + pad_h - kh) // s_h + 1``; ``weight`` (F, C, kh, kw), ``bias`` (F,).

    The windows of the padded input are laid out as a matrix ``X_col`` of shape
    (C·kh·kw, OH·OW·N) (im2col), so forward is ``W_mat @ X_col`` and backward is
    ``dW = dY @ X_colᵀ``, ``db = Σ dY``, ``dX_col = W_matᵀ @ dY`` folded back onto
    the image by adding one shifted slice per kernel offset (col2im). How those products are
    laid out, blocked and threaded is the backend's business (:mod:`minidl.backend`).

    Weights start He-normal (std ``sqrt(2 / (C·kh·kw))``), biases at zero.

    ``backward_params`` (what ``fit`` calls on a model's first layer, as nobody needs ``dL/dx``
    of the data) skips ``dX_col`` and col2im.

    Args:
        filters: the number of output channels ``F``.
        kernel_size: window height and width, an int or ``(kh, kw)``.
        stride: step between windows, an int or ``(s_h, s_w)``.
        padding: zeros added on each side, an int, ``(p_h, p_w)``, ``"valid"`` (none) or ``"same"``
            (output ``ceil(H / s_h)`` by ``ceil(W / s_w)``).
        use_bias: add the per-filter bias ``b``.

    Shape:
        - Input: ``(N, C, H, W)``.
        - Output: ``(N, F, OH, OW)``.
        - ``weight``: ``(F, C, kh, kw)``; ``bias``: ``(F,)``.

    Example::

        >>> import numpy as np
        >>> conv = Conv2D(4, 3, padding="same")
        >>> conv.build((1, 8, 8))
        (4, 8, 8)
        >>> conv.forward(np.zeros((2, 1, 8, 8), np.float32)).shape
        (2, 4, 8, 8)
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        use_bias: bool = True,
        *,
        trainable: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__(trainable=trainable, name=name)
        if not isinstance(filters, (int, np.integer)) or isinstance(filters, bool) or filters < 1:
            raise ValueError(f"{self.name}: filters must be a positive int, got {filters!r}")
        self.filters = int(filters)
        self.kernel_size = as_pair(kernel_size, "kernel_size", self.name)
        self.stride = as_pair(stride, "stride", self.name)
        self.padding = check_padding(padding, self.name)
        self.use_bias = check_bool(use_bias, "use_bias", self.name)
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None

    def get_config(self) -> dict[str, Any]:
        return {
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "use_bias": self.use_bias,
        }

    def _geometry(self, input_shape: Shape) -> tuple[tuple[tuple[int, int], tuple[int, int]], tuple[int, int]]:
        _, h, w = image_shape(input_shape, self.name)
        pads = resolve_padding(self.padding, (h, w), self.kernel_size, self.stride)
        hp, wp = h + sum(pads[0]), w + sum(pads[1])
        kh, kw = self.kernel_size
        if kh > hp or kw > wp:
            raise ValueError(
                f"{self.name}: kernel {self.kernel_size} is bigger than its padded input "
                f"{(hp, wp)} (input shape {input_shape}, padding {self.padding!r})"
            )
        out = (conv_output_size(h, kh, self.stride[0], sum(pads[0])),
               conv_output_size(w, kw, self.stride[1], sum(pads[1])))
        return pads, out

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        _, (oh, ow) = self._geometry(input_shape)
        return (self.filters, oh, ow)

    def create_parameters(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> None:
        c = input_shape[0]
        kh, kw = self.kernel_size
        std = np.sqrt(2.0 / (c * kh * kw))
        self.weight = Parameter((rng.standard_normal((self.filters, c, kh, kw)) * std).astype(dtype))
        self.bias = Parameter(np.zeros(self.filters, dtype=dtype)) if self.use_bias else None
        self._pads, _ = self._geometry(input_shape)
        self._ctx = None  # what the backend keeps for backward; its arrays are reused step after step

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        assert self.weight is not None  # built
        bias = None if self.bias is None else self.bias.data
        y, self._ctx = get_backend().conv2d(x, self.weight.data, bias, self.stride, self._pads, self._ctx)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        dx = self._backward(grad_out, input_grad=True)
        assert dx is not None  # input_grad=True asks the backend for it
        return dx

    def backward_params(self, grad_out: np.ndarray) -> None:
        self._backward(grad_out, input_grad=False)

    def _backward(self, grad_out: np.ndarray, input_grad: bool) -> np.ndarray | None:
        assert self.weight is not None  # built
        need_bias = self.bias is not None and self.bias.trainable
        dx, dweight, dbias = get_backend().conv2d_backward(self._ctx, grad_out, input_grad, self.weight.trainable,
                                                           need_bias)
        if dweight is not None:
            self.weight.grad[...] = dweight
        if dbias is not None and self.bias is not None:
            self.bias.grad[...] = dbias
        return dx
