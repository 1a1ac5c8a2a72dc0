"""Optimizers update :class:`~minidl.layers.Parameter` objects in place from their ``.grad``.

The learning-rate schedules live in :mod:`minidl.lr_scheduler` (PyTorch's ``torch.optim.lr_scheduler``);
``from minidl.optim import StepLR`` works too (the README's import). The import runs one way only,
``optim -> lr_scheduler``: a schedule needs no optimizer class, only an object with an ``lr``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from . import optim_state
from .arguments import as_float, check_bool
from .flat_grads import FlatGrads, grad_norm_squared
from .layers.base import Parameter
from .lr_scheduler import CosineAnnealingLR as CosineAnnealingLR  # re-exported: the README imports them from here
from .lr_scheduler import LRScheduler as LRScheduler
from .lr_scheduler import StepLR as StepLR

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


class Optimizer:
    """Base of the optimizers: ``step()`` updates the trainable parameters from their ``.grad``.

    With ``fused`` (the default, see :attr:`fused_default`) the optimizer lays the gradients of
    the parameters that are trainable when it is made out in one flat buffer per dtype that it
    owns: each ``.grad`` becomes a view of it, so a layer's backward that writes into ``.grad``
    (``out=p.grad`` or ``p.grad[...] = g``) fills the buffer, and :meth:`grad_norm_squared`, the
    training guard's non-finite check, is one BLAS dot per buffer instead of one call per
    parameter (which costs more than a whole layer at batch 1). A layer that binds a new array to
    ``.grad`` instead, or a parameter frozen or unfrozen since, is noticed at each call; the
    parameters are then read one by one, so the results never depend on ``fused``.

    Args:
        params: the parameters to train, e.g. ``model.parameters()``; each at most once.
        lr: the learning rate, > 0.
        fused: whether to lay the gradients out in one flat buffer; ``None`` takes
            :attr:`fused_default`.

    Example::

        opt = SGD(model.parameters(), lr=0.1, fused=True)
        opt.grad_norm_squared()  # Σ g·g over the trainable gradients
    """

    #: What ``fused=None`` means. Measured on ``digits-b1`` (the blog CNN at batch 1, one BLAS
    #: thread), where per-parameter calls matter most: see docs/training.md.
    fused_default: bool = True

    def __init__(self, params: Iterable[Parameter], lr: float, fused: bool | None = None) -> None:
        owner = type(self).__name__
        self.params = optim_state.as_param_list(params, owner)
        self.lr = as_float(lr, "lr", type(self).__name__, low=0.0, low_inclusive=False)
        self.fused = self.fused_default if fused is None else check_bool(fused, "fused", owner)
        self._flat = FlatGrads(self.params) if self.fused else None
        #: Per parameter (same order as ``params``): its state, ``{}`` until its first step (see ``_state_slots``).
        self.state: list[dict[str, Any]] = [{} for _ in self.params]

    def flat_grads(self) -> list[np.ndarray] | None:
        """The flat gradient buffers (one per dtype) while they hold exactly the trainable gradients.

        ``None`` when the optimizer is not fused, a ``.grad`` was rebound to another array, or a
        parameter was frozen or unfrozen since the optimizer was made.

        Example::

            flats = SGD(model.parameters(), fused=True).flat_grads()  # e.g. [array of float32]
        """
        return None if self._flat is None else self._flat.buffers()

    def grad_norm_squared(self) -> float:
        """``Σ g·g`` over the trainable parameters' gradients, as a Python float (``inf`` on overflow).

        One dot per flat buffer while :meth:`flat_grads` holds them all, one per parameter otherwise.

        Example::

            math.isfinite(opt.grad_norm_squared())  # the gradients hold no NaN or inf
        """
        return grad_norm_squared(self.params, self.flat_grads())

    def zero_grad(self) -> None:
        """Set every parameter's ``.grad`` to zero (in place: a fused buffer keeps its views)."""
        for p in self.params:
            p.grad.fill(0)

    def step(self) -> None:
        """Update the trainable parameters from their ``.grad``; subclasses implement the rule."""
        raise NotImplementedError

    #: Attributes :meth:`state_dict` saves besides the per-parameter state (a schedule changes ``lr``).
    hyperparameters: tuple[str, ...] = ("lr",)

    def state_dict(self) -> dict[str, Any]:
        """Flat, PyTorch-like state of plain numbers and arrays (copies): the hyper-parameters, and
        ``"<i>.<slot>"`` (e.g. ``"0.exp_avg"``) for the ``i``-th parameter of the list given to the optimizer."""
        return optim_state.state_dict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (also after ``np.savez``/``np.load``).

        Every key and array shape is checked before anything changes; a state that does not fit
        raises ``ValueError`` listing the missing and the unexpected keys, as PyTorch does."""
        hyper, per_param = optim_state.parse_state_dict(self, state)
        for k, v in hyper.items():
            setattr(self, k, v)
        self.state = per_param

    def _state_slots(self, hyper: dict[str, Any]) -> set[str]:
        """The keys of a parameter's entry in :attr:`state` once it has one, given the hyper-parameters."""
        return set()


