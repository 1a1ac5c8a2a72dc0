"""The SoftmaxCE loss, Dropout's masks and Adam's update in fixed blocks on minidl's threads.

Within ``fit`` everything outside :func:`minidl.threads.map_blocks` runs on one core. On char-gpt (logits
(32, 128, 103), two Dropout layers over (32, 128, 64)) the loss's softmax and gradient and the masks' random
draws and Adam were ~4 ms of such one-core work per step. Here they are cut into blocks whose boundaries depend on
the shapes only, never on the thread count:

- :func:`softmax_ce`: blocks of :data:`CE_BLOCK_ROWS` rows of the logits. Every row's probabilities and
  gradient are what one NumPy pass over all rows gives; the loss is the blocks' partial sums added in block
  order, so the bits are the same at any thread count.
- :func:`dropout_mask`: blocks of :data:`DROPOUT_BLOCK` entries, each drawn from a copy of the layer's PCG64
  generator advanced (``PCG64.advance``) to where a single draw of the whole array would be at that entry. The
  masks are the same bits as one ``rng.random(shape)`` call and the generator ends in the same state: the
  masks' stream did not change.
- :func:`adam_update`: blocks of :data:`ADAM_BLOCK` entries of the flat gradient and moment vectors
  (:meth:`minidl.flat_grads.FlatGrads.adam_step`); every entry is computed as in the per-parameter loop. Fewer
  than :data:`ADAM_MIN_SIZE` entries are one block in the caller. It is the NumPy backend's
  :meth:`~minidl.backend.base.Backend.adam_update`; the fast backend's kernel gives its bits.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from .. import threads

__all__ = ["CE_BLOCK_ROWS", "CE_MIN_SIZE", "DROPOUT_BLOCK", "ADAM_BLOCK", "ADAM_MIN_SIZE", "softmax_ce", "dropout_mask",
           "adam_update"]

#: Rows of logits per block of :func:`softmax_ce` (char-gpt's 4096 rows: 4 blocks).
CE_BLOCK_ROWS = 1024
#: Logits of fewer entries are one block in the caller (a batch-1 step is dispatch-bound).
CE_MIN_SIZE = 2**17
#: Entries per block of :func:`adam_update`.
ADAM_BLOCK = 2**15
#: Fewer parameters are one block in the caller: at 2 threads the blocks took 0.31-0.61 ms against 0.17-0.21 ms
#: for 85,000-110,000 float32 entries (lstm-rows, char-gpt), broke even near 800,000 and won 25% at 2,000,000.
ADAM_MIN_SIZE = 2**20
#: Entries per block of :func:`dropout_mask` (even: a float32 draw takes half a 64-bit output).
DROPOUT_BLOCK = 2**16


def softmax_ce(z: np.ndarray, labels: np.ndarray, dropped: np.ndarray) -> tuple[float, np.ndarray]:
    """The mean cross-entropy of the rows of ``z`` not ``dropped`` and its gradient ``(p - onehot) / count``.

    ``-log p_y = log Σ_j e^{s_j} - s_y`` with ``s = z - max z``: one exp serves both the loss and ``p``.

    Args:
        z: the logits, one row per position.
        labels: each row's class (any value where ``dropped``).
        dropped: True at the rows that are not scored.

    Shape:
        - ``z``: ``(M, K)``; ``labels``, ``dropped``: ``(M,)``; gradient: ``(M, K)``.

    Example::

        >>> import numpy as np
        >>> loss, grad = softmax_ce(np.zeros((2, 4)), np.array([0, 3]), np.array([False, False]))
        >>> round(loss, 4), grad[0].tolist()
        (1.3863, [-0.375, 0.125, 0.125, 0.125])
    """
    m, k = z.shape
    count = m - int(np.count_nonzero(dropped))
    scale = 1.0 / max(count, 1)
    grad = np.empty(z.shape, z.dtype)
    every = count == m

    def block(lo: int, hi: int) -> float:
        rows, labs = z[lo:hi], labels[lo:hi]
        shifted = rows - np.maximum.reduce(rows, axis=1, keepdims=True)
        p = np.exp(shifted, out=grad[lo:hi])
        total = np.add.reduce(p, axis=1, keepdims=True)
        p /= total
        starts = np.arange(0, p.size, k)  # take/put at flat indices: ~1 µs less than fancy indexing at batch 1
        if every:
            at = starts + labs
            value = float(np.add.reduce(np.log(total), axis=None) - np.add.reduce(shifted.take(at), axis=None))
        else:
            drop = dropped[lo:hi]
            at = starts + np.where(drop, 0, labs)
            value = float(np.add.reduce((np.log(total[:, 0]) - shifted.take(at))[~drop], axis=None))
        p.put(at, p.take(at) - 1.0)
        if not every:
            p[drop] = 0.0
        p *= scale
        return value

    if z.size < CE_MIN_SIZE:
        return block(0, m) / max(count, 1), grad
    parts = threads.map_blocks(lambda b, slot: block(b * CE_BLOCK_ROWS, (b + 1) * CE_BLOCK_ROWS),
                               -(-m // CE_BLOCK_ROWS))
    return sum(parts, 0.0) / max(count, 1), grad  # in block order: the same sum at any thread count


def dropout_mask(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype, rate: float) -> np.ndarray:
    """``(rng.random(shape, dtype) >= rate) / (1 - rate)``, the inverted-dropout mask; big ones on minidl's threads.

    The same bits as that one call, and ``rng`` ends in the same state, at any thread count: a block starts from a
    copy of ``rng``'s state advanced to its first entry.

    Args:
        rng: the layer's generator (PCG64, as ``np.random.default_rng`` makes it; others draw in one call).
        shape: the mask's shape.
        dtype: float32 or float64.
        rate: the probability of a zero, in ``[0, 1)``.

    Shape:
        - output: ``shape``.

    Example::

        >>> import numpy as np
        >>> dropout_mask(np.random.default_rng(0), (2, 3), np.dtype("float64"), 0.5).shape
        (2, 3)
    """
    dtype = np.dtype(dtype)
    scale = dtype.type(1 / (1 - rate))
    size = int(np.prod(shape))
    bits = rng.bit_generator
    if size < 2 * DROPOUT_BLOCK or not isinstance(bits, np.random.PCG64) or bits.state["has_uint32"]:
        return (rng.random(shape, dtype=dtype) >= rate) * scale
    out = np.empty(size, dtype)
    per = DROPOUT_BLOCK // 2 if dtype == np.float32 else DROPOUT_BLOCK  # 64-bit outputs a block consumes
    count = -(-size // DROPOUT_BLOCK)
    state = bits.state
    starts = _generators(count)
    for b, (start, _) in enumerate(starts):  # a state and an advance cost ~3 µs; a new PCG64 ~30 µs, a copy ~80
        start.state = state
        start.advance(b * per)

    def block(b: int, slot: int) -> None:
        at = slice(b * DROPOUT_BLOCK, min((b + 1) * DROPOUT_BLOCK, size))
        np.multiply(starts[b][1].random(at.stop - at.start, dtype=dtype) >= rate, scale, out=out[at])

    threads.map_blocks(block, count)
    bits.state = starts[-1][0].state  # where one draw of the whole array leaves it
    return out.reshape(shape)


_local = threading.local()


def _generators(count: int) -> list[tuple[np.random.PCG64, np.random.Generator]]:
    """``count`` generators of the calling thread, kept for its next calls (their states are set before use)."""
    kept: list[tuple[np.random.PCG64, np.random.Generator]] = getattr(_local, "generators", [])
    while len(kept) < count:
        bits = np.random.PCG64(0)
        kept.append((bits, np.random.Generator(bits)))
    _local.generators = kept
    return kept[:count]


def adam_update(grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray, max_exp_avg_sq: np.ndarray | None,
                step: np.ndarray, lr: float, betas: tuple[float, ...], eps: float, t: int) -> None:
    """Adam's moments and step for flat vectors; from :data:`ADAM_MIN_SIZE` entries in blocks on minidl's threads.

    Updates ``exp_avg`` (``m``), ``exp_avg_sq`` (``v``) and, with AMSGrad, ``max_exp_avg_sq`` in place and writes
    ``lr / (1 - β1^t) · m / (sqrt(v̂) / sqrt(1 - β2^t) + ε)`` into ``step``: entry by entry the operations of
    :meth:`minidl.optim.Adam.step`, so the same bits in any block and at any thread count.

    Args:
        grad: the gradients, flat.
        exp_avg: ``m``, the same length.
        exp_avg_sq: ``v``, the same length.
        max_exp_avg_sq: the running maximum of ``v`` (AMSGrad), or ``None``.
        step: where the step is written, the same length.
        lr: the learning rate.
        betas: ``(β1, β2)``.
        eps: ``ε``.
        t: the step count, from 1.

    Shape:
        - every array: ``(P,)``.

    Example::

        >>> import numpy as np
        >>> m, v, out = np.zeros(3), np.zeros(3), np.empty(3)
        >>> adam_update(np.ones(3), m, v, None, out, 0.1, (0.9, 0.999), 1e-8, 1)
        >>> np.round(out, 6).tolist()
        [0.1, 0.1, 0.1]
    """
    beta1, beta2 = betas
    bias2 = math.sqrt(1 - beta2**t)
    rate = lr / (1 - beta1**t)

    def block(at: slice) -> None:
        g, m, v = grad[at], exp_avg[at], exp_avg_sq[at]
        m += (1 - beta1) * (g - m)  # PyTorch's lerp form
        v *= beta2
        v += (1 - beta2) * g * g
        if max_exp_avg_sq is not None:
            v = np.maximum(max_exp_avg_sq[at], v, out=max_exp_avg_sq[at])
        np.multiply(rate, m / (np.sqrt(v) / bias2 + eps), out=step[at])

    if len(grad) < ADAM_MIN_SIZE:  # element-wise: the same bits as in blocks
        block(slice(None))
    else:
        threads.map_blocks(lambda i, slot: block(slice(i * ADAM_BLOCK, (i + 1) * ADAM_BLOCK)),
                           -(-len(grad) // ADAM_BLOCK))
