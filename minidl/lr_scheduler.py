"""Learning-rate schedules, as PyTorch's ``torch.optim.lr_scheduler`` (``from minidl.optim import StepLR`` works too).

This module does not import :mod:`minidl.optim` (which re-exports the schedules): a schedule
only reads and sets its optimizer's ``lr``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .arguments import as_float, as_int, as_type_of
from .callbacks import Callback

if TYPE_CHECKING:
    from .optim import Optimizer

__all__ = ["LRScheduler", "StepLR", "CosineAnnealingLR"]


class LRScheduler(Callback):
    """Base class of learning-rate schedules, PyTorch-style: call :meth:`step` once per epoch.

    A schedule is also a :class:`~minidl.callbacks.Callback`: pass it to
    ``fit(..., optimizer=opt, callbacks=[schedule])`` and ``fit`` steps it after every epoch.
    Subclasses implement :meth:`get_lr`, the learning rate for epoch ``self.last_epoch``
    (closed form, from ``base_lr``, the optimizer's ``lr`` when the schedule was made).

    Args:
        optimizer: the :class:`~minidl.optim.Optimizer` whose ``lr`` the schedule sets.

    Example::

        class Halving(LRScheduler):
            def get_lr(self):
                return self.base_lr * 0.5 ** self.last_epoch
    """

    def __init__(self, optimizer: Optimizer) -> None:
        # what a schedule uses of a minidl Optimizer (checked so, minidl.optim imports this module)
        if not isinstance(getattr(optimizer, "lr", None), float) or not hasattr(optimizer, "params"):
            raise TypeError(f"{type(self).__name__}: optimizer must be a minidl Optimizer, got {optimizer!r}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0
        self._last_lr = self.base_lr

    def get_lr(self) -> float:
        raise NotImplementedError

    def step(self) -> None:
        """Advance one epoch and set the optimizer's ``lr``."""
        self.last_epoch += 1
        self._last_lr = self.optimizer.lr = self.get_lr()

    def get_last_lr(self) -> list[float]:
        """The learning rate set by the last :meth:`step`, as a one-element list as in PyTorch."""
        return [self._last_lr]

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k not in ("optimizer", "model")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = set(self.state_dict())
        if set(state) != expected:
            raise ValueError(f"{type(self).__name__}.load_state_dict: missing key(s) {sorted(expected - set(state))}, "
                             f"unexpected key(s) {sorted(set(state) - expected)}")
        for key, value in state.items():
            setattr(self, key, as_type_of(getattr(self, key), value))

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self.model.optimizer is not self.optimizer:
            raise ValueError(
                f"{type(self).__name__}: fit trains with a different optimizer than the one this schedule "
                "changes; pass the same object as fit(optimizer=...)"
            )

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.step()


class StepLR(LRScheduler):
    r"""``torch.optim.lr_scheduler.StepLR``: ``lr = base_lr · γ^{⌊epoch / step_size⌋}``.

    Args:
        optimizer: the :class:`~minidl.optim.Optimizer` whose ``lr`` the schedule sets.
        step_size: epochs between two decays (at least 1).
        gamma: the factor applied every ``step_size`` epochs, in ``(0, 1]``.

    Example::

        >>> from minidl.layers import Parameter
        >>> from minidl.optim import SGD
        >>> import numpy as np
        >>> opt = SGD([Parameter(np.zeros(1))], lr=1.0)
        >>> schedule = StepLR(opt, step_size=2, gamma=0.5)
        >>> [(schedule.step(), opt.lr)[1] for _ in range(4)]
        [1.0, 0.5, 0.5, 0.25]
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        super().__init__(optimizer)
        self.step_size = as_int(step_size, "step_size", "StepLR", minimum=1)
        self.gamma = as_float(gamma, "gamma", "StepLR", low=0.0, low_inclusive=False)

    def get_lr(self) -> float:
        return self.base_lr * self.gamma ** (self.last_epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    r"""``torch.optim.lr_scheduler.CosineAnnealingLR`` (closed form, without restarts):

    .. math::
        \mathrm{lr} = η_{min} + \tfrac12 (\mathrm{base\_lr} - η_{min})\,(1 + \cos(π \cdot \mathrm{epoch} / T_{max}))

    It reaches ``eta_min`` after ``T_max`` epochs; usually ``T_max`` is the number of epochs.

    Args:
        optimizer: the :class:`~minidl.optim.Optimizer` whose ``lr`` the schedule sets.
        T_max: the number of epochs from ``base_lr`` down to ``eta_min`` (at least 1).
        eta_min: the smallest learning rate.

    Example::

        >>> from minidl.layers import Parameter
        >>> from minidl.optim import SGD
        >>> import numpy as np
        >>> opt = SGD([Parameter(np.zeros(1))], lr=1.0)
        >>> schedule = CosineAnnealingLR(opt, T_max=2)
        >>> [round((schedule.step(), opt.lr)[1], 6) for _ in range(2)]
        [0.5, 0.0]
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:  # noqa: N803 (PyTorch's name)
        super().__init__(optimizer)
        self.T_max = as_int(T_max, "T_max", "CosineAnnealingLR", minimum=1)
        self.eta_min = as_float(eta_min, "eta_min", "CosineAnnealingLR", low=0.0)

    def get_lr(self) -> float:
        cosine = (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2
        return self.eta_min + (self.base_lr - self.eta_min) * cosine
