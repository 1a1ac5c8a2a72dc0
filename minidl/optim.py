"""Optimizers update :class:`~minidl.layers.Parameter` objects in place from their ``.grad``.

The learning-rate schedules are in :mod:`minidl.lr_scheduler` (PyTorch's ``torch.optim.lr_scheduler``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .arguments import as_float, check_bool
from .layers.base import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


class Optimizer:
    """Holds a list of parameters; ``step()`` updates the trainable ones, ``zero_grad()`` clears grads."""

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        owner = type(self).__name__
        if isinstance(params, Parameter) or not isinstance(params, Iterable):
            raise TypeError(
                f"{owner}: params must be a list of Parameters (model.parameters()), got {type(params).__name__}"
            )
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{owner}: got an empty parameter list")
        bad = [p for p in self.params if not isinstance(p, Parameter)]
        if bad:
            raise TypeError(
                f"{owner}: params must be Parameter objects (pass model.parameters()), got {type(bad[0]).__name__}"
            )
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError(f"{owner}: a parameter appears more than once in params; it would be updated twice")
        self.lr = as_float(lr, "lr", type(self).__name__, low=0.0, low_inclusive=False)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad.fill(0)

    def step(self) -> None:
        raise NotImplementedError

    #: Attributes :meth:`state_dict` saves besides the per-parameter state (a schedule changes ``lr``).
    hyperparameters: tuple[str, ...] = ("lr",)

    def state_dict(self) -> dict[str, Any]:
        """Flat, PyTorch-like state of plain numbers and arrays (copies): the hyper-parameters, and
        ``"<i>.<slot>"`` (e.g. ``"0.exp_avg"``) for the ``i``-th parameter of the list given to the optimizer."""
        out: dict[str, Any] = {k: getattr(self, k) for k in self.hyperparameters}
        for i, slots in enumerate(self._get_param_states()):
            out.update({f"{i}.{k}": v.copy() if isinstance(v, np.ndarray) else v for k, v in slots.items()})
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (also after ``np.savez``/``np.load``).

        Every key and array shape is checked before anything changes; a state that does not fit
        raises ``ValueError`` listing the missing and the unexpected keys, as PyTorch does."""
        name = type(self).__name__
        missing = [k for k in self.hyperparameters if k not in state]
        if missing:
            raise ValueError(f"{name}.load_state_dict: missing key(s) {missing}")
        hyper = {k: _like(getattr(self, k), state[k]) for k in self.hyperparameters}
        slots = self._state_slots(hyper)
        unexpected = [key for key in state if key not in hyper and not _slot_key(key, len(self.params), slots)]
        if unexpected:
            raise ValueError(f"{name}.load_state_dict: unexpected key(s) {unexpected} (this optimizer has "
                             f"{len(self.params)} parameters with state {sorted(slots)})")
        per_param: list[dict[str, Any]] = [{} for _ in self.params]
        for key, value in state.items():
            if key in hyper:
                continue
            index, _, slot = key.partition(".")
            p = self.params[int(index)]
            if slot == "step":
                per_param[int(index)][slot] = int(value)
                continue
            value = np.asarray(value)
            if value.shape != p.shape:
                raise ValueError(f"{name}.load_state_dict: {key!r} has shape {value.shape}, the parameter has {p.shape}")
            per_param[int(index)][slot] = value.astype(p.dtype, copy=True)
        for i, entry in enumerate(per_param):
            if entry and set(entry) != slots:
                lacking = [f"{i}.{k}" for k in sorted(slots - set(entry))]
                raise ValueError(f"{name}.load_state_dict: missing key(s) {lacking}")
        for k, v in hyper.items():
            setattr(self, k, v)
        self._set_param_states(per_param)

    # Optimizers with per-parameter state (momentum, moments) override these three.
    def _state_slots(self, hyper: dict[str, Any]) -> set[str]:
        return set()

    def _get_param_states(self) -> list[dict[str, Any]]:
        return [{} for _ in self.params]

    def _set_param_states(self, states: list[dict[str, Any]]) -> None:
        pass


