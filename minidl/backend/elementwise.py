"""Element-wise passes of the NumPy backend split over minidl's threads: the residual add.

A residual block adds its two paths in forward (``F(x) + S(x)``) and their input gradients in
backward; on resnet-cifar's first stage each add reads two 4 MB arrays and writes one, a pass that
NumPy runs on one core. Here a big add is cut into :data:`ADD_BLOCK`-element blocks of the operands'
common memory order, run on :func:`minidl.threads.map_blocks`. Every element is one addition
whichever block holds it, so the result is the same bits at any thread count (and the same as
``a + b``).
"""

from __future__ import annotations

import numpy as np

from .. import threads

__all__ = ["ADD_BLOCK", "ADD_MIN_SIZE", "add"]

#: Elements per block of a split add (1 MB of float32 per operand).
ADD_BLOCK = 2**18
#: Adds of fewer elements run as one ``a + b`` in the calling thread (two blocks at least to split).
ADD_MIN_SIZE = 2 * ADD_BLOCK


def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a + b`` for arrays of one shape, in ``a``'s memory layout; split over minidl's threads when big.

    Args:
        a: an array.
        b: an array of ``a``'s shape and dtype (anything else: NumPy's ``a + b``, broadcasting and all).

    Shape:
        - ``a``, ``b``, output: any, the same.

    Example::

        >>> import numpy as np
        >>> add(np.ones((2, 3)), np.full((2, 3), 2.0)).tolist()
        [[3.0, 3.0, 3.0], [3.0, 3.0, 3.0]]
    """
    if a.size < ADD_MIN_SIZE or a.shape != b.shape or a.dtype != b.dtype or a.strides != b.strides:
        return a + b
    out = np.empty_like(a)  # a's memory layout
    flat_a, flat_b, flat_out = a.ravel(order="K"), b.ravel(order="K"), out.ravel(order="K")
    if not all(np.shares_memory(f, x) for f, x in ((flat_a, a), (flat_b, b))):  # not dense: ravel copied
        return a + b

    def block(i: int, slot: int) -> None:
        s = slice(i * ADD_BLOCK, (i + 1) * ADD_BLOCK)
        np.add(flat_a[s], flat_b[s], out=flat_out[s])

    threads.map_blocks(block, -(-a.size // ADD_BLOCK))
    return out
