"""Dense's three products (``x W``, ``dY Wᵀ``, ``xᵀ dY``) and its bias in fixed row blocks on minidl's threads.

The recurrent layers use them too: their weight gradients, input gradient and the GRU's input projection.

Within ``fit`` BLAS runs one thread (:mod:`minidl.threads`), so a plain ``x @ W`` leaves the second
core idle. A product of at least :data:`LINEAR_MIN_FLOPS` is cut into
:data:`LINEAR_BLOCKS` blocks of rows of ``x`` (their boundaries depend on the shapes only) that
:func:`minidl.threads.map_blocks` runs one BLAS thread each; the weight gradient sums its per-block
parts ``x_bᵀ dY_b`` in block order. The bias goes along: each block adds it to its rows, and the bias
gradient sums each block's column sums in block order (rows of ``x W`` still in the core's cache, no
pass over the whole output on one thread). So the bits are the same at any thread count; smaller
products are one call each in the caller.
"""

from __future__ import annotations

import numpy as np

from .. import threads

__all__ = ["LINEAR_BLOCKS", "LINEAR_MIN_FLOPS", "linear_forward", "linear_backward", "linear_weight_grad"]

#: Big products run as this many blocks of rows: enough for two threads to share, and for a thread
#: the machine delays to hold up a quarter of the work at most; few enough that each block stays a
#: BLAS-sized product.
LINEAR_BLOCKS = 4

#: A product of fewer floating-point operations is one call in the caller: the convolutions' threshold
#: (:data:`minidl.backend.numpy.PARALLEL_MIN_FLOPS`), below which a second thread did not pay.
LINEAR_MIN_FLOPS = 2**25


def _row_blocks(m: int, flops: int) -> list[slice] | None:
    """The blocks of ``m`` rows, or ``None`` for a product too small to split (``flops`` below the threshold)."""
    if flops < LINEAR_MIN_FLOPS or m < 2 * LINEAR_BLOCKS:
        return None
    rows = -(-m // (8 * LINEAR_BLOCKS)) * 8  # a multiple of 8 rows: BLAS kernels' panel height
    return [slice(r, min(r + rows, m)) for r in range(0, m, rows)]


def linear_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """``x @ weight + bias`` over the last axis of ``x``, big products on minidl's threads.

    Args:
        x: the input, any rank ≥ 1.
        weight: the ``(D, U)`` matrix.
        bias: the ``(U,)`` vector, or ``None`` (no bias).

    Shape:
        - ``x``: ``(*, D)``; result: ``(*, U)``.

    Example::

        >>> import numpy as np
        >>> linear_forward(np.ones((2, 3, 4)), np.ones((4, 5))).shape
        (2, 3, 5)
    """
    d, u = weight.shape
    rows = x.reshape(-1, d)
    blocks = _row_blocks(rows.shape[0], 2 * rows.shape[0] * d * u)
    if blocks is None:
        out = x @ weight
        if bias is not None:
            out += bias
        return out
    out = np.empty((rows.shape[0], u), np.result_type(x, weight))

    def block(b: int, slot: int) -> None:
        part = np.matmul(rows[blocks[b]], weight, out=out[blocks[b]])
        if bias is not None:
            part += bias

    threads.map_blocks(block, len(blocks))
    return out.reshape(*x.shape[:-1], u)


def linear_backward(x: np.ndarray, weight: np.ndarray, grad_out: np.ndarray,
                    weight_grad: np.ndarray | None, bias_grad: np.ndarray | None = None) -> np.ndarray:
    """``grad_out @ weight.T``, the input gradient; writes ``xᵀ grad_out`` (all leading axes as rows) into
    ``weight_grad`` and the sum of ``grad_out``'s rows into ``bias_grad``, each unless it is ``None``.

    Args:
        x: the forward pass's input.
        weight: the ``(D, U)`` matrix.
        grad_out: the gradient of the forward pass's output.
        weight_grad: the ``(D, U)`` array to overwrite with the weight's gradient, or ``None``.
        bias_grad: the ``(U,)`` array to overwrite with the bias's gradient, or ``None``.

    Shape:
        - ``x``: ``(*, D)``; ``grad_out``: ``(*, U)``; result: ``(*, D)``.

    Example::

        >>> import numpy as np
        >>> dw = np.empty((4, 5))
        >>> linear_backward(np.ones((2, 4)), np.ones((4, 5)), np.ones((2, 5)), dw).shape, dw[0, 0]
        ((2, 4), 2.0)
    """
    d, u = weight.shape
    g = grad_out.reshape(-1, u)
    blocks = _row_blocks(g.shape[0], 2 * g.shape[0] * d * u)
    if blocks is None:
        if bias_grad is not None:
            np.add.reduce(g, axis=0, out=bias_grad)  # the ufunc itself: np.sum adds ~1 µs of wrapping
        if weight_grad is not None:
            np.matmul(x.reshape(-1, d).T, g, out=weight_grad)
        return grad_out @ weight.T
    rows = x.reshape(-1, d)
    dx = np.empty((g.shape[0], d), np.result_type(grad_out, weight))

    def block(b: int, slot: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        s = blocks[b]
        np.matmul(g[s], weight.T, out=dx[s])
        first = b == 0  # block 0's parts in place
        db = None if bias_grad is None else np.add.reduce(g[s], axis=0, out=bias_grad if first else None)
        dw = None if weight_grad is None else np.matmul(rows[s].T, g[s], out=weight_grad if first else None)
        return dw, db

    parts = threads.map_blocks(block, len(blocks))
    for dw, db in parts[1:]:  # in block order: the same sums at any thread count
        if dw is not None:
            weight_grad += dw
        if db is not None:
            bias_grad += db
    return dx.reshape(*grad_out.shape[:-1], d)


def linear_weight_grad(x: np.ndarray, grad_out: np.ndarray, out: np.ndarray) -> None:
    """Overwrite ``out`` with ``xᵀ grad_out`` (all leading axes as rows): a weight gradient without the input's.

    Args:
        x: the forward pass's input.
        grad_out: the gradient of the forward pass's output.
        out: the ``(D, U)`` array to overwrite.

    Shape:
        - ``x``: ``(*, D)``; ``grad_out``: ``(*, U)``; ``out``: ``(D, U)``.

    Example::

        >>> import numpy as np
        >>> dw = np.empty((4, 5))
        >>> linear_weight_grad(np.ones((2, 3, 4)), np.ones((2, 3, 5)), dw); dw[0, 0]
        6.0
    """
    d, u = out.shape
    rows, g = x.reshape(-1, d), grad_out.reshape(-1, u)
    blocks = _row_blocks(rows.shape[0], 2 * rows.shape[0] * d * u)
    if blocks is None:
        np.matmul(rows.T, g, out=out)
        return
    parts = threads.map_blocks(lambda b, slot: np.matmul(rows[blocks[b]].T, g[blocks[b]], out=out if b == 0 else None),
                               len(blocks))
    for part in parts[1:]:
        out += part  # in block order: the same sum at any thread count
