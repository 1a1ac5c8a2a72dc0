"""The training loop behind ``Sequential.fit``, ``evaluate`` and ``predict``.

One :class:`Trainer` runs one ``fit`` call. It holds the model, the optimizer, the callbacks,
the :class:`~minidl.guard.TrainingGuard`, the :class:`~minidl.callbacks.History`, the running
means (:class:`~minidl.metrics.RunningMetrics`) and the display (:class:`~minidl.progress.Progress`);
an epoch is the batches of :meth:`Trainer.batches` (the one place that produces them), each one
step of :func:`forward_backward`, the guard's check, the update and the callbacks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .arguments import as_int, check_bool
from .callbacks import Callback, CallbackList, History
from .fit_checks import (
    NotLearningWarning,
    check_fit_arguments,
    check_owned,
    not_learning,
    require_classifier,
    require_loss,
    validation_source,
    warn_if_not_learning,
    warn_if_unscaled,
    warn_ran_out,
)
from .guard import NonFiniteLossError, TrainingGuard
from .inputs import prepare_inputs, raise_if_not_finite
from .metrics import RunningMetrics
from .optim import SGD, Optimizer
from .progress import Progress
from .recipes import optimizer_class
from .sources import Batch, Source, as_source, batch_size_for

if TYPE_CHECKING:
    from .layers.losses import Loss
    from .model import Sequential

__all__ = ["Trainer", "require_loss", "prepare", "forward_backward", "evaluate", "predict", "NotLearningWarning",
           "not_learning"]  # require_loss, NotLearningWarning, not_learning: from fit_checks


def prepare(model: Sequential, X: Any, y: Any, x_name: str, y_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert a data set ``(X, y)`` once, before any work: ``X`` for the model, ``y`` by its loss."""
    X = prepare_inputs(model, X, x_name)
    return X, require_loss(model, "fit").prepare_targets(y, len(X), y_name, x_name)


def forward_backward(model: Sequential, x: np.ndarray, y: np.ndarray,
                     input_grad: bool = True) -> tuple[float, np.ndarray]:
    """One unchecked training pass on a prepared batch: forward, loss, backward; returns ``(loss, outputs)``.

    ``outputs`` are the model's outputs (the logits of a classifier). ``input_grad=False`` (fit)
    calls the first layer's ``backward_params``: nobody reads the gradient of the data, and a
    Conv2D then skips computing it.
    """
    outputs = model.forward(x, training=True)
    loss, grad = _loss_and_grad(cast("Loss", model.loss), outputs, y, model.output_mask)  # checked by the caller
    (model.backward if input_grad else model.backward_params)(grad)
    return loss, outputs


def _loss_and_grad(loss: Loss, outputs: np.ndarray, y: np.ndarray,
                   mask: np.ndarray | None) -> tuple[float, np.ndarray]:
    # without a mask, called as a loss written before masks existed expects
    return loss.loss_and_grad(outputs, y) if mask is None else loss.loss_and_grad(outputs, y, mask)


