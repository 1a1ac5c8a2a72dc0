"""The training loop behind ``Sequential.fit`` and ``evaluate``.

One :class:`Trainer` runs one ``fit`` call. It holds the model, the optimizer, the callbacks,
the :class:`~minidl.guard.TrainingGuard`, the :class:`~minidl.callbacks.History` and the
progress display; an epoch is the batches of :meth:`Trainer.batches` (the one place that
produces them), each one step of :func:`forward_backward`, the guard's check, the update and
the callbacks; :class:`Progress` is the one place that reports.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from .callbacks import Callback, History
from .guard import NonFiniteLossError, TrainingGuard
from .inputs import prepare_inputs, prepare_labels
from .layers.base import as_int
from .optim import SGD, Optimizer

if TYPE_CHECKING:
    from .model import Sequential

__all__ = ["Trainer", "Progress", "forward_backward", "evaluate", "prepare", "PROGRESS_INTERVAL"]

#: How often (seconds) fit refreshes its progress bar; formatting it every step would cost more than a step.
PROGRESS_INTERVAL = 0.1


def prepare(model: Sequential, X: Any, y: Any, x_name: str, y_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert a data set ``(X, y)`` for the model's loss head, once, before any work."""
    X = prepare_inputs(model, X, x_name)
    return X, prepare_labels(y, y_name, x_name, len(X), model.output_shape[0])


def forward_backward(model: Sequential, x: np.ndarray, y: np.ndarray, input_grad: bool = True) -> tuple[float, np.ndarray]:
    """One unchecked training pass on a prepared batch: forward, loss, backward; returns ``(loss, logits)``.

    ``input_grad=False`` (fit) calls the first layer's ``backward_params``: nobody reads the
    gradient of the data, and a Conv2D then skips computing it.
    """
    # The body of model.backward() inlined: this runs once per step, and at batch 1 every call counts.
    *body, head = model.layers
    logits = x
    for layer in body:
        logits = layer.forward(logits, training=True)
    loss = head.loss(logits, y)
    grad = head.backward()
    for layer in body[:0:-1]:
        grad = layer.backward(grad)
    if body:
        (body[0].backward if input_grad else body[0].backward_params)(grad)
    return loss, logits


def evaluate(model: Sequential, X: np.ndarray, y: np.ndarray, batch_size: int) -> dict[str, float]:
    """Mean loss and accuracy on prepared ``(X, y)``, in inference mode."""
    head = model.head
    total_loss, correct = 0.0, 0
    for start in range(0, len(X), batch_size):
        xb, yb = X[start:start + batch_size], y[start:start + batch_size]
        logits = xb
        for layer in model.layers[:-1]:
            logits = layer.forward(logits, training=False)
        total_loss += head.loss(logits, yb) * len(yb)
        correct += int(np.count_nonzero(logits.argmax(axis=1) == yb))
    return {"loss": total_loss / len(X), "accuracy": correct / len(X)}


class Progress:
    """What ``fit`` shows: ``verbose`` 0 nothing, 1 a progress bar per epoch, 2 one line per epoch."""

    def __init__(self, verbose: int, epochs: int) -> None:
        self.verbose, self.epochs = verbose, epochs
        self._bar: Any = None
        self._last_refresh = 0.0

    def begin_epoch(self, epoch: int, samples: int) -> None:
        self._bar = tqdm(total=samples, desc=f"Epoch {epoch + 1}/{self.epochs}", unit="sample",
                         disable=self.verbose != 1, leave=True, mininterval=PROGRESS_INTERVAL)
        self._last_refresh = time.perf_counter()

    def due(self, seen: int) -> bool:
        """Whether the bar wants fresh figures after ``seen`` samples (cheap: called every step)."""
        return self.verbose == 1 and (seen == self._bar.total
                                      or time.perf_counter() - self._last_refresh > PROGRESS_INTERVAL)

    def update(self, seen: int, logs: dict[str, float]) -> None:
        self._bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)
        self._bar.update(seen - self._bar.n)
        self._last_refresh = time.perf_counter()

    def end_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        if self.verbose == 1:  # as in Keras, the finished bar shows the epoch's every metric, val_* included
            self._bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items() if k != "lr"}, refresh=False)
        self._bar.close()
        if self.verbose == 2:
            print(f"Epoch {epoch + 1}/{self.epochs}: " + ", ".join(
                f"{k}={v:.4g}" if k == "lr" else f"{k}={v:.4f}" for k, v in logs.items()))

    def interrupted(self, epochs_done: int) -> None:
        if self.verbose:
            print(f"fit: interrupted; returning the history of {epochs_done} completed epoch(s); "
                  "the model keeps the weights of the last completed step")


