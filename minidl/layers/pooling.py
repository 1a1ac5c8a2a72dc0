"""Pooling: ``MaxPool2D``, ``AvgPool2D``, ``GlobalAvgPool2D``."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np

from .. import kernels
from .base import Layer, Shape, as_pair
from .conv import conv_output_size


#: Inputs of at most this many elements take the few-calls path (measured: faster at 144 elements, slower at 4,608).
SMALL_INPUT = 1024


class _PoolWindows:
    """What every sliding-window pooling layer shares: its arguments and its output shape.

    ``pool_size``, ``stride`` (default ``pool_size``) and ``padding`` (at most half the window)
    are ints or ``(h, w)`` pairs; windows that do not fit at the edge are dropped. A mixin
    rather than a ``Layer`` subclass, so that it is not registered as a layer of its own.
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
        if any(p > k // 2 for p, k in zip(self.padding, self.pool_size)):
            raise ValueError(
                f"{self.name}: padding must be at most half the pool size {self.pool_size}, got {padding!r}"
            )

    def get_config(self) -> dict[str, Any]:
        return {"pool_size": self.pool_size, "stride": self.stride, "padding": self.padding}

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 3:
            raise ValueError(f"{self.name}: expects images (N, C, H, W), got per-sample shape {input_shape}")
        c, h, w = input_shape
        (kh, kw), (ph, pw) = self.pool_size, self.padding
        if kh > h + 2 * ph or kw > w + 2 * pw:
            raise ValueError(
                f"{self.name}: pool window {self.pool_size} is bigger than its padded input "
                f"{(h + 2 * ph, w + 2 * pw)} (input shape {input_shape})"
            )
        return (c, conv_output_size(h, kh, self.stride[0], 2 * ph), conv_output_size(w, kw, self.stride[1], 2 * pw))

    @cached_property
    def _offsets(self) -> list[tuple[int, tuple[slice, ...]]]:
        """The ``kh·kw`` window offsets of the built geometry, made at the first forward pass, not at build:
        a padded window may be far larger than its input (``MaxPool2D(20001, padding=10000)`` on 1×1 images
        has 4·10⁸ offsets), and building, which ``minidl.load`` does to a file's architecture, must cost
        nothing of the kind."""
        return kernels.window_offsets(self.pool_size, self.stride, self.output_shape[1:])


class MaxPool2D(_PoolWindows, Layer):
    r"""Max over each ``kh × kw`` window, per channel.

    .. math:: y_{n,c,i,j} = \max_{u<k_h,\,v<k_w} x^{pad}_{n,c,\,i s_h+u,\,j s_w+v}

    Shapes: (N, C, H, W) → (N, C, OH, OW), ``OH = (H + 2p - kh) // s + 1`` (windows
    that do not fit at the edge are dropped, as in PyTorch). Padding counts as
    ``-inf``. ``stride`` defaults to ``pool_size``.

    The gradient flows to the arg-max of each window (the first one in row-major order on
    a tie); overlapping windows add up. Three paths, all giving the same numbers:

    - windows that tile the input (stride = window, no padding): ``np.maximum`` over the
      ``kh·kw`` strided sub-views, and ``g * mask`` written into each sub-view of ``dx``;
    - the same, when the input is small (``SMALL_INPUT``) and covered by whole windows: one
      ``argmax`` over a (N, C, OH, OW, kh·kw) copy, fewer NumPy calls for batch-1 steps;
    - anything else (overlap, padding): the sub-view loop over the padded input, recording
      the arg-max offset, and backward adding ``g`` into each overlapping sub-view.
    """

    def create_parameters(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> None:
        """No parameters: which forward path the geometry allows (O(1), whatever the window)."""
        _, h, w = input_shape
        _, oh, ow = self.compute_output_shape(input_shape)
        kh, kw = self.pool_size
        # windows that tile the input (stride = window, no padding) never overlap ...
        self._tiled = self.stride == self.pool_size and self.padding == (0, 0)
        # ... and may cover all of it, or drop a few rows/columns at the edges
        self._covered = oh * kh == h and ow * kw == w

    @cached_property
    def _window_index(self) -> np.ndarray:
        """``0 .. kh·kw - 1``, for the small path's backward (made when first needed, as ``_offsets``)."""
        return np.arange(self.pool_size[0] * self.pool_size[1])

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        self._path = "general"
        if self._covered and self._tiled and x.size <= SMALL_INPUT:
            self._path = "small"
            return self._forward_small(x)
        if self._tiled:
            self._path = "tiled"
            self._x = x
            # np.maximum over the kh·kw strided sub-views: ~30x faster than a reshape + max(axis),
            # and the result keeps x's memory layout (batch-innermost after a Conv2D).
            self._out = kernels.max_of_views(x[idx] for _, idx in self._offsets)
            return self._out
        offsets = self._offsets
        ph, pw = self.padding
        xp = kernels.pad_images(x, ((ph, ph), (pw, pw)), value=-np.inf)
        out = xp[offsets[0][1]].copy()
        argmax = np.zeros(out.shape, dtype=np.uint8 if len(offsets) < 256 else np.int32)
        for k, idx in offsets[1:]:
            window = xp[idx]
            better = window > out  # strict: the first maximum wins a tie
            np.maximum(out, window, out=out)
            np.copyto(argmax, k, where=better)
        self._argmax = argmax
        self._padded_shape = xp.shape
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        if self._path == "small":
            return self._backward_small(grad_out)
        if self._path == "tiled":
            return self._backward_tiled(grad_out)
        ph, pw = self.padding
        dxp = np.zeros(self._padded_shape, dtype=grad_out.dtype)
        for k, idx in self._offsets:
            dxp[idx] += grad_out * (self._argmax == k)
        h, w = self.input_shape[1:]
        return dxp[:, :, ph:ph + h, pw:pw + w]

    def _forward_small(self, x: np.ndarray) -> np.ndarray:
        """Few windows (batch-1 steps): one argmax over a copy laid out (N, C, OH, OW, kh·kw).

        Four NumPy calls instead of ~3·kh·kw; on big inputs the strided sub-views win instead.
        """
        n, c = x.shape[:2]
        (kh, kw), (_, oh, ow) = self.pool_size, self.output_shape
        windows = x.reshape(n, c, oh, kh, ow, kw).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, oh, ow, kh * kw)
        self._argmax = windows.argmax(axis=-1)  # the first maximum on a tie, like the other paths
        return np.maximum.reduce(windows, axis=-1)

    def _backward_small(self, grad_out: np.ndarray) -> np.ndarray:
        n = grad_out.shape[0]
        (kh, kw), (c, oh, ow), (_, h, w) = self.pool_size, self.output_shape, self.input_shape
        dwindows = (self._argmax[..., None] == self._window_index) * grad_out[..., None]
        return dwindows.reshape(n, c, oh, ow, kh, kw).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)

    def _backward_tiled(self, grad_out: np.ndarray) -> np.ndarray:
        """Each input pixel is in at most one window: write ``g * mask`` per offset, no adding."""
        x, out = self._x, self._out
        if grad_out.strides != out.strides:
            # One copy into the layout of x (e.g. the NCHW gradient of a Flatten, for a batch-innermost
            # x) beats kh·kw element-wise passes over operands of different layouts (5-10x slower).
            grad_out = kernels.copy_like(out, grad_out)
        dx = np.empty_like(x) if self._covered else np.zeros_like(x)  # *_like keeps x's memory layout
        offsets = self._offsets
        kernels.unmax_first([x[idx] for _, idx in offsets], out, grad_out, [dx[idx] for _, idx in offsets])
        return dx


