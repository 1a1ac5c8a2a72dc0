"""Hypothesis strategies for per-sample shapes and input batches, to run
:func:`~minidl.testing.check_layer` (or your own asserts) over random shapes.

Hypothesis is imported when a strategy is made, so ``minidl.testing`` imports without it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .gradcheck import tie_free_input

__all__ = ["any_shapes", "feature_shapes", "image_shapes", "layer_inputs"]


def _span(value: int | tuple[int, int], arg: str) -> tuple[int, int]:
    low, high = (value, value) if isinstance(value, int) else value
    if not 1 <= low <= high:
        raise ValueError(f"{arg} must be a positive int or a (low, high) pair with 1 <= low <= high, got {value!r}")
    return low, high


def image_shapes(
    channels: int | tuple[int, int] = (1, 3),
    height: int | tuple[int, int] = (1, 8),
    width: int | tuple[int, int] | None = None,
):
    """Strategy for per-sample image shapes ``(C, H, W)``; each size an int or an inclusive ``(low, high)``.

    ``width`` defaults to the same range as ``height`` (drawn independently). For a layer with a
    ``k × k`` window use ``height=(k, 8)`` so that every drawn image can hold it.

    Args:
        channels: ``C``, an int or an inclusive ``(low, high)``.
        height: ``H``, an int or an inclusive ``(low, high)``.
        width: ``W``, an int or an inclusive ``(low, high)``; ``None``: the range of ``height``.

    Example::

        @given(image_shapes(channels=3, height=(3, 8)))
        def test_my_layer(shape):
            check_layer(MyLayer(), shape)
    """
    from hypothesis import strategies as st

    ints = [st.integers(*_span(v, arg)) for v, arg in
            ((channels, "channels"), (height, "height"), (height if width is None else width, "width"))]
    return st.tuples(*ints)


def feature_shapes(features: int | tuple[int, int] = (1, 12)):
    """Strategy for per-sample feature-vector shapes ``(D,)``, as ``Dense`` takes.

    Args:
        features: ``D``, an int or an inclusive ``(low, high)``.

    Example::

        @given(feature_shapes((1, 4)))
        def test_my_layer(shape):
            check_layer(MyLayer(), shape)
    """
    from hypothesis import strategies as st

    return st.tuples(st.integers(*_span(features, "features")))


def any_shapes(ndim: int | tuple[int, int] = (1, 3), size: int | tuple[int, int] = (1, 5)):
    """Strategy for per-sample shapes of ``ndim`` axes, each of ``size``: for layers that take any shape.

    Args:
        ndim: the number of axes, an int or an inclusive ``(low, high)``.
        size: each axis's size, an int or an inclusive ``(low, high)``.

    Example::

        @given(any_shapes(ndim=2, size=(1, 3)))
        def test_my_layer(shape):
            check_layer(MyLayer(), shape)
    """
    from hypothesis import strategies as st

    return st.lists(st.integers(*_span(size, "size")), min_size=_span(ndim, "ndim")[0],
                    max_size=_span(ndim, "ndim")[1]).map(tuple)


def layer_inputs(shapes=None, batch: int | tuple[int, int] = (1, 3), dtype: Any = np.float64):
    """Strategy for input batches ``(N, *shape)``: ties- and kink-free arrays (:func:`tie_free_input`).

    Args:
        shapes (hypothesis strategy or None): per-sample shapes (default :func:`image_shapes`).
        batch: ``N``, an int or an inclusive ``(low, high)``.
        dtype: the arrays' dtype.

    Read the per-sample shape of a drawn ``x`` as ``x.shape[1:]``.

    Example::

        @given(layer_inputs(image_shapes(height=(3, 8))))
        def test_my_layer(x):
            check_layer(MyLayer(3), x.shape[1:], x=x)
    """
    from hypothesis import strategies as st

    shapes = image_shapes() if shapes is None else shapes
    return st.builds(
        lambda n, shape, seed: tie_free_input((n, *shape), np.random.default_rng(seed), dtype=dtype),
        st.integers(*_span(batch, "batch")), shapes, st.integers(0, 2**32 - 1),
    )
