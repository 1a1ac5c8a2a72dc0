"""The layer contract's checks and their messages: ``build``'s arguments, input arrays, a skipped ``__init__``.

``Layer`` calls these only on the way to an error (or once per ``build``), so its methods read as
the contract and the messages live here, naming the layer, what it got and what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..arguments import as_shape

if TYPE_CHECKING:
    from .base import Layer

__all__ = ["build_arguments", "same_build", "input_error", "missing_attribute"]

Shape = tuple[int, ...]

#: What ``Layer.__init__`` sets on every layer.
_BASE_ATTRIBUTES = frozenset({"name", "input_shape", "output_shape", "dtype", "_trainable",
                              "built", "trainable"})  # the properties that read them fail over to __getattr__


def build_arguments(name: str, input_shape: Sequence[int], rng: Any, dtype: Any) -> tuple[Shape, np.dtype]:
    """``build``'s ``input_shape`` as a shape tuple and ``dtype`` as a float dtype; ``rng`` a Generator or ``None``.

    Example::

        build_arguments("Dense", [4], None, "float64")  # ((4,), dtype('float64'))
    """
    shape = as_shape(input_shape, name)
    checked = np.dtype(dtype)
    if checked.kind != "f":
        raise TypeError(f"{name}: dtype must be a floating type, got {checked}")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"{name}: rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {rng!r}")
    return shape, checked


def same_build(name: str, built: tuple[Any, Any], requested: tuple[Shape, np.dtype]) -> None:
    """A layer already built keeps its weights for the same ``(input_shape, dtype)`` and refuses another.

    Example::

        same_build("Dense", ((4,), np.dtype("float32")), ((4,), np.dtype("float32")))  # passes
    """
    if requested != built:
        raise ValueError(
            f"{name} is already built for input shape {built[0]} and dtype {built[1]}, "
            f"so it cannot take input shape {requested[0]} and dtype {requested[1]}; use a new layer here"
        )


def input_error(name: str, input_shape: Shape | None, dtype: np.dtype | None, x: Any) -> Exception:
    """Why ``x`` is not a valid input of a layer built for ``input_shape`` and ``dtype`` (``check_input``'s error).

    Example::

        raise input_error("Dense", (4,), np.dtype("float32"), np.zeros((2, 3)))  # ValueError: expected (N, 4)
    """
    if input_shape is None:
        return ValueError(f"{name} is not built: call build(input_shape) or put it in a Sequential first")
    if not isinstance(x, np.ndarray):
        return TypeError(f"{name}: input must be a numpy array, got {type(x).__name__}")
    if x.shape[1:] != input_shape or x.ndim != len(input_shape) + 1:
        return ValueError(f"{name}: expected input of shape (N, {', '.join(map(str, input_shape))}), got {x.shape}")
    return TypeError(f"{name}: input dtype {x.dtype} does not match the layer's dtype {dtype}")


def missing_attribute(layer: Layer, attr: str) -> AttributeError:
    """The ``AttributeError`` of ``layer.attr``: for a base attribute, it says ``__init__`` skipped ``Layer``'s.

    Example::

        raise missing_attribute(layer, "nme")
    """
    if attr in _BASE_ATTRIBUTES:
        return AttributeError(
            f"{type(layer).__name__} has no attribute {attr!r}: its __init__ must call super().__init__() "
            "(Layer.__init__ sets name, trainable and the shapes)"
        )
    return AttributeError(f"{type(layer).__name__!r} object has no attribute {attr!r}")
