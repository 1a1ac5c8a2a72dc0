"""The ``fast`` backend: the NumPy backend with its memory-bound passes compiled by Numba, on every core.

``pip install "minidl[fast]"`` (Numba ≥ 0.68). The convolution products stay in ``numpy.matmul``
(BLAS, one thread each, on minidl's own pool, as in :mod:`minidl.backend.numpy`); what NumPy runs
on one core in several passes runs here in one compiled pass per direction, split into fixed
blocks of channels, rows of windows or elements:

- BatchNorm2D forward: the sums, the variance and the affine map per channel, reading ``x`` twice
  and writing ``y`` once (NumPy: five passes and a centred copy kept for backward); backward
  recomputes ``x - μ`` on the fly.
- MaxPool2D's backward over windows that tile the input (every pooling of minidl's presets): one
  pass that writes ``g`` at each window's first maximum and zeros elsewhere.
- ReLU and its backward: one pass each.
- Adam's update over the fused optimizer's flat vectors (:meth:`FastBackend.adam_update`): one pass instead of
  NumPy's twelve, with NumPy's operations in NumPy's order and no fast-math, so the same bits as the NumPy path
  (fused and per-parameter Adam must agree).
- 3×3 stride-1 convolutions from :data:`WINOGRAD_MIN_CHANNELS` input channels on: Winograd
  F(2×2, 3×3) for the forward pass and both gradients (:mod:`minidl.backend.winograd`: compiled
  tile transforms, the products in ``numpy.matmul``, blocks on minidl's own pool).

Everything else (other convolutions, overlapping or padded pooling, average pooling) is the NumPy
backend's, unchanged. Every kernel gives each output element (or each channel's sum) to one
block, which computes it in a fixed order: results are bitwise the same at any thread count.
Sums are accumulated in float64 for float32 data, so they are closer to the exact value than
NumPy's pairwise float32 sums; the tests hold the two backends to 1e-5 relative (float32) and
1e-12 (float64).

**Threads.** The kernels are serial and release the GIL (``nogil``); each call computes one block
of about :data:`BLOCK_ELEMENTS` elements, and the blocks run on :func:`minidl.threads.map_blocks`'
threads, as Winograd's do. No Numba threading layer is involved, so two Python threads may call in
at once (``tests/test_backend_fast.py`` trains two models at once) and BLAS never runs inside a
Numba parallel region. Only :mod:`minidl.backend.fast_sequence`'s one parallel kernel, GELU's
forward (LayerNorm and attention's softmax are serial block kernels too), uses Numba's threads (the
``workqueue`` layer, the one every platform has; its OpenMP layer is not fork-safe with GNU OpenMP,
and the test suite and joblib fork): ``workqueue`` aborts the process when two Python threads enter
parallel code at once, so it is entered under one lock. Inputs below :data:`PARALLEL_MIN_SIZE`
elements (e.g. batch-1 steps) take the NumPy backend's path: a kernel call costs more than it saves
there.

**Compiling.** ``cache=True``: the first run after installing compiles the kernels it needs, for
the dtypes and layouts it calls them with, and writes them next to this module; later runs load
them. Each kernel is wrapped, and compiled or loaded, on its own first call; a run whose inputs
stay below the thresholds (``minidl digits`` with the blog's CNN) never imports Numba. Serial
kernels compile ~2.5x faster than the ``parallel=True`` ``prange`` kernels they replaced (first
forward and backward with a cold cache, CPU time, 00:13 UTC, load ~4: BatchNorm2D 2.7 -> 1.1 s,
ReLU 0.8 -> 0.4 s, MaxPool2D 1.2 -> 0.4 s) and run as fast on one thread (vgg-cifar's shapes,
CPU time, best of 15, ms, old -> new: ReLU 0.90 -> 0.75 forward, 1.10 -> 0.94 backward; batch
norm 1.34 -> 1.19 / 1.70 -> 1.63; max-pool backward 1.52 -> 1.55). What a warm start still costs
is Numba's own: ``import numba`` (~0.25 s of CPU) and its first compiled call of a process, cached
or not (~0.2 s with SciPy already imported, ~0.5 s without: Numba imports ``scipy.linalg`` then);
``benchmarks/startup.py`` measures both and the commands.
"""

