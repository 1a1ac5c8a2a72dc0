"""The ``fast`` backend's sequence kernels, compiled by Numba, and how they run on minidl's threads: GELU,
LayerNorm, attention, Embedding's gradient and the LSTM/GRU steps.

:class:`~minidl.backend.fast.FastBackend` calls the functions at the bottom; each compiles its kernels on
first use (``cache=True``). Why they win, CPU time on the 2-core AMD EPYC of ``docs/benchmarks.md``
(OpenBLAS Haswell kernels, no AVX-512, Numba without SVML):

- **Transcendentals.** NumPy's float32 ``exp`` and ``tanh`` take 2-3 ns a value here, SciPy's ``erf``
  ~20 ns, Numba's own ``math.exp`` 4.6 ns and ``math.tanh`` 28 ns (scalar libm calls). The float32
  kernels compute ``exp`` themselves (:func:`_exp_rows`: ``2^k · p(r)``, ``r = x - k ln 2``, a
  degree-6 polynomial, ``2^k`` built in the exponent bits of a float32; relative error ~1e-7) in
  loops LLVM vectorises; sigmoid and tanh are written with it, and GELU's ``Φ`` uses the erfc form
  of *Numerical Recipes* (``t·exp(-z² + P(t))``, relative error below 1.2e-7 everywhere). float64
  data keeps libm's ``exp`` and ``erf`` (exact to the last bits, as NumPy/SciPy): the kernels are
  the same otherwise, so the float64 tests check their logic to 1e-12.
- **Both cores, in fixed blocks.** Attention runs on blocks of :data:`ATTENTION_BLOCK` sequences: each
  block's products (BLAS, one thread), softmax and products again, forward, and its whole backward, on
  one of minidl's threads (:func:`minidl.threads.map_blocks`), so the block's scores gradient
  (``H·T²`` values a sequence) stays in that core's cache and is never a whole-batch array; its
  ``dq, dk, dv`` go straight into the layer's packed gradient. LayerNorm runs on blocks of
  :data:`LN_BLOCK` rows, GELU's backward product on blocks of :data:`GELU_BLOCK` values. The kernels
  are serial and release the GIL (``nogil``); a block a delayed thread cannot start is taken by the
  other, and one thread runs them all in the calling thread. char-gpt, one thread, CPU time: attention
  forward 7.3 -> 5.4 ms, backward with the packing of its gradient 9.5 -> 7.5 ms a layer, from one
  map_blocks call each way instead of two products split in two and a Numba ``prange`` region.
- **Fewer passes.** The attention softmax masks (causally, or by key), shifts, exponentiates and
  normalises each row in one pass in place, skipping keys it may not see (half of them, causal);
  backward is one pass. LayerNorm is one pass per row each way. GELU's forward writes ``y`` and
  ``dy/dx`` at once, so backward is one product.
- **Scatter.** Embedding's gradient: one serial pass adds each position's row to its id's row, in
  position order (NumPy's ``add.reduceat`` over the sorted rows took ~3 ms for ``gru-text``).
- **RNN steps.** One compiled call per time step for the gate nonlinearities and the state update,
  instead of ~10 NumPy calls; the step's matrix product stays in ``numpy.matmul``. These kernels
  are serial and release the GIL (``nogil``), so the batch blocks of :mod:`minidl.backend.sequence`
  run side by side on minidl's threads. They are compiled with ``error_model="numpy"``: with
  Python's (the default) each division checks for zero and raises, which keeps LLVM from
  vectorising any loop that divides (the LSTM step, a block of 32 × 128 units: 40 -> 17 µs; its
  backward, whose passes were also split to touch fewer arrays each: 12.8 -> 7.2 µs). The LSTM
  writes its gate values over the step's product ``[x_t | h_{t-1}] [W_ih | W_hh]ᵀ`` it has just read,
  in the core's cache (no input projection of all steps is streamed from memory: see
  :func:`minidl.backend.sequence.rnn_forward`).

Every block is computed in a fixed order whichever thread takes it, and the blocks depend on the shapes
only (sums across blocks are added in block order): the bits do not depend on the thread count. GELU's
forward stays a Numba ``prange`` kernel (the caller holds the fast backend's lock): compiled serial, its
loops vectorise worse (4.6 instead of 2.2 ms for char-gpt's ``(32, 128, 256)``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import threads
from . import sequence

__all__ = ["gelu", "layer_norm", "layer_norm_backward", "attention", "attention_backward", "embedding_backward",
           "rnn_forward", "LN_BLOCK", "GELU_BLOCK", "ATTENTION_BLOCK"]

#: Attention runs on fixed blocks of this many sequences of the batch, each block's products, softmax and
#: products again on one of minidl's threads: its scores (H·T² values a sequence) stay in that core's cache.
ATTENTION_BLOCK = 2

#: LayerNorm runs on fixed blocks of this many rows (at most) on minidl's threads; its backward sums ``dweight``
#: and ``dbias`` per block, then adds the blocks in order: the same bits with any number of threads.
LN_BLOCK = 512
#: GELU's backward product runs on fixed blocks of this many values (at most) on minidl's threads.
GELU_BLOCK = 2**18

_compiled: dict[str, Any] = {}
_loading = threading.Lock()
prange = range  # numba.prange once _load has run: the kernels resolve it when they compile

_LOG2E = 1.4426950408889634
_LN2_HI = 0.693145751953125
_LN2_LO = 1.428606820309417e-06


# -- helpers inlined into the kernels ---------------------------------------------------------------
def _exp_rows(p, out, bits, m, vector):  # pragma: no cover - compiled
    """``out[:m] = exp(p[:m])``, ``p`` clamped to ±87 (float32: vectorised, see the module) or ±700 (float64: libm)."""
    if not vector:
        for i in range(m):
            out[i] = math.exp(min(max(p[i], -700.0), 700.0)) if p[i] == p[i] else p[i]
        return
    for i in range(m):
        x = min(max(np.float32(p[i]), np.float32(-87.0)), np.float32(87.0))
        k = np.floor(x * np.float32(_LOG2E) + np.float32(0.5))
        r = (x - k * np.float32(_LN2_HI)) - k * np.float32(_LN2_LO)
        out[i] = np.float32(1) + r * (np.float32(1) + r * (np.float32(0.5) + r * (
            np.float32(1 / 6) + r * (np.float32(1 / 24) + r * (np.float32(1 / 120) + r * np.float32(1 / 720))))))
        bits[i] = (np.int32(k) + 127) << 23
    scale = bits.view(np.float32)
    for i in range(m):
        out[i] = out[i] * scale[i] if p[i] == p[i] else p[i]  # NaN stays NaN


# -- GELU -----------------------------------------------------------------------------------------------
_CHUNK = 4096


def _gelu(x, y, d, vector):  # pragma: no cover - compiled
    n = x.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        lo = c * _CHUNK
        m = min(n, lo + _CHUNK) - lo
        p = np.empty(2 * m, x.dtype)
        e = np.empty(2 * m, x.dtype)
        bits = np.empty(2 * m, np.int32)
        t = np.empty(m, x.dtype)
        if vector:
            for i in range(m):
                z = abs(x[lo + i]) * np.float32(0.7071067811865476)
                ti = np.float32(1) / (np.float32(1) + np.float32(0.5) * z)
                t[i] = ti
                f = np.float32
                p[i] = -z * z - f(1.26551223) + ti * (f(1.00002368) + ti * (f(0.37409196) + ti * (f(0.09678418) + ti * (
                    f(-0.18628806) + ti * (f(0.27886807) + ti * (f(-1.13520398) + ti * (f(1.48851587) + ti * (
                        f(-0.82215223) + ti * f(0.17087277)))))))))
                p[m + i] = -z * z
            _exp_rows(p, e, bits, 2 * m, True)
            for i in range(m):
                xi = x[lo + i]
                half = np.float32(0.5) * t[i] * e[i]  # Φ(-|x|) = erfc(|x|/√2) / 2
                cdf = half if xi < 0 else np.float32(1) - half
                y[lo + i] = xi * cdf
                d[lo + i] = cdf + xi * e[m + i] * np.float32(0.3989422804014327)
        else:
            for i in range(m):
                xi = x[lo + i]
                cdf = 0.5 * (1.0 + math.erf(xi * 0.7071067811865476))
                y[lo + i] = xi * cdf
                d[lo + i] = cdf + xi * math.exp(-0.5 * xi * xi) * 0.3989422804014327


# -- LayerNorm ---------------------------------------------------------------------------------------------
def _ln_forward(x, weight, bias, eps, y, x_hat, inv_std):  # pragma: no cover - compiled
    rows, d = x.shape
    for r in range(rows):
        s = 0.0
        for j in range(d):
            s += x[r, j]
        mu = s / d
        ss = 0.0
        for j in range(d):
            c = x[r, j] - mu
            ss += c * c
        istd = 1.0 / math.sqrt(ss / d + eps)
        inv_std[r] = istd
        for j in range(d):
            xh = (x[r, j] - mu) * istd
            x_hat[r, j] = xh
            y[r, j] = xh * weight[j] + bias[j]


def _ln_backward(g, x_hat, inv_std, weight, dx, dweight, dbias):  # pragma: no cover - compiled
    """``dx`` of the rows, and their sums into ``dweight``, ``dbias`` (float64, zeroed here), rows in order."""
    rows, d = g.shape
    for j in range(d):
        dweight[j] = 0
        dbias[j] = 0
    for r in range(rows):
        sg = 0.0
        sgx = 0.0
        for j in range(d):
            gv = g[r, j]
            dweight[j] += gv * x_hat[r, j]
            dbias[j] += gv
            gh = gv * weight[j]
            sg += gh
            sgx += gh * x_hat[r, j]
        sg /= d
        sgx /= d
        istd = inv_std[r]
        for j in range(d):
            dx[r, j] = (g[r, j] * weight[j] - sg - x_hat[r, j] * sgx) * istd


# -- attention ---------------------------------------------------------------------------------------------
def _row_max(p, m):  # pragma: no cover - compiled
    """``max(p[:m])`` (compiled with "nnan": vectorised; a NaN in the row makes the row NaN all the same)."""
    peak = -np.inf
    for j in range(m):
        peak = max(peak, p[j])
    return peak


def _row_sum(p, m):  # pragma: no cover - compiled
    """``sum(p[:m])`` (compiled with "reassoc": vectorised, in one fixed order)."""
    total = p.dtype.type(0)
    for j in range(m):
        total += p[j]
    return total


def _row_dot(a, b, m):  # pragma: no cover - compiled
    """``a[:m] · b[:m]`` (as :func:`_row_sum`)."""
    total = a.dtype.type(0)
    for j in range(m):
        total += a[j] * b[j]
    return total


def _softmax(s, mask, has_mask, causal, heads, vector):  # pragma: no cover - compiled
    """In place over ``s`` (B, T, T), B = N·heads: each row's softmax over its allowed keys, zeros elsewhere.
    Serial: it runs on one block of the batch, the blocks on minidl's threads."""
    batch, t, _ = s.shape
    p = np.empty(t, s.dtype)
    e = np.empty(t, s.dtype)
    bits = np.empty(t, np.int32)
    for bh in range(batch):
        n = bh // heads
        for i in range(t):
            m = i + 1 if causal else t
            if has_mask:
                for j in range(m):
                    p[j] = s[bh, i, j] if mask[n, j] else -np.inf
            else:
                for j in range(m):
                    p[j] = s[bh, i, j]
            peak = _row_max(p, m)
            if peak == -np.inf:  # no key left: all-zero weights
                for j in range(t):
                    s[bh, i, j] = 0
                continue
            for j in range(m):
                p[j] -= peak
            _exp_rows(p, e, bits, m, vector)
            if has_mask:
                for j in range(m):
                    e[j] = e[j] if mask[n, j] else 0  # exactly 0: exp's clamp gives 1.6e-38 for -inf
            total = _row_sum(e, m)
            inv = 1 / total  # float64 for float32 data too: the products round once
            for j in range(m):
                s[bh, i, j] = e[j] * inv
            for j in range(m, t):
                s[bh, i, j] = 0


