"""Hooks into ``Sequential.fit``, the Keras way, and the ``History`` that ``fit`` returns."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import Sequential

__all__ = ["History", "Callback", "CallbackList", "EarlyStopping", "LearningRateScheduler", "ModelCheckpoint",
           "MINIMISED", "MAXIMISED"]

#: Metric names that ``mode="auto"`` minimises and maximises (the loss heads' metrics, with or without ``val_``).
MINIMISED = ("loss", "mae", "mse")
MAXIMISED = ("accuracy",)


class History(dict):
    """Per-epoch metrics: ``history["loss"][e]``; ``history.history`` is the same dict, as in Keras.

    ``interrupted`` is ``True`` when Ctrl-C ended ``fit`` early (:meth:`mark_interrupted`).

    Args:
        args: as for ``dict``: a mapping or pairs of metric name and per-epoch values.
        kwargs: as for ``dict``: metric names and their per-epoch values.

    Example::

        history = model.fit(X, y, epochs=3)
        history["loss"], history.interrupted
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.interrupted = False

    def mark_interrupted(self) -> None:
        """Record that training stopped early, at a Ctrl-C: the epochs held are the completed ones."""
        self.interrupted = True

    @property
    def history(self) -> dict[str, list[float]]:
        return self

    @property
    def epoch(self) -> list[int]:
        return list(range(len(self.get("loss", []))))

    def append(self, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            self.setdefault(key, []).append(value)


class Callback:
    """Subclass and override any hook. ``self.model`` is set before training starts.

    Setting ``model.stop_training = True`` in a hook ends ``fit`` after the current epoch.
    A fused optimizer (the default) makes each trainable parameter's ``.grad`` a view of its
    flat buffer when it is created: read ``p.grad`` when you need it rather than keeping an
    array taken before the optimizer was made. Calling ``fit`` from a hook raises ``RuntimeError``.

    Example::

        class PrintLoss(Callback):
            def on_epoch_end(self, epoch, logs=None):
                print(epoch, logs["loss"])

        model.fit(X, y, callbacks=[PrintLoss()])
    """

    model: Sequential

    def set_model(self, model: Sequential) -> None:
        self.model = model

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None: ...

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None: ...

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None: ...

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None: ...

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None: ...


class CallbackList(Callback):
    """Several callbacks as one (Keras' ``CallbackList``): each hook calls the callbacks' hooks in order.

    Args:
        callbacks: the callbacks, e.g. those given to ``fit``.

    Example::

        hooks = CallbackList([EarlyStopping(patience=2), ModelCheckpoint("best.npz")])
        hooks.set_model(model)
        hooks.on_train_begin()
    """

    def __init__(self, callbacks: list[Callback]) -> None:
        self.callbacks = callbacks

    def set_model(self, model: Sequential) -> None:
        for cb in self.callbacks:
            cb.set_model(model)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        for cb in self.callbacks:
            cb.on_train_end(logs)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        for cb in self.callbacks:
            cb.on_batch_end(batch, logs)


class EarlyStopping(Callback):
    """Stop ``fit`` when ``monitor`` has stopped improving, the Keras way.

    An epoch improves on the best so far if ``monitor`` is lower by more than ``min_delta``
    (higher with ``mode="max"``; ``mode="auto"`` minimises ``loss`` and ``mae``, maximises
    ``accuracy``, with or without ``val_``, and asks for a mode for any other name).
    Training stops after ``patience`` epochs in a row without improvement. With
    ``restore_best_weights=True`` the model ends training with the weights of its best epoch
    (taken with ``model.state_dict()``), whether or not it stopped early, as Keras 3 does.
    After training, ``stopped_epoch`` is the (0-based) epoch it stopped at, 0 if it did not,
    and ``best_epoch`` the epoch whose weights were best. A ``monitor`` missing from the logs
    (e.g. ``val_loss`` without ``validation_data``) is an error, not a silent no-op.

    Args:
        monitor: the log key to watch, e.g. ``"val_loss"`` or ``"accuracy"``.
        min_delta: the smallest change that counts as an improvement.
        patience: epochs without improvement before training stops.
        verbose: 1 prints a line when training stops.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (from the name of ``monitor``).
        baseline: a value ``monitor`` must beat: until it does, no epoch resets the ``patience`` count.
        restore_best_weights: end training with the weights of the best epoch.
        start_from_epoch: epochs to wait before watching ``monitor`` at all.

    Example::

        stop = EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
        model.fit(X, y, epochs=100, validation_data=(X_val, y_val), callbacks=[stop])
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ) -> None:
        if not isinstance(monitor, str):
            raise TypeError(f"EarlyStopping: monitor must be a str, got {monitor!r}")
        if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float)) or not min_delta >= 0:
            raise ValueError(f"EarlyStopping: min_delta must be a number >= 0, got {min_delta!r}")
        for arg, value in (("patience", patience), ("start_from_epoch", start_from_epoch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"EarlyStopping: {arg} must be an int >= 0, got {value!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f'EarlyStopping: mode must be "auto", "min" or "max", got {mode!r}')
        if verbose not in (0, 1):
            raise ValueError(f"EarlyStopping: verbose must be 0 or 1, got {verbose!r}")
        mode = _resolve_mode("EarlyStopping", monitor, mode)
        self.monitor, self.min_delta, self.patience, self.verbose = monitor, float(min_delta), patience, verbose
        self.mode, self.baseline, self.restore_best_weights = mode, baseline, bool(restore_best_weights)
        self.start_from_epoch = start_from_epoch

    def _improves(self, value: float, reference: float) -> bool:
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_weights: dict[str, Any] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        current = _monitored("EarlyStopping", self.monitor, logs)
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.state_dict(), epoch
        self.wait += 1
        if self._improves(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.state_dict()
            # Keras: the patience counter resets only once the baseline is beaten.
            if self.baseline is None or self._improves(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.load_state_dict(self.best_weights)


class LearningRateScheduler(Callback):
    """Keras's ``LearningRateScheduler``: before each epoch, ``optimizer.lr = schedule(epoch, lr)``.

    ``schedule`` takes the 0-based epoch and the current learning rate and returns the new one.
    For PyTorch-style schedules pass a :class:`minidl.lr_scheduler.StepLR` or
    :class:`~minidl.lr_scheduler.CosineAnnealingLR` to ``callbacks`` directly instead.

    Args:
        schedule: a function ``(epoch, lr) -> new lr``.
        verbose: 1 prints the learning rate each epoch.

    Example::

        halve_every_5 = LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch and epoch % 5 == 0 else lr)
        model.fit(X, y, epochs=20, callbacks=[halve_every_5])
    """

    def __init__(self, schedule: Callable[[int, float], float], verbose: int = 0) -> None:
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be callable, got {schedule!r}")
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        optimizer = self.model.optimizer
        assert optimizer is not None  # fit sets it before the first epoch
        lr = self.schedule(epoch, optimizer.lr)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0:
            raise ValueError(f"LearningRateScheduler: schedule({epoch}, {optimizer.lr}) returned {lr!r}, "
                             "not a finite lr >= 0")
        optimizer.lr = float(lr)
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {optimizer.lr}.")


class ModelCheckpoint(Callback):
    """Save the model from ``fit`` with the atomic :meth:`Sequential.save`, the Keras way.

    ``filepath`` may use ``{epoch}`` (1-based) and any key of the epoch's logs, formatted by
    ``str.format``: ``"ckpt-{epoch:03d}-{val_loss:.3f}.npz"`` keeps one file per save, a plain
    ``"best.npz"`` is overwritten each time. A save happens at the end of every
    ``every_n_epochs``-th epoch; with ``save_best_only=True`` only when ``monitor`` improved on
    the best value so far (``mode`` as for :class:`EarlyStopping`: "auto" minimises losses and
    maximises accuracies). As every write is a temporary file renamed into place, a process
    killed at any moment leaves complete checkpoints only and loses at most the epochs since
    the last one: resume with ``minidl.load(path)`` and ``fit``.
    ``last_saved`` is the path written last (``None`` before the first save).

    Args:
        filepath: where to save; may hold ``{epoch}`` and log keys as ``str.format`` fields.
        monitor: the log key ``save_best_only`` compares.
        save_best_only: save only when ``monitor`` improved on the best so far.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (from the name of ``monitor``).
        every_n_epochs: save at the end of every n-th epoch.
        verbose: 1 prints a line at each save.

    Example::

        best = ModelCheckpoint("best.npz", monitor="val_accuracy", save_best_only=True)
        model.fit(X, y, epochs=20, validation_data=(X_val, y_val), callbacks=[best])
    """

    def __init__(
        self,
        filepath: str | os.PathLike,
        monitor: str = "val_loss",
        save_best_only: bool = False,
        mode: str = "auto",
        every_n_epochs: int = 1,
        verbose: int = 0,
    ) -> None:
        if not isinstance(filepath, (str, os.PathLike)):
            raise TypeError(f"ModelCheckpoint: filepath must be a str or os.PathLike, got {filepath!r}")
        if not isinstance(monitor, str):
            raise TypeError(f"ModelCheckpoint: monitor must be a str, got {monitor!r}")
        if not isinstance(save_best_only, bool):
            raise TypeError(f"ModelCheckpoint: save_best_only must be a bool, got {save_best_only!r}")
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ValueError(f"ModelCheckpoint: every_n_epochs must be an int >= 1, got {every_n_epochs!r}")
        if verbose not in (0, 1):
            raise ValueError(f"ModelCheckpoint: verbose must be 0 or 1, got {verbose!r}")
        self.filepath = os.fspath(filepath)
        self.monitor, self.save_best_only = monitor, save_best_only
        self.every_n_epochs, self.verbose = every_n_epochs, verbose
        self.mode = _resolve_mode("ModelCheckpoint", monitor, mode)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.last_saved: str | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        directory = os.path.dirname(os.path.abspath(self.filepath))
        if not os.path.isdir(directory):  # fail now, not after the first epoch's work
            raise ValueError(f"ModelCheckpoint: directory {directory!r} of filepath {self.filepath!r} does not exist")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if (epoch + 1) % self.every_n_epochs:
            return
        logs = logs or {}
        if self.save_best_only:
            current = _monitored("ModelCheckpoint", self.monitor, logs)
            better = current < self.best if self.mode == "min" else current > self.best
            if not (math.isfinite(current) and better):
                return
            self.best = current
        try:
            path = self.filepath.format(epoch=epoch + 1, **logs)
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(
                f"ModelCheckpoint: cannot fill in filepath {self.filepath!r} from epoch and logs "
                f"{sorted(logs)}: {err!r}"
            ) from None
        self.model.save(path)
        self.last_saved = path
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved the model to {path}")


def _resolve_mode(owner: str, monitor: str, mode: str) -> str:
    """"min" or "max" for ``mode``; "auto" minimises losses and errors and maximises accuracies, as Keras 3 does."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f'{owner}: mode must be "auto", "min" or "max", got {mode!r}')
    if mode != "auto":
        return mode
    metric = monitor.removeprefix("val_")
    if metric not in MINIMISED + MAXIMISED:
        raise ValueError(
            f'{owner}: cannot tell whether {monitor!r} should go down or up; pass mode="min" or mode="max"'
        )
    return "min" if metric in MINIMISED else "max"


def _monitored(owner: str, monitor: str, logs: dict[str, Any] | None) -> float:
    """The epoch's value of ``monitor``; a missing one is an error, not a silent no-op."""
    logs = logs or {}
    if monitor not in logs:
        raise ValueError(
            f"{owner}: monitor {monitor!r} is not in the epoch's logs {sorted(logs)}"
            + ("; pass validation_data to fit" if monitor.startswith("val_") else "")
        )
    return float(logs[monitor])