from __future__ import annotations

import math
import os
import threading
from typing import Any

import numpy as np

from .. import threads
from . import fast_sequence, winograd
from .base import Pads
from .numpy import (
    NumpyBackend,
    _ConvContext,
    conv_input_grad,
    copy_like,
    row_sums,
    workspace,
)

__all__ = ["FastBackend", "PARALLEL_MIN_SIZE", "WINOGRAD_MIN_CHANNELS"]

#: Inputs of fewer elements take the NumPy backend's path. ReLU on (1, 4, 6, 6) at batch 1: NumPy
#: ~1 µs, a parallel kernel ~10 µs of dispatch.
PARALLEL_MIN_SIZE = 2**14

#: ReLU, one pass of one comparison each way, gains from its kernel only on larger inputs: the kernel's ~100 µs of
#: dispatch (lock, thread count, Numba's parallel launch) is what NumPy takes for ~2**17 elements. Forward and
#: backward, float32, wall clock, best of 30, 1 / 2 threads, µs (23:13 UTC, load 1.3): 2**14 elements NumPy 18,
#: kernel 110 / 189; 2**17: 114 vs 144 / 157; 2**18: 223 vs 222 / 184; 2**20: 1132 vs 776 / 530. Below it, a run
#: such as ``minidl digits`` never imports Numba at all (~0.9 s of CPU per process).
RELU_MIN_SIZE_FACTOR = 16

#: 3×3 stride-1 convolutions run as Winograd F(2×2, 3×3) (:mod:`minidl.backend.winograd`) from this GEMM depth
#: on: input channels for the forward pass, output channels for the input gradient. CPU time, one thread,
#: float32, batch 64, ms (NumPy backend -> Winograd), forward / input gradient: vgg-cifar's conv2 (32->32 on
#: 32x32) 21.2 -> 15.6 / 20.6 -> 16.9, conv3 (32->64 on 16x16) 9.2 -> 6.9 / 10.7 -> 6.7, conv4 (64->64)
#: 18.1 -> 11.9 / 18.3 -> 11.6; resnet-cifar's 16->16 on 32x32 7.0 -> 6.3 / 6.6 -> 6.1, 32->32 on 16x16
#: 4.9 -> 3.8 / 5.2 -> 3.7, 64->64 on 8x8 4.3 -> 3.7 / 4.4 -> 3.8.
WINOGRAD_MIN_CHANNELS = 16

#: Adam's update (:meth:`FastBackend.adam_update`) is one kernel call in the caller below this many entries, above it
#: blocks of :data:`ADAM_BLOCK` on minidl's threads; below :data:`PARALLEL_MIN_SIZE` it is the NumPy backend's (no
#: Numba import for ``minidl digits``, whose 410 parameters would save ~5 µs a step). One thread, float32, CPU time,
#: best of 5, µs (03:01 UTC, load 2), NumPy / kernel: 64 entries 9.9 / 4.6, 4,096 17.8 / 6.6, 16,384 40.2 / 13.7.
#: Two threads, wall clock, µs, one call / blocks (03:02-03:06 UTC, load 1.3-2.4, the other core often busy):
#: 82,186 entries 57 / 145 (blocks of 2**15); 262,144 158 / 226-300; 1,305,090 693-824 / 510-1143 (2**17 to
#: 2**19); 2**21 1,183 / 1,353 (2**19, medians of 7); 4,194,304 3,129-3,506 / 2,438-3,989.
ADAM_SPLIT_SIZE = 2**21
#: Entries per block of Adam's update from :data:`ADAM_SPLIT_SIZE` on.
ADAM_BLOCK = 2**19

#: The compiled kernels split their work into fixed blocks of about this many elements (whole channels, rows of
#: windows or runs of elements), run on :func:`minidl.threads.map_blocks`: the blocks depend on the shapes only.
BLOCK_ELEMENTS = 2**17