def _softmax_backward(w, ds, causal):  # pragma: no cover - compiled
    """In place: ``ds ← w ⊙ (ds − Σ_j ds ⊙ w)`` per row (keys after the query have ``w = 0``, causal). Serial, as
    :func:`_softmax`."""
    batch, t, _ = w.shape
    for bh in range(batch):
        for i in range(t):
            m = i + 1 if causal else t
            dot = _row_dot(ds[bh, i], w[bh, i], m)
            for j in range(m):
                ds[bh, i, j] = w[bh, i, j] * (ds[bh, i, j] - dot)
            for j in range(m, t):
                ds[bh, i, j] = 0


# -- Embedding ---------------------------------------------------------------------------------------------
def _scatter_rows(ids, g, out):  # pragma: no cover - compiled
    out[...] = 0
    for p in range(ids.size):
        row = ids[p]
        for j in range(g.shape[1]):
            out[row, j] += g[p, j]


# -- RNN steps ---------------------------------------------------------------------------------------------
def _lstm_step(a, bias, c_prev, h_prev, m, has_mask, tc_out, c_next, h_next, vector):  # pragma: no cover - compiled
    """``a`` (n, 4u) holds the step's product ``[x_t | h_{t-1}] [W_ih | W_hh]ᵀ``, ``bias`` ``b_ih + b_hh``: the gate
    values overwrite ``a``, then the new states (``h_prev``, ``h_next`` may be strided: rows of ``[x | h]``).

    Row by row, in buffers of one row (they stay in L1): each pass is a branch-free loop over a few arrays,
    which LLVM vectorises (with more arrays in one loop it gives up on the checks that they do not overlap)."""
    one, two = np.float32(1), np.float32(2)  # float32 constants: no float64 promotion of float32 data
    n, rows = a.shape
    u = rows // 4
    p = np.empty(rows, a.dtype)
    e = np.empty(rows, a.dtype)
    bits = np.empty(rows, np.int32)
    for r in range(n):
        for j in range(rows):
            p[j] = -(a[r, j] + bias[j])
        for j in range(2 * u, 3 * u):
            p[j] *= two
        _exp_rows(p, e, bits, rows, vector)
        for j in range(rows):
            a[r, j] = one / (one + e[j])
        for j in range(2 * u, 3 * u):
            a[r, j] = (one - e[j]) * a[r, j]  # tanh z = (1 - e^-2z) / (1 + e^-2z)
        for j in range(u):
            c = a[r, u + j] * c_prev[r, j] + a[r, j] * a[r, 2 * u + j]
            c_next[r, j] = c
            p[j] = -two * c
        _exp_rows(p, e, bits, u, vector)
        for j in range(u):
            tc = (one - e[j]) / (one + e[j])
            tc_out[r, j] = tc
            p[j] = a[r, 3 * u + j] * tc
        for j in range(u):  # a pass of its own: h_next's stride is known at run time only, which stops vectorising
            h_next[r, j] = p[j] if not has_mask or m[r] else h_prev[r, j]
        if has_mask and not m[r]:
            for j in range(u):
                c_next[r, j] = c_prev[r, j]


