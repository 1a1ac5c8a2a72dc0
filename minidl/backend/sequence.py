"""The NumPy backend's sequence operations: GELU, LayerNorm, attention's softmax core, and the LSTM/GRU time loops.

The layers (:mod:`minidl.layers.activations`, ``normalization``, ``attention``, ``recurrent``) keep
the textbook formulas in their docstrings and the big products that surround these operations
(projections, weight gradients); what runs here is the part whose speed depends on how it is
computed. Each function returns ``(result, ctx)``; the backward function takes that ``ctx``.
Every figure below is CPU time, one thread, float32, on the 2-core AMD EPYC (OpenBLAS Haswell
kernels) of ``docs/benchmarks.md``.

- **In place where possible.** The attention scores are masked, shifted, exponentiated and
  normalised in the array the product wrote: the ``(N, H, T, T)`` scores of ``char-gpt``
  (8 MB) were copied four times before (``np.where``, ``scores - peak``, ``exp``, the division).
- **The LSTM's gates in one call.** The sigmoid gates ``i, f, o`` are ``½(1 + tanh(a/2))``;
  the ``½`` is folded into their rows of the weights and biases (exact: a power of two), so one
  ``np.tanh`` covers all four gates of a step (NumPy's ``tanh`` and ``exp`` cost ~2-3 ns per
  float32 value here, 15x an addition: the transcendental calls, not the arithmetic, bound a step).
- **Batch blocks.** An RNN's sequences are independent, so the time loops can run on blocks of
  sequences, each block's whole loop on one of minidl's threads (:func:`minidl.threads.map_blocks`;
  NumPy releases the GIL in its products and ufuncs). The blocks depend on the batch size only, so
  the results are the same bits with any thread count. The NumPy backend keeps one block: its ~10
  NumPy calls per step and block cost more at one thread than a second thread gains (``gru-text``,
  one thread, blocks of :data:`RNN_BLOCK`: 422 -> 508 ms); the ``fast`` backend's steps are one
  compiled call each and take blocks of :data:`RNN_BLOCK`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import threads
from .linear import linear_forward

__all__ = ["RNN_BLOCK", "gelu", "gelu_backward", "layer_norm", "layer_norm_backward", "attention",
           "attention_backward", "allowed_keys", "embedding_backward", "rnn_forward", "rnn_backward", "batch_blocks"]

#: The ``fast`` backend's RNN time loops run on blocks of at most this many sequences (see the module).
RNN_BLOCK = 32

_SQRT_2_OVER_PI = float(np.sqrt(2 / np.pi))
_GELU_CUBIC = 0.044715


# -- GELU ------------------------------------------------------------------------------------------
def gelu(x: np.ndarray, approximate: str) -> tuple[np.ndarray, Any]:
    """``(x·Φ(x), ctx)``; ``approximate="tanh"`` replaces ``Φ`` by GPT-2's tanh form."""
    if approximate == "tanh":
        t = np.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x**3))
        y = 0.5 * x * (1 + t)
        return y, ("tanh", x, t)
    from scipy.special import erf  # imported here: SciPy adds ~0.1 s to `import minidl`

    cdf = erf(x * x.dtype.type(1 / np.sqrt(2)))
    cdf += 1
    cdf *= 0.5
    return x * cdf, ("none", x, cdf)


def gelu_backward(ctx: Any, grad_out: np.ndarray) -> np.ndarray:
    """``grad_out · dy/dx``."""
    kind, x, saved = ctx
    if kind == "tanh":
        t = saved
        dt = (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * _GELU_CUBIC * x * x)
        return grad_out * (0.5 * (1 + t) + 0.5 * x * dt)
    pdf = np.exp(-0.5 * x * x)
    pdf *= x.dtype.type(1 / np.sqrt(2 * np.pi))
    pdf *= x
    pdf += saved
    pdf *= grad_out
    return pdf


# -- LayerNorm -------------------------------------------------------------------------------------
def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> tuple[np.ndarray, Any]:
    """``(γ ⊙ x̂ + β, ctx)``, ``x̂`` normalised over the last axis."""
    x_hat = x - np.add.reduce(x, axis=-1, keepdims=True) * x.dtype.type(1 / x.shape[-1])
    var = np.add.reduce(x_hat * x_hat, axis=-1, keepdims=True)
    var *= x.dtype.type(1 / x.shape[-1])
    var += x.dtype.type(eps)
    inv_std = np.sqrt(var, out=var)
    np.divide(1, inv_std, out=inv_std)
    x_hat *= inv_std
    y = x_hat * weight
    y += bias
    return y, (x_hat, inv_std, weight)