class AvgPool2D(_PoolWindows, Layer):
    r"""Mean over each ``kh × kw`` window, per channel.

    .. math:: y_{n,c,i,j} = \frac{1}{k_h k_w} \sum_{u<k_h,\,v<k_w} x^{pad}_{n,c,\,i s_h+u,\,j s_w+v}

    Shapes and arguments as :class:`MaxPool2D`: (N, C, H, W) → (N, C, OH, OW),
    ``OH = (H + 2p - kh) // s + 1``, ``stride`` defaults to ``pool_size``. Padding counts as
    zeros and the divisor is always ``kh·kw`` (PyTorch's default ``count_include_pad=True``).

    Forward averages a strided window view (no copy); backward spreads ``dY / (kh·kw)`` back
    over each window, one strided slice per window offset.
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        ph, pw = self.padding
        windows = kernels.window_view(kernels.pad_images(x, ((ph, ph), (pw, pw))), self.pool_size, self.stride, self.output_shape[1:])
        return windows.mean(axis=(2, 3))

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        (kh, kw), (ph, pw) = self.pool_size, self.padding
        c, h, w = self.input_shape
        share = grad_out / (kh * kw)
        dxp = np.zeros((grad_out.shape[0], c, h + 2 * ph, w + 2 * pw), dtype=grad_out.dtype)
        for _, idx in self._offsets:
            dxp[idx] += share
        return dxp[:, :, ph:ph + h, pw:pw + w]


class GlobalAvgPool2D(Layer):
    r"""Mean over all pixels of each channel: (N, C, H, W) → (N, C).

    .. math:: y_{n,c} = \frac{1}{HW} \sum_{i,j} x_{n,c,i,j}, \qquad
              \frac{\partial L}{\partial x_{n,c,i,j}} = \frac{1}{HW} \frac{\partial L}{\partial y_{n,c}}

    Replaces ``Flatten`` before the classifier in all-convolutional networks (Keras'
    ``GlobalAveragePooling2D``; PyTorch's ``AdaptiveAvgPool2d(1)`` followed by a flatten).
    """

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 3:
            raise ValueError(f"{self.name}: expects images (N, C, H, W), got per-sample shape {input_shape}")
        return (input_shape[0],)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        return x.mean(axis=(2, 3))

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        c, h, w = self.input_shape
        share = grad_out[:, :, None, None] / (h * w)
        return np.broadcast_to(share, (grad_out.shape[0], c, h, w)).copy()