class SGD(Optimizer):
    r"""Stochastic gradient descent with momentum, the update rule of ``torch.optim.SGD``.

    With gradient ``g``, parameter ``θ``, weight decay ``λ``, momentum ``μ``:

    .. math::
        g \leftarrow g + λθ, \qquad
        b \leftarrow \begin{cases} g & \text{first step} \\ μ b + g & \text{after} \end{cases}, \qquad
        θ \leftarrow θ - \mathrm{lr} \cdot \begin{cases} g + μ b & \text{nesterov} \\ b & \text{otherwise} \end{cases}

    With ``momentum=0`` this is plain ``θ ← θ - lr·(g + λθ)``. Frozen parameters
    (``trainable=False``) are skipped.

    Args:
        params: the parameters to train, e.g. ``model.parameters()``.
        lr: the learning rate, > 0.
        momentum: ``μ`` in [0, 1).
        nesterov: Nesterov momentum (needs ``momentum > 0``).
        weight_decay: ``λ`` >= 0, an L2 penalty added to the gradient.
        fused: lay the gradients out in one flat buffer (see :class:`Optimizer`); ``None`` takes
            :attr:`Optimizer.fused_default`.

    Example::

        opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
        model.fit(X, y, optimizer=opt, epochs=2)
    """

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        *,
        fused: bool | None = None,
    ) -> None:
        super().__init__(params, lr, fused)
        self.momentum = as_float(momentum, "momentum", "SGD", low=0.0, high=1.0)
        self.weight_decay = as_float(weight_decay, "weight_decay", "SGD", low=0.0)
        if check_bool(nesterov, "nesterov", "SGD") and self.momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)

    hyperparameters = ("lr", "momentum", "nesterov", "weight_decay")

    def _state_slots(self, hyper: dict[str, Any]) -> set[str]:
        return {"momentum_buffer"}


    def step(self) -> None:
        """Apply one update to every trainable parameter."""
        if self._flat is not None and not (self.momentum or self.weight_decay) and self._flat.buffers() is not None:
            for p, step in self._flat.scaled(self.lr):  # one multiplication for all, one subtraction each
                p.data -= step
            return
        for i, p in enumerate(self.params):
            if not p.trainable:
                continue
            g = p.grad
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            if self.momentum:
                buf = self.state[i].get("momentum_buffer")
                if buf is None:
                    buf = self.state[i]["momentum_buffer"] = g.copy()
                else:
                    buf *= self.momentum
                    buf += g
                g = g + self.momentum * buf if self.nesterov else buf
            p.data -= self.lr * g