def _gru_step(hh, xp, bias_hh, h_prev, m, has_mask, a, hn, h_next, vector):  # pragma: no cover - compiled
    """``hh`` (n, 3u) holds ``h W_hhᵀ``; writes r, z, n into ``a``, ``W_hn h + b_hn`` into ``hn``, the new state."""
    one, two = np.float32(1), np.float32(2)  # float32 constants: no float64 promotion of float32 data
    n, rows = hh.shape
    u = rows // 3
    p = np.empty(n * 2 * u, hh.dtype)
    e = np.empty(n * 2 * u, hh.dtype)
    bits = np.empty(n * 2 * u, np.int32)
    for r in range(n):
        for j in range(2 * u):
            p[r * 2 * u + j] = -(xp[r, j] + hh[r, j] + bias_hh[j])
    _exp_rows(p, e, bits, n * 2 * u, vector)
    for r in range(n):
        for j in range(2 * u):
            a[r, j] = one / (one + e[r * 2 * u + j])
        for j in range(u):
            hn_j = hh[r, 2 * u + j] + bias_hh[2 * u + j]
            hn[r, j] = hn_j
            p[r * u + j] = -two * (xp[r, 2 * u + j] + a[r, j] * hn_j)
    _exp_rows(p, e, bits, n * u, vector)
    for r in range(n):
        keep = not has_mask or m[r]
        for j in range(u):
            ej = e[r * u + j]
            new = (one - ej) / (one + ej)
            a[r, 2 * u + j] = new
            z = a[r, u + j]
            h = (one - z) * new + z * h_prev[r, j]
            h_next[r, j] = h if keep else h_prev[r, j]


