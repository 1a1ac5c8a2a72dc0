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
            views = _views(flat, group)
            for p, view in views:
                view[...] = p.grad
                p.grad = view
            self.groups.append((flat, views))
        # the same, flat, for the check that runs every step (a batch-1 step is dispatch-bound)
        self._views = [pair for _, views in self.groups for pair in views]
        self._flats = [flat for flat, _ in self.groups]
        self._scaled: list[tuple[np.ndarray, list[tuple[Parameter, np.ndarray]]]] = []

    def buffers(self) -> list[np.ndarray] | None:
        """The buffers while they hold exactly the trainable gradients, else ``None``."""
        for p, view in self._views:
            if p.grad is not view or not p.trainable:
                return None
        for p in self.unfused:
            if p.trainable:
                return None
        return self._flats

    def scaled(self, factor: float) -> list[tuple[Parameter, np.ndarray]]:
        """``(parameter, factor·grad)`` for each fused parameter, from one multiplication per buffer into kept
        arrays (valid until the next call): SGD's ``θ -= lr·g`` then costs one operation per parameter, not
        two. Only while :meth:`buffers` holds the gradients.

        Args:
            factor: what every gradient is multiplied by.

        Example::

            for p, step in flat.scaled(0.1):
                p.data -= step
        """
        if not self._scaled:  # made on first use: only plain SGD asks
            self._scaled = [(out, _views(out, [p for p, _ in views]))
                            for out, views in ((np.empty_like(flat), views) for flat, views in self.groups)]
        pairs: list[tuple[Parameter, np.ndarray]] = []
        for flat, (out, views) in zip(self._flats, self._scaled, strict=True):
            np.multiply(flat, factor, out=out)
            pairs += views
        return pairs


def _views(flat: np.ndarray, params: Sequence[Parameter]) -> list[tuple[Parameter, np.ndarray]]:
    """Each parameter with a view of ``flat`` shaped like its ``.grad``, one after another."""
    views, offset = [], 0
    for p in params:
        views.append((p, flat[offset:offset + p.grad.size].reshape(p.grad.shape)))
        offset += p.grad.size
    return views


def grad_norm_squared(params: Sequence[Parameter], flats: list[np.ndarray] | None) -> float:
    """``Σ g·g`` over the trainable parameters' gradients, as a Python float (``inf`` on overflow).

    Args:
        params: the parameters.
        flats: their flat buffers (:meth:`FlatGrads.buffers`), or ``None`` to read them one by one.

    Example::

        grad_norm_squared(model.parameters(), None)
    """
    if flats is not None:
        return sum([float(np.dot(flat, flat)) for flat in flats], 0.0)  # np.dot: no Python-level wrapper
    return sum((float(np.vdot(p.grad, p.grad)) for p in params if p.trainable), 0.0)
