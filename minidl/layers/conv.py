"""Convolution: ``Conv2D``, computed as one matrix product over an im2col view."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import kernels
from .base import Layer, Parameter, Shape, as_pair, check_bool


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
    laid out and blocked is :mod:`minidl.kernels`' business.

    Weights start He-normal (std ``sqrt(2 / (C·kh·kw))``), biases at zero.

    ``backward_params`` (what ``fit`` calls on a model's first layer, as nobody needs ``dL/dx``
    of the data) skips ``dX_col`` and col2im.
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
        if len(input_shape) != 3:
            raise ValueError(
                f"{self.name}: expects images (N, C, H, W), got per-sample shape {input_shape} "
                f"(batch shape (N, {', '.join(map(str, input_shape))}))"
            )
        _, h, w = input_shape
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
        self._pads, self._out_hw = self._geometry(input_shape)
        self._input_buffers: dict = {}  # the padded input (and a one-block X_col) kept for backward, reused step after step

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        f = self.filters
        oh, ow = self._out_hw
        self._xp = xp = kernels.pad_batch_innermost(x.transpose(1, 2, 3, 0), self._pads, self._input_buffers)
        out = kernels.conv_forward(xp, self.weight.data.reshape(f, -1), self.kernel_size, self.stride, self._out_hw,
                                   self._input_buffers)
        if self.bias is not None:
            out += self.bias.data[:, None]
        # The GEMM wrote (F, OH, OW, N): channels first, batch innermost. NCHW goes out as a view of it;
        # the layers that follow keep that layout, and backward gets its gradient in it for free.
        return out.reshape(f, oh, ow, x.shape[0]).transpose(3, 0, 1, 2)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return self._backward(grad_out, input_grad=True)

    def backward_params(self, grad_out: np.ndarray) -> None:
        self._backward(grad_out, input_grad=False)

    def _backward(self, grad_out: np.ndarray, input_grad: bool) -> np.ndarray | None:
        f = self.filters
        g = grad_out.transpose(1, 2, 3, 0).reshape(f, -1)  # free when grad_out is batch-innermost
        if self.bias is not None and self.bias.trainable:
            np.add.reduce(g, axis=1, out=self.bias.grad)  # the ufunc itself: np.sum adds ~1 µs of wrapping
        if self.weight.trainable:
            kernels.conv_weight_grad(self._xp, g, self.kernel_size, self.stride, self._out_hw,
                                     self.weight.grad.reshape(f, -1), self._input_buffers)
        if not input_grad:
            return None
        oh, ow = self._out_hw
        g = g.reshape(f, oh, ow, -1)
        dx = kernels.conv_input_grad(g, self.weight.data, self.stride, self._pads, self.input_shape[1:])
        return dx.transpose(3, 0, 1, 2)