def _lstm_back_step(dh, dc, a, tc, c_prev, m, has_mask, gx, dc_prev, carried_h):  # pragma: no cover - compiled
    """``gx`` of the step; ``dc_prev`` = the cell gradient passed back; ``carried_h`` the part of ``dh`` that a
    padded step carries past (zero at valid steps). Three branch-free passes per row, as :func:`_lstm_step`."""
    one = np.float32(1)  # a float32 constant: no float64 promotion of float32 data
    n, u = dh.shape
    for r in range(n):
        for j in range(u):  # o, and the cell gradient d_c (in dc_prev until the last pass)
            o, t, d_h = a[r, 3 * u + j], tc[r, j], dh[r, j]
            dc_prev[r, j] = dc[r, j] + d_h * o * (one - t * t)
            gx[r, 3 * u + j] = d_h * t * o * (one - o)
        for j in range(u):  # i, g
            i, g, d_c = a[r, j], a[r, 2 * u + j], dc_prev[r, j]
            gx[r, j] = d_c * g * i * (one - i)
            gx[r, 2 * u + j] = d_c * i * (one - g * g)
        for j in range(u):  # f
            f, d_c = a[r, u + j], dc_prev[r, j]
            gx[r, u + j] = d_c * c_prev[r, j] * f * (one - f)
            dc_prev[r, j] = d_c * f
        keep = not has_mask or m[r]
        for j in range(u):
            carried_h[r, j] = 0 if keep else dh[r, j]
        if not keep:
            for j in range(4 * u):
                gx[r, j] = 0
            for j in range(u):
                dc_prev[r, j] = dc[r, j]