class SGD(Optimizer):
    r"""Stochastic gradient descent with momentum, the update rule of ``torch.optim.SGD``.

    With gradient ``g``, parameter ``θ``, weight decay ``λ``, momentum ``μ``:

    .. math::
        g \leftarrow g + λθ, \qquad
        b \leftarrow \begin{cases} g & \text{first step} \\ μ b + g & \text{after} \end{cases}, \qquad
        θ \leftarrow θ - \mathrm{lr} \cdot \begin{cases} g + μ b & \text{nesterov} \\ b & \text{otherwise} \end{cases}

    With ``momentum=0`` this is plain ``θ ← θ - lr·(g + λθ)``. Frozen parameters
    (``trainable=False``) are skipped.
    """

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        self.momentum = as_float(momentum, "momentum", "SGD", low=0.0, high=1.0)
        self.weight_decay = as_float(weight_decay, "weight_decay", "SGD", low=0.0)
        if check_bool(nesterov, "nesterov", "SGD") and self.momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)
        self._buffers: list[np.ndarray | None] = [None] * len(self.params)

    hyperparameters = ("lr", "momentum", "nesterov", "weight_decay")

    def _state_slots(self, hyper: dict[str, Any]) -> set[str]:
        return {"momentum_buffer"}

    def _get_param_states(self) -> list[dict[str, Any]]:
        return [{} if buf is None else {"momentum_buffer": buf} for buf in self._buffers]

    def _set_param_states(self, states: list[dict[str, Any]]) -> None:
        self._buffers = [entry.get("momentum_buffer") for entry in states]

    def step(self) -> None:
        for i, p in enumerate(self.params):
            if not p.trainable:
                continue
            g = p.grad
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            if self.momentum:
                buf = self._buffers[i]
                if buf is None:
                    buf = self._buffers[i] = g.copy()
                else:
                    buf *= self.momentum
                    buf += g
                g = g + self.momentum * buf if self.nesterov else buf
            p.data -= self.lr * g


class Adam(Optimizer):
    r"""Adam, the update rule of ``torch.optim.Adam`` (and, via :class:`AdamW`, of ``torch.optim.AdamW``).

    For each trainable parameter ``θ`` with gradient ``g``, at its step ``t = 1, 2, ...``:

    .. math::
        g \leftarrow g + λθ \ (\text{L2, Adam only}), \qquad
        θ \leftarrow θ(1 - \mathrm{lr}\,λ) \ (\text{decoupled, AdamW only}), \\
        m \leftarrow β_1 m + (1-β_1) g, \qquad v \leftarrow β_2 v + (1-β_2) g^2, \qquad
        \hat v = \max(\hat v, v) \ (\text{amsgrad}) \text{ else } v, \\
        θ \leftarrow θ - \frac{\mathrm{lr}}{1-β_1^t} \cdot \frac{m}{\sqrt{\hat v}/\sqrt{1-β_2^t} + ε}

    ``m`` and ``v`` start at zero. Frozen parameters (``trainable=False``) are skipped and
    their step count does not advance, as PyTorch skips parameters without a gradient.
    """

    hyperparameters = ("lr", "betas", "eps", "weight_decay", "amsgrad")
    _decoupled = False

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr)
        name = type(self).__name__
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = tuple(as_float(b, f"betas[{i}]", name, low=0.0, high=1.0) for i, b in enumerate(betas))
        self.eps = as_float(eps, "eps", name, low=0.0)
        self.weight_decay = as_float(weight_decay, "weight_decay", name, low=0.0)
        self.amsgrad = check_bool(amsgrad, "amsgrad", name)
        #: Per parameter (same order as ``params``): ``step``, ``exp_avg``, ``exp_avg_sq`` (+ ``max_exp_avg_sq``).
        self.state: list[dict[str, Any]] = [{} for _ in self.params]

    def step(self) -> None:
        beta1, beta2 = self.betas
        for p, state in zip(self.params, self.state):
            if not p.trainable:
                continue
            if not state:
                state.update(step=0, exp_avg=np.zeros_like(p.data), exp_avg_sq=np.zeros_like(p.data))
                if self.amsgrad:
                    state["max_exp_avg_sq"] = np.zeros_like(p.data)
            state["step"] += 1
            g = p.grad
            if self.weight_decay:
                if self._decoupled:
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

    def _get_param_states(self) -> list[dict[str, Any]]:
        return self.state

    def _set_param_states(self, states: list[dict[str, Any]]) -> None:
        self.state = states


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter), the update rule of ``torch.optim.AdamW``.

    The weights shrink by ``θ ← θ(1 - lr·λ)`` before the Adam step instead of adding ``λθ``
    to the gradient; ``weight_decay`` defaults to ``1e-2`` as in PyTorch.
    """

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


def _slot_key(key: str, n_params: int, slots: set[str]) -> bool:
    """Whether ``key`` is ``"<i>.<slot>"`` for one of ``n_params`` parameters and a known slot."""
    index, _, slot = key.partition(".")
    return index.isdigit() and int(index) < n_params and slot in slots


def _like(current: Any, value: Any) -> Any:
    """``value`` (maybe a NumPy scalar or array read back from ``.npz``) as the type of ``current``."""
    if isinstance(current, tuple):
        return tuple(float(v) for v in value)
    return type(current)(value)


def __getattr__(name: str) -> Any:
    # The schedules moved to minidl.lr_scheduler; ``from minidl.optim import CosineAnnealingLR`` (README) still works.
    if name in ("LRScheduler", "StepLR", "CosineAnnealingLR"):
        from . import lr_scheduler  # it imports this module

        return getattr(lr_scheduler, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