def layer_norm_backward(ctx: Any, grad_out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dx, dweight, dbias)``."""
    x_hat, inv_std, weight = ctx
    d = x_hat.shape[-1]
    rows = grad_out.reshape(-1, d)
    g_hat = grad_out * weight
    dweight = np.add.reduce((grad_out * x_hat).reshape(-1, d), axis=0)
    dbias = np.add.reduce(rows, axis=0)
    inv_d = x_hat.dtype.type(1 / d)
    mean_g = np.add.reduce(g_hat, axis=-1, keepdims=True)
    mean_g *= inv_d
    mean_gx = np.add.reduce(g_hat * x_hat, axis=-1, keepdims=True)
    mean_gx *= inv_d
    g_hat -= mean_g
    g_hat -= x_hat * mean_gx
    g_hat *= inv_std
    return g_hat, dweight, dbias


# -- Embedding ---------------------------------------------------------------------------------------
def embedding_backward(ids: np.ndarray, grad_out: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = Σ grad_out rows at the positions holding id i``: the positions sorted by id, each run summed by one
    ``np.add.reduceat`` (``np.add.at`` does the same scatter about 3x slower)."""
    out[...] = 0
    ids = ids.reshape(-1)
    if ids.size:
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        rows = grad_out.reshape(-1, out.shape[1])[order]
        out[ids[starts]] = np.add.reduceat(rows, starts, axis=0)


# -- attention ---------------------------------------------------------------------------------------
def allowed_keys(mask: np.ndarray | None, causal: bool, t: int) -> np.ndarray | None:
    """Where a query may attend to a key, broadcastable to ``(N, H, T, T)``; None when everywhere."""
    allowed = None if mask is None else mask[:, None, None, :]
    if causal:
        past = np.tri(t, dtype=bool)
        allowed = past if allowed is None else allowed & past
    return allowed


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None, causal: bool,
              drop: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, Any]:
    """``(heads, weights, ctx)``: ``weights = softmax(q kᵀ + M)`` over the keys, ``heads = (weights ⊙ drop) v``.

    ``q, k, v`` are ``(N, H, T, dk)`` (``q`` already scaled); ``M`` is ``-∞`` where ``mask`` (N, T) is
    False and, if ``causal``, above the diagonal; a query with no key left gets all-zero weights.
    """
    scores = q @ k.swapaxes(-1, -2)
    allowed = allowed_keys(mask, causal, q.shape[2])
    if allowed is not None:
        np.copyto(scores, -np.inf, where=~allowed)
    peak = np.maximum.reduce(scores, axis=-1, keepdims=True)
    peak[peak == -np.inf] = 0  # a row with no key left: exp(-inf) = 0 everywhere, no NaN from -inf - -inf
    scores -= peak
    weights = np.exp(scores, out=scores)
    total = np.add.reduce(weights, axis=-1, keepdims=True)
    total[total == 0] = 1
    weights /= total
    dropped = weights if drop is None else weights * drop
    return dropped @ v, weights, (q, k, v, weights, drop, dropped)


