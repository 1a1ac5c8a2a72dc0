"""The checks and messages of ``fit``, ``evaluate`` and ``predict``, made before any work.

:mod:`minidl.training` runs the loop; this module decides whether a call may start and says
why not, naming the argument, what it got and what was expected: the loss a model needs, the
``verbose``/``callbacks``/``optimizer`` arguments, the forms of ``validation_data``, an optimizer
holding another model's parameters, and the warning when an iterator of batches runs dry.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .callbacks import Callback
from .layers.losses import SoftmaxCE
from .optim import Optimizer
from .recipes import OPTIMIZERS
from .sources import Source, as_source, is_batch_iterable

if TYPE_CHECKING:
    from .layers.losses import Loss
    from .model import Sequential

__all__ = ["warn_if_not_learning",
           "require_loss", "check_fit_arguments", "validation_source", "check_owned", "warn_ran_out",
           "require_classifier", "NotLearningWarning", "not_learning", "warn_if_unscaled", "CHANCE_FRACTION",
           "MIN_EPOCHS_TO_JUDGE"]


def require_loss(model: Sequential, what: str) -> Loss:
    """The model's loss (built for its outputs), or a ``ValueError`` saying which loss to add.

    Args:
        model: the model about to run ``what``.
        what: the method's name for the message (``"fit"``, ``"evaluate"``, ...).

    Example::

        loss = require_loss(model, "fit")  # e.g. SoftmaxCE() built for the model's (10,) outputs
    """
    loss = model.loss
    if loss is None:
        raise ValueError(
            f"Sequential.{what} needs a loss: pass loss=SoftmaxCE() (or end the layers with it) for class labels, "
            "SigmoidBCE() for binary or multi-label 0/1 targets, or MSE() for regression"
        )
    if model.output_shape is not None and (loss.input_shape, loss.dtype) != (model.output_shape, model.dtype):
        loss.build(model.output_shape, model.dtype)  # a loss set after the model was built
    return loss


def require_classifier(loss: Loss | None) -> None:
    """``predict_proba``'s check: a model without a loss has no probabilities (a ``ValueError``).

    Args:
        loss: the model's loss, or ``None``.

    Example::

        require_classifier(model.loss)
    """
    if loss is None:
        raise ValueError(
            "predict_proba needs a classifier loss (SoftmaxCE or SigmoidBCE), and the model has no loss; "
            "use predict for its outputs"
        )


def check_fit_arguments(verbose: Any, callbacks: Any, optimizer: Any) -> list[Callback]:
    """Check ``fit``'s ``verbose`` (0, 1 or 2), ``callbacks`` and ``optimizer``; returns the callbacks as a list.

    Args:
        verbose: 0, 1 or 2.
        callbacks: an iterable of :class:`~minidl.callbacks.Callback` objects.
        optimizer: a minidl ``Optimizer``, an optimizer's name (``"adam"``) or ``None``.

    Example::

        callbacks = check_fit_arguments(1, [EarlyStopping()], None)
    """
    if verbose not in (0, 1, 2):
        raise ValueError(f"fit: verbose must be 0, 1 or 2, got {verbose!r}")
    if isinstance(callbacks, Callback) or not isinstance(callbacks, Iterable):
        raise TypeError(f"fit: callbacks must be a list of Callback objects, got a {type(callbacks).__name__}")
    listed = list(callbacks)
    for i, cb in enumerate(listed):
        if not isinstance(cb, Callback):
            raise TypeError(f"fit: callbacks[{i}] must be a minidl Callback, got {type(cb).__name__}")
    if isinstance(optimizer, str):  # a name, as Keras takes: the optimizer with its default settings
        if optimizer.lower() not in OPTIMIZERS:
            raise ValueError(f"fit: optimizer {optimizer!r} is not a minidl optimizer: pass one of the names "
                             f"{sorted(OPTIMIZERS)} (default settings) or an Optimizer such as "
                             "Adam(model.parameters(), lr=1e-3)")
    elif optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(f"fit: optimizer must be a minidl Optimizer such as SGD, or one of the names "
                        f"{sorted(OPTIMIZERS)}, got {optimizer!r}")
    return listed


def validation_source(model: Sequential, validation_data: Any, epochs: int) -> Source | None:
    """``fit``'s ``validation_data`` as a :class:`~minidl.sources.Source` (``None`` without one).

    It may be a pair ``(X_val, y_val)`` or an iterable of ``(X_batch, y_batch)``; an iterator,
    which is read once, is refused when more than one epoch would validate on it.

    Args:
        model: the model being trained.
        validation_data: what ``fit`` got.
        epochs: how many epochs ``fit`` runs.

    Example::

        val = validation_source(model, (X_val, y_val), epochs=5)
    """
    val = None
    if isinstance(validation_data, (tuple, list)) and len(validation_data) == 2:
        X_val, y_val = validation_data
        val = as_source(model, X_val, y_val, "validation_data[0]", "validation_data[1]")
    elif is_batch_iterable(validation_data):
        val = as_source(model, validation_data, None, "validation_data", "y")
    elif validation_data is not None:
        raise ValueError(
            "fit: validation_data must be a pair (X_val, y_val) or an iterable of (X_batch, y_batch), got a "
            f"{type(validation_data).__name__}"
            + (f" of length {len(validation_data)}" if isinstance(validation_data, (tuple, list)) else "")
        )
    if val is not None and val.once and epochs > 1:  # said now, not after an epoch of training
        raise ValueError(
            f"fit: validation_data is an iterator, which is read once, but validation runs after each of the "
            f"{epochs} epochs; expected (X_val, y_val) or an object whose __iter__ starts a fresh pass "
            "each time (like a keras.utils.Sequence)"
        )
    return val


def check_owned(model: Sequential, optimizer: Optimizer) -> None:
    """Refuse an optimizer that holds parameters of another model: they would be stepped with stale ``.grad``.

    Args:
        model: the model being trained.
        optimizer: the optimizer ``fit`` would use.

    Example::

        check_owned(model, SGD(model.parameters()))  # passes
    """
    own = {id(p) for p in model.parameters()}
    foreign = [p for p in optimizer.params if id(p) not in own]
    if len(foreign) == len(optimizer.params):
        raise ValueError(
            "fit: the optimizer holds none of this model's parameters; make it with "
            "SGD(model.parameters(), ...) for this model"
        )
    if foreign:
        raise ValueError(
            f"fit: the optimizer also holds {len(foreign)} parameter(s) of another model "
            f"(shapes {[p.shape for p in foreign]}); make it with model.parameters() of this model only"
        )


def warn_ran_out(source: Source, epoch: int, steps: int, complete: Sequence[int]) -> None:
    """Warn that the batches of ``X`` ran out in ``epoch`` after ``steps`` steps (``fit`` then stops).

    Args:
        source: the training data.
        epoch: the epoch (from 0) that ran dry.
        steps: how many steps it took.
        complete: the history's list of complete epochs.

    Example::

        warn_ran_out(source, epoch=2, steps=7, complete=history.epoch)
    """
    planned = f"{source.steps} planned" if source.steps is not None else "a full pass; an iterator is read once"
    warnings.warn(
        f"fit: X ran out of batches in epoch {epoch + 1} after {steps} step(s) ({planned}); training stopped "
        f"with the history of {len(complete)} complete epoch(s). Pass steps_per_epoch to share a "
        "generator out over the epochs, or an object whose __iter__ starts a fresh pass each epoch",
        stacklevel=4,
    )


#: fit (and the scikit-learn wrappers) warn when, after at least MIN_EPOCHS_TO_JUDGE epochs, the training loss
#: is above CHANCE_FRACTION of ln K (the loss of uniform guessing over K classes) or has not fallen at all.
CHANCE_FRACTION = 0.97
MIN_EPOCHS_TO_JUDGE = 5


class NotLearningWarning(UserWarning):
    """``fit``'s warning that training is not learning: a loss at chance level or not falling."""


