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
from typing import Any

import numpy as np

from .backend import get_backend
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
        # Adam's moments, per buffer: each slot's flat vector and each parameter's view of it
        self._moments: list[dict[str, tuple[np.ndarray, list[tuple[Parameter, np.ndarray]]]]] = []

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
        pairs: list[tuple[Parameter, np.ndarray]] = []
        for flat, (out, views) in zip(self._flats, self._scratch(), strict=True):
            np.multiply(flat, factor, out=out)
            pairs += views
        return pairs

    def adam_step(self, states: dict[int, dict[str, Any]], lr: float, betas: tuple[float, ...], eps: float,
                  amsgrad: bool, decay: float) -> bool:
        """One Adam step (:class:`minidl.optim.Adam`, decoupled weight decay ``decay`` or none) over the flat
        buffers: the moments become views of flat vectors this object owns (filled from ``states`` if they were
        apart) and the backend's :meth:`~minidl.backend.base.Backend.adam_update` computes them in fixed blocks.
        The same bits as the per-parameter loop. ``False`` (nothing done) unless :meth:`buffers` holds the
        gradients and every parameter is at the same step count.

        Args:
            states: each fused parameter's optimizer state, by ``id`` of the parameter (updated in place).
            lr: the learning rate.
            betas: ``(β1, β2)``.
            eps: ``ε``.
            amsgrad: keep the running maximum of ``v``.
            decay: the decoupled weight decay ``λ`` (``θ ← θ(1 - lr·λ)`` first), 0 for none.

        Example::

            flat.adam_step({id(p): {} for p in model.parameters()}, 1e-3, (0.9, 0.999), 1e-8, False, 0.0)
        """
        if self.buffers() is None or len({states[id(p)].get("step", 0) for p, _ in self._views}) != 1:
            return False
        slots = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if amsgrad else ())
        if len(self._moments) != len(self.groups) or any(
                states[id(p)].get(slot) is not view for moments in self._moments
                for slot, (_, pairs) in moments.items() for p, view in pairs) or set(self._moments[0]) != set(slots):
            self._moments = []  # made (zeros), or refilled from moments loaded or kept apart
            for flat, views in self.groups:
                moments: dict[str, tuple[np.ndarray, list[tuple[Parameter, np.ndarray]]]] = {
                    slot: (np.zeros_like(flat), []) for slot in slots}
                for slot, (buffer, pairs) in moments.items():
                    pairs += _views(buffer, [p for p, _ in views])
                    for p, view in pairs:
                        if slot in states[id(p)]:
                            view[...] = states[id(p)][slot]
                        states[id(p)][slot] = view
                self._moments.append(moments)
        for flat, (step, views), moments in zip(self._flats, self._scratch(), self._moments, strict=True):
            t = states[id(views[0][0])].get("step", 0) + 1
            for p, _ in views:
                states[id(p)]["step"] = t
                if decay:
                    p.data *= 1 - lr * decay
            amsgrad_max = moments["max_exp_avg_sq"][0] if amsgrad else None
            get_backend().adam_update(flat, moments["exp_avg"][0], moments["exp_avg_sq"][0], amsgrad_max, step, lr,
                                      betas, eps, t)
            for p, view in views:
                p.data -= view
        return True

    def _scratch(self) -> list[tuple[np.ndarray, list[tuple[Parameter, np.ndarray]]]]:
        """Per buffer, an array of its size and each parameter's view of it (made on first use: SGD and Adam
        write their steps there)."""
        if not self._scaled:
            self._scaled = [(out, _views(out, [p for p, _ in views]))
                            for out, views in ((np.empty_like(flat), views) for flat, views in self.groups)]
        return self._scaled


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
