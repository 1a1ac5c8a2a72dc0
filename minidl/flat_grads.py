"""Fused gradients: the gradients of many parameters laid out in one flat buffer per dtype.

An optimizer made with ``fused=True`` (:class:`minidl.optim.Optimizer`) holds a :class:`FlatGrads`:
each trainable parameter's ``.grad`` becomes a view of a buffer it owns, so a layer's backward
that writes into ``.grad`` fills the buffer, and the training guard's non-finite check
(:func:`grad_norm_squared`) is one BLAS dot per buffer instead of one call per parameter.
A ``.grad`` rebound to another array, or a parameter frozen or unfrozen since, is noticed at
each call; the parameters are then read one by one, so results never depend on fusion.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .layers.state import Parameter

__all__ = ["FlatGrads", "grad_norm_squared"]


class FlatGrads:
    """The flat gradient buffers of ``params``, one per dtype; each trainable ``.grad`` becomes a view.

    Args:
        params: the optimizer's parameters; those frozen now keep their own ``.grad``.

    Example::

        flat = FlatGrads(model.parameters())
        flat.buffers()  # e.g. [array of float32], or None once a .grad was rebound
    """

    def __init__(self, params: Sequence[Parameter]) -> None:
        #: Per dtype: the flat gradient buffer and each fused parameter with its view of it.
        self.groups: list[tuple[np.ndarray, list[tuple[Parameter, np.ndarray]]]] = []
        self.unfused = [p for p in params if not p.trainable]
        by_dtype: dict[np.dtype, list[Parameter]] = {}
        for p in params:
            if p.trainable:
                by_dtype.setdefault(p.grad.dtype, []).append(p)
        for dtype, group in by_dtype.items():
            flat = np.empty(sum(p.grad.size for p in group), dtype=dtype)
            views, offset = [], 0
            for p in group:
                view = flat[offset:offset + p.grad.size].reshape(p.grad.shape)
                view[...] = p.grad
                offset += view.size
                p.grad = view
                views.append((p, view))
            self.groups.append((flat, views))

    def buffers(self) -> list[np.ndarray] | None:
        """The buffers while they hold exactly the trainable gradients, else ``None``."""
        for _, views in self.groups:
            for p, view in views:
                if p.grad is not view or not p.trainable:
                    return None
        if any(p.trainable for p in self.unfused):
            return None
        return [flat for flat, _ in self.groups]


def grad_norm_squared(params: Sequence[Parameter], flats: list[np.ndarray] | None) -> float:
    """``Σ g·g`` over the trainable parameters' gradients, as a Python float (``inf`` on overflow).

    Args:
        params: the parameters.
        flats: their flat buffers (:meth:`FlatGrads.buffers`), or ``None`` to read them one by one.

    Example::

        grad_norm_squared(model.parameters(), None)
    """
    if flats is not None:
        return sum((float(np.vdot(flat, flat)) for flat in flats), 0.0)
    return sum((float(np.vdot(p.grad, p.grad)) for p in params if p.trainable), 0.0)