def labelled(batches: Iterator[Batch]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The batches of a source made with labels (``fit``, ``evaluate``): every ``y`` is an array."""
    return cast("Iterator[tuple[np.ndarray, np.ndarray]]", batches)


def evaluate(model: Sequential, source: Source, batch_size: int) -> dict[str, float]:
    """Mean loss and the loss's metrics over the batches of ``source``, in inference mode."""
    loss = require_loss(model, "evaluate")
    running = RunningMetrics(loss, capacity=0)
    for xb, yb in labelled(source.batches(batch_size)):
        outputs = model.forward(xb)
        running.add(_loss_and_grad(loss, outputs, yb, model.output_mask)[0], outputs, yb, model.output_mask)
    if not running.seen:
        raise source.no_batch()
    return running.means()


def predict(model: Sequential, X: Any, batch_size: int | None, proba: bool = False, steps: int | None = None
            ) -> np.ndarray:
    """``model.predict`` (or ``predict_proba``): the loss's predictions (or probabilities) for ``X``, in chunks.

    Without a loss, ``predict`` returns the model's outputs. ``batch_size=None`` means 256.
    """
    what = "predict_proba" if proba else "predict"
    batch_size = batch_size_for(X, batch_size, 256, what)
    loss = model.loss
    if proba:
        require_classifier(loss)
    source = as_source(model, X, None, "X", None, steps, labels=False)
    if loss is not None:
        require_loss(model, what)
    convert = (loss.probabilities if proba else loss.predict) if loss is not None else None
    chunks = []
    for xb, _ in source.batches(batch_size):
        outputs = model.forward(xb)
        raise_if_not_finite(outputs, f"{what}: the outputs")
        chunks.append(outputs if convert is None else convert(outputs))
    if not chunks:
        raise source.no_batch()
    return np.concatenate(chunks)


class Trainer:
    """One ``fit`` call: mini-batch gradient descent on ``model`` with its guarantees (see ``Sequential.fit``).

    Args:
        model: a built or unbuilt ``Sequential`` with a loss.
        optimizer: ``None`` reuses the model's previous optimizer or makes ``SGD(lr=0.01)``; a name of
            :data:`minidl.recipes.OPTIMIZERS` (``"sgd"``, ``"adam"``, ``"adamw"``) makes that optimizer
            with its default settings, as Keras does.
        callbacks: :class:`~minidl.callbacks.Callback` objects.
        verbose: 0 silent, 1 a progress bar per epoch, 2 one line per epoch.

    Example::

        history = Trainer(model, SGD(model.parameters(), lr=0.1)).fit(X, y, epochs=2)
    """

    # What one run holds, made by ``fit`` (the optimizer, the data) and ``_run`` (the rest).
    optimizer: Optimizer
    source: Source
    val: Source | None
    guard: TrainingGuard
    progress: Progress
    running: RunningMetrics

    def __init__(
        self,
        model: Sequential,
        optimizer: Optimizer | str | None = None,
        callbacks: Sequence[Callback] = (),
        verbose: int = 1,
    ) -> None:
        self.model = model
        self.loss = require_loss(model, "fit")
        self.callbacks = CallbackList(check_fit_arguments(verbose, callbacks, optimizer))
        self.requested_optimizer = optimizer
        self.verbose = verbose
        self.history = History()
        self.judged = False  # the not-learning warning, given at most once

    def fit(
        self,
        X: Any,
        y: Any,
        epochs: int = 1,
        batch_size: int | None = None,
        validation_data: tuple[Any, Any] | Any | None = None,
        shuffle: bool = True,
        steps_per_epoch: int | None = None,
    ) -> History:
        """Check everything, then train for ``epochs`` epochs; returns the history.

        ``X`` may also be a ``np.memmap`` or an iterable of ``(X_batch, y_batch)`` (with ``y=None``,
        and no ``batch_size``: its batches are used as given); see :mod:`minidl.sources`.
        ``batch_size=None`` means 32.
        """
        model = self.model
        self.epochs = as_int(epochs, "epochs", minimum=0)
        self.batch_size = batch_size_for(X, batch_size, 32, "fit")
        self.shuffle = check_bool(shuffle, "shuffle", "fit")
        self.source = as_source(model, X, y, "X", "y", steps_per_epoch)
        warn_if_unscaled(model, X)
        self.val = validation_source(model, validation_data, self.epochs)
        optimizer = self.requested_optimizer or model.optimizer or SGD(model.parameters(), lr=0.01)
        if isinstance(optimizer, str):  # made now: an unbuilt model has its parameters only once X built it
            make: Callable[..., Optimizer] = optimizer_class(optimizer.lower())  # each has a default lr
            optimizer = make(model.parameters())
        check_owned(model, optimizer)
        with model.training_session(self.history):
            previous_optimizer, model.optimizer = model.optimizer, optimizer
            self.optimizer = optimizer
            try:
                self.callbacks.set_model(model)
                self.callbacks.on_train_begin()
            except BaseException:
                model.optimizer = previous_optimizer  # a refused fit leaves nothing behind for the next one
                raise
            return self._run()

    def _run(self) -> History:
        """The epochs under the guard; a NaN stop or Ctrl-C still ends with the callbacks' ``on_train_end``."""
        model = self.model
        self.guard = guard = TrainingGuard(self.optimizer, model.named_buffers().values(),
                                           [*model.named_layers().values(), model.loss])
        self.progress = Progress(self.verbose, self.epochs)
        capacity = max(self.batch_size, min(self.source.samples or 1024, 1024))
        self.running = RunningMetrics(self.loss, capacity=capacity)
        diverged = None
        try:
            with guard:
                self._epochs()
        except NonFiniteLossError as err:
            err.history, diverged = self.history, err
        except KeyboardInterrupt:
            if guard.updating:  # a forced stop (a second Ctrl-C) inside optimizer.step: nothing is consistent
                self.callbacks.on_train_end()
                raise
            self.history.mark_interrupted()
            self.model.stop_training = True
            self.progress.interrupted(len(self.history.epoch))
        self.callbacks.on_train_end()  # also after a NaN stop, so callbacks can restore or save what they hold
        if diverged is not None:
            raise diverged
        return self.history

    def _epochs(self) -> None:
        guard = self.guard
        for epoch in range(self.epochs):
            self.callbacks.on_epoch_begin(epoch)
            guard.begin_epoch()
            logs, steps = self._run_epoch(epoch)
            guard.end_epoch(epoch, steps=steps)
            if self.source.exhausted:  # an iterator that ran dry: this epoch is incomplete, as after Ctrl-C
                self.model.stop_training = True
                warn_ran_out(self.source, epoch, steps, self.history.epoch)
                break
            if self.val is not None:
                logs.update({f"val_{k}": v for k, v in evaluate(self.model, self.val, batch_size=256).items()})
            logs["lr"] = self.optimizer.lr  # the rate this epoch trained with; a schedule may change it at epoch end
            self.history.append(logs)
            self.progress.end_epoch(epoch, logs)
            self.callbacks.on_epoch_end(epoch, logs)
            if not self.judged:  # the warning is given at most once
                self.judged = warn_if_not_learning(self.model, self.history["loss"], self.optimizer.lr)
            guard.check_interrupt()
            if self.model.stop_training:
                break

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One epoch's ``(x, y)`` batches, shuffled by the model's seed if ``shuffle`` (see :mod:`minidl.sources`)."""
        return labelled(self.source.batches(self.batch_size, self.shuffle, self.model._shuffle_rng))

    def _run_epoch(self, epoch: int) -> tuple[dict[str, float], int]:
        """Train on one epoch's batches; returns the epoch's logs and its number of steps."""
        guard, progress, callbacks, running = self.guard, self.progress, self.callbacks, self.running
        running.reset()
        steps = 0
        progress.begin_epoch(epoch, self.source.samples)
        model, step_fn = self.model, self.optimizer.step  # data was checked once, by fit
        for step, (xb, yb) in enumerate(self.batches()):
            loss, outputs = forward_backward(model, xb, yb, False)
            guard.check_step(loss, epoch, step)  # before the update: a NaN step is never applied
            with guard.step():  # an interrupt inside the update leaves guard.updating set
                step_fn()
            running.add(loss, outputs, yb, model.output_mask)
            callbacks.on_batch_end(step, {"loss": loss, "size": len(yb)})
            steps = step + 1
            if progress.due(running.seen):
                progress.update(running.seen, running.means())
            guard.check_interrupt()
        if not running.seen:  # an iterable with no batch left: no figures for this epoch
            return {}, 0
        logs = running.means()
        if self.source.samples is None:
            progress.update(running.seen, logs)  # the bar had no total to tell it the epoch was over
        return logs, steps