class Adam(Optimizer):
    r"""Adam, the update rule of ``torch.optim.Adam``; :class:`AdamW` is this class with decoupled weight decay.

    For each trainable parameter ``θ`` with gradient ``g``, at its step ``t = 1, 2, ...``:

    .. math::
        g \leftarrow g + λθ \ (\text{L2}), \qquad
        θ \leftarrow θ(1 - \mathrm{lr}\,λ) \ (\text{decoupled, as AdamW}), \\
        m \leftarrow β_1 m + (1-β_1) g, \qquad v \leftarrow β_2 v + (1-β_2) g^2, \qquad
        \hat v = \max(\hat v, v) \ (\text{amsgrad}) \text{ else } v, \\
        θ \leftarrow θ - \frac{\mathrm{lr}}{1-β_1^t} \cdot \frac{m}{\sqrt{\hat v}/\sqrt{1-β_2^t} + ε}

    ``m`` and ``v`` start at zero (``state[i]`` holds ``step``, ``exp_avg``, ``exp_avg_sq`` and, with amsgrad,
    ``max_exp_avg_sq``). Frozen parameters (``trainable=False``) are skipped and
    their step count does not advance, as PyTorch skips parameters without a gradient.

    Args:
        params: the parameters to train, e.g. ``model.parameters()``.
        lr: the learning rate, > 0.
        betas: ``(β1, β2)``, each in [0, 1).
        eps: ``ε`` >= 0, added to the denominator.
        weight_decay: ``λ`` >= 0; ``None`` takes the class's :attr:`default_weight_decay`
            (0 for Adam, 1e-2 for AdamW, as in PyTorch).
        amsgrad: use the running maximum of ``v`` (AMSGrad).
        decoupled_weight_decay: decay the weights apart from the gradient (AdamW's rule);
            ``None`` takes the class attribute (``False`` for Adam, ``True`` for AdamW).
        fused: lay the gradients out in one flat buffer (see :class:`Optimizer`).

    Example::

        opt = Adam(model.parameters(), lr=1e-3)
        model.fit(X, y, optimizer=opt, epochs=2)
    """

    hyperparameters = ("lr", "betas", "eps", "weight_decay", "amsgrad")
    #: Whether weight decay shrinks the weights (AdamW) instead of adding ``λθ`` to the gradient.
    decoupled_weight_decay: bool = False
    #: What ``weight_decay=None`` means.
    default_weight_decay: float = 0.0

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float | None = None,
        amsgrad: bool = False,
        *,
        decoupled_weight_decay: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        super().__init__(params, lr, fused)
        name = type(self).__name__
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = tuple(as_float(b, f"betas[{i}]", name, low=0.0, high=1.0) for i, b in enumerate(betas))
        self.eps = as_float(eps, "eps", name, low=0.0)
        if weight_decay is None:
            weight_decay = self.default_weight_decay
        self.weight_decay = as_float(weight_decay, "weight_decay", name, low=0.0)
        self.amsgrad = check_bool(amsgrad, "amsgrad", name)
        if decoupled_weight_decay is not None:
            self.decoupled_weight_decay = check_bool(decoupled_weight_decay, "decoupled_weight_decay", name)

    def step(self) -> None:
        """Apply one update to every trainable parameter (fused: on the flat buffers, in blocks on minidl's threads)."""
        l2 = self.weight_decay and not self.decoupled_weight_decay
        if self._flat is not None and not l2 and self._flat.adam_step(
                dict(zip(map(id, self.params), self.state, strict=True)), self.lr, self.betas, self.eps, self.amsgrad,
                self.weight_decay):
            return
        beta1, beta2 = self.betas
        for p, state in zip(self.params, self.state, strict=True):
            if not p.trainable:
                continue
            if not state:
                state.update(step=0, exp_avg=np.zeros_like(p.data), exp_avg_sq=np.zeros_like(p.data))
                if self.amsgrad:
                    state["max_exp_avg_sq"] = np.zeros_like(p.data)
            state["step"] += 1
            g = p.grad
            if self.weight_decay:
                if self.decoupled_weight_decay:
                    p.data *= 1 - self.lr * self.weight_decay
                else:
                    g = g + self.weight_decay * p.data
            m, v = state["exp_avg"], state["exp_avg_sq"]
            m += (1 - beta1) * (g - m)  # PyTorch's lerp form
            v *= beta2
            v += (1 - beta2) * g * g
            if self.amsgrad:
                np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
                v = state["max_exp_avg_sq"]
            t = state["step"]
            denom = np.sqrt(v) / math.sqrt(1 - beta2**t) + self.eps
            p.data -= (self.lr / (1 - beta1**t)) * (m / denom)

    def _state_slots(self, hyper: dict[str, Any]) -> set[str]:
        return {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if hyper["amsgrad"] else set())



class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter), the update rule of ``torch.optim.AdamW``.

    The same class as :class:`Adam` with two class-level defaults, as PyTorch's ``AdamW`` is
    ``Adam(decoupled_weight_decay=True)``: the weights shrink by ``θ ← θ(1 - lr·λ)`` before the
    Adam step instead of adding ``λθ`` to the gradient, and ``weight_decay`` defaults to ``1e-2``.
    Arguments as :class:`Adam`.

    Args:
        params: the parameters to train, e.g. ``model.parameters()``.
        lr: the learning rate.
        betas: decay rates of the first and second moment estimates.
        eps: added to the denominator for numerical stability.
        weight_decay: the decoupled decay ``λ`` (``None``: the class default, ``1e-2``).
        amsgrad: use the running maximum of the second moment (AMSGrad).
        decoupled_weight_decay: ``None`` keeps the class default (``True`` for ``AdamW``).
        fused: lay the gradients out in one flat buffer; ``None`` takes :attr:`fused_default`.

    Example::

        opt = AdamW(model.parameters(), lr=1e-3)  # weight_decay=1e-2
    """

    decoupled_weight_decay = True
    default_weight_decay = 1e-2