_enter = threading.Lock()  # workqueue: one Python thread at a time in fast_sequence's parallel kernels
_compiled: dict[str, Any] = {}
_loading = threading.Lock()


def _kernel(name: str) -> Any:
    """The compiled kernel ``name``, wrapped on its first use: Numba is imported by the first kernel a run needs
    (~0.3 s of CPU, and ~0.3 s more for Numba's first compiled call), which a run whose inputs all stay below
    :data:`PARALLEL_MIN_SIZE` (``minidl digits``) never pays; each kernel is then loaded from the cache (or
    compiled, the first time) for the argument types it is called with, on its own first call."""
    kernel = _compiled.get(name)
    if kernel is None:
        import numba

        with _loading:  # one wrapper per kernel, whichever thread gets here first
            kernel = _compiled.get(name)
            if kernel is None:
                fn = _KERNELS[name]
                kernel = _compiled[name] = numba.njit(nogil=True, cache=True, **_OPTIONS.get(name, {}))(fn)
    return kernel


def _load() -> Any:
    """Numba, its threading layer set for :mod:`minidl.backend.fast_sequence`'s parallel kernels."""
    import numba

    if not os.environ.get("NUMBA_THREADING_LAYER"):
        # numba.config sets its attributes at import, from the environment: no stub declares them
        numba.config.THREADING_LAYER = "workqueue"  # type: ignore[attr-defined]
    return numba


def _threads() -> int:
    return max(1, min(threads.get_num_threads(), _load().config.NUMBA_NUM_THREADS))