def _gru_back_step(dh, a, hn, h_prev, m, has_mask, gx, gh, direct):  # pragma: no cover - compiled
    """``gx``, ``gh`` of the step and ``direct``: the gradient of ``h_prev`` besides ``gh W_hh``."""
    one = np.float32(1)  # a float32 constant: no float64 promotion of float32 data
    n, u = dh.shape
    for r in range(n):
        keep = not has_mask or m[r]
        for j in range(u):
            if keep:
                rr, z, nn = a[r, j], a[r, u + j], a[r, 2 * u + j]
                d = dh[r, j]
                d_an = d * (one - z) * (one - nn * nn)
                gx[r, 2 * u + j] = d_an
                gh[r, 2 * u + j] = d_an * rr
                gr = d_an * hn[r, j] * rr * (one - rr)
                gz = d * (h_prev[r, j] - nn) * z * (one - z)
                gx[r, j] = gr
                gh[r, j] = gr
                gx[r, u + j] = gz
                gh[r, u + j] = gz
                direct[r, j] = d * z
            else:
                gx[r, j] = gx[r, u + j] = gx[r, 2 * u + j] = 0
                gh[r, j] = gh[r, u + j] = gh[r, 2 * u + j] = 0
                direct[r, j] = dh[r, j]


#: Kernels over rows whose sums may be reassociated (vectorised: in one compiled order, the same bits every run).
_ROWS: tuple[Callable[..., Any], ...] = (_ln_forward, _ln_backward)
_SERIAL: tuple[Callable[..., Any], ...] = (_softmax, _softmax_backward,
                                          _scatter_rows, _lstm_step, _gru_step, _lstm_back_step, _gru_back_step)


def _load() -> None:
    """Compile (or load from the cache) every kernel of this module, once per process."""
    global prange, _exp_rows, _row_max, _row_sum, _row_dot
    with _loading:
        if _compiled:
            return
        import numba

        prange = numba.prange
        # No "nnan"/"ninf": NaN must propagate. exp's range reduction must not be reassociated (a call of its
        # own keeps its flags); the row sums may be, in one compiled order: the same bits at any thread count.
        _exp_rows = numba.njit(nogil=True, fastmath={"contract"}, cache=True)(_exp_rows)
        _row_max = numba.njit(nogil=True, fastmath={"nnan", "nsz", "reassoc"}, cache=True)(_row_max)
        _row_sum = numba.njit(nogil=True, fastmath={"contract", "reassoc"}, cache=True)(_row_sum)
        _row_dot = numba.njit(nogil=True, fastmath={"contract", "reassoc"}, cache=True)(_row_dot)
        # GELU stays a prange kernel: compiled serial, its loops vectorise worse (4.6 instead of 2.2 ms, char-gpt's)
        _compiled["_gelu"] = numba.njit(parallel=True, fastmath={"contract", "reassoc"}, cache=True)(_gelu)
        for fn in _ROWS:
            _compiled[fn.__name__] = numba.njit(nogil=True, fastmath={"contract", "reassoc"}, cache=True)(fn)
        for fn in _SERIAL:  # error_model="numpy": x / 0 is inf, not a raise, so that divisions vectorise
            _compiled[fn.__name__] = numba.njit(nogil=True, fastmath={"contract"}, error_model="numpy", cache=True)(fn)


