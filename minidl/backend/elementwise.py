"""Element-wise passes of the NumPy backend split over minidl's threads: the residual add.

A residual block adds its two paths in forward (``F(x) + S(x)``) and their input gradients in
backward; on resnet-cifar's first stage each add reads two 4 MB arrays and writes one, a pass that
NumPy runs on one core. Here a big add is cut into blocks of about :data:`ADD_BLOCK` elements along
the outermost axis in ``a``'s memory (channels, for images stored batch-innermost), run on
:func:`minidl.threads.map_blocks`; the operands may be slices (the input gradient of a padded
convolution is one). Every element is one addition whichever block holds it, so the result is the
same bits at any thread count (and the same as ``a + b``).
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
        b: an array of ``a``'s shape and dtype, in any layout (anything else: NumPy's ``a + b``, broadcasting
            and all).

    Shape:
        - ``a``, ``b``, output: any, the same.

    Example::

        >>> import numpy as np
        >>> add(np.ones((2, 3)), np.full((2, 3), 2.0)).tolist()
        [[3.0, 3.0, 3.0], [3.0, 3.0, 3.0]]
    """
    if a.size < ADD_MIN_SIZE or a.shape != b.shape or a.dtype != b.dtype:
        return a + b
    out = np.empty_like(a)  # a's memory layout (dense, even when a is a slice)
    axis = max(range(a.ndim), key=lambda i: a.strides[i])  # a's outermost axis in memory: blocks of it are compact
    per = max(1, ADD_BLOCK * a.shape[axis] // a.size)
    index = [slice(None)] * a.ndim

    def block(i: int, slot: int) -> None:
        at = list(index)
        at[axis] = slice(i * per, (i + 1) * per)
        np.add(a[tuple(at)], b[tuple(at)], out=out[tuple(at)])

    threads.map_blocks(block, -(-a.shape[axis] // per))
    return out
