"""1-D convolution over sequences: ``Conv1D``, and the window helpers ``MaxPool1D`` shares.

Sequences are ``(N, T, C)`` (batch, time, channels): Keras's channels-last layout and PyTorch's
``batch_first=True``. (PyTorch's ``nn.Conv1d`` takes ``(N, C, T)``; transpose to compare.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .base import Layer, Parameter, Shape, as_int, check_bool
from .masking import reject_mask

__all__ = ["Conv1D", "check_padding_1d", "padding_1d", "scatter_windows", "windows"]


def check_padding_1d(padding: Any, owner: str) -> str | int:
    """``"valid"``, ``"same"`` or an int ``>= 0``; a ``ValueError``/``TypeError`` quoting anything else."""
    if isinstance(padding, str):
        if padding not in ("valid", "same"):
            raise ValueError(f'{owner}: padding must be "valid", "same" or an int >= 0, got {padding!r}')
        return padding
    return as_int(padding, "padding", owner)


def padding_1d(padding: str | int, length: int, window: int, stride: int) -> tuple[int, int]:
    """``(left, right)`` padding of a sequence of ``length`` steps for windows spanning ``window`` steps.

    ``"same"`` is Keras's: ``ceil(length / stride)`` outputs, the odd step of padding at the end
    (which is also PyTorch's ``padding="same"``, defined for stride 1 only).
    """
    if padding == "valid":
        return 0, 0
    if padding == "same":
        out = -(-length // stride)
        total = max((out - 1) * stride + window - length, 0)
        return total // 2, total - total // 2
    if isinstance(padding, str):  # the layers check it first; a caller of this helper may not
        raise ValueError(f'padding must be "valid", "same" or an int, got {padding!r}')
    return padding, padding


def windows(xp: np.ndarray, kernel_size: int, stride: int, dilation: int) -> np.ndarray:
    """A view ``(N, T_out, C, kernel_size)`` of the windows of a padded ``(N, T_p, C)`` batch: no copy."""
    span = (kernel_size - 1) * dilation + 1
    return sliding_window_view(xp, span, axis=1)[:, ::stride, :, ::dilation]


def scatter_windows(dwin: np.ndarray, padded_length: int, stride: int, dilation: int) -> np.ndarray:
    """Adjoint of :func:`windows`: add each window's gradient ``(N, T_out, C, k)`` back onto ``(N, T_p, C)``.

    One strided slice per kernel tap (``k`` slices, not one per position): windows may overlap.
    """
    n, t_out, c, k = dwin.shape
    dxp = np.zeros((n, padded_length, c), dtype=dwin.dtype)
    for j in range(k):
        start = j * dilation
        dxp[:, start:start + stride * (t_out - 1) + 1:stride] += dwin[..., j]
    return dxp


class Conv1D(Layer):
    r"""1-D convolution over the time axis of ``(N, T, C_in)`` sequences (cross-correlation, as everywhere).

    .. math:: y_{n,t,f} = b_f + \sum_{c,j} W_{f,c,j}\; x^{pad}_{n,\,t s + j d,\,c}

    The windows of the padded input are a strided view ``(N, T_out, C_in, k)`` (no copy); forward
    is one matrix product of those windows, flattened to ``(N·T_out, C_in·k)``, with the weight;
    backward is ``dW = dYᵀ X_win``, ``db = Σ dY`` and ``dX_win = dY W`` added back onto the
    input with one strided slice per kernel tap.

    The weight has PyTorch's layout ``(filters, C_in, kernel_size)``; it starts He-normal
    (std ``sqrt(2 / (C_in·kernel_size))``, as ``Conv2D``), the bias at zero. A sequence mask cannot
    follow a convolution (it mixes neighbouring steps): one arriving is a ``ValueError``.

    Args:
        filters: number of output channels ``F``.
        kernel_size: window length ``k`` in steps.
        stride: step between windows.
        padding: ``"valid"`` (none), ``"same"`` (Keras's: ``T_out = ceil(T / stride)``, the odd
            step at the end; PyTorch's ``"same"`` for stride 1) or an int of zero steps on each side.
        dilation: spacing ``d`` between the taps of a window.
        use_bias: add a learned bias per filter.

    Shape:
        - Input: ``(N, T, C_in)`` (channels last, as Keras's ``Conv1D``).
        - Output: ``(N, T_out, F)`` with ``T_out = (T + pad_left + pad_right - d·(k - 1) - 1) // stride + 1``.

    Example::

        >>> import numpy as np
        >>> conv = Conv1D(8, 3, padding="same")
        >>> conv.build((10, 4), rng=np.random.default_rng(0))
        (10, 8)
        >>> conv.forward(np.ones((2, 10, 4), np.float32)).shape
        (2, 10, 8)
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int,
        stride: int = 1,
        padding: str | int = "valid",
        dilation: int = 1,
        use_bias: bool = True,
        *,
        trainable: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__(trainable=trainable, name=name)
        self.filters = as_int(filters, "filters", self.name, minimum=1)
        self.kernel_size = as_int(kernel_size, "kernel_size", self.name, minimum=1)
        self.stride = as_int(stride, "stride", self.name, minimum=1)
        self.padding = check_padding_1d(padding, self.name)
        self.dilation = as_int(dilation, "dilation", self.name, minimum=1)
        self.use_bias = check_bool(use_bias, "use_bias", self.name)
        self.weight: Parameter | None = None
        self.bias: Parameter | None = None

    def get_config(self) -> dict[str, Any]:
        return {"filters": self.filters, "kernel_size": self.kernel_size, "stride": self.stride,
                "padding": self.padding, "dilation": self.dilation, "use_bias": self.use_bias}

    @property
    def _span(self) -> int:
        return (self.kernel_size - 1) * self.dilation + 1

    def _pads(self, input_shape: Shape) -> tuple[int, int]:
        if len(input_shape) != 2:
            raise ValueError(f"{self.name}: expects sequences (N, T, C), got per-sample shape {input_shape}")
        length = input_shape[0]
        pads = padding_1d(self.padding, length, self._span, self.stride)
        if self._span > length + sum(pads):
            raise ValueError(f"{self.name}: a window spans {self._span} steps (kernel_size {self.kernel_size}, "
                             f"dilation {self.dilation}), more than the {length + sum(pads)} steps of the padded "
                             f"input (input shape {input_shape}, padding {self.padding!r})")
        return pads

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        left, right = self._pads(input_shape)
        return ((input_shape[0] + left + right - self._span) // self.stride + 1, self.filters)

    def create_parameters(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> None:
        c = input_shape[1]
        std = np.sqrt(2.0 / (c * self.kernel_size))
        self.weight = Parameter((rng.standard_normal((self.filters, c, self.kernel_size)) * std).astype(dtype))
        self.bias = Parameter(np.zeros(self.filters, dtype=dtype)) if self.use_bias else None

    def compute_mask(self, x: np.ndarray, mask: np.ndarray | None) -> None:
        reject_mask(mask, self.name, "a convolution mixes neighbouring steps, padded ones with valid ones")
        return None

    def forward(self, x: np.ndarray, training: bool = False, mask: np.ndarray | None = None) -> np.ndarray:
        self.check_input(x)
        assert self.input_shape is not None and self.weight is not None  # built
        reject_mask(mask, self.name, "a convolution mixes neighbouring steps, padded ones with valid ones")
        left, right = self._pads(self.input_shape)
        xp = np.pad(x, ((0, 0), (left, right), (0, 0))) if left or right else x
        win = windows(xp, self.kernel_size, self.stride, self.dilation)
        n, t_out = win.shape[:2]
        self._cols = win.reshape(n * t_out, -1)  # the one copy: (N·T_out, C·k), rows in (c, j) order as W's
        self._padded_length = xp.shape[1]
        out = self._cols @ self.weight.data.reshape(self.filters, -1).T
        if self.bias is not None:
            out += self.bias.data
        return out.reshape(n, t_out, self.filters)

    def backward_params(self, grad_out: np.ndarray) -> None:
        assert self.weight is not None  # built
        g = grad_out.reshape(-1, self.filters)
        if self.weight.trainable:
            np.matmul(g.T, self._cols, out=self.weight.grad.reshape(self.filters, -1))
        if self.bias is not None and self.bias.trainable:
            np.add.reduce(g, axis=0, out=self.bias.grad)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        assert self.weight is not None and self.input_shape is not None  # built
        self.backward_params(grad_out)
        n, t_out = grad_out.shape[:2]
        dwin = (grad_out.reshape(-1, self.filters) @ self.weight.data.reshape(self.filters, -1))
        dxp = scatter_windows(dwin.reshape(n, t_out, -1, self.kernel_size), self._padded_length,
                              self.stride, self.dilation)
        left = padding_1d(self.padding, self.input_shape[0], self._span, self.stride)[0]
        return dxp[:, left:left + self.input_shape[0]]