class Trainer:
    """One ``fit`` call: mini-batch gradient descent on ``model`` with its guarantees (see ``Sequential.fit``).

    Args:
        model: a built or unbuilt ``Sequential`` ending in a loss head.
        optimizer: ``None`` reuses the model's previous optimizer or makes ``SGD(lr=0.01)``.
        callbacks: :class:`~minidl.callbacks.Callback` objects.
        verbose: 0 silent, 1 a progress bar per epoch, 2 one line per epoch.

    Example::

        history = Trainer(model, SGD(model.parameters(), lr=0.1)).fit(X, y, epochs=2)
    """

    def __init__(
        self,
        model: Sequential,
        optimizer: Optimizer | None = None,
        callbacks: Sequence[Callback] = (),
        verbose: int = 1,
    ) -> None:
        self.model = model
        self.head = model._require_head("fit")
        if verbose not in (0, 1, 2):
            raise ValueError(f"fit: verbose must be 0, 1 or 2, got {verbose!r}")
        if isinstance(callbacks, Callback) or not isinstance(callbacks, Iterable):
            raise TypeError(f"fit: callbacks must be a list of Callback objects, got a {type(callbacks).__name__}")
        self.callbacks = list(callbacks)
        for i, cb in enumerate(self.callbacks):
            if not isinstance(cb, Callback):
                raise TypeError(f"fit: callbacks[{i}] must be a minidl Callback, got {type(cb).__name__}")
        if optimizer is not None and not isinstance(optimizer, Optimizer):
            raise TypeError(f"fit: optimizer must be a minidl Optimizer such as SGD, got {optimizer!r}")
        self.optimizer = optimizer
        self.verbose = verbose
        self.history = History()
        self.history.interrupted = False
        self.guard: TrainingGuard | None = None
        self.progress: Progress | None = None

    def fit(
        self,
        X: Any,
        y: Any,
        epochs: int = 1,
        batch_size: int = 32,
        validation_data: tuple[Any, Any] | None = None,
        shuffle: bool = True,
    ) -> History:
        """Check everything, then train for ``epochs`` epochs; returns the history."""
        model = self.model
        self.epochs = as_int(epochs, "epochs", minimum=0)
        self.batch_size = as_int(batch_size, "batch_size", minimum=1)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"fit: shuffle must be a bool, got {shuffle!r}")
        self.shuffle = bool(shuffle)
        self.X, self.y = prepare(model, X, y, "X", "y")
        self.val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError(
                    f"fit: validation_data must be a pair (X_val, y_val), got {type(validation_data).__name__}"
                    + (f" of length {len(validation_data)}" if isinstance(validation_data, (tuple, list)) else "")
                )
            self.val = prepare(model, *validation_data, "validation_data[0]", "validation_data[1]")
        optimizer = self.optimizer or model.optimizer or SGD(model.parameters(), lr=0.01)
        self._check_owned(optimizer)
        if model._fitting:
            raise RuntimeError("fit: this model is already training (fit was called from inside fit, e.g. a callback)")
        previous_optimizer, model.optimizer = model.optimizer, optimizer
        self.optimizer = optimizer
        model.history = self.history
        model.stop_training = False
        try:
            for cb in self.callbacks:
                cb.set_model(model)
                cb.on_train_begin()
        except BaseException:
            model.optimizer = previous_optimizer  # a refused fit leaves nothing behind for the next one
            raise
        model._fitting = True
        try:
            return self._run()
        finally:
            model._fitting = False

    def _check_owned(self, optimizer: Optimizer) -> None:
        own = {id(p) for p in self.model.parameters()}
        foreign = [p for p in optimizer.params if id(p) not in own]
        if len(foreign) == len(optimizer.params):
            raise ValueError(
                "fit: the optimizer holds none of this model's parameters; make it with "
                "SGD(model.parameters(), ...) for this model"
            )
        if foreign:  # they would be stepped with whatever stale .grad they hold
            raise ValueError(
                f"fit: the optimizer also holds {len(foreign)} parameter(s) of another model "
                f"(shapes {[p.shape for p in foreign]}); make it with model.parameters() of this model only"
            )

    def _run(self) -> History:
        """The epochs under the guard; a NaN stop or Ctrl-C still ends with the callbacks' ``on_train_end``."""
        self.guard = guard = TrainingGuard(self.optimizer, self.model.named_buffers().values(),
                                           self.model.named_layers().values())
        self.progress = Progress(self.verbose, self.epochs)
        diverged = None
        try:
            with guard:
                self._epochs()
        except NonFiniteLossError as err:
            err.history, diverged = self.history, err
        except KeyboardInterrupt:
            if guard.updating:  # a forced stop (a second Ctrl-C) inside optimizer.step: nothing is consistent
                for cb in self.callbacks:
                    cb.on_train_end()
                raise
            self.history.interrupted = True
            self.model.stop_training = True
            self.progress.interrupted(len(self.history.epoch))
        for cb in self.callbacks:  # also after a NaN stop, so callbacks can restore or save what they hold
            cb.on_train_end()
        if diverged is not None:
            raise diverged
        return self.history

    def _epochs(self) -> None:
        guard, n = self.guard, len(self.X)
        for epoch in range(self.epochs):
            for cb in self.callbacks:
                cb.on_epoch_begin(epoch)
            guard.begin_epoch()
            logs = self._run_epoch(epoch)
            guard.end_epoch(epoch, steps=-(-n // self.batch_size))
            if self.val is not None:
                logs.update({f"val_{k}": v for k, v in evaluate(self.model, *self.val, batch_size=256).items()})
            logs["lr"] = self.optimizer.lr  # the rate this epoch trained with; a schedule may change it at epoch end
            self.history.append(logs)
            self.progress.end_epoch(epoch, logs)
            for cb in self.callbacks:
                cb.on_epoch_end(epoch, logs)
            guard.check_interrupt()
            if self.model.stop_training:
                break

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One epoch's ``(x, y)`` batches, shuffled by the model's seed if ``shuffle``."""
        X, y, n, size = self.X, self.y, len(self.X), self.batch_size
        if self.shuffle:
            order = self.model._shuffle_rng.permutation(n)
            X, y = X[order], y[order]  # one gather per epoch keeps every batch contiguous
        for start in range(0, n, size):
            yield X[start:start + size], y[start:start + size]

    def _run_epoch(self, epoch: int) -> dict[str, float]:
        n, guard, progress, callbacks = len(self.X), self.guard, self.progress, self.callbacks
        total_loss, seen, correct_upto, correct = 0.0, 0, 0, 0
        # argmax writes straight into one buffer; accuracy is counted only when someone reads it
        preds = np.empty(n, dtype=np.intp)
        labels = np.empty(n, dtype=np.intp)
        progress.begin_epoch(epoch, n)
        model, step_fn = self.model, self.optimizer.step  # data was checked once, by fit
        for step, (xb, yb) in enumerate(self.batches()):
            size = len(yb)
            loss, logits = forward_backward(model, xb, yb, False)
            guard.check_step(loss, epoch, step)  # before the update: a NaN step is never applied
            guard.updating = True
            step_fn()
            guard.updating = False
            stop = seen + size
            total_loss += loss * size
            logits.argmax(axis=1, out=preds[seen:stop])
            labels[seen:stop] = yb
            seen = stop
            for cb in callbacks:
                cb.on_batch_end(step, {"loss": loss, "size": size})
            if progress.due(seen):
                correct += int(np.count_nonzero(preds[correct_upto:seen] == labels[correct_upto:seen]))
                correct_upto = seen
                progress.update(seen, {"loss": total_loss / seen, "accuracy": correct / seen})
            guard.check_interrupt()
        correct += int(np.count_nonzero(preds[correct_upto:] == labels[correct_upto:]))
        return {"loss": total_loss / n, "accuracy": correct / n}
