"""What keeps ``fit`` from losing work: the non-finite checks and Ctrl-C at step boundaries.

``TrainingGuard`` is used by ``Sequential.fit``; no weights are copied per step:

- ``check_step(loss)`` runs once per step, *before* ``optimizer.step()``. A non-finite
  loss, or a finite loss whose gradients hold NaN/inf or overflow (the optimizer's
  :meth:`~minidl.optim.Optimizer.grad_norm_squared`, ``Σ g·g`` over the trainable
  parameters: one BLAS dot when the optimizer is ``fused``), raises
  :class:`NonFiniteLossError` before the update is applied: the weights are exactly those of
  the last good step. The guard only reads; it never rebinds a ``.grad``.
- What that cannot see is an update that overflows although loss and gradients are finite
  (an enormous learning rate or weight decay). Non-finite weights then show up as a
  non-finite loss at the next step, or in ``end_epoch``'s check; as the bad update is
  already applied, the guard restores the weights from the start of the epoch, the one
  copy it takes per epoch (``begin_epoch``), and says so in the error. Buffers (running
  statistics) that the failing forward pass left non-finite are restored the same way.
- ``check_interrupt()`` runs *after* the step. While the guard is active on the main
  thread, Ctrl-C (SIGINT) only sets a flag; the step in flight finishes (no update is
  left half-applied) and then ``KeyboardInterrupt`` is raised at this boundary. A
  second Ctrl-C raises at once; ``fit`` runs ``optimizer.step()`` inside ``with guard.step():``,
  and :attr:`TrainingGuard.updating` then tells it whether that interrupt hit an update.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from .layers.base import Buffer
from .layers.losses import Loss

if TYPE_CHECKING:
    from .optim import Optimizer


class NonFiniteLossError(FloatingPointError):
    """Training diverged: the loss or the gradients became NaN or infinite.

    Attributes: ``epoch`` and ``step`` (0-based) where it happened, ``loss`` (the
    non-finite or finite loss of that step), ``last_finite_loss`` (of the step before, or
    ``None``), and ``history`` (the epochs completed before it, filled in by ``fit``).
    """

    def __init__(self, message: str, epoch: int, step: int, loss: float | None,
                 last_finite_loss: float | None) -> None:
        super().__init__(message)
        self.epoch, self.step, self.loss, self.last_finite_loss = epoch, step, loss, last_finite_loss
        self.history: Any = None


class TrainingGuard:
    """Per-step safety checks for one ``fit`` call; a context manager that defers SIGINT.

    Args:
        optimizer: the :class:`~minidl.optim.Optimizer` of the ``fit`` call; its
            ``grad_norm_squared()`` is the gradient check and its ``lr`` is quoted in errors.
        buffers: the model's buffers (running statistics), restored with the weights.
        layers: the model's layers; those defined outside minidl are named in the error.

    Example::

        with TrainingGuard(opt, model.named_buffers().values()) as guard:
            guard.check_step(loss, epoch=0, step=0)
            with guard.step():
                opt.step()
            guard.check_interrupt()
    """

    def __init__(self, optimizer: Optimizer, buffers: Iterable[Buffer] = (), layers: Iterable[Any] = ()) -> None:
        self.optimizer = optimizer  # read at error time: a schedule may have changed its lr
        # Layers written outside minidl are the likelier cause of a divergence: the message says so.
        # ``layers`` may hold the model's loss too: a custom loss is a Loss whose class is not minidl's.
        custom = [layer for layer in layers if not type(layer).__module__.startswith("minidl.")]
        self.custom_layers = sorted({type(layer).__name__ for layer in custom})
        # a loss of one's own is checked with check_loss, which also knows its targets
        self.custom_losses = sorted({type(layer).__name__ for layer in custom if isinstance(layer, Loss)})
        # All of them, not only the trainable ones: a callback may unfreeze a layer mid-fit.
        self.params = list(optimizer.params)
        self._frozen = [p for p in self.params if not p.trainable]
        self.buffers = list(buffers)  # e.g. running statistics, updated by the forward pass itself
        self.last_loss: float | None = None
        self.interrupt_requested = False
        self._updating = False
        self._step = _Step(self)  # one object for every step: fit enters it once per batch
        self._previous_handler: Any = None
        self._epoch_start: list[np.ndarray] = []

    @property
    def updating(self) -> bool:
        """Whether the last :meth:`step` block was left by an exception (an interrupt inside the update):
        the weights may then be half-updated."""
        return self._updating

    def step(self) -> _Step:
        """``with guard.step(): optimizer.step()``: marks the update, so that an interrupt there is told apart."""
        return self._step

    # -- non-finite loss / gradients / weights ------------------------------------------------
    def begin_epoch(self) -> None:
        """Keep the weights and buffers at the start of the epoch: the fallback if they turn non-finite."""
        held = self.params + self.buffers
        if len(self._epoch_start) != len(held):
            self._epoch_start = [h.data.copy() for h in held]
        else:
            for saved, h in zip(self._epoch_start, held, strict=True):
                np.copyto(saved, h.data)

    def check_step(self, loss: float, epoch: int, step: int) -> None:
        """Raise :class:`NonFiniteLossError` unless ``loss`` and every gradient are finite."""
        if math.isfinite(loss):
            squares = self.optimizer.grad_norm_squared()
            if math.isfinite(squares):
                self.last_loss = loss
                return
            what = f"the gradients became non-finite (sum of squares {squares}) while the loss was {loss:.6g}"
        else:
            what = f"the loss became {loss}"
        self._stop(what, epoch, step, loss)

    def end_epoch(self, epoch: int, steps: int) -> None:
        """Raise :class:`NonFiniteLossError` if an update of this epoch left non-finite weights."""
        if not self._weights_finite():
            self._stop("the weights became non-finite", epoch, steps - 1, self.last_loss)

    def _weights_finite(self) -> bool:
        return _all_finite(self.params)

    def _restore(self, first: int, held: list[Any]) -> None:
        for saved, h in zip(self._epoch_start[first:], held, strict=True):
            np.copyto(h.data, saved)

    def _stop(self, what: str, epoch: int, step: int, loss: float | None) -> None:
        last = "no earlier step had a finite loss" if self.last_loss is None else \
            f"the last finite loss was {self.last_loss:.6g}"
        if self._weights_finite():
            kept = "the model keeps the weights of the last finite step (this step's update was not applied)"
        else:
            self._restore(0, self.params)
            kept = (f"an update overflowed although its loss and gradients were finite, so the weights were "
                    f"restored to those at the start of epoch {epoch + 1}")
        if not _all_finite(self.buffers):  # the failing forward pass itself may have updated them
            self._restore(len(self.params), self.buffers)
            kept += f"; the buffers (running statistics) were restored to those at the start of epoch {epoch + 1}"
        lr = getattr(self.optimizer, "lr", None)
        lr = f" (lr={lr:g})" if lr is not None else ""
        custom = ""
        if self.custom_layers:
            checks = []
            if set(self.custom_layers) - set(self.custom_losses):
                checks.append("each layer with minidl.testing.check_layer(layer, input_shape)")
            if self.custom_losses:
                checks.append("the loss with minidl.testing.check_loss(loss, input_shape)")
            custom = (f" The model holds layers that are not built in ({', '.join(self.custom_layers)}): a backward "
                      "that adds to .grad (+=) or returns a wrong gradient also makes the loss diverge; check "
                      f"{' and '.join(checks)}.")
        raise NonFiniteLossError(
            f"fit: {what} at epoch {epoch + 1}, step {step + 1}; {last}. Training stopped and {kept}. "
            f"Try a lower learning rate{lr}, less weight decay, or rescaled inputs.{custom}",
            epoch, step, loss, self.last_loss,
        )

    # -- Ctrl-C at step boundaries --------------------------------------------------------
    def __enter__(self) -> TrainingGuard:
        # Only the main thread may install handlers; respect a handler the user installed.
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.interrupt_requested:  # a second Ctrl-C: the user wants out now
            raise KeyboardInterrupt
        self.interrupt_requested = True

    def check_interrupt(self) -> None:
        """Raise ``KeyboardInterrupt`` here if Ctrl-C was pressed during the step that just ended."""
        if self.interrupt_requested:
            raise KeyboardInterrupt


class _Step:
    """The context of :meth:`TrainingGuard.step`; an exception leaves the guard marked as updating."""

    __slots__ = ("guard",)

    def __init__(self, guard: TrainingGuard) -> None:
        self.guard = guard

    def __enter__(self) -> None:
        self.guard._updating = True

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:  # after an exception fit reads that the update was cut short
            self.guard._updating = False


def _all_finite(held: list[Any]) -> bool:
    return all(np.isfinite(h.data).all() for h in held)
