"""Pooling over the time axis of sequences ``(N, T, C)``: ``MaxPool1D``, ``GlobalAvgPool1D``, ``GlobalMaxPool1D``.

Sequences are ``(N, T, C)`` (batch, time, channels): Keras's channels-last layout and PyTorch's
``batch_first=True``. The global pools honour a sequence mask (they pool the valid steps only).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Layer, Shape, as_int
from .conv1d import check_padding_1d, padding_1d, scatter_windows, windows
from .masking import check_mask, reject_mask

__all__ = ["MaxPool1D", "GlobalAvgPool1D", "GlobalMaxPool1D"]


def _check_sequences(input_shape: Shape, owner: str) -> None:
    if len(input_shape) != 2:
        raise ValueError(f"{owner}: expects sequences (N, T, C), got per-sample shape {input_shape}")


class MaxPool1D(Layer):
    """Max over windows of ``pool_size`` steps, per channel, along the time axis of ``(N, T, C)``.

    Windows that do not fit at the end are dropped (PyTorch's floor rule); padding counts as
    ``-inf``. The gradient flows to the arg-max of each window (the first one on a tie, as
    PyTorch's); overlapping windows add up. A sequence mask cannot follow (the pooled steps no
    longer line up with the mask's): one arriving is a ``ValueError``.

    Args:
        pool_size: window length ``k`` in steps.
        stride: step between windows; ``None`` (default) means ``pool_size``.
        padding: ``"valid"`` (none), ``"same"`` (Keras's: ``T_out = ceil(T / stride)``, the odd step
            at the end) or an int ``p <= pool_size // 2`` of ``-inf`` steps on each side (PyTorch's).

    Shape:
        - Input: ``(N, T, C)``.
        - Output: ``(N, T_out, C)`` with ``T_out = (T + pad_left + pad_right - k) // stride + 1``.

    Example::

        >>> import numpy as np
        >>> pool = MaxPool1D(2)
        >>> pool.build((6, 3))
        (3, 3)
        >>> pool.forward(np.arange(18, dtype=np.float32).reshape(1, 6, 3))[0, :, 0]
        array([ 3.,  9., 15.], dtype=float32)
    """

    def __init__(
        self,
        pool_size: int = 2,
        stride: int | None = None,
        padding: str | int = "valid",
        *,
        trainable: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__(trainable=trainable, name=name)
        self.pool_size = as_int(pool_size, "pool_size", self.name, minimum=1)
        self.stride = self.pool_size if stride is None else as_int(stride, "stride", self.name, minimum=1)
        self.padding = check_padding_1d(padding, self.name)
        if isinstance(self.padding, int) and self.padding > self.pool_size // 2:
            raise ValueError(f"{self.name}: padding must be at most half the pool size {self.pool_size}, "
                             f"got {padding!r}")

    def get_config(self) -> dict[str, Any]:
        return {"pool_size": self.pool_size, "stride": self.stride, "padding": self.padding}

    def _pads(self, input_shape: Shape) -> tuple[int, int]:
        _check_sequences(input_shape, self.name)
        pads = padding_1d(self.padding, input_shape[0], self.pool_size, self.stride)
        if self.pool_size > input_shape[0] + sum(pads):
            raise ValueError(f"{self.name}: pool_size {self.pool_size} is longer than the {input_shape[0] + sum(pads)} "
                             f"steps of the padded input (input shape {input_shape}, padding {self.padding!r})")
        return pads

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        left, right = self._pads(input_shape)
        return ((input_shape[0] + left + right - self.pool_size) // self.stride + 1, input_shape[1])

    def compute_mask(self, x: np.ndarray, mask: np.ndarray | None) -> None:
        reject_mask(mask, self.name, "pooling changes the time axis, so the mask no longer lines up with it")
        return None

    def forward(self, x: np.ndarray, training: bool = False, mask: np.ndarray | None = None) -> np.ndarray:
        self.check_input(x)
        assert self.input_shape is not None  # built
        reject_mask(mask, self.name, "pooling changes the time axis, so the mask no longer lines up with it")
        left, right = self._pads(self.input_shape)
        xp = np.pad(x, ((0, 0), (left, right), (0, 0)), constant_values=-np.inf) if left or right else x
        win = windows(xp, self.pool_size, self.stride, 1)
        self._argmax = win.argmax(axis=-1)[..., None]  # argmax: the first maximum wins a tie
        self._padded_length = xp.shape[1]
        return np.take_along_axis(win, self._argmax, axis=-1)[..., 0]

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        assert self.input_shape is not None  # built
        dwin = np.zeros((*grad_out.shape, self.pool_size), dtype=grad_out.dtype)
        np.put_along_axis(dwin, self._argmax, grad_out[..., None], axis=-1)
        dxp = scatter_windows(dwin, self._padded_length, self.stride, 1)
        left = padding_1d(self.padding, self.input_shape[0], self.pool_size, self.stride)[0]
        return dxp[:, left:left + self.input_shape[0]]


class _GlobalPool1D(Layer, register=False):
    """What both global pools share: the shapes, and the mask they consume (an abstract base, not registered)."""

    supports_masking = True

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        _check_sequences(input_shape, self.name)
        return (input_shape[1],)

    def compute_mask(self, x: np.ndarray, mask: np.ndarray | None) -> None:
        """No mask after pooling: the time axis is gone."""
        return None


class GlobalAvgPool1D(_GlobalPool1D, Layer):
    """Mean over the time axis: ``(N, T, C) -> (N, C)``, over the valid steps only when a mask is given.

    With a mask (bool ``(N, T)``, True at valid steps) each row is averaged over its valid steps,
    whatever the padded steps hold; a row with no valid step gives zeros (and passes no gradient).
    The output carries no mask.

    Args:
        trainable: unused (the layer has no parameters); kept for the common layer signature.
        name: the layer's name (default: derived from the class name).

    Shape:
        - Input: ``(N, T, C)``; mask ``(N, T)`` optional.
        - Output: ``(N, C)``.

    Example::

        >>> import numpy as np
        >>> pool = GlobalAvgPool1D()
        >>> pool.build((3, 2))
        (2,)
        >>> x = np.array([[[1, 2], [3, 4], [99, 99]]], np.float32)
        >>> pool.forward(x, mask=np.array([[True, True, False]]))
        array([[2., 3.]], dtype=float32)
    """

    def forward(self, x: np.ndarray, training: bool = False, mask: np.ndarray | None = None) -> np.ndarray:
        self.check_input(x)
        self._mask = check_mask(mask, x, self.name)
        if self._mask is None:
            return x.mean(axis=1)
        # np.where, not x * mask: padded steps holding inf or NaN must not reach the valid ones
        self._scale = 1.0 / np.maximum(self._mask.sum(axis=1, keepdims=True), 1).astype(x.dtype)
        return np.where(self._mask[..., None], x, 0).sum(axis=1) * self._scale

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        assert self.input_shape is not None  # built
        n, (t, c) = grad_out.shape[0], self.input_shape
        if self._mask is None:
            return np.broadcast_to(grad_out[:, None, :] / grad_out.dtype.type(t), (n, t, c)).copy()
        return np.where(self._mask[..., None], (grad_out * self._scale)[:, None, :], grad_out.dtype.type(0))


class GlobalMaxPool1D(_GlobalPool1D, Layer):
    """Max over the time axis: ``(N, T, C) -> (N, C)``, over the valid steps only when a mask is given.

    The gradient flows to the arg-max step of each channel (the first one on a tie; ``torch.amax``
    splits a tie evenly instead: the two agree on tie-free inputs). With a mask
    (bool ``(N, T)``, True at valid steps) padded steps never win; a row with no valid step gives
    zeros (and passes no gradient). The output carries no mask.

    Args:
        trainable: unused (the layer has no parameters); kept for the common layer signature.
        name: the layer's name (default: derived from the class name).

    Shape:
        - Input: ``(N, T, C)``; mask ``(N, T)`` optional.
        - Output: ``(N, C)``.

    Example::

        >>> import numpy as np
        >>> pool = GlobalMaxPool1D()
        >>> pool.build((3, 2))
        (2,)
        >>> x = np.array([[[1, 5], [3, 4], [99, 99]]], np.float32)
        >>> pool.forward(x, mask=np.array([[True, True, False]]))
        array([[3., 5.]], dtype=float32)
    """

    def forward(self, x: np.ndarray, training: bool = False, mask: np.ndarray | None = None) -> np.ndarray:
        self.check_input(x)
        mask = check_mask(mask, x, self.name)
        if mask is not None:
            x = np.where(mask[..., None], x, -np.inf)
        self._argmax = x.argmax(axis=1)[:, None, :]
        out = np.take_along_axis(x, self._argmax, axis=1)[:, 0]
        # rows without a valid step: zeros, and no gradient (their arg-max is a padded step)
        self._valid = None if mask is None else mask.any(axis=1, keepdims=True)
        return out if self._valid is None else np.where(self._valid, out, out.dtype.type(0))

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        assert self.input_shape is not None  # built
        g = grad_out if self._valid is None else np.where(self._valid, grad_out, grad_out.dtype.type(0))
        dx = np.zeros((grad_out.shape[0], *self.input_shape), dtype=grad_out.dtype)
        np.put_along_axis(dx, self._argmax, g[:, None, :], axis=1)
        return dx
