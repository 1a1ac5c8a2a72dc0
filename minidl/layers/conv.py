"""Convolution: ``Conv2D``, computed as one matrix product over an im2col view."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

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


def im2col(
    xp: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], out: tuple[int, int], first_row: int = 0
) -> np.ndarray:
    """``X_col`` (C·kh·kw, OH·OW·N) of padded images stored batch-innermost, ``xp`` (C, H, W, N): one copy.

    Rows are kernel taps ``(c, u, v)``, columns output pixels ``(i, j, n)`` for the ``out[0]``
    output rows from ``first_row`` on. With the batch innermost, the copy's inner loop runs over
    N contiguous values instead of OW strided ones. The window view is built with the ``ndarray``
    constructor over ``xp``'s buffer: ``as_strided`` costs ~15x more in Python overhead, a sixth
    of a batch-1 step.
    """
    xp = np.ascontiguousarray(xp)
    c, _, _, n = xp.shape
    sc, sh, sw, sn = xp.strides
    windows = np.ndarray((c, kernel[0], kernel[1], out[0], out[1], n), xp.dtype, xp, first_row * stride[0] * sh,
                         (sc, sh, sw, sh * stride[0], sw * stride[1], sn))
    return windows.reshape(c * kernel[0] * kernel[1], out[0] * out[1] * n)


def matmul_wide(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, chunk: int = 4096) -> np.ndarray:
    """``a @ b`` (into ``out`` if given) for a small ``a`` (m, k) and a very wide ``b`` (k, L).

    OpenBLAS runs such products ~2x slower in one call than in column chunks of 4096 when
    ``a`` is tiny (measured for conv1: 6×25 · 25×50176, 25×6 · 6×50176), and no faster when
    it is not (16×150 · 150×25600): chunk only the first kind.
    """
    if a.shape[0] * a.shape[1] > 256 or b.shape[1] <= 2 * chunk:
        return np.matmul(a, b, out=out)
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    for s in range(0, b.shape[1], chunk):
        np.matmul(a, b[:, s:s + chunk], out=out[:, s:s + chunk])
    return out


def matmul_nt(a: np.ndarray, b: np.ndarray, out: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """``out = a @ b.T`` for long, thin ``a`` (m, L) and ``b`` (k, L): a weight gradient.

    Computed as ``(b @ a.T).T``, summed over column chunks of 4096. Measured with OpenBLAS on
    LeNet's shapes: that orientation is ~1.6x faster, and chunks make conv1's very long GEMM
    (6×50176 · 50176×25) ~3x faster than one call.
    """
    if a.shape[1] <= chunk // 4:  # small (batch-1 steps): one call, fewest Python-level operations
        return np.matmul(a, b.T, out=out)
    acc = np.matmul(b[:, :chunk], a[:, :chunk].T)
    if a.shape[1] > chunk:
        part = np.empty_like(acc)
        for s in range(chunk, a.shape[1], chunk):
            acc += np.matmul(b[:, s:s + chunk], a[:, s:s + chunk].T, out=part)
    out[...] = acc.T
    return out


def pad_images(x: np.ndarray, pads: tuple[tuple[int, int], tuple[int, int]], value: float = 0.0) -> np.ndarray:
    if pads == ((0, 0), (0, 0)):
        return x
    return np.pad(x, ((0, 0), (0, 0), *pads), constant_values=value)


#: Inference forwards unfold about this many X_col elements at a time (4 MB in float32, at least
#: one output row): bounds predict's memory, and measured ~10% faster than one X_col per batch of
#: 256 for LeNet (and than 1 MB or 16 MB blocks), with 1 or 2 threads.
INFERENCE_BLOCK = 2**20


class Conv2D(Layer):
    r"""2-D convolution (cross-correlation, as in every framework).

    .. math::
        y_{n,f,i,j} = b_f + \sum_{c,u,v} W_{f,c,u,v}\; x^{pad}_{n,c,\,i s_h + u,\,j s_w + v}

    Shapes: ``x`` (N, C, H, W) → ``y`` (N, F, OH, OW) with
    ``OH = (H + pad_h - kh) // s_h + 1``; ``weight`` (F, C, kh, kw), ``bias`` (F,).

    The windows of the padded input are laid out as a matrix ``X_col`` of shape
    (C·kh·kw, OH·OW·N), so forward is ``W_mat @ X_col`` and backward is
    ``dW = dY @ X_colᵀ``, ``db = Σ dY``, ``dX_col = W_matᵀ @ dY`` folded back onto
    the image by adding one shifted slice per kernel offset (col2im).

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

    def _padded(self, x: np.ndarray) -> np.ndarray:
        """``x`` zero-padded and stored batch-innermost, (C, H + pads, W + pads, N), C-contiguous."""
        (pt, pb), (pl, pr) = self._pads
        xt = x.transpose(1, 2, 3, 0)
        if pt == pb == pl == pr == 0:
            return xt  # im2col copies it if needed; after a Conv2D, ReLU or MaxPool2D it is contiguous already
        c, h, w, n = xt.shape
        shape = (c, h + pt + pb, w + pl + pr, n)
        buf = getattr(self, "_pad_buffer", None)
        if buf is None or buf.shape != shape or buf.dtype != x.dtype:
            # The border stays zero between calls: only the interior is ever written.
            buf = self._pad_buffer = np.zeros(shape, dtype=x.dtype)
        buf[:, pt:pt + h, pl:pl + w] = xt
        return buf

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        n = x.shape[0]
        f = self.filters
        oh, ow = self._out_hw
        self._x, self._n = x, n
        xp = self._padded(x)
        weight = self.weight.data.reshape(f, -1)
        # The GEMM writes (F, OH, OW, N): channels first, batch innermost. NCHW goes out as a view
        # of it; ReLU and MaxPool2D keep that layout, so the next Conv2D reads it without a copy
        # and backward gets its gradient in it for free.
        # Inference unfolds a few output rows at a time (each a contiguous block of columns, so the
        # GEMM writes straight into place): X_col stays small, and nothing is kept for backward,
        # which rebuilds X_col if called. Training keeps the whole X_col for the weight gradient.
        rows = oh if training else INFERENCE_BLOCK // max(1, weight.shape[1] * ow * n)
        if rows >= oh:
            cols = im2col(xp, self.kernel_size, self.stride, self._out_hw)
            out = matmul_wide(weight, cols)
        else:
            rows = max(rows, 1)
            out = np.empty((f, oh * ow * n), dtype=x.dtype)
            for i in range(0, oh, rows):
                block = slice(i * ow * n, min(i + rows, oh) * ow * n)
                cols = im2col(xp, self.kernel_size, self.stride, (min(rows, oh - i), ow), first_row=i)
                matmul_wide(weight, cols, out=out[:, block])
        if self.bias is not None:
            out += self.bias.data[:, None]
        self._cols = cols if training else None
        return out.reshape(f, oh, ow, n).transpose(3, 0, 1, 2)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return self._backward(grad_out, input_grad=True)

    def backward_params(self, grad_out: np.ndarray) -> None:
        self._backward(grad_out, input_grad=False)

    def _backward(self, grad_out: np.ndarray, input_grad: bool) -> np.ndarray | None:
        f = self.filters
        n = self._n
        c = self.input_shape[0]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        oh, ow = self._out_hw
        g = grad_out.transpose(1, 2, 3, 0).reshape(f, -1)  # free when grad_out is batch-innermost
        if self.weight.trainable:
            cols = self._cols
            if cols is None:  # after an inference forward
                cols = im2col(self._padded(self._x), self.kernel_size, self.stride, self._out_hw)
            matmul_nt(g, cols, out=self.weight.grad.reshape(f, -1))
        if self.bias is not None and self.bias.trainable:
            np.add.reduce(g, axis=1, out=self.bias.grad)  # the ufunc itself: np.sum adds ~1 µs of wrapping
        if not input_grad:
            return None
        dcols = matmul_wide(self.weight.data.reshape(f, -1).T, g).reshape(c, kh, kw, oh, ow, n)
        (pt, pb), (pl, pr) = self._pads
        _, h, w = self.input_shape
        # col2im: add each kernel offset's slice back; with stride 1 each add is one contiguous
        # run of OW·N values per row.
        dxp = np.zeros((c, h + pt + pb, w + pl + pr, n), dtype=grad_out.dtype)
        for u in range(kh):
            for v in range(kw):
                dxp[:, u:u + sh * (oh - 1) + 1:sh, v:v + sw * (ow - 1) + 1:sw] += dcols[:, u, v]
        return dxp[:, pt:pt + h, pl:pl + w].transpose(3, 0, 1, 2)