def not_learning(classes: int, losses: Sequence[float]) -> str | None:
    """Why the training ``losses`` (one per epoch) show no learning, or ``None``; ``classes`` is K (0: no classes).

    Args:
        classes: the number of classes of a softmax cross-entropy, else 0.
        losses: the training loss of each epoch so far.

    Example::

        not_learning(10, [2.4, 2.35, 2.33, 2.31, 2.30])  # "after 5 epochs the training loss is 2.3000, ..."
    """
    if len(losses) < MIN_EPOCHS_TO_JUDGE:
        return None
    last = losses[-1]
    if classes > 1 and last > CHANCE_FRACTION * np.log(classes):
        return (f"after {len(losses)} epochs the training loss is {last:.4f}, still at chance level "
                f"(ln {classes} = {np.log(classes):.4f}): the model has learnt nothing")
    if not last < losses[0]:
        return (f"after {len(losses)} epochs the training loss {last:.4g} has not fallen below the first epoch's "
                f"{losses[0]:.4g}")
    return None


def warn_if_unscaled(model: Sequential, X: Any) -> None:
    """One ``UserWarning`` for raw pixels given to an image model: integers above 1, or floats above 10.

    Models whose first layer normalizes its input (``BatchNorm2D``, ``LayerNorm``) scale the data themselves.
    """
    from .layers.normalization import BatchNorm2D, LayerNorm

    if (not isinstance(X, np.ndarray) or X.dtype.kind not in "iuf" or X.size == 0 or model.input_shape is None
            or len(model.input_shape) != 3
            or isinstance(model.layers[0], (BatchNorm2D, LayerNorm))):
        return
    sample = X[:1024] if isinstance(X, np.memmap) else X  # a memmap is not read whole for a warning
    top = float(np.max(np.abs(sample))) if X.dtype.kind != "f" else float(np.nanmax(np.abs(sample)))
    if top > (1 if X.dtype.kind in "iu" else 10):
        warnings.warn(
            f"fit: X holds values up to {top:g} (dtype {X.dtype}) for an image model: unscaled pixels train badly "
            "or not at all; scale them to [0, 1] (divide by the largest possible pixel value, e.g. X / 255) or "
            "standardize them", UserWarning, stacklevel=4)


def warn_if_not_learning(model: Sequential, losses: list[float], lr: float) -> bool:
    """Warn (:class:`NotLearningWarning`) when the training loss stays at chance level or does not fall;
    returns whether it warned (``fit`` warns once).

    Args:
        model: the model being trained.
        losses: the training loss of each epoch so far.
        lr: the optimizer's learning rate, for the message.

    Example::

        judged = warn_if_not_learning(model, history["loss"], optimizer.lr)
    """
    classes = model.output_shape[-1] if isinstance(model.loss, SoftmaxCE) and model.output_shape else 0
    why = not_learning(classes, losses)
    if why is None:
        return False
    warnings.warn(
        f"fit: {why}. Likely causes: a learning rate too large or too small (lr={lr:g}), "
        "or unscaled inputs (scale them to [0, 1] or standardize them)", NotLearningWarning, stacklevel=6)
    return True
