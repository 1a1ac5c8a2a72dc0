"""Convolution: ``Conv2D``, computed as one matrix product over an im2col view."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .base import Layer, Parameter, Shape, as_pair


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


def window_view(xp: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], out: tuple[int, int]) -> np.ndarray:
    """Read-only view ``(N, C, kh, kw, OH, OW)`` of every window of ``xp`` (N, C, H, W); no copy."""
    n, c = xp.shape[:2]
    s0, s1, s2, s3 = xp.strides
    return as_strided(
        xp,
        shape=(n, c, kernel[0], kernel[1], out[0], out[1]),
        strides=(s0, s1, s2, s3, s2 * stride[0], s3 * stride[1]),
        writeable=False,
    )


def pad_images(x: np.ndarray, pads: tuple[tuple[int, int], tuple[int, int]], value: float = 0.0) -> np.ndarray:
    if pads == ((0, 0), (0, 0)):
        return x
    return np.pad(x, ((0, 0), (0, 0), *pads), constant_values=value)


class Conv2D(Layer):
    r"""2-D convolution (cross-correlation, as in every framework).

    .. math::
        y_{n,f,i,j} = b_f + \sum_{c,u,v} W_{f,c,u,v}\; x^{pad}_{n,c,\,i s_h + u,\,j s_w + v}

    Shapes: ``x`` (N, C, H, W) → ``y`` (N, F, OH, OW) with
    ``OH = (H + pad_h - kh) // s_h + 1``; ``weight`` (F, C, kh, kw), ``bias`` (F,).

    The windows of the padded input are laid out as a matrix ``X_col`` of shape
    (C·kh·kw, N·OH·OW), so forward is ``W_mat @ X_col`` and backward is
    ``dW = dY @ X_colᵀ``, ``db = Σ dY``, ``dX_col = W_matᵀ @ dY`` folded back onto
    the image by adding one shifted slice per kernel offset (col2im).

    Weights start He-normal (std ``sqrt(2 / (C·kh·kw))``), biases at zero.
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
        self.use_bias = bool(use_bias)
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

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        n = x.shape[0]
        f = self.filters
        oh, ow = self._out_hw
        windows = window_view(pad_images(x, self._pads), self.kernel_size, self.stride, self._out_hw)
        # (C, kh, kw, N, OH, OW): rows of X_col are kernel taps, columns are output pixels.
        cols = windows.transpose(1, 2, 3, 0, 4, 5).reshape(-1, n * oh * ow)
        out = self.weight.data.reshape(f, -1) @ cols
        if self.bias is not None:
            out += self.bias.data[:, None]
        self._cols = cols
        self._n = n
        # The GEMM writes channels-major (F, N, OH, OW); hand NCHW out as a view, not a copy.
        return out.reshape(f, n, oh, ow).transpose(1, 0, 2, 3)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        f = self.filters
        n = self._n
        c = self.input_shape[0]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        oh, ow = self._out_hw
        g = grad_out.transpose(1, 0, 2, 3).reshape(f, -1)
        if self.weight.trainable:
            np.matmul(g, self._cols.T, out=self.weight.grad.reshape(f, -1))
        if self.bias is not None and self.bias.trainable:
            np.sum(g, axis=1, out=self.bias.grad)
        dcols = (self.weight.data.reshape(f, -1).T @ g).reshape(c, kh, kw, n, oh, ow)
        (pt, pb), (pl, pr) = self._pads
        _, h, w = self.input_shape
        dxp = np.zeros((c, n, h + pt + pb, w + pl + pr), dtype=grad_out.dtype)
        for u in range(kh):
            for v in range(kw):
                dxp[:, :, u:u + sh * (oh - 1) + 1:sh, v:v + sw * (ow - 1) + 1:sw] += dcols[:, u, v]
        return dxp.transpose(1, 0, 2, 3)[:, :, pt:pt + h, pl:pl + w]
