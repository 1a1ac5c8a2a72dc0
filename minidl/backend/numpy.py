"""The ``numpy`` backend: NumPy, its BLAS, and the layout and threading tricks behind the image layers.

Layers call :class:`NumpyBackend`'s operations (through :func:`minidl.backend.get_backend`) and read
like the textbook; everything NumPy-specific about making them fast lives here. Each trick says what
measurement justifies it. Figures are CPU times (``time.process_time``, best of 5, one BLAS
thread, float32, batch 64) on the 2-core Haswell machine of ``docs/benchmarks.md``, unless stated.

**The batch-innermost layout.** Conv2D computes on images stored ``(C, H, W, N)``: the GEMM
``W_mat · X_col`` writes its ``(F, OH·OW·N)`` result in that order, so the output is handed on as
an NCHW-shaped *view* of it (``out.transpose(3, 0, 1, 2)``) without a copy; ReLU, BatchNorm2D and
MaxPool2D keep whatever layout they get, so the next Conv2D reads its input without a copy too.
Every inner loop of the copies in between runs over N (or OW·N) contiguous values instead of OW.
Values are what the NCHW shape says; only ``strides`` differ. Code that needs C-contiguous NCHW
arrays calls ``np.ascontiguousarray``.

**Blocks on threads.** :func:`conv_forward` and :func:`conv_weight_grad` hand their
:data:`CONV_BLOCK` blocks to :func:`minidl.threads.map_blocks` (BLAS one thread each, each thread
its own X_col array) when the product has at least :data:`PARALLEL_MIN_FLOPS`; blocks depend on
the shapes only and the weight gradient sums its per-block products in block order, so results
are bitwise those of the one-thread loop. One vgg-cifar epoch of 512 images (``benchmarks/run.py
--scale 0.5``, wall clock, load 3.3–4 from other processes): 6.88 s with one thread, 4.54 s with
two; lenet-b64 with one core kept busy elsewhere 659 -> 344 ms.
Dense's products do the same in :mod:`minidl.backend.linear`.

**One workspace.** Temporaries that live within one call (the unfolded blocks, the padded input
gradient, the weight gradient's per-block parts, BatchNorm2D's product) come from
:func:`workspace`, this thread's set of :func:`kept_array` buffers that every layer shares; a
layer keeps only what its backward needs.

**References.** The loops of :mod:`minidl.backend.reference`, one output position at a time, are
the oracles of ``tests/test_backend_numpy.py``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import numpy as np

from .. import threads
from . import blocks, elementwise, sequence
from .base import Backend, Pads
from .linear import linear_backward, linear_forward, linear_weight_grad

__all__ = [
    "NumpyBackend", "SMALL_INPUT", "CONV_BLOCK", "COL2IM_BLOCK", "COL2IM_GROUPS", "PARALLEL_MIN_FLOPS",
    "TRANSPOSED_MIN_CHANNELS", "CHANNEL_BLOCK", "COPY_BLOCK", "over_channels", "row_sums", "im2col", "col2im_add",
    "matmul_wide", "matmul_nt", "block_rows", "conv_forward", "conv_weight_grad", "conv_input_grad", "kept_array",
    "workspace", "pad_batch_innermost", "pad_images", "window_view", "window_offsets", "max_of_views", "unmax_first",
    "copy_like", "scratch_like", "batchnorm_forward", "batchnorm_backward", "channel_sums", "channel_dot",
]

#: The input gradient runs as a convolution (see :func:`conv_input_grad`) from this many input
#: channels on: its GEMM has C rows, too few below that. vgg-cifar's conv2 (C = 32) backward
#: 90-107 -> 71-85 ms; its conv1 (C = 3) 12 -> 28 ms and LeNet's conv2 (C = 6) 3.7 -> 5.9 ms the other way.
TRANSPOSED_MIN_CHANNELS = 16

#: Conv2D unfolds about this many X_col elements at a time (1 MB in float32, at least one output
#: row) and multiplies each block while it is still in the 4 MB L2 cache; X_col as a whole is never
#: built, and backward unfolds the same blocks again. vgg-cifar's conv2 (32@3x3 on 32x32x32, batch
#: 64): forward 51-69 -> 36-46 ms (one whole X_col is 75 MB: copying it out to memory and reading it
#: back cost more than unfolding it twice in cache); 2**17 to 2**19 measured alike, 2**20 slower.
CONV_BLOCK = 2**18

#: The textbook input gradient (``W_matᵀ · dY``, then col2im) works through blocks of output rows of
#: about this many dX_col elements (16 MB in float32). Bigger than :data:`CONV_BLOCK`: col2im makes
#: kh·kw strided adds per block, whose per-call cost dominated small blocks. Input gradient, one
#: thread, CPU time, batch 64: LeNet's conv2 (C = 6, 5 blocks before) 1.44-1.58 -> 0.81-0.84 ms,
#: resnet-cifar's 16->32 3x3 stride 2 3.8-3.9 -> 3.4-3.6 ms, its other stride-2 convolutions alike;
#: lenet-b64 epoch 310 -> 289 ms.
COL2IM_BLOCK = 2**22

#: The textbook input gradient of a product of at least :data:`PARALLEL_MIN_FLOPS` runs in this many blocks of
#: input channels (each its own GEMM rows and col2im), on minidl's threads.
COL2IM_GROUPS = 4

#: Copies into a padded or split layout (:func:`over_channels`) work through blocks of whole channels of about
#: this many elements (2 MB in float32), on minidl's threads from two blocks on. The Winograd split of vgg-cifar's
#: conv2 input (2 M elements), one thread, CPU time, min / median of 37 (load ~4): one block 0.63 / 0.71 ms,
#: blocks of 2**20 0.63 / 0.73, 2**19 0.63 / 0.75, 2**18 0.71 / 0.80.
COPY_BLOCK = 2**19

#: A convolution product of fewer floating-point operations runs its blocks in the calling thread.
#: Two threads against one, wall clock, forward and backward of a batch of 64 (2-core AVX-512 Xeon):
#: LeNet's conv1 (15 MFLOP) 1.65x slower — OpenBLAS's many tiny calls of :func:`matmul_wide` do not
#: run side by side — and its conv2 (31 MFLOP) no faster; vgg-cifar's conv1 (113 MFLOP) 0.67x, and
#: 0.52-0.87x for every convolution of vgg-cifar and resnet-cifar (151-1208 MFLOP). lenet-b64 epoch
#: with two threads: 329 ms with every product on the pool, 284 with this bound (one thread: 279);
#: predict-10k (batch 256, conv1 60 MFLOP) 208-209 ms either way (one thread: 259).
PARALLEL_MIN_FLOPS = 2**25


# -- convolution ------------------------------------------------------------------------------
def im2col(
    x_pad: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], out: tuple[int, int], first_row: int = 0,
    buffers: dict | None = None, slot: int = 0,
) -> np.ndarray:
    """``X_col`` (C·kh·kw, OH·OW·N) of padded images stored batch-innermost, ``x_pad`` (C, H, W, N): one copy.

    Rows are kernel taps ``(c, u, v)``, columns output pixels ``(i, j, n)`` for the ``out[0]``
    output rows from ``first_row`` on. ``x_pad`` must be C-contiguous. With a ``buffers`` dict the
    copy goes into an array kept there for ``slot`` (a thread of :func:`minidl.threads.map_blocks`)
    and reused by that slot's next call (so the result is only valid until then); without one, the
    result is the copy ``reshape`` makes of the window view.

    Measured on vgg-cifar's conv2 (8 blocks of 4 output rows, 9.4 MB each): 36 ms with a new
    array per block, 4.2 ms copying into one reused array — a fresh array's pages are
    faulted in on first touch (glibc hands big blocks back to the kernel on free), and that,
    not the copy, was the cost. With stride 1 the window view merges (OW, N) into one axis, so
    the copy's inner loop runs over OW·N contiguous values instead of N. The view is built with
    the ``ndarray`` constructor over ``x_pad``'s buffer: ``as_strided`` costs ~15x more in Python
    overhead, a sixth of a batch-1 step.
    """
    c, h, w, n = x_pad.shape
    # the strides of a C-contiguous array, from its shape: a length-1 axis may carry any stride
    sn = x_pad.itemsize
    sw, sh, sc = n * sn, w * n * sn, h * w * n * sn
    (kh, kw), (rows, ow) = kernel, out
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    if stride[1] == 1:
        shape, strides = (c, kh, kw, rows, ow * n), (sc, sh, sw, sh * stride[0], sn)
    else:
        shape, strides = (c, kh, kw, rows, ow, n), (sc, sh, sw, sh * stride[0], sw * stride[1], sn)
    windows = np.ndarray(shape, x_pad.dtype, x_pad, first_row * stride[0] * sh, strides)
    if buffers is None:
        return windows.reshape(c * kh * kw, rows * ow * n)
    cols = kept_array(buffers, ("im2col", slot), (c * kh * kw, rows * ow * n), x_pad.dtype)
    cols.reshape(shape)[...] = windows  # not np.copyto: a Python-level wrapper, ~1 µs a call at batch 1
    return cols


def col2im_add(
    dx_pad: np.ndarray, dcols: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], out: tuple[int, int],
    first_row: int = 0,
) -> None:
    """The adjoint of :func:`im2col`: add ``dcols`` (C·kh·kw, rows·OW·N) back onto ``dx_pad`` (C, H, W, N).

    One strided add per kernel offset; with stride 1 each add runs over contiguous OW·N values per row.
    """
    (kh, kw), (sh, sw), (rows, ow) = kernel, stride, out
    c, n = dx_pad.shape[0], dx_pad.shape[3]
    dcols = dcols.reshape(c, kh, kw, rows, ow, n)
    top = first_row * sh
    for u in range(kh):
        for v in range(kw):
            dx_pad[:, top + u:top + u + sh * (rows - 1) + 1:sh, v:v + sw * (ow - 1) + 1:sw] += dcols[:, u, v]


def matmul_wide(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, chunk: int = 4096) -> np.ndarray:
    """``a @ b`` (into ``out`` if given) for a small ``a`` (m, k) and a very wide ``b`` (k, L).

    OpenBLAS runs such products ~2x slower in one call than in column chunks of 4096 when
    ``a`` is tiny (measured for LeNet's conv1: 6×25 · 25×50176, 25×6 · 6×50176), and no faster
    when it is not (16×150 · 150×25600): chunk only the first kind, from one chunk's width on.
    (Chunking only from two chunks on left LeNet's conv1 at predict's batch of 256 — one output row,
    7,168 columns a block — in one slow call per block: its forward 3.46 -> 1.77 ms, predict-10k
    291 -> 244 ms CPU, one thread.)
    """
    if a.shape[0] * a.shape[1] > 256 or b.shape[1] <= chunk:
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


def block_rows(k: int, row: int, total: int) -> int:
    """How many output rows of ``row`` X_col columns each (``k`` rows deep) make one block of
    about :data:`CONV_BLOCK` elements: at least one, at most ``total``."""
    return min(total, max(1, CONV_BLOCK // max(1, k * row)))


def conv_forward(
    x_pad: np.ndarray, weight: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], out_hw: tuple[int, int],
    buffers: dict | None = None,
) -> np.ndarray:
    """``W_mat · X_col`` (F, OH·OW·N) of padded batch-innermost images ``x_pad`` (C, H, W, N), C-contiguous.

    Unfolds :data:`CONV_BLOCK`-sized blocks of output rows into :func:`workspace` arrays; each
    block is a contiguous range of the GEMM's columns, so the product is written straight into
    place, and the blocks run on :func:`minidl.threads.map_blocks`' threads, each unfolding into
    its own array. When X_col is one block and ``buffers`` (the layer's own dict) is given, X_col
    is unfolded into it instead and kept there for :func:`conv_weight_grad`.
    """
    oh, ow = out_hw
    width = ow * x_pad.shape[3]  # GEMM columns per output row
    f, k = weight.shape
    rows = block_rows(k, width, oh)
    if rows == oh:
        cols = im2col(x_pad, kernel, stride, out_hw, buffers=workspace() if buffers is None else buffers)
        if buffers is not None:  # one block: small enough to keep for the weight gradient
            buffers["forward cols"], buffers["forward cols of"] = cols, x_pad
        return matmul_wide(weight, cols)
    if buffers is not None:
        buffers.pop("forward cols of", None)
    out = np.empty((f, oh * width), dtype=x_pad.dtype)
    scratch = workspace()

    def block(b: int, slot: int) -> None:
        i = b * rows
        r = min(rows, oh - i)
        cols = im2col(x_pad, kernel, stride, (r, ow), first_row=i, buffers=scratch, slot=slot)
        matmul_wide(weight, cols, out=out[:, i * width:(i + r) * width])

    threads.map_blocks(block, -(-oh // rows), _max_threads(f * k * oh * width))
    return out


def conv_weight_grad(
    x_pad: np.ndarray, grad: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], out_hw: tuple[int, int],
    out: np.ndarray, buffers: dict | None = None,
) -> np.ndarray:
    """``out = grad · X_colᵀ`` (F, C·kh·kw) for ``grad`` (F, OH·OW·N): the weight gradient.

    Block by block as :func:`conv_forward` unfolds them, each block of X_col unfolded again while
    it is in cache: vgg-cifar's conv2 backward kept a 75 MB X_col from forward before. Each block's
    product goes into its own array and they are summed in block order afterwards, so the sum
    rounds the same however many threads computed the blocks. A one-block X_col is the one
    :func:`conv_forward` kept: digits-b1 (batch 1) 343-360 -> 324-327 ms of CPU per epoch.
    """
    if buffers is not None and buffers.get("forward cols of") is x_pad:  # conv_forward's one block of this x_pad
        return matmul_nt(grad, buffers["forward cols"], out=out)  # (kept alive there: never another at its address)
    oh, ow = out_hw
    width = ow * x_pad.shape[3]
    rows = block_rows(out.shape[1], width, oh)
    scratch = workspace()
    if rows == oh:
        return matmul_nt(grad, im2col(x_pad, kernel, stride, out_hw, buffers=scratch), out=out)
    count = -(-oh // rows)
    parts = kept_array(scratch, "weight grad parts", (count - 1, *out.shape), out.dtype)

    def block(b: int, slot: int) -> None:
        i = b * rows
        r = min(rows, oh - i)
        cols = im2col(x_pad, kernel, stride, (r, ow), first_row=i, buffers=scratch, slot=slot)
        matmul_nt(grad[:, i * width:(i + r) * width], cols, out=out if b == 0 else parts[b - 1])

    threads.map_blocks(block, count, _max_threads(grad.shape[0] * out.shape[1] * grad.shape[1]))
    for part in parts:
        out += part
    return out


def _max_threads(multiply_adds: int) -> int | None:
    return 1 if 2 * multiply_adds < PARALLEL_MIN_FLOPS else None


def kept_array(buffers: dict | None, key: Hashable, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array of ``shape``: the front of a flat array kept in
    ``buffers[key]``, which grows to the largest size asked for (a new array without ``buffers``).

    A fresh 8 MB array costs ~0.6 ms of page faults on top of the pass that fills it (glibc hands
    big blocks back to the kernel on free): vgg-cifar's conv2 unfolding 36 -> 4.2 ms into a kept
    array, BatchNorm2D backward 9.6 -> 4.2 ms (2-core Haswell).
    """
    size = math.prod(shape)
    buf = None if buffers is None else buffers.get(key)
    if buf is None or buf.size < size or buf.dtype != dtype or not buf.flags.writeable:  # e.g. unpickled read-only
        buf = np.empty(size, dtype=dtype)
        if buffers is not None:
            buffers[key] = buf
    return buf[:size].reshape(shape)


_local = threading.local()


def workspace() -> dict:
    """This thread's arrays for temporaries that live only within one kernel call (kernels and
    layers pass it to :func:`kept_array` and :func:`scratch_like`).

    Every layer shares them, so they cost the largest layer's size rather than the sum over layers:
    vgg-cifar's unfolded blocks, padded input gradients, weight-gradient parts and BatchNorm2D
    products took 77 MB when each layer kept its own and take 17 MB shared (two threads), which
    brought minidl's peak memory growth from above PyTorch's to below it (``docs/benchmarks.md``). Per thread, so models
    trained in different threads never write into each other's temporaries.
    """
    try:
        return _local.arrays
    except AttributeError:
        _local.arrays = {}
        return _local.arrays


def conv_input_grad(
    grad: np.ndarray, weight: np.ndarray, stride: tuple[int, int], pads: Pads, in_hw: tuple[int, int],
) -> np.ndarray:
    """``dL/dx`` (C, H, W, N) for ``grad`` (F, OH, OW, N) and ``weight`` (F, C, kh, kw), both batch-innermost.

    Stride 1, padding smaller than the kernel (every "same" convolution) and at least
    :data:`TRANSPOSED_MIN_CHANNELS` input channels: the gradient is
    itself a convolution, of ``grad`` padded by ``k - 1 - pad`` with the flipped, transposed
    kernel, so it runs as :func:`conv_forward` does — one GEMM of depth F·kh·kw, no col2im. The
    textbook ``W_matᵀ · dY`` (depth F) then col2im is the fallback for strides and big pads; on
    vgg-cifar's conv2 it took 44.5 ms (GEMM of depth 32 at 27 GFLOP/s) + ~20 ms of col2im.
    """
    f, c, kh, kw = weight.shape
    (pt, pb), (pl, pr) = pads
    oh, ow, n = grad.shape[1:]
    if stride == (1, 1) and max(pt, pb) < kh and max(pl, pr) < kw and c >= TRANSPOSED_MIN_CHANNELS:
        flipped = weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(c, -1)
        gp = pad_batch_innermost(grad, ((kh - 1 - pt, kh - 1 - pb), (kw - 1 - pl, kw - 1 - pr)), workspace())
        return conv_forward(gp, flipped, (kh, kw), (1, 1), in_hw).reshape(c, *in_hw, n)
    dx_pad = np.empty((c, in_hw[0] + pt + pb, in_hw[1] + pl + pr, n), dtype=grad.dtype)
    g, w_t = grad.reshape(f, -1), weight.reshape(f, -1).T
    # Blocks of input channels write disjoint parts of dx_pad (blocks of output rows would overlap where
    # windows do), so they run on minidl's threads when the product is big enough.
    groups = COL2IM_GROUPS if 2 * f * c * kh * kw * oh * ow * n >= PARALLEL_MIN_FLOPS else 1
    per = -(-c // groups)
    rows = min(oh, max(1, COL2IM_BLOCK // max(1, per * kh * kw * ow * n)))

    def block(b: int, slot: int) -> None:
        c0, c1 = b * per, min(c, (b + 1) * per)
        part = dx_pad[c0:c1]
        part[...] = 0
        for i in range(0, oh, rows):
            r = min(rows, oh - i)
            dcols = matmul_wide(w_t[c0 * kh * kw:c1 * kh * kw], g[:, i * ow * n:(i + r) * ow * n])
            col2im_add(part, dcols, (kh, kw), stride, (r, ow), first_row=i)

    threads.map_blocks(block, -(-c // per))
    return dx_pad[:, pt:pt + in_hw[0], pl:pl + in_hw[1]]


def pad_batch_innermost(x: np.ndarray, pads: Pads, buffers: dict | None = None) -> np.ndarray:
    """``x`` (C, H, W, N) zero-padded on H and W, C-contiguous (``x`` itself when it is and pads are 0).

    With a ``buffers`` dict the padded array is a :func:`kept_array` there, reused step after step.
    """
    (pt, pb), (pl, pr) = pads
    c, h, w, n = x.shape
    if pt == pb == pl == pr == 0:
        if x.flags.c_contiguous:
            return x  # after a Conv2D, ReLU, BatchNorm2D or MaxPool2D
        out = np.empty(x.shape, x.dtype)  # e.g. NCHW data into the first layer

        def copy(c0: int, c1: int) -> None:
            out[c0:c1] = x[c0:c1]
        over_channels(copy, c, h * w * n)
        return out
    shape = (c, h + pt + pb, w + pl + pr, n)
    buf = kept_array(buffers, "padded", shape, x.dtype)

    def pad(c0: int, c1: int) -> None:
        part = buf[c0:c1]
        part[:, :pt] = part[:, pt + h:] = part[:, pt:pt + h, :pl] = part[:, pt:pt + h, pl + w:] = 0  # the border only
        part[:, pt:pt + h, pl:pl + w] = x[c0:c1]
    over_channels(pad, c, buf[0].size)
    return buf


def row_sums(a: np.ndarray) -> np.ndarray:
    """``a.sum(axis=1)`` of a 2-D array (a bias gradient, (F, OH·OW·N)): blocks of rows on minidl's threads, each
    row one ``np.add.reduce`` as in one call (the same bits at any thread count). vgg-cifar's conv2, one thread:
    0.40 / 0.44 ms in one call, 0.42 / 0.47 in blocks (min / median)."""
    out = np.empty(a.shape[0], a.dtype)

    def block(r0: int, r1: int) -> None:
        out[r0:r1] = np.add.reduce(a[r0:r1], axis=1)  # the ufunc: np.sum adds ~1 µs of wrapping
    over_channels(block, a.shape[0], a.shape[1])
    return out


def over_channels(fn: Callable[[int, int], None], channels: int, per_channel: int) -> None:
    """``fn(c0, c1)`` for blocks of whole channels of about :data:`COPY_BLOCK` elements (``per_channel`` each),
    on :func:`minidl.threads.map_blocks`' threads: for copies whose blocks write disjoint channels."""
    threads.map_ranges(lambda c0, c1, slot: fn(c0, c1), channels, max(1, COPY_BLOCK // max(1, per_channel)))


def pad_images(x: np.ndarray, pads: Pads, value: float = 0.0) -> np.ndarray:
    """``x`` (N, C, H, W) padded with ``value`` on the two image axes (no copy when ``pads`` are 0)."""
    if pads == ((0, 0), (0, 0)):
        return x
    return np.pad(x, ((0, 0), (0, 0), *pads), constant_values=value)


# -- pooling ------------------------------------------------------------------------------------
def window_view(
    x_pad: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], out: tuple[int, int],
) -> np.ndarray:
    """Read-only view ``(N, C, kh, kw, OH, OW)`` of every window of ``x_pad`` (N, C, H, W); no copy."""
    n, c = x_pad.shape[:2]
    s0, s1, s2, s3 = x_pad.strides
    return np.lib.stride_tricks.as_strided(
        x_pad,
        shape=(n, c, kernel[0], kernel[1], out[0], out[1]),
        strides=(s0, s1, s2, s3, s2 * stride[0], s3 * stride[1]),
        writeable=False,
    )


def window_offsets(
    kernel: tuple[int, int], stride: tuple[int, int], out: tuple[int, int]
) -> list[tuple[int, tuple[slice, ...]]]:
    """``(k, index)`` for every window offset ``k = u·kw + v``: the strided NCHW slice of the padded
    input that offset reads, one element per output pixel. Pooling over these kh·kw sub-views is
    ~30x faster than a reshape + ``max(axis)``, and keeps the input's memory layout."""
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out
    return [(u * kw + v, (slice(None), slice(None), slice(u, u + sh * (oh - 1) + 1, sh),
                          slice(v, v + sw * (ow - 1) + 1, sw)))
            for u in range(kh) for v in range(kw)]


def max_of_views(views: Iterable[np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
    """Element-wise max of same-shape ``views``: into ``out``, else a new array in the views' memory layout."""
    views = iter(views)
    first = next(views)
    if out is None:
        out = first.copy(order="K")
    else:
        out[...] = first
    for view in views:
        np.maximum(out, view, out=out)
    return out


def unmax_first(views: list[np.ndarray], out: np.ndarray, grad: np.ndarray, grads: list[np.ndarray]) -> None:
    """Backward of ``out = max(views)``: ``grads[i] = grad * mask_i``, where ``mask_i`` marks
    elements at which ``views[i]`` is the max and no earlier view was (a tie goes to the first).

    ``g * mask`` is ~12x faster than ``np.where(mask, g, 0)``.
    """
    taken = None
    for i, view in enumerate(views):
        hit = np.equal(view, out)
        if taken is None:
            taken = hit
        else:
            first = np.greater(hit, taken)  # hit and not taken, for booleans
            if i + 1 < len(views):
                taken |= hit
            hit = first
        np.multiply(grad, hit, out=grads[i])


def copy_like(template: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` copied into a new array with ``template``'s memory layout.

    One copy into the layout of the other operands beats several element-wise passes over
    operands of different layouts (5-10x slower each)."""
    out = np.empty_like(template)
    out[...] = values
    return out


def scratch_like(template: np.ndarray, buffers: dict, key: Hashable) -> np.ndarray:
    """An uninitialised array shaped like ``template`` with its axes in the same memory order, a
    :func:`kept_array` in ``buffers``. For a layer's own temporaries and caches only (never for
    what it returns): element-wise passes over operands of one layout run 5-10x faster than over mixed ones."""
    order = sorted(range(template.ndim), key=lambda a: -template.strides[a])  # outermost axis first
    buf = kept_array(buffers, key, tuple(template.shape[a] for a in order), template.dtype)
    return buf.transpose(np.argsort(order))


# -- batch normalisation -------------------------------------------------------------------------
#: BatchNorm2D works through blocks of whole channels of about this many elements (512 KB in float32),
#: every pass of a block while it is in the L2 cache; the blocks run on minidl's threads, each with its own
#: scratch array. (Round 2 measured one thread's loop: blocks of 2**17 against whole passes, vgg-cifar's
#: (64, 32, 32, 32) forward 1.74 ms against 1.85 on the 2-core AVX-512 machine.)
CHANNEL_BLOCK = 2**17


def _over_channel_blocks(fn: Callable[[slice, int], None], x: np.ndarray) -> None:
    """``fn(channels, slot)`` for blocks of whole channels of about :data:`CHANNEL_BLOCK` elements, on minidl's
    threads (``slot``: the thread's, for its own scratch arrays)."""
    c = x.shape[1]
    per = max(1, CHANNEL_BLOCK // max(1, x.size // max(1, c)))
    threads.map_ranges(lambda c0, c1, slot: fn(slice(c0, c1), slot), c, per)


def batchnorm_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float, centred: np.ndarray,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(y, mean, var, inv_std)`` of BatchNorm2D on NCHW ``x``, with the batch's statistics or the
    given ``stats = (mean, var)``; ``centred`` (shaped and laid out like ``x``) receives ``x - mean``.

    Per block of channels: the sums, the centring, the variance and the affine map run while the
    block is in cache. vgg-cifar's (64, 32, 32, 32) input, stored batch-innermost: forward 2.17 -> 1.89 ms,
    backward 3.00 -> 2.44 ms with blocks of 2**17 elements rather than whole passes (2**16 to 2**18
    alike, 2**19 and up as slow as none; ``time.process_time``, best of 15, AVX-512 Xeon).
    """
    c, m = x.shape[1], x.size // max(1, x.shape[1])
    y = np.empty_like(x)
    mean, var = (np.empty(c, x.dtype), np.empty(c, x.dtype)) if stats is None else stats
    inv_std = np.empty(c, x.dtype)

    def block(s: slice, slot: int) -> None:
        if stats is None:
            mean[s] = channel_sums(x[:, s]) / m
        cs = np.subtract(x[:, s], mean[s, None, None], out=centred[:, s])
        if stats is None:
            var[s] = channel_dot(cs, cs) / m
        inv_std[s] = 1 / np.sqrt(var[s] + eps)
        ys = np.multiply(cs, (weight[s] * inv_std[s])[:, None, None], out=y[:, s])
        ys += bias[s, None, None]

    _over_channel_blocks(block, x)
    return y, mean, var, inv_std


def batchnorm_backward(
    grad: np.ndarray, centred: np.ndarray, inv_std: np.ndarray, weight: np.ndarray, batch_stats: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dx, dweight, dbias)`` of :func:`batchnorm_forward`; with ``batch_stats`` through the batch's
    mean and variance, ``scale·(g − mean(g) − x̂·mean(g·x̂))``, else the fixed affine map's ``scale·g``
    (``scale = weight·inv_std``, ``x̂ = centred·inv_std``), a block of channels at a time."""
    c, m = grad.shape[1], grad.size // max(1, grad.shape[1])
    dx = np.empty_like(grad)
    dweight, dbias = np.empty(c, grad.dtype), np.empty(c, grad.dtype)
    scratch = workspace()

    def block(s: slice, slot: int) -> None:
        g, cs = grad[:, s], centred[:, s]
        dbias[s] = channel_sums(g)
        dweight[s] = channel_dot(g, cs) * inv_std[s]  # Σ g·x̂
        scale = weight[s] * inv_std[s]
        dxs = np.multiply(g, scale[:, None, None], out=dx[:, s])
        if batch_stats:  # g·scale − centred·b − c, with per-channel b and c
            dxs -= np.multiply(cs, (scale * inv_std[s] * dweight[s] / m)[:, None, None],
                               out=scratch_like(cs, scratch, ("product", slot)))
            dxs -= (scale * dbias[s] / m)[:, None, None]

    _over_channel_blocks(block, grad)
    return dx, dweight, dbias


# -- per-channel reductions ------------------------------------------------------------------------
def channel_sums(x: np.ndarray) -> np.ndarray:
    """``x.sum(axis=(0, 2, 3))`` for NCHW ``x``, reducing in memory order."""
    return np.add.reduce(_channel_rows(x, _row_order(x)), axis=1)


def channel_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a * b).sum(axis=(0, 2, 3))`` for NCHW ``a``, ``b``: in ``a``'s memory order (``b`` is
    copied into it if stored otherwise)."""
    order = _row_order(a)
    return np.einsum("cm,cm->c", _channel_rows(a, order), _channel_rows(b, order))


def _row_order(x: np.ndarray) -> tuple[int, ...]:
    """The channel axis, then N, H, W in ``x``'s memory order (outermost first)."""
    return (1, *sorted((0, 2, 3), key=lambda a: -x.strides[a]))


def _channel_rows(x: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    """``x`` as (C, N·H·W) with the pixels in ``order``: a view when ``x`` is stored that way
    (batch-innermost or channels-major after the built-in layers), else the copy ``reshape`` makes.
    Reductions over that view run ~2x faster than ``x.sum(axis=(0, 2, 3))`` on the strided NCHW
    view (BatchNorm2D forward on vgg-cifar's conv2 output: 12.6 -> 5.8 ms)."""
    return x.transpose(order).reshape(x.shape[1], -1)


# -- pooling geometry ------------------------------------------------------------------------------
#: Max pooling inputs of at most this many elements take the few-calls path (measured: faster at 144
#: elements, slower at 4,608).
SMALL_INPUT = 1024


@functools.lru_cache(maxsize=64)
def _offsets(kernel: tuple[int, int], stride: tuple[int, int], out: tuple[int, int]) -> list:
    # Made at the first forward pass of a geometry, never at build: a padded window may be far larger than its
    # input (MaxPool2D(20001, padding=10000) on 1x1 images has 4·10⁸ offsets).
    return window_offsets(kernel, stride, out)


def _pool_out(shape: tuple[int, ...], pool: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
              ) -> tuple[int, int]:
    return ((shape[2] + 2 * padding[0] - pool[0]) // stride[0] + 1,
            (shape[3] + 2 * padding[1] - pool[1]) // stride[1] + 1)


# -- the backend ---------------------------------------------------------------------------------------
class _ConvContext:
    """What :meth:`NumpyBackend.conv2d` keeps for backward, and the layer's arrays it reuses step after step."""

    __slots__ = ("x_pad", "weight", "stride", "pads", "out_hw", "in_hw", "buffers")

    def __init__(self) -> None:
        self.buffers: dict = {}  # the padded input (and a one-block X_col), reused by the next call


class _PoolContext:
    """:meth:`NumpyBackend.max_pool2d`'s path (``"small"``, ``"tiled"`` or ``"general"``) and its cache."""

    __slots__ = ("path", "x", "out", "argmax", "padded_shape", "pool", "stride", "padding", "out_hw", "covered", "taps")
    pool: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


class _BatchNormContext:
    """:meth:`NumpyBackend.batch_norm2d`'s centred input (in a reused array), ``1/σ`` and the weight."""

    __slots__ = ("centred", "inv_std", "weight", "batch_stats", "buffers")

    def __init__(self) -> None:
        self.buffers: dict = {}


class NumpyBackend(Backend):
    """NumPy, its BLAS at one thread, and minidl's thread pool for the convolution products.

    The reference backend: every trick of this module, each with its measurement; the loops of
    :mod:`minidl.backend.reference` are its oracles. Images leave Conv2D batch-innermost
    (``(C, H, W, N)`` in memory, NCHW in shape) and the element-wise ops keep that layout.

    Example::

        >>> import numpy as np
        >>> from minidl.backend.numpy import NumpyBackend
        >>> y, ctx = NumpyBackend().max_pool2d(np.arange(16.0).reshape(1, 1, 4, 4), (2, 2), (2, 2), (0, 0))
        >>> y[0, 0]
        array([[ 5.,  7.],
               [13., 15.]])
    """

    name = "numpy"

    def execution(self) -> contextlib.AbstractContextManager[None]:
        """BLAS pinned to one thread (:func:`minidl.threads.blas_threads`); minidl's pool runs the big products."""
        return threads.blas_threads()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "threads": threads.get_num_threads()}

    # -- convolution -----------------------------------------------------------------------------
    def conv2d(self, x, weight, bias, stride, pads, ctx=None):
        if not isinstance(ctx, _ConvContext):
            ctx = _ConvContext()
        f, _, kh, kw = weight.shape
        n, _, h, w = x.shape
        (pt, pb), (pl, pr) = pads
        out_hw = ((h + pt + pb - kh) // stride[0] + 1, (w + pl + pr - kw) // stride[1] + 1)
        x_pad = pad_batch_innermost(x.transpose(1, 2, 3, 0), pads, ctx.buffers)
        out = conv_forward(x_pad, weight.reshape(f, -1), (kh, kw), stride, out_hw, ctx.buffers)
        if bias is not None:
            out += bias[:, None]
        ctx.x_pad, ctx.weight, ctx.stride, ctx.pads, ctx.out_hw, ctx.in_hw = x_pad, weight, stride, pads, out_hw, (h, w)
        # The GEMM wrote (F, OH, OW, N): channels first, batch innermost. NCHW goes out as a view of it;
        # the ops that follow keep that layout, and backward gets its gradient in it for free.
        return out.reshape(f, *out_hw, n).transpose(3, 0, 1, 2), ctx

    def conv2d_backward(self, ctx, grad_out, need_input_grad=True, need_weight_grad=True, need_bias_grad=True):
        weight = ctx.weight
        f = weight.shape[0]
        g = grad_out.transpose(1, 2, 3, 0).reshape(f, -1)  # free when grad_out is batch-innermost
        dbias = row_sums(g) if need_bias_grad else None
        dweight = None
        if need_weight_grad:
            dweight = np.empty(weight.shape, weight.dtype)
            conv_weight_grad(ctx.x_pad, g, weight.shape[2:], ctx.stride, ctx.out_hw, dweight.reshape(f, -1),
                             ctx.buffers)
        if not need_input_grad:
            return None, dweight, dbias
        dx = conv_input_grad(g.reshape(f, *ctx.out_hw, -1), weight, ctx.stride, ctx.pads, ctx.in_hw)
        return dx.transpose(3, 0, 1, 2), dweight, dbias

    # -- pooling ---------------------------------------------------------------------------------
    def max_pool2d(self, x, pool, stride, padding, ctx=None):
        if not isinstance(ctx, _PoolContext) or (ctx.pool, ctx.stride, ctx.padding) != (pool, stride, padding):
            ctx = _PoolContext()
            ctx.pool, ctx.stride, ctx.padding = pool, stride, padding
            ctx.taps = np.arange(pool[0] * pool[1])  # the "small" backward's window positions, made once
        out_hw = ctx.out_hw = _pool_out(x.shape, pool, stride, padding)
        kh, kw = pool
        # windows that tile the input (stride = window, no padding) never overlap, and may cover all of it
        tiled = stride == pool and padding == (0, 0)
        ctx.covered = out_hw[0] * kh == x.shape[2] and out_hw[1] * kw == x.shape[3]
        if tiled and ctx.covered and x.size <= SMALL_INPUT:
            # Few windows (batch-1 steps): one argmax over a copy laid out (N, C, OH, OW, kh·kw), four
            # NumPy calls instead of ~3·kh·kw; on big inputs the strided sub-views win instead.
            n, c = x.shape[:2]
            windows = x.reshape(n, c, out_hw[0], kh, out_hw[1], kw).transpose(0, 1, 2, 4, 3, 5).reshape(
                n, c, *out_hw, kh * kw)
            ctx.path, ctx.argmax, ctx.x = "small", windows.argmax(axis=-1), x  # the first maximum on a tie
            return np.maximum.reduce(windows, axis=-1), ctx
        offsets = _offsets(pool, stride, out_hw)
        if tiled:
            # np.maximum over the kh·kw strided sub-views: ~30x faster than a reshape + max(axis), and the
            # result keeps x's memory layout (batch-innermost after a Conv2D).
            ctx.path, ctx.x = "tiled", x
            out = ctx.out = np.empty_like(x[offsets[0][1]])  # x's memory layout

            def pool(c0: int, c1: int) -> None:  # a block of channels
                max_of_views((x[:, c0:c1][idx] for _, idx in offsets), out=out[:, c0:c1])
            over_channels(pool, x.shape[1], x[:, 0].size)
            return out, ctx
        x_pad = pad_images(x, ((padding[0],) * 2, (padding[1],) * 2), value=-np.inf)
        out = x_pad[offsets[0][1]].copy()
        argmax = np.zeros(out.shape, dtype=np.uint8 if len(offsets) < 256 else np.int32)
        for k, idx in offsets[1:]:
            window = x_pad[idx]
            better = window > out  # strict: the first maximum wins a tie
            np.maximum(out, window, out=out)
            np.copyto(argmax, k, where=better)
        ctx.path, ctx.argmax, ctx.padded_shape, ctx.x = "general", argmax, x_pad.shape, x
        return out, ctx

    def max_pool2d_backward(self, ctx, grad_out):
        x, (kh, kw) = ctx.x, ctx.pool
        if ctx.path == "small":
            n, c = grad_out.shape[:2]
            dwindows = (ctx.argmax[..., None] == ctx.taps) * grad_out[..., None]
            return dwindows.reshape(n, c, *ctx.out_hw, kh, kw).transpose(0, 1, 2, 4, 3, 5).reshape(x.shape)
        offsets = _offsets(ctx.pool, ctx.stride, ctx.out_hw)
        if ctx.path == "tiled":  # each input pixel is in at most one window: write g * mask per offset, no adding
            out = ctx.out
            if grad_out.strides != out.strides:
                # One copy into the layout of x (e.g. the NCHW gradient of a Flatten, for a batch-innermost
                # x) beats kh·kw element-wise passes over operands of different layouts (5-10x slower).
                grad_out = copy_like(out, grad_out)
            dx = np.empty_like(x) if ctx.covered else np.zeros_like(x)  # *_like keeps x's memory layout

            def unpool(c0: int, c1: int) -> None:  # a block of channels
                xs, dxs = x[:, c0:c1], dx[:, c0:c1]
                unmax_first([xs[idx] for _, idx in offsets], out[:, c0:c1], grad_out[:, c0:c1],
                            [dxs[idx] for _, idx in offsets])
            over_channels(unpool, x.shape[1], x[:, 0].size)
            return dx
        ph, pw = ctx.padding
        dx_pad = np.zeros(ctx.padded_shape, dtype=grad_out.dtype)
        for k, idx in offsets:
            dx_pad[idx] += grad_out * (ctx.argmax == k)
        return dx_pad[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]]

    def global_avg_pool2d(self, x):
        return x.mean(axis=(2, 3)), x

    def global_avg_pool2d_backward(self, ctx, grad_out):
        h, w = ctx.shape[2:]
        dx = np.empty_like(ctx)  # the input's memory layout (batch-innermost after a Conv2D), as the layer below wants
        dx[...] = (grad_out / (h * w))[:, :, None, None]
        return dx

    def avg_pool2d(self, x, pool, stride, padding, ctx=None):
        ph, pw = padding
        out_hw = _pool_out(x.shape, pool, stride, padding)
        windows = window_view(pad_images(x, ((ph, ph), (pw, pw))), pool, stride, out_hw)
        return windows.mean(axis=(2, 3)), (x.shape, pool, stride, padding, out_hw)

    def avg_pool2d_backward(self, ctx, grad_out):
        shape, (kh, kw), stride, (ph, pw), out_hw = ctx
        share = grad_out / (kh * kw)
        dx_pad = np.zeros((shape[0], shape[1], shape[2] + 2 * ph, shape[3] + 2 * pw), dtype=grad_out.dtype)
        for _, idx in _offsets((kh, kw), stride, out_hw):
            dx_pad[idx] += share
        return dx_pad[:, :, ph:ph + shape[2], pw:pw + shape[3]]

    # -- normalisation ---------------------------------------------------------------------------
    def batch_norm2d(self, x, weight, bias, eps, stats=None, ctx=None):
        if not isinstance(ctx, _BatchNormContext):
            ctx = _BatchNormContext()
        # x̂ = centred · inv_std is never stored: backward needs only Σ g·x̂
        ctx.centred = scratch_like(x, ctx.buffers, "centred")
        y, mean, var, ctx.inv_std = batchnorm_forward(x, weight, bias, eps, ctx.centred, stats)
        ctx.weight, ctx.batch_stats = weight, stats is None
        return y, mean, var, ctx

    def batch_norm2d_backward(self, ctx, grad_out):
        return batchnorm_backward(grad_out, ctx.centred, ctx.inv_std, ctx.weight, ctx.batch_stats)

    # -- dense -----------------------------------------------------------------------------------
    def linear(self, x, weight, bias=None):
        return linear_forward(x, weight, bias)

    def linear_backward(self, x, weight, grad_out, weight_grad, bias_grad=None):
        return linear_backward(x, weight, grad_out, weight_grad, bias_grad)

    def linear_weight_grad(self, x, grad_out, out):
        linear_weight_grad(x, grad_out, out)

    # -- element-wise ----------------------------------------------------------------------------
    def add(self, a, b):
        return elementwise.add(a, b)

    def relu(self, x, ctx=None):
        # One pass that keeps x's memory layout (batch-innermost after a Conv2D); the mask is recomputed
        # from the output in backward, so inference pays for nothing else.
        out = elementwise.relu(x)
        return out, out

    def relu_backward(self, ctx, grad_out):
        return elementwise.relu_backward(ctx, grad_out)

    # -- optimizer -------------------------------------------------------------------------------
    def adam_update(self, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr, betas, eps, t):
        blocks.adam_update(grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr, betas, eps, t)

    # -- sequences (minidl.backend.sequence) -----------------------------------------------------
    def gelu(self, x, approximate="none"):
        return sequence.gelu(x, approximate)

    def gelu_backward(self, ctx, grad_out):
        return sequence.gelu_backward(ctx, grad_out)

    def layer_norm(self, x, weight, bias, eps):
        return sequence.layer_norm(x, weight, bias, eps)

    def layer_norm_backward(self, ctx, grad_out):
        return sequence.layer_norm_backward(ctx, grad_out)

    def attention(self, q, k, v, mask, causal, drop=None):
        return sequence.attention(q, k, v, mask, causal, drop)

    def attention_backward(self, ctx, d_heads, out=None):
        return sequence.attention_backward(ctx, d_heads, out)

    def rnn_forward(self, cell, xh, weight_ih, weight_hh, bias_ih, bias_hh, mask):
        return sequence.rnn_forward(cell, xh, weight_ih, weight_hh, bias_ih, bias_hh, mask)

    def rnn_backward(self, ctx, dy, d_last):
        return sequence.rnn_backward(ctx, dy, d_last)

    def embedding_backward(self, ids, grad_out, out):
        sequence.embedding_backward(ids, grad_out, out)
