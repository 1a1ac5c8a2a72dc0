"""Element-wise passes of the NumPy backend split over minidl's threads: the residual add and ReLU.

A residual block adds its two paths in forward (``F(x) + S(x)``) and their input gradients in
backward; on resnet-cifar's first stage each add reads two 4 MB arrays and writes one, a pass that
NumPy runs on one core. Here a big add is cut into blocks of about :data:`ADD_BLOCK` elements along
the outermost axis in ``a``'s memory (channels, for images stored batch-innermost), run on
:func:`minidl.threads.map_blocks`; the operands may be slices (the input gradient of a padded
convolution is one). ReLU and its backward go the same way. Every element is one operation whichever
block holds it, so the result is the same bits at any thread count (and the same as one NumPy call).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import threads

__all__ = ["ADD_BLOCK", "ADD_MIN_SIZE", "add", "relu", "relu_backward"]

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
    _in_blocks(lambda at: np.add(a[at], b[at], out=out[at]), a)
    return out


def relu(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)`` in ``x``'s memory layout (NaN passes); split over minidl's threads when big.

    Args:
        x: an array.

    Shape:
        - ``x``, output: any, the same.

    Example::

        >>> import numpy as np
        >>> relu(np.array([-1.0, 2.0])).tolist()
        [0.0, 2.0]
    """
    zero = x.dtype.type(0)
    if x.size < ADD_MIN_SIZE:
        return np.maximum(x, zero)
    out = np.empty_like(x)
    _in_blocks(lambda at: np.maximum(x[at], zero, out=out[at]), x)
    return out


def relu_backward(y: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """``grad · [y > 0]`` for ReLU's output ``y``, in ``y``'s memory layout; split over minidl's threads when big.

    Args:
        y: ReLU's output.
        grad: the gradient of the loss with respect to ``y``, any layout.

    Shape:
        - ``y``, ``grad``, output: any, the same.

    Example::

        >>> import numpy as np
        >>> relu_backward(np.array([0.0, 2.0]), np.array([5.0, 7.0])).tolist()
        [0.0, 7.0]
    """
    if y.size < ADD_MIN_SIZE or y.shape != grad.shape:
        return grad * (y > 0)
    out = np.empty_like(y, dtype=np.result_type(grad, y))
    _in_blocks(lambda at: np.multiply(grad[at], y[at] > 0, out=out[at]), y)
    return out


def _in_blocks(fn: Callable[[tuple[slice, ...]], object], like: np.ndarray) -> None:
    """``fn(index)`` for the blocks of about :data:`ADD_BLOCK` elements along ``like``'s outermost axis in
    memory (whole channels for images stored batch-innermost: compact blocks), on minidl's threads."""
    axis = max(range(like.ndim), key=lambda i: like.strides[i])

    def block(lo: int, hi: int, slot: int) -> None:
        at = [slice(None)] * like.ndim
        at[axis] = slice(lo, hi)
        fn(tuple(at))

    threads.map_ranges(block, like.shape[axis], max(1, ADD_BLOCK * like.shape[axis] // like.size))