def _kernel(name: str) -> Any:
    kernel = _compiled.get(name)  # (no lock once loaded: an RNN takes a kernel at every step)
    if kernel is None:
        _load()
        kernel = _compiled[name]
    return kernel


def _vector(dtype: np.dtype) -> bool:
    return dtype == np.float32


# -- the operations FastBackend calls: every kernel runs on fixed blocks on minidl's threads ------------------------
def _on_blocks(count: int, size: int, fn: Callable[[int, slice], object]) -> None:
    """``fn(i, block)`` for the blocks of at most ``size`` of ``count`` rows (they depend on ``count`` only), on
    minidl's threads."""
    blocks = sequence.batch_blocks(count, size) if count else []
    threads.map_blocks(lambda i, slot: fn(i, blocks[i]), len(blocks))


def gelu(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x·Φ(x), dy/dx)`` of the exact GELU: a prange kernel (the caller holds the fast backend's lock)."""
    xc = np.ascontiguousarray(x)
    y, d = np.empty_like(xc), np.empty_like(xc)
    _kernel("_gelu")(xc.reshape(-1), y.reshape(-1), d.reshape(-1), _vector(x.dtype))
    return y, d


def gelu_backward(d: np.ndarray, grad_out: np.ndarray) -> np.ndarray:
    """``grad_out · dy/dx`` (``d``, from :func:`gelu`)."""
    g, out = np.ascontiguousarray(grad_out).reshape(-1), np.empty(d.shape, np.result_type(d, grad_out))
    flat, dflat = out.reshape(-1), d.reshape(-1)
    _on_blocks(flat.size, GELU_BLOCK, lambda i, b: np.multiply(g[b], dflat[b], out=flat[b]))
    return out


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> tuple[np.ndarray, Any]:
    rows = np.ascontiguousarray(x).reshape(-1, x.shape[-1])
    y, x_hat = np.empty_like(rows), np.empty_like(rows)
    inv_std = np.empty(len(rows), x.dtype)
    kernel = _kernel("_ln_forward")
    _on_blocks(len(rows), LN_BLOCK, lambda i, b: kernel(rows[b], weight, bias, float(eps), y[b], x_hat[b], inv_std[b]))
    return y.reshape(x.shape), (x_hat, inv_std, weight)


def layer_norm_backward(ctx: Any, grad_out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x_hat, inv_std, weight = ctx
    d = x_hat.shape[1]
    g = np.ascontiguousarray(grad_out).reshape(-1, d)
    dx = np.empty_like(g)
    count = -(-len(g) // LN_BLOCK)  # as many blocks as _on_blocks makes
    dweight_parts, dbias_parts = np.zeros((count, d), np.float64), np.zeros((count, d), np.float64)
    kernel = _kernel("_ln_backward")
    _on_blocks(len(g), LN_BLOCK, lambda i, b: kernel(g[b], x_hat[b], inv_std[b], weight, dx[b], dweight_parts[i],
                                                    dbias_parts[i]))
    dweight = dweight_parts.sum(axis=0).astype(g.dtype)  # the blocks' sums added in block order
    dbias = dbias_parts.sum(axis=0).astype(g.dtype)
    return dx.reshape(grad_out.shape), dweight, dbias


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None, causal: bool,
              drop: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, Any]:
    n, h, t, dk = q.shape
    weights = np.empty((n, h, t, t), q.dtype)
    heads = np.empty((n, t, h, dk), q.dtype).transpose(0, 2, 1, 3)  # the layer's concatenation of heads: no copy
    dropped = weights if drop is None else np.empty_like(weights)
    mask_arr = np.ones((n, 1), bool) if mask is None else np.ascontiguousarray(mask)
    softmax, vector = _kernel("_softmax"), _vector(q.dtype)

    def block(i: int, b: slice) -> None:
        w = np.matmul(q[b], k[b].swapaxes(-1, -2), out=weights[b])
        softmax(w.reshape(-1, t, t), mask_arr[b], mask is not None, causal, h, vector)
        np.matmul(w if drop is None else np.multiply(w, drop[b], out=dropped[b]), v[b], out=heads[b])

    _on_blocks(n, ATTENTION_BLOCK, block)
    return heads, weights, (q, k, v, weights, drop, dropped, causal)


def attention_backward(ctx: Any, d_heads: np.ndarray, out: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q, k, v, weights, drop, dropped, causal = ctx
    n, h, t, dk = q.shape
    dq, dk_, dv = out if out is not None else (np.empty((n, h, t, dk), q.dtype) for _ in range(3))
    softmax_backward = _kernel("_softmax_backward")

    def block(i: int, b: slice) -> None:
        d_scores = np.matmul(d_heads[b], v[b].swapaxes(-1, -2))  # one block's: it stays in the core's cache
        np.matmul(dropped[b].swapaxes(-1, -2), d_heads[b], out=dv[b])
        if drop is not None:
            d_scores *= drop[b]
        softmax_backward(weights[b].reshape(-1, t, t), d_scores.reshape(-1, t, t), causal)
        np.matmul(d_scores, k[b], out=dq[b])
        np.matmul(d_scores.swapaxes(-1, -2), q[b], out=dk_[b])

    _on_blocks(n, ATTENTION_BLOCK, block)
    return dq, dk_, dv


def embedding_backward(ids: np.ndarray, grad_out: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = Σ grad_out rows at the positions holding id i`` (zero for ids that do not occur)."""
    _kernel("_scatter_rows")(np.ascontiguousarray(ids).reshape(-1), np.ascontiguousarray(grad_out).reshape(
        -1, out.shape[1]), out)


# -- the recurrent loops: sequence.rnn_forward / rnn_backward with these steps --------------------------------
def _fwd_lstm(ctx, s, b, xh, weight_t, m):
    a = np.matmul(xh, weight_t, out=ctx.acts[s, b])
    _kernel("_lstm_step")(a, ctx.bias, ctx.c[s, b], ctx.h[s, b], _NO_MASK if m is None else m[:, 0], m is not None,
                          ctx.aux[s, b], ctx.c[s + 1, b], ctx.h[s + 1, b], _vector(a.dtype))


def _fwd_gru(ctx, s, b, xp, weight_hh_t, m):
    hh = ctx.h[s, b] @ weight_hh_t
    _kernel("_gru_step")(hh, xp, ctx.bias, ctx.h[s, b], _NO_MASK if m is None else m[:, 0], m is not None,
                         ctx.acts[s, b], ctx.aux[s, b], ctx.h[s + 1, b], _vector(hh.dtype))


def _back_lstm(ctx, s, b, dh, dc, m, gx, gh):
    dc_prev, carried = np.empty_like(dh), np.empty_like(dh)
    _kernel("_lstm_back_step")(dh, dc, ctx.acts[s, b], ctx.aux[s, b], ctx.c[s, b], _NO_MASK if m is None else m[:, 0],
                               m is not None, gx, dc_prev, carried)
    return (None if m is None else carried), dc_prev


def _back_gru(ctx, s, b, dh, dc, m, gx, gh):
    direct = np.empty_like(dh)
    _kernel("_gru_back_step")(dh, ctx.acts[s, b], ctx.aux[s, b], ctx.h[s, b], _NO_MASK if m is None else m[:, 0],
                              m is not None, gx, gh, direct)
    return direct, None


_NO_MASK = np.ones(1, bool)
#: The compiled steps of the cells that have them (SimpleRNN keeps NumPy's: one tanh, nothing to fuse).
STEPS = {"lstm": (None, _fwd_lstm, _back_lstm), "gru": (None, _fwd_gru, _back_gru)}


def rnn_forward(cell: str, xh: np.ndarray, weight_ih: np.ndarray, weight_hh: np.ndarray, bias_ih: np.ndarray,
                bias_hh: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, Any]:
    return sequence.rnn_forward(cell, xh, weight_ih, weight_hh, bias_ih, bias_hh, mask, steps=STEPS.get(cell),
                                block=sequence.RNN_BLOCK)

