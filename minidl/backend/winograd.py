"""Winograd convolution F(2×2, 3×3) for the ``fast`` backend: 3×3 stride-1 convolutions in 16 GEMMs.

A 3×3 convolution computes each 2×2 tile of output from the 4×4 patch of input under it. Winograd's
minimal filtering algorithm (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
2016) writes that as ``Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A``: the input patch ``d`` and the kernel ``g``
are each transformed into 4×4 arrays, multiplied element by element, and transformed back. Summed
over input channels, the element-wise product becomes 16 matrix products, one per element of the
4×4 array: ``M[k] = U[k] · V[k]`` with ``U[k]`` (F, C) from the kernels and ``V[k]`` (C, tiles) from
the input. That is 16 multiply-adds per 2×2 output pixels and channel pair instead of 36: 2.25x
fewer than im2col's GEMM.

The tile transforms are Numba kernels (``nogil``, ``cache=True``) that read the padded images in the
batch-innermost layout the NumPy backend keeps them in, ``(C, H, W, N)``: each transform's inner
loop runs over the N images of one tile position, contiguous in memory. The work is cut into
blocks of tile positions (all images of each): per block, the input transform into ``V``, the 16
GEMMs (``numpy.matmul`` on the stacked (16, F, C) and (16, C, cols) arrays: BLAS, never inside
Numba), and the output transform straight into ``y``. A block's ``V`` and ``M`` stay in cache,
and blocks run on :func:`minidl.threads.map_blocks`' threads: the kernels release the GIL, so the
transforms run on every core without a Numba parallel region (no threading layer to lock, two
Python threads may call in at once). Block boundaries depend on the shapes only, and each output
element is computed by one block alone, so results are the same bits at any thread count.

The input gradient of a stride-1 convolution is the convolution of the gradient, zero-padded by
``2 - pad``, with the kernel flipped and its two channel axes swapped: the same routine.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .. import threads
from . import numpy as numpy_backend
from .numpy import kept_array, workspace

__all__ = ["BLOCK_COLUMNS", "split_padded", "tiles_of", "winograd_conv", "winograd_input_grad", "winograd_weight_grad",
           "weight_transform"]

#: Each block takes about this many GEMM columns (tile positions × images). Measured on the GEMMs alone
#: (16 of (F, C) · (C, cols), one thread, float32, AMD EPYC, OpenBLAS Haswell kernels): 32×32 over 16,384
#: columns 12.5 / 12.4 / 11.6 / 13.6 / 13.3 ms for blocks of 128 / 256 / 512 / 1024 / all; 64×64 over
#: 4,096: 7.2 / 7.8 / 7.5 / 8.2 / 9.9 ms. Whole convolutions (forward and both gradients, five vgg-cifar and
#: resnet-cifar shapes, load ~10): 126-121 ms in all with 512, 134-138 with 256, 120-147 with 1,024, 155 with 2,048.
BLOCK_COLUMNS = 512

# Gᵀ-side transform of a 3×3 kernel into the 4×4 Winograd domain: U = G g Gᵀ.
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])

_GG = np.kron(_G, _G)  # (16, 9): vec(G g Gᵀ) = (G ⊗ G) vec(g)

_compiled: dict[str, Any] = {}
_loading = threading.Lock()


# Bᵀ and Aᵀ, each row as (index, sign) pairs (the first sign always +): Bᵀ d B and Aᵀ m A are sums of these terms.
_B_ROWS = ((0, 1.0, 2, -1.0), (1, 1.0, 2, 1.0), (2, 1.0, 1, -1.0), (1, 1.0, 3, -1.0))
_A_ROWS = ((0, 1.0, 1, 1.0, 2, 1.0), (1, 1.0, 2, -1.0, 3, -1.0))


def _combine4(out, a, b, c, d, tb, sb):  # pragma: no cover - compiled
    """``out = (a + tb·b) + sb·(c + tb·d)`` for signs ``tb``, ``sb``: a row of Bᵀ applied to a row of (… B).

    One store and four loads per loop: few enough pointers for LLVM's runtime alias checks, so the loop
    vectorises (one loop over all 16 values of a patch did not, and ran 4x slower); the sign cases are
    separate loops (multiplying by ±1 took a third longer)."""
    if tb > 0:
        if sb > 0:
            for t in range(out.shape[0]):
                out[t] = (a[t] + b[t]) + (c[t] + d[t])
        else:
            for t in range(out.shape[0]):
                out[t] = (a[t] + b[t]) - (c[t] + d[t])
    elif sb > 0:
        for t in range(out.shape[0]):
            out[t] = (a[t] - b[t]) + (c[t] - d[t])
    else:
        for t in range(out.shape[0]):
            out[t] = (a[t] - b[t]) - (c[t] - d[t])


def _input_tiles(xs, n, r0, r1, t0, t1, v):  # pragma: no cover - compiled
    """``v[k, c, ((i - r0)·(t1 - t0) + j - t0)·N + n]``: element k of Bᵀ d B for the 4×4 patch under tile
    (i, j), for the tile rows r0..r1 and tile columns t0..t1, from :func:`split_padded`'s ``xs``."""
    channels = xs.shape[0]
    width = (t1 - t0) * n
    for c in range(channels):
        for i in range(r0, r1):
            col = (i - r0) * width
            for r in range(4):
                ra, _, rb, sb = _B_ROWS[r]
                for s in range(4):
                    ca, _, cb, tb = _B_ROWS[s]
                    a0, a1 = (t0 + ca // 2) * n, (t0 + cb // 2) * n
                    _combine4(v[4 * r + s, c, col:col + width],
                              xs[c, 2 * i + ra, ca % 2, a0:a0 + width], xs[c, 2 * i + ra, cb % 2, a1:a1 + width],
                              xs[c, 2 * i + rb, ca % 2, a0:a0 + width], xs[c, 2 * i + rb, cb % 2, a1:a1 + width],
                              tb, sb)


def _combine3(out, a, b, c, sign, beta):  # pragma: no cover - compiled
    """``out = (a + sign·b) + sign·c + beta``: a row of Aᵀ (and ``beta``, the bias)."""
    if sign > 0:
        for t in range(out.shape[0]):
            out[t] = ((a[t] + b[t]) + c[t]) + beta
    else:
        for t in range(out.shape[0]):
            out[t] = ((a[t] - b[t]) - c[t]) + beta


def _output_tiles(m, n, r0, r1, t0, t1, bias, y):  # pragma: no cover - compiled
    """``y[f, 2i:2i+2, 2j:2j+2, :] = Aᵀ m A + bias[f]`` for the tiles of :func:`_input_tiles`' block (clipped
    to ``y``)."""
    filters, oh, ow, _ = y.shape
    width = (t1 - t0) * n
    rows = np.empty((2, 4, width), y.dtype)  # Aᵀ m for a row of tiles
    zero = y.dtype.type(0)  # y's type, as bias[f]: a float64 0.0 would compile _combine3 a second time
    for f in range(filters):
        for i in range(r0, r1):
            col = (i - r0) * width
            for a in range(2):
                ra, _, rb, sb, rc, _ = _A_ROWS[a]
                for s in range(4):
                    _combine3(rows[a, s], m[4 * ra + s, f, col:col + width], m[4 * rb + s, f, col:col + width],
                              m[4 * rc + s, f, col:col + width], sb, zero)
            for a in range(min(2, oh - 2 * i)):
                for j in range(t0, t1):
                    at = (j - t0) * n
                    for e in range(min(2, ow - 2 * j)):
                        ca, _, cb, tb, cc, _ = _A_ROWS[e]
                        _combine3(y[f, 2 * i + a, 2 * j + e], rows[a, ca, at:at + n], rows[a, cb, at:at + n],
                                  rows[a, cc, at:at + n], tb, bias[f])


def _pair(out, a, b, mode):  # pragma: no cover - compiled
    """``out`` = ``a``, ``a + b``, ``a - b`` or ``-b`` for ``mode`` 0 to 3: a column of Aᵀ, whose rows hold A's."""
    if mode == 0:
        for t in range(out.shape[0]):
            out[t] = a[t]
    elif mode == 1:
        for t in range(out.shape[0]):
            out[t] = a[t] + b[t]
    elif mode == 2:
        for t in range(out.shape[0]):
            out[t] = a[t] - b[t]
    else:
        for t in range(out.shape[0]):
            out[t] = -b[t]


def _grad_tiles(gs, n, oy, ox, r0, r1, t0, t1, dm):  # pragma: no cover - compiled
    """``dm[k, f, ...]``: element k of A dY Aᵀ, the gradient of M for the 2×2 tile of output gradient at (2i, 2j)
    (read at (2i + oy, 2j + ox) of :func:`split_padded`'s ``gs``), columns as :func:`_input_tiles` orders them."""
    filters = gs.shape[0]
    width = (t1 - t0) * n
    rows = np.empty((2, 4, width), gs.dtype)  # dY Aᵀ for a row of tiles
    s0, s1 = (t0 + ox // 2) * n, (t0 + (ox + 1) // 2) * n
    for f in range(filters):
        for i in range(r0, r1):
            col = (i - r0) * width
            for a in range(2):
                for s in range(4):
                    _pair(rows[a, s], gs[f, 2 * i + a + oy, ox % 2, s0:s0 + width],
                          gs[f, 2 * i + a + oy, (ox + 1) % 2, s1:s1 + width], s)
            for r in range(4):
                for s in range(4):
                    _pair(dm[4 * r + s, f, col:col + width], rows[0, s], rows[1, s], r)


_KERNELS = {fn.__name__: fn for fn in (_input_tiles, _output_tiles, _grad_tiles)}
_HELPERS = (_combine4, _combine3, _pair)


def _kernel(name: str) -> Any:
    """The compiled kernel. Numba is imported on first use, and the helpers the kernels call are compiled
    in place of their Python versions first (a kernel resolves them as globals when it compiles)."""
    kernel = _compiled.get(name)
    if kernel is None:  # not yet, or another thread is filling _compiled: wait for it under the lock
        import numba

        with _loading:
            if not _compiled:
                jit = numba.njit(nogil=True, cache=True)
                module = globals()
                for fn in _HELPERS:
                    module[fn.__name__] = jit(fn)
                _compiled.update({k: jit(fn) for k, fn in _KERNELS.items()})
        kernel = _compiled[name]
    return kernel


def weight_transform(weight: np.ndarray) -> np.ndarray:
    """``U`` (16, F, C): ``G g Gᵀ`` of each 3×3 kernel of ``weight`` (F, C, 3, 3), element k = 4·row + column
    first, in ``weight``'s dtype (computed in float64)."""
    f, c = weight.shape[:2]
    # one GEMM with G ⊗ G: a three-operand einsum took 0.9 ms for 64x64 kernels, this ~0.05
    u = _GG @ weight.reshape(f * c, 9).T.astype(np.float64)
    return u.astype(weight.dtype).reshape(16, f, c)


def split_padded(x: np.ndarray, top_left: tuple[int, int], tiles: tuple[int, int], buffers: dict | None = None,
                 key: str = "split") -> np.ndarray:
    """``x`` (C, H, W, N) zero-padded by ``top_left`` rows and columns (and zeros below and right of it), laid out
    for ``tiles`` (rows, columns) of 2×2 outputs as ``xs[c, r, q, t·N + n] = x[c, r - pt, 2t + q - pl, n]``: the even
    and odd columns apart, so that a patch element's values over a row of tiles are contiguous. ``xs`` is
    (C, 2·rows + 2, 2, (columns + 1)·N), a :func:`kept_array` in ``buffers[key]``."""
    c, h, w, n = x.shape
    pt, pl = top_left
    xs = kept_array(buffers, key, (c, 2 * tiles[0] + 2, 2, (tiles[1] + 1) * n), x.dtype)
    whole = xs.reshape(c, xs.shape[1], 2, tiles[1] + 1, n)  # (c, r, q, t, n): padded column 2t + q
    rows = min(h, xs.shape[1] - pt)

    def split(c0: int, c1: int) -> None:  # channels c0..c1: a block of its own
        view, src = whole[c0:c1], x[c0:c1]
        view[:, :pt] = 0
        view[:, pt + rows:] = 0
        for q in (0, 1):  # the even, then the odd padded columns
            first = (q - pl) % 2  # x's first column that lands on parity q, at tile column t0
            t0 = (first + pl - q) // 2
            count = min(len(range(first, w, 2)), tiles[1] + 1 - t0)
            view[:, pt:pt + rows, q, :t0] = 0
            view[:, pt:pt + rows, q, t0 + count:] = 0
            view[:, pt:pt + rows, q, t0:t0 + count] = src[:, :rows, first:first + 2 * count:2]

    numpy_backend.over_channels(split, c, xs[0].size)
    return xs


def tiles_of(out_hw: tuple[int, int]) -> tuple[int, int]:
    """How many 2×2 output tiles cover an ``out_hw`` output: rows, columns."""
    return -(-out_hw[0] // 2), -(-out_hw[1] // 2)


def _blocks(tiles: tuple[int, int], n: int) -> tuple[int, Any]:
    """``(count, bounds)``: the blocks of tiles, ``bounds(b) = (r0, r1, t0, t1)`` (tile rows and columns), by shape
    alone. Whole tile rows while a row has fewer than :data:`BLOCK_COLUMNS` columns, else parts of one row."""
    th, tw = tiles
    if tw * n >= BLOCK_COLUMNS:
        rows, per = 1, max(1, BLOCK_COLUMNS // n)
    else:
        rows, per = max(1, BLOCK_COLUMNS // (tw * n)), tw
    across = -(-tw // per)

    def bounds(b: int) -> tuple[int, int, int, int]:
        r0, t0 = (b // across) * rows, (b % across) * per
        return r0, min(th, r0 + rows), t0, min(tw, t0 + per)

    return -(-th // rows) * across, bounds


def _max_threads(u: np.ndarray, tiles: tuple[int, int], n: int) -> int | None:
    # the NumPy backend's rule: products of fewer than PARALLEL_MIN_FLOPS stay in the calling thread
    return 1 if 2 * u.size * tiles[0] * tiles[1] * n < numpy_backend.PARALLEL_MIN_FLOPS else None


def winograd_conv(xs: np.ndarray, n: int, u: np.ndarray, out_hw: tuple[int, int], bias: np.ndarray | None = None,
                  ) -> np.ndarray:
    """``y`` (F, OH, OW, N): the 3×3 stride-1 cross-correlation of the padded images of :func:`split_padded`
    (at least :func:`tiles_of` ``out_hw`` tiles) with the kernels ``U`` of :func:`weight_transform`, plus ``bias``."""
    f = u.shape[1]
    count, bounds = _blocks(tiles_of(out_hw), n)
    y = np.empty((f, *out_hw, n), xs.dtype)
    beta = np.zeros(f, xs.dtype) if bias is None else np.ascontiguousarray(bias, dtype=xs.dtype)
    scratch = workspace()
    to_tiles, from_tiles = _kernel("_input_tiles"), _kernel("_output_tiles")

    def block(b: int, slot: int) -> None:
        r0, r1, t0, t1 = bounds(b)
        cols = (r1 - r0) * (t1 - t0) * n
        v = kept_array(scratch, ("winograd V", slot), (16, xs.shape[0], cols), xs.dtype)
        m = kept_array(scratch, ("winograd M", slot), (16, f, cols), xs.dtype)
        to_tiles(xs, n, r0, r1, t0, t1, v)
        np.matmul(u, v, out=m)
        from_tiles(m, n, r0, r1, t0, t1, beta, y)

    threads.map_blocks(block, count, _max_threads(u, tiles_of(out_hw), n))
    return y


def winograd_weight_grad(xs: np.ndarray, gs: np.ndarray, n: int, origin: tuple[int, int], out_hw: tuple[int, int],
                         ) -> np.ndarray:
    """``dL/dweight`` (F, C, 3, 3) of :func:`winograd_conv` on ``xs``, for the output gradient in ``gs`` (split as
    ``xs``, its pixel (0, 0) at ``origin``): ``Gᵀ dU G`` with ``dU[k] = Σ_blocks dM[k] · V[k]ᵀ``, the blocks'
    products summed in block order (the same bits at any thread count)."""
    c, f = xs.shape[0], gs.shape[0]
    count, bounds = _blocks(tiles_of(out_hw), n)
    scratch = workspace()
    parts = kept_array(scratch, "winograd dU parts", (count, 16, f, c), xs.dtype)
    to_tiles, grad_tiles = _kernel("_input_tiles"), _kernel("_grad_tiles")

    def block(b: int, slot: int) -> None:
        r0, r1, t0, t1 = bounds(b)
        cols = (r1 - r0) * (t1 - t0) * n
        v = kept_array(scratch, ("winograd V", slot), (16, c, cols), xs.dtype)
        dm = kept_array(scratch, ("winograd M", slot), (16, f, cols), xs.dtype)
        to_tiles(xs, n, r0, r1, t0, t1, v)
        grad_tiles(gs, n, origin[0], origin[1], r0, r1, t0, t1, dm)
        np.matmul(dm, v.transpose(0, 2, 1), out=parts[b])

    threads.map_blocks(block, count, _max_threads(parts[0], tiles_of(out_hw), n))
    du = np.add.reduce(parts, axis=0).reshape(16, f * c).astype(np.float64)
    return np.ascontiguousarray((_GG.T @ du).reshape(3, 3, f, c).transpose(2, 3, 0, 1), dtype=xs.dtype)


def winograd_input_grad(gs: np.ndarray, n: int, weight: np.ndarray, in_hw: tuple[int, int]) -> np.ndarray:
    """``dL/dx`` (C, H, W, N) of a 3×3 stride-1 convolution with ``weight`` (F, C, 3, 3), for the output gradient
    split by :func:`split_padded` with ``2 - pad`` rows and columns before it (pads of at most 2): the convolution
    of that padded gradient with the flipped kernel, its channel axes swapped."""
    flipped = weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    return winograd_conv(gs, n, weight_transform(flipped), in_hw)