def _blocks(name: str, items: int, item_size: int, *args: Any) -> None:
    """Kernel ``name`` over ``items`` (channels, rows of windows, elements) of ``item_size`` elements each, in fixed
    blocks of whole items of about :data:`BLOCK_ELEMENTS` elements on minidl's threads: ``kernel(*args, lo, hi)``
    for each block ``[lo, hi)``. Each item is one block's, computed in one compiled order, so the results are the
    same bits at any thread count."""
    kernel = _kernel(name)
    threads.map_ranges(lambda lo, hi, slot: kernel(*args, lo, hi), items, max(1, BLOCK_ELEMENTS // max(1, item_size)))


# -- memory layouts ------------------------------------------------------------------------------------
def _channel_view(x: np.ndarray) -> np.ndarray | None:
    """``x`` (N, C, H, W) as a C-contiguous (A, C, B) view in which element (a, c, b) is channel c's
    b-th value of block a: (N, C, H·W) for NCHW, (1, C, H·W·N) batch-innermost, (1, C, N·H·W)
    channels-major. ``None`` for any other layout."""
    n, c, h, w = x.shape
    if x.flags.c_contiguous:
        return x.reshape(n, c, h * w)
    t = x.transpose(1, 2, 3, 0)
    if t.flags.c_contiguous:
        return t.reshape(1, c, h * w * n)
    t = x.transpose(1, 0, 2, 3)
    if t.flags.c_contiguous:
        return t.reshape(1, c, n * h * w)
    return None


def _same_layout(a: np.ndarray, b: np.ndarray) -> bool:
    return a.strides == b.strides


# -- kernels -------------------------------------------------------------------------------------------
def _bn_forward(x, weight, bias, eps, mean, var, inv_std, y, batch_stats, c0, c1):  # pragma: no cover - compiled
    blocks, _, size = x.shape
    m = blocks * size
    for c in range(c0, c1):
        if batch_stats:
            s = 0.0
            for a in range(blocks):
                for b in range(size):
                    s += x[a, c, b]
            mean[c] = s / m
            mu = mean[c]
            ss = 0.0
            for a in range(blocks):
                for b in range(size):
                    d = x[a, c, b] - mu
                    ss += d * d
            var[c] = ss / m
        inv_std[c] = 1.0 / np.sqrt(var[c] + eps)
        scale = weight[c] * inv_std[c]
        mu, beta = mean[c], bias[c]
        for a in range(blocks):
            for b in range(size):
                y[a, c, b] = (x[a, c, b] - mu) * scale + beta


def _bn_backward(g, x, mean, inv_std, weight, batch_stats, dx, dweight, dbias, c0, c1):  # pragma: no cover - compiled
    blocks, _, size = x.shape
    m = blocks * size
    for c in range(c0, c1):
        mu = mean[c]
        sg = 0.0
        sgx = 0.0
        for a in range(blocks):
            for b in range(size):
                gv = g[a, c, b]
                sg += gv
                sgx += gv * (x[a, c, b] - mu)
        istd = inv_std[c]
        dbias[c] = sg
        dweight[c] = sgx * istd
        scale = weight[c] * istd
        if batch_stats:  # scale·g − (x − μ)·k − j, per-channel k and j
            k = scale * istd * dweight[c] / m
            j = scale * dbias[c] / m
            for a in range(blocks):
                for b in range(size):
                    dx[a, c, b] = g[a, c, b] * scale - (x[a, c, b] - mu) * k - j
        else:
            for a in range(blocks):
                for b in range(size):
                    dx[a, c, b] = g[a, c, b] * scale


# The element-wise kernels loop over slices of their own: LLVM vectorises that loop (indexing the whole arrays from lo
# to hi, it did not: 15 ms instead of 0.6 for ReLU's backward over 2**21 float32 values).
def _relu(x, y, lo, hi):  # pragma: no cover - compiled
    xs, ys = x[lo:hi], y[lo:hi]
    for i in range(xs.size):
        v = xs[i]
        ys[i] = 0 if v <= 0 else v  # NaN passes, as np.maximum


def _relu_backward(y, g, dx, lo, hi):  # pragma: no cover - compiled
    ys, gs, ds = y[lo:hi], g[lo:hi], dx[lo:hi]
    for i in range(ds.size):
        ds[i] = gs[i] if ys[i] > 0 else 0


def _adam(g, m, v, v_max, amsgrad, out, c1, beta2, c2, bias2, eps, rate, lo, hi):  # pragma: no cover - compiled
    """:func:`minidl.backend.blocks.adam_update` on entries ``lo..hi``, its NumPy operations in their order on
    scalars of the arrays' dtype (NumPy 2 casts its Python-float constants so): the same bits."""
    gs, ms, vs, xs, steps = g[lo:hi], m[lo:hi], v[lo:hi], v_max[lo:hi], out[lo:hi]
    for i in range(gs.size):
        gi = gs[i]
        mi = ms[i] + c1 * (gi - ms[i])
        vi = vs[i] * beta2 + c2 * gi * gi
        ms[i], vs[i] = mi, vi
        if amsgrad:
            x = xs[i]
            vi = x if x >= vi or x != x else vi  # np.maximum: NaN wins
            xs[i] = vi
        steps[i] = rate * (mi / (np.sqrt(vi) / bias2 + eps))


def _unpool_chwn(x, y, g, kh, kw, dx, lo, hi):  # pragma: no cover - compiled
    """``dx``: each window's ``g`` at the first pixel (row-major) equal to the window's max ``y``, else 0, for the
    rows of windows ``lo..hi`` (channel-major)."""
    _, oh, ow, n = y.shape
    for ci in range(lo, hi):
        c, i = ci // oh, ci % oh
        taken = np.empty(n, np.bool_)
        for j in range(ow):
            taken[:] = False
            for u in range(kh):
                for v in range(kw):
                    for b in range(n):
                        val, best = x[c, i * kh + u, j * kw + v, b], y[c, i, j, b]
                        hit = not taken[b] and (val == best or (val != val and best != best))
                        dx[c, i * kh + u, j * kw + v, b] = g[c, i, j, b] if hit else 0
                        taken[b] = taken[b] or hit


def _unpool_nchw(x, y, g, kh, kw, dx, lo, hi):  # pragma: no cover - compiled
    _, channels, oh, ow = y.shape
    for nc in range(lo, hi):
        b, c = nc // channels, nc % channels
        for i in range(oh):
            for j in range(ow):
                best, free = y[b, c, i, j], True
                for u in range(kh):
                    for v in range(kw):
                        val = x[b, c, i * kh + u, j * kw + v]
                        hit = free and (val == best or (val != val and best != best))
                        dx[b, c, i * kh + u, j * kw + v] = g[b, c, i, j] if hit else 0
                        free = free and not hit


#: Each kernel, by name, wrapped by :func:`_kernel` (``nogil=True, cache=True``) on its first use.
_KERNELS = {fn.__name__: fn for fn in (_bn_forward, _bn_backward, _relu, _relu_backward, _unpool_chwn, _unpool_nchw,
                                        _adam)}
#: Each kernel's other Numba options. The batch-norm sums may be reassociated (vectorised); each channel's sum is
#: still one block's, in one compiled order, so the bits do not depend on the thread count. No "nnan"/"ninf": NaN
#: must propagate. Adam's update has no fast-math at all (no fused multiply-adds: the NumPy path's bits) and
#: divides as NumPy does (with Python's error model each division checks for zero, and LLVM does not vectorise).
_OPTIONS: dict[str, dict[str, Any]] = {"_bn_forward": {"fastmath": {"reassoc", "contract"}},
                                       "_bn_backward": {"fastmath": {"reassoc", "contract"}},
                                       "_adam": {"error_model": "numpy"}}


# -- contexts ------------------------------------------------------------------------------------------
class _FastBatchNorm:
    __slots__ = ("x", "mean", "inv_std", "weight", "batch_stats")
    x: np.ndarray
    mean: np.ndarray
    inv_std: np.ndarray
    weight: np.ndarray
    batch_stats: bool


class _FastReLU:
    __slots__ = ("y",)
    y: np.ndarray


class _WinogradConv:
    """:meth:`FastBackend.conv2d`'s split padded input (kept for the weight gradient), weight and geometry."""

    __slots__ = ("xs", "weight", "pads", "in_hw", "out_hw", "buffers")
    xs: np.ndarray
    weight: np.ndarray
    pads: tuple[tuple[int, int], tuple[int, int]]
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]

    def __init__(self) -> None:
        self.buffers: dict = {}  # the split input, reused by the next call


def _winograd_fits(weight_shape: tuple[int, ...], stride: tuple[int, int], depth: int, size: int) -> bool:
    return (tuple(weight_shape[2:]) == (3, 3) and tuple(stride) == (1, 1) and depth >= WINOGRAD_MIN_CHANNELS
            and size >= PARALLEL_MIN_SIZE)


def _winograd_input_grad_fits(weight: np.ndarray, stride: tuple[int, int], pads: Pads, grad: np.ndarray) -> bool:
    # the input gradient convolves the gradient padded by 2 - pad: pads up to 2
    return max(max(pads[0]), max(pads[1])) <= 2 and _winograd_fits(weight.shape, stride, weight.shape[0], grad.size)


def _numpy_conv_input_grad_fits(ctx: Any, grad: np.ndarray) -> bool:
    """Whether the input gradient of a convolution the NumPy backend's path ran forward goes by Winograd."""
    if not isinstance(ctx, _ConvContext):
        return False
    numpy_ctx: Any = ctx  # its attributes are set by NumpyBackend.conv2d, undeclared
    return _winograd_input_grad_fits(numpy_ctx.weight, numpy_ctx.stride, numpy_ctx.pads, grad)


class FastBackend(NumpyBackend):
    """The NumPy backend with BatchNorm2D, MaxPool2D's backward, ReLU and Adam's update compiled by Numba, on every
    core, and 3×3 stride-1 convolutions as Winograd F(2×2, 3×3).

    Example::

        >>> import numpy as np
        >>> from minidl.backend.fast import FastBackend
        >>> y, ctx = FastBackend().relu(np.array([[-1.0, 2.0]]))
        >>> y
        array([[0., 2.]])
    """

    name = "fast"

    def describe(self) -> dict[str, Any]:
        numba = _load()
        return {**super().describe(), "numba": numba.__version__,
                "threading layer": f"{numba.config.THREADING_LAYER} (one Python thread at a time)",
                "numba threads": _threads()}

    # -- convolution -----------------------------------------------------------------------------
    def conv2d(self, x, weight, bias, stride, pads, ctx=None):
        if not _winograd_fits(weight.shape, stride, x.shape[1], x.size):
            return super().conv2d(x, weight, bias, stride, pads, ctx)
        if not isinstance(ctx, _WinogradConv):
            ctx = _WinogradConv()
        n, _, h, w = x.shape
        (pt, pb), (pl, pr) = pads
        out_hw = (h + pt + pb - 2, w + pl + pr - 2)
        # kept for the weight gradient, in the context's own array (reused by the next step)
        xs = winograd.split_padded(x.transpose(1, 2, 3, 0), (pt, pl), winograd.tiles_of(out_hw), ctx.buffers)
        y = winograd.winograd_conv(xs, n, winograd.weight_transform(weight), out_hw, bias)
        ctx.xs, ctx.weight, ctx.pads, ctx.in_hw, ctx.out_hw = xs, weight, pads, (h, w), out_hw
        return y.transpose(3, 0, 1, 2), ctx  # (F, OH, OW, N) in memory: batch-innermost, as the NumPy backend's

    def conv2d_backward(self, ctx, grad_out, need_input_grad=True, need_weight_grad=True, need_bias_grad=True):
        if isinstance(ctx, _WinogradConv):
            weight, (pt, _), (pl, _) = ctx.weight, *ctx.pads
            f, n = weight.shape[0], grad_out.shape[0]
            g = grad_out.transpose(1, 2, 3, 0)  # batch-innermost, as the tile kernels read it
            dbias = row_sums(g.reshape(f, -1)) if need_bias_grad else None
            winograd_dx = need_input_grad and _winograd_input_grad_fits(weight, (1, 1), ctx.pads, grad_out)
            # One split copy of the gradient for both: padded as the input gradient's convolution needs it
            origin = (2 - pt, 2 - pl) if winograd_dx else (0, 0)
            (ih, iw), (oh, ow) = winograd.tiles_of(ctx.in_hw), winograd.tiles_of(ctx.out_hw)
            tiles = (max(ih, oh + 1), max(iw, ow + 1))  # enough for both, at either origin
            gs = winograd.split_padded(g, origin, tiles, workspace(), "split gradient")
            dweight = winograd.winograd_weight_grad(ctx.xs, gs, n, origin, ctx.out_hw) if need_weight_grad else None
            if not need_input_grad:
                return None, dweight, dbias
            if not winograd_dx:
                dx = conv_input_grad(g.reshape(f, *ctx.out_hw, n), weight, (1, 1), ctx.pads, ctx.in_hw)
                return dx.transpose(3, 0, 1, 2), dweight, dbias
        elif need_input_grad and _numpy_conv_input_grad_fits(ctx, grad_out):
            _, dweight, dbias = super().conv2d_backward(ctx, grad_out, False, need_weight_grad, need_bias_grad)
            (pt, _), (pl, _) = ctx.pads
            n = grad_out.shape[0]
            gs = winograd.split_padded(grad_out.transpose(1, 2, 3, 0), (2 - pt, 2 - pl), winograd.tiles_of(ctx.in_hw),
                                       workspace(), "split gradient")
        else:
            return super().conv2d_backward(ctx, grad_out, need_input_grad, need_weight_grad, need_bias_grad)
        dx = winograd.winograd_input_grad(gs, n, ctx.weight, ctx.in_hw)
        return dx.transpose(3, 0, 1, 2), dweight, dbias

    # -- normalisation ---------------------------------------------------------------------------
    def batch_norm2d(self, x, weight, bias, eps, stats=None, ctx=None):
        view = _channel_view(x) if x.size >= PARALLEL_MIN_SIZE else None
        if view is None:
            return super().batch_norm2d(x, weight, bias, eps, stats, ctx)
        c = x.shape[1]
        y = np.empty_like(x)  # x's memory layout, so _channel_view(y) lines up with view
        mean, var = (np.empty(c, x.dtype), np.empty(c, x.dtype)) if stats is None else stats
        inv_std = np.empty(c, x.dtype)
        _blocks("_bn_forward", c, view.size // c, view, weight, bias, float(eps), mean, var, inv_std, _channel_view(y),
                stats is None)
        if not isinstance(ctx, _FastBatchNorm):
            ctx = _FastBatchNorm()
        ctx.x, ctx.mean, ctx.inv_std, ctx.weight, ctx.batch_stats = x, mean, inv_std, weight, stats is None
        return y, mean, var, ctx

    def batch_norm2d_backward(self, ctx, grad_out):
        if not isinstance(ctx, _FastBatchNorm):
            return super().batch_norm2d_backward(ctx, grad_out)
        x = ctx.x
        if not _same_layout(grad_out, x):
            grad_out = copy_like(x, grad_out)
        dx = np.empty_like(x)
        c = x.shape[1]
        dweight, dbias = np.empty(c, x.dtype), np.empty(c, x.dtype)
        _blocks("_bn_backward", c, x.size // c, _channel_view(grad_out), _channel_view(x), ctx.mean, ctx.inv_std,
                ctx.weight, ctx.batch_stats, _channel_view(dx), dweight, dbias)
        return dx, dweight, dbias

    # -- pooling ---------------------------------------------------------------------------------
    def max_pool2d_backward(self, ctx, grad_out):
        # Forward is the NumPy backend's: np.maximum over the kh·kw strided views already runs at memory
        # speed (0.75 ms on vgg-cifar's conv2 output, one thread; a compiled pass that also keeps the
        # arg-max took 2.2 ms). Its backward makes kh·kw masks and products: one compiled pass here.
        if ctx.path != "tiled" or ctx.x.size < PARALLEL_MIN_SIZE:
            return super().max_pool2d_backward(ctx, grad_out)
        x, y, (kh, kw) = ctx.x, ctx.out, ctx.pool
        n, c, h, w = x.shape
        if x.transpose(1, 2, 3, 0).flags.c_contiguous and y.transpose(1, 2, 3, 0).flags.c_contiguous:
            order = (1, 2, 3, 0)  # batch-innermost, as after a Conv2D
        elif x.flags.c_contiguous and y.flags.c_contiguous:
            order = (0, 1, 2, 3)
        else:
            return super().max_pool2d_backward(ctx, grad_out)
        if not _same_layout(grad_out, y):
            grad_out = copy_like(y, grad_out)  # one copy into y's layout beats strided reads in the kernel
        covered = y.shape[2] * kh == h and y.shape[3] * kw == w
        shape = tuple(x.shape[a] for a in order)
        dx = (np.empty if covered else np.zeros)(shape, grad_out.dtype)
        kernel = "_unpool_chwn" if order[0] == 1 else "_unpool_nchw"
        rows = shape[0] * y.shape[order[1]]  # (channel, window row) or (image, channel) pairs
        _blocks(kernel, rows, x.size // rows, x.transpose(order), y.transpose(order), grad_out.transpose(order), kh, kw,
                dx)
        return dx.transpose(np.argsort(order))

    # -- element-wise ----------------------------------------------------------------------------
    def relu(self, x, ctx=None):
        if x.size < PARALLEL_MIN_SIZE * RELU_MIN_SIZE_FACTOR:
            return super().relu(x)
        flat = x.ravel(order="K")
        y = np.empty_like(x)  # x's memory layout
        y_flat = y.ravel(order="K")
        if not (np.may_share_memory(flat, x) and np.may_share_memory(y_flat, y)):  # not one dense block: NumPy's way
            return super().relu(x)
        _blocks("_relu", flat.size, 1, flat, y_flat)
        out = _FastReLU()
        out.y = y
        return y, out

    def relu_backward(self, ctx, grad_out):
        if not isinstance(ctx, _FastReLU):
            return super().relu_backward(ctx, grad_out)
        y = ctx.y
        if not _same_layout(grad_out, y):
            grad_out = copy_like(y, grad_out)
        dx = np.empty_like(y)
        _blocks("_relu_backward", y.size, 1, y.ravel(order="K"), grad_out.ravel(order="K"), dx.ravel(order="K"))
        return dx

    # -- optimizer -------------------------------------------------------------------------------
    def adam_update(self, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr, betas, eps, t):
        size = len(grad)
        # a NumPy float64 constant is not weak: NumPy computes a float32 array times it in float64, this kernel cannot
        strong = any(type(c) is not float for c in (lr, eps, *betas))
        if size < PARALLEL_MIN_SIZE or grad.dtype.char not in "fd" or strong:
            return super().adam_update(grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr, betas, eps, t)
        kernel, scalar = _kernel("_adam"), grad.dtype.type  # NumPy 2 casts a Python float by an array's dtype
        beta1, beta2 = betas
        amsgrad = max_exp_avg_sq is not None
        constants = (scalar(1 - beta1), scalar(beta2), scalar(1 - beta2), scalar(math.sqrt(1 - beta2**t)),
                     scalar(eps), scalar(lr / (1 - beta1**t)))
        v_max = max_exp_avg_sq if amsgrad else grad[:0]
        threads.map_ranges(lambda lo, hi, slot: kernel(grad, exp_avg, exp_avg_sq, v_max, amsgrad, step, *constants,
                                                       lo, hi), size, size if size < ADAM_SPLIT_SIZE else ADAM_BLOCK)

    # -- sequences (minidl.backend.fast_sequence: serial kernels on fixed blocks on minidl's threads, but GELU) --
    def gelu(self, x, approximate="none"):
        if approximate != "none" or x.size < PARALLEL_MIN_SIZE:
            return super().gelu(x, approximate)
        with _enter:  # a prange kernel
            _load().set_num_threads(_threads())
            return fast_sequence.gelu(x)

    def gelu_backward(self, ctx, grad_out):
        if not isinstance(ctx, np.ndarray):
            return super().gelu_backward(ctx, grad_out)
        return fast_sequence.gelu_backward(ctx, grad_out)

    def layer_norm(self, x, weight, bias, eps):
        if x.size < PARALLEL_MIN_SIZE:
            return super().layer_norm(x, weight, bias, eps)
        y, ctx = fast_sequence.layer_norm(x, weight, bias, eps)
        return y, _FastSequence(ctx)

    def layer_norm_backward(self, ctx, grad_out):
        if not isinstance(ctx, _FastSequence):
            return super().layer_norm_backward(ctx, grad_out)
        return fast_sequence.layer_norm_backward(ctx.ctx, grad_out)

    def attention(self, q, k, v, mask, causal, drop=None):
        if q.size * q.shape[2] < PARALLEL_MIN_SIZE * q.shape[3]:  # scores of fewer elements
            return super().attention(q, k, v, mask, causal, drop)
        heads, weights, ctx = fast_sequence.attention(q, k, v, mask, causal, drop)
        return heads, weights, _FastSequence(ctx)

    def attention_backward(self, ctx, d_heads, out=None):
        if not isinstance(ctx, _FastSequence):
            return super().attention_backward(ctx, d_heads, out)
        return fast_sequence.attention_backward(ctx.ctx, d_heads, out)

    def embedding_backward(self, ids, grad_out, out):
        fast_sequence.embedding_backward(ids, grad_out, out)

    # rnn_backward is the NumPy backend's loop: the context rnn_forward returns carries the compiled backward step
    def rnn_forward(self, cell, xh, weight_ih, weight_hh, bias_ih, bias_hh, mask):  # compiled steps, minidl's threads
        return fast_sequence.rnn_forward(cell, xh, weight_ih, weight_hh, bias_ih, bias_hh, mask)


class _FastSequence:
    """A context of :mod:`minidl.backend.fast_sequence` (told apart from the NumPy backend's)."""

    __slots__ = ("ctx",)

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