def attention_backward(ctx: Any, d_heads: np.ndarray, out: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dq, dk, dv)`` from the gradient of the heads; ``dq`` is that of the scaled ``q``. ``out`` (3, N, H, T, dk),
    any strides (a view of the layer's packed gradient), receives them if given."""
    q, k, v, weights, drop, dropped = ctx
    d_scores = d_heads @ v.swapaxes(-1, -2)
    dv = np.matmul(dropped.swapaxes(-1, -2), d_heads, out=None if out is None else out[2])
    if drop is not None:
        d_scores *= drop
    row = np.add.reduce(d_scores * weights, axis=-1, keepdims=True)
    d_scores -= row
    d_scores *= weights
    return (np.matmul(d_scores, k, out=None if out is None else out[0]),
            np.matmul(d_scores.swapaxes(-1, -2), q, out=None if out is None else out[1]), dv)


# -- recurrent layers ----------------------------------------------------------------------------------
def batch_blocks(n: int, size: int = RNN_BLOCK) -> list[slice]:
    """The blocks of at most ``size`` sequences (as equal as possible) the RNN loops run on."""
    count = -(-n // size)
    edges = [n * i // count for i in range(count + 1)]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _sigmoid(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``1 / (1 + e^-a)`` as ``(1 + tanh(a/2)) / 2``: no overflow for large ``|a|``."""
    out = np.multiply(a, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1
    out *= 0.5
    return out


class _RNN:
    """What a recurrent layer's forward keeps for backward."""

    __slots__ = ("cell", "t", "n", "u", "weight_hh", "bias", "mask", "h", "c", "acts", "aux", "blocks", "back")
    cell: str
    t: int
    n: int
    u: int
    weight_hh: np.ndarray
    bias: np.ndarray  # what a step adds: b_ih + b_hh (folded), or the GRU's b_hh
    mask: np.ndarray | None  # (T, N, 1)
    h: np.ndarray  # (T+1, N, U), a view of the layer's [x | h] rows
    c: np.ndarray  # the LSTM's cell states (T+1, N, U); empty for the other cells
    acts: np.ndarray  # the gate values of every step (T, N, G·U)
    aux: np.ndarray  # tanh(c) (LSTM) or W_hn h + b_hn (GRU) of every step (T, N, U); empty for SimpleRNN
    blocks: list[slice]
    back: Callable[..., tuple[np.ndarray, np.ndarray | None]]


def rnn_forward(cell: str, xh: np.ndarray, weight_ih: np.ndarray, weight_hh: np.ndarray, bias_ih: np.ndarray,
                bias_hh: np.ndarray, mask: np.ndarray | None, steps: tuple | None = None,
                block: int | None = None) -> tuple[np.ndarray, Any]:
    """``(h, ctx)``: the states ``h`` (T+1, N, U) (``h[0] = 0``) of a recurrent layer, written into ``xh``.

    ``xh`` (T+1, N, D+U) holds the inputs ``x_t`` in ``xh[:T, :, :D]``; the states go into ``xh[:, :, D:]``
    (``h`` is that view), so that row ``xh[t]`` is ``[x_t | h_t]``: a step's one product for the cells whose
    ``b_hh`` only adds to ``b_ih`` (SimpleRNN, LSTM), ``[x_t | h_t] [W_ih | W_hh]ᵀ + (b_ih + b_hh)``, and the
    weight gradients' one product afterwards (``gxᵀ xh[:T]``). The GRU's ``r`` multiplies ``W_hn h + b_hn``
    alone: its input projection ``x W_ihᵀ + b_ih`` is one product over all steps first.

    ``cell`` is ``"tanh"`` / ``"relu"`` (SimpleRNN), ``"lstm"`` or ``"gru"``; ``mask`` (N, T) marks
    valid steps: a padded step carries every state through unchanged. ``steps``: ``(prepare, forward step,
    backward step)`` to use instead of this module's (the ``fast`` backend's compiled ones; ``prepare(weight_t,
    bias)`` takes the step's transposed weights and its bias, the caller's own copies, and returns the two to
    use); ``block``: run the loops on blocks of at most that many sequences, one block per thread at a time
    (None: one block).
    """
    t, n = xh.shape[0] - 1, xh.shape[1]
    u, d = weight_hh.shape[1], weight_ih.shape[1]
    ctx = _RNN()
    ctx.cell, ctx.t, ctx.n, ctx.u, ctx.weight_hh = cell, t, n, u, weight_hh
    ctx.mask = None if mask is None else np.ascontiguousarray(mask.T[:, :, None])  # (T, N, 1)
    ctx.h = xh[:, :, d:]
    ctx.h[0] = 0
    ctx.c = np.empty((t + 1, n, u) if cell == "lstm" else 0, dtype=xh.dtype)  # every step writes its c
    ctx.c[:1] = 0
    ctx.acts = np.empty((t, n, weight_hh.shape[0]), dtype=xh.dtype)  # the gate values of every step
    ctx.aux = np.empty((t, n, u) if cell in ("lstm", "gru") else 0, dtype=xh.dtype)
    ctx.blocks = batch_blocks(n, block or max(n, 1))
    prepare, step, ctx.back = steps or _STEPS[cell]
    if cell == "gru":
        inputs = linear_forward(xh[:t, :, :d], weight_ih.T, bias_ih)
        weight_t, ctx.bias = np.ascontiguousarray(weight_hh.T), bias_hh
    else:
        inputs, weight_t, ctx.bias = xh, np.empty((d + u, weight_hh.shape[0]), xh.dtype), bias_ih + bias_hh
        weight_t[:d], weight_t[d:] = weight_ih.T, weight_hh.T  # [W_ih | W_hh]ᵀ
    if prepare is not None:
        weight_t, ctx.bias = prepare(weight_t, ctx.bias)

    def run_block(b: int, slot: int) -> None:
        rows_b = ctx.blocks[b]
        for s in range(t):
            m = None if ctx.mask is None else ctx.mask[s, rows_b]
            step(ctx, s, rows_b, inputs[s, rows_b], weight_t, m)

    threads.map_blocks(run_block, len(ctx.blocks))
    return ctx.h, ctx


def _carry(new: np.ndarray, old: np.ndarray, m: np.ndarray | None, out: np.ndarray) -> None:
    if m is None:
        out[...] = new
    else:
        np.copyto(out, np.where(m, new, old))


def _step_simple(ctx: _RNN, s: int, b: slice, xh: np.ndarray, weight_t: np.ndarray, m: np.ndarray | None) -> None:
    a = np.matmul(xh, weight_t, out=ctx.acts[s, b])
    a += ctx.bias
    if ctx.cell == "tanh":
        np.tanh(a, out=a)
    else:
        np.maximum(a, 0, out=a)
    _carry(a, ctx.h[s, b], m, ctx.h[s + 1, b])


def _halve_sigmoid_gates(weight_t: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The LSTM's ``i, f, o`` take ``½(1 + tanh(a/2))``: their columns of ``[W_ih | W_hh]ᵀ`` (scaled in place) and
    their entries of the bias scaled by ½ (exact), so that one ``tanh`` per step covers all four gates."""
    u = len(bias) // 4
    half = np.ones(4 * u, dtype=bias.dtype)
    half[:2 * u] = 0.5
    half[3 * u:] = 0.5
    weight_t *= half
    return weight_t, bias * half


def _step_lstm(ctx: _RNN, s: int, b: slice, xh: np.ndarray, weight_t: np.ndarray, m: np.ndarray | None) -> None:
    u = ctx.u
    a = np.matmul(xh, weight_t, out=ctx.acts[s, b])
    a += ctx.bias
    np.tanh(a, out=a)
    sig = a[:, :2 * u]  # i, f: ½(1 + tanh(a/2)), the ½ already in a
    sig += 1
    sig *= 0.5
    o = a[:, 3 * u:]
    o += 1
    o *= 0.5
    i, f, g = a[:, :u], a[:, u:2 * u], a[:, 2 * u:3 * u]
    c = np.multiply(f, ctx.c[s, b], out=ctx.c[s + 1, b] if m is None else None)
    c += i * g
    tc = np.tanh(c, out=ctx.aux[s, b])
    if m is None:
        np.multiply(o, tc, out=ctx.h[s + 1, b])
    else:
        _carry(c, ctx.c[s, b], m, ctx.c[s + 1, b])
        _carry(o * tc, ctx.h[s, b], m, ctx.h[s + 1, b])


def _step_gru(ctx: _RNN, s: int, b: slice, xp: np.ndarray, weight_hh_t: np.ndarray, m: np.ndarray | None) -> None:
    u = ctx.u
    h = ctx.h[s, b]
    hh = h @ weight_hh_t
    hh += ctx.bias
    a = ctx.acts[s, b]
    np.add(xp[:, :2 * u], hh[:, :2 * u], out=a[:, :2 * u])
    _sigmoid(a[:, :2 * u], out=a[:, :2 * u])
    r, z = a[:, :u], a[:, u:2 * u]
    ctx.aux[s, b] = hh[:, 2 * u:]
    new = np.multiply(r, hh[:, 2 * u:], out=a[:, 2 * u:])
    new += xp[:, 2 * u:]
    np.tanh(new, out=new)
    h_new = h - new
    h_new *= z
    h_new += new
    _carry(h_new, h, m, ctx.h[s + 1, b])


def rnn_backward(ctx: Any, dy: np.ndarray | None, d_last: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(gx, gh)`` (T, N, G·U): the gradients of each step's ``x W_ihᵀ + b_ih`` and of its ``h W_hhᵀ + b_hh``
    (the same array for the cells whose step is one product of ``[x | h]``: all but the GRU), from the gradient
    ``dy`` (T, N, U) of the states ``h[1:]`` and/or ``d_last`` (N, U) of the final state ``h[T]``."""
    t, u = ctx.t, ctx.u
    dtype = ctx.h.dtype
    gx = np.empty_like(ctx.acts)
    gh = np.empty_like(gx) if ctx.cell == "gru" else gx
    backward_step = ctx.back

    def block(b: int, slot: int) -> None:
        rows = ctx.blocks[b]
        dh = np.zeros((rows.stop - rows.start, u), dtype) if d_last is None else d_last[rows].copy()
        dc = np.zeros_like(dh) if ctx.cell == "lstm" else None
        for s in range(t - 1, -1, -1):
            if dy is not None:
                dh += dy[s, rows]
            m = None if ctx.mask is None else ctx.mask[s, rows]
            direct, dc = backward_step(ctx, s, rows, dh, dc, m, gx[s, rows], gh[s, rows])
            if s:  # (not for h_0, a constant: one product a block less)
                dh = gh[s, rows] @ ctx.weight_hh
                if direct is not None:
                    dh += direct

    threads.map_blocks(block, len(ctx.blocks))
    return gx, gh


# A backward step writes its gx (and gh) and returns ``(direct, dc_prev)``: ``direct`` is the part of the gradient of
# ``h_{t-1}`` that does not come through ``gh W_hh`` (what a padded step carries past; the GRU's ``z`` path), or None.
def _masked(d: np.ndarray, m: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The part of a state gradient that enters a step, and the part a padded step carries past it."""
    if m is None:
        return d, None
    return np.where(m, d, 0), np.where(m, 0, d)


def _back_simple(ctx, s, b, dh, dc, m, gx, gh):
    dh, carried = _masked(dh, m)
    h = ctx.acts[s, b]
    if ctx.cell == "tanh":
        np.multiply(dh, 1 - h * h, out=gx)
    else:
        np.multiply(dh, h > 0, out=gx)
    return carried, None


def _back_lstm(ctx, s, b, dh, dc, m, gx, gh):
    u = ctx.u
    dh, carried_h = _masked(dh, m)
    dc, carried_c = _masked(dc, m)
    a, tc, c_prev = ctx.acts[s, b], ctx.aux[s, b], ctx.c[s, b]
    i, f, g, o = a[:, :u], a[:, u:2 * u], a[:, 2 * u:3 * u], a[:, 3 * u:]
    dc = dc + dh * o * (1 - tc * tc)
    np.multiply(dc, g, out=gx[:, :u])
    np.multiply(dc, c_prev, out=gx[:, u:2 * u])
    np.multiply(dc, i, out=gx[:, 2 * u:3 * u])
    np.multiply(dh, tc, out=gx[:, 3 * u:])
    deriv = a * (1 - a)
    deriv[:, 2 * u:3 * u] = 1 - g * g
    gx *= deriv
    dc_prev = dc * f
    if carried_c is not None:
        dc_prev += carried_c
    return carried_h, dc_prev


def _back_gru(ctx, s, b, dh, dc, m, gx, gh):
    u = ctx.u
    dh, carried = _masked(dh, m)
    a, h_prev = ctx.acts[s, b], ctx.h[s, b]
    r, z, n_ = a[:, :u], a[:, u:2 * u], a[:, 2 * u:]
    d_an = dh * (1 - z) * (1 - n_ * n_)
    gx[:, 2 * u:] = d_an
    gx[:, :u] = d_an * ctx.aux[s, b] * r * (1 - r)
    gx[:, u:2 * u] = dh * (h_prev - n_) * z * (1 - z)
    gh[...] = gx
    gh[:, 2 * u:] *= r
    direct = dh * z
    if carried is not None:
        direct += carried
    return direct, None


#: Each cell's ``(prepare, forward step, backward step)``.
_STEPS = {"tanh": (None, _step_simple, _back_simple), "relu": (None, _step_simple, _back_simple),
          "lstm": (_halve_sigmoid_gates, _step_lstm, _back_lstm), "gru": (None, _step_gru, _back_gru)}
