"""Losses: the :class:`Loss` contract and the built-ins ``SoftmaxCE``, ``SigmoidBCE`` and ``MSE``.

A loss is not a layer: the model holds it beside its layers (``model.loss``), and ``fit``,
``evaluate`` and ``predict`` ask it everything that depends on the kind of problem (the loss
and its gradient, how targets look, which metrics to report, what a prediction is), so the
training loop (:mod:`minidl.training`) treats every loss the same way, a user's too.
``Sequential([..., SoftmaxCE()])`` still reads well: a trailing loss becomes ``model.loss``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import config
from ..arguments import as_int, as_shape
from ..backend.blocks import softmax_ce
from ..metrics import per_position
from ..targets import binary_targets, check_outputs, class_labels, float_targets
from .base import Shape

__all__ = ["Loss", "LOSSES", "SoftmaxCE", "SigmoidBCE", "MSE"]

#: Every concrete ``Loss`` subclass by class name (saved files name losses by class name).
LOSSES: dict[str, type[Loss]] = {}


class Loss(config.Configurable, register=False):
    r"""Base class of losses: what a model is trained to minimise, given its outputs and the targets.

    The loss takes the model's outputs ``(N, *input_shape)`` (scores, logits or values; its
    ``input_shape`` is the model's output shape, set by :meth:`build`). Implement one method:

    - ``loss_and_grad(outputs, targets, mask=None) -> (value, d_outputs)``: the loss, a Python
      float (a mean), and its gradient with respect to ``outputs`` (shape ``outputs.shape``).
      ``targets`` are as :meth:`prepare_targets` returns them; ``mask`` (bool ``(N, T)``, True at
      valid steps) comes with sequence outputs ``(N, T, ...)`` whose padded steps must not count.

    What ``fit``/``evaluate``/``predict`` need beyond that has defaults that suit regression;
    override them for other kinds of targets:

    - :meth:`check_shape`: refuse model outputs the loss cannot take (default: any shape).
    - :meth:`prepare_targets`: check and convert ``y`` once, before training (default: finite
      floats of the outputs' shape).
    - :meth:`metrics`: values ``fit`` reports beside the loss (default: none).
    - :meth:`predict`: what ``model.predict`` returns (default: the outputs).
    - :meth:`probabilities`: what ``model.predict_proba`` returns; classifiers only (default: an error).
    - :meth:`get_config`: the constructor arguments, for saving.

    ``minidl.testing.check_loss`` checks ``loss_and_grad`` against finite differences.

    Args:
        name: a name for messages (default: the class name).

    Shape:
        - Outputs: ``(N, *input_shape)``, the model's outputs.
        - Targets: as :meth:`prepare_targets` accepts them (default: the outputs' shape).
        - Value: a Python float; gradient: the outputs' shape.

    Example::

        # an L1 loss; a Huber loss trained with ``fit`` is in docs/extending.md
        class L1(Loss):
            def loss_and_grad(self, outputs, targets, mask=None):
                r = outputs - targets
                return float(np.mean(np.abs(r))), np.sign(r) / r.size
    """

    def __init__(self, *, name: str | None = None) -> None:
        self._set_name(name)
        self.input_shape: Shape | None = None
        self.dtype: np.dtype | None = None

    @property
    def built(self) -> bool:
        return self.input_shape is not None

    def _built_shape(self) -> Shape:
        """The ``input_shape`` set by :meth:`build`; a ``ValueError`` before it."""
        if self.input_shape is None:
            raise ValueError(f"{self.name} is not built: put it in a model (Sequential(..., loss=...)) "
                             "or call build(output_shape)")
        return self.input_shape

    def build(self, input_shape: Shape, dtype: Any = np.float32) -> None:
        """Take model outputs of per-sample shape ``input_shape`` and ``dtype`` (the model calls it)."""
        input_shape = as_shape(input_shape, self.name)
        self.check_shape(input_shape)
        self.input_shape, self.dtype = input_shape, np.dtype(dtype)

    def check_shape(self, input_shape: Shape) -> None:
        """Raise ``ValueError`` if the loss cannot take model outputs of per-sample shape ``input_shape``."""

    def loss_and_grad(self, outputs: np.ndarray, targets: np.ndarray,
                      mask: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """The mean loss of ``outputs`` against ``targets`` and its gradient ``dL/doutputs``."""
        raise NotImplementedError(f"{type(self).__name__} must implement loss_and_grad(outputs, targets, mask=None)")

    def prepare_targets(self, y: Any, n: int, name: str = "y", x_name: str = "X") -> np.ndarray:
        """``y`` checked and converted for :meth:`loss_and_grad`: here finite floats of shape ``(n, *input_shape)``.

        Called once per data set by ``fit``/``evaluate``/``forward_backward``; ``name`` and
        ``x_name`` are the arguments' names for the messages, ``n`` the number of samples.
        A single output (``input_shape == (1,)``) also takes ``y`` of shape ``(n,)``.
        """
        return float_targets(y, n, self._built_shape(), np.dtype(self.dtype), self.name, name, x_name)

    def metrics(self, outputs: np.ndarray, targets: np.ndarray,
                mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Metrics of a batch besides the loss: ``{name: values}``, one value per sample ``(N,)`` or per
        position ``(N, T)``, NaN where nothing is scored (a padded step).

        ``fit`` and ``evaluate`` report each as the mean of its non-NaN values over the data
        (``history[name]``, ``history["val_" + name]``). Default: none.
        """
        return {}

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        """What ``model.predict`` returns for ``outputs``; default: the outputs themselves."""
        return outputs

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Probabilities for ``model.predict_proba``; only classifier losses have them."""
        raise ValueError(
            f"predict_proba needs a classifier loss (SoftmaxCE or SigmoidBCE), but the model's loss is "
            f"{self.name}; use predict for its values"
        )

    def _check(self, outputs: np.ndarray, targets: Any, mask: np.ndarray | None) -> None:
        """``outputs`` of the built shape and dtype; ``mask`` (if any) of shape (N, T) for sequence outputs."""
        check_outputs(self.name, self.input_shape, self.dtype, outputs, mask)

    def _elementwise(self, outputs: np.ndarray, targets: np.ndarray,
                     mask: np.ndarray | None) -> tuple[np.ndarray | None, int]:
        """For a loss of one term per element (targets of the outputs' shape): checks ``outputs``, ``targets``
        and ``mask``; returns the mask as 0/1 weights broadcast over ``outputs`` and how many elements it
        scores (at least 1, so an all-padded batch scores 0)."""
        self._check(outputs, targets, mask)
        if np.shape(targets) != outputs.shape:
            raise ValueError(f"{self.name}: targets must have shape {outputs.shape}, got {np.shape(targets)}")
        if mask is None:
            return None, max(outputs.size, 1)
        w = mask.reshape(mask.shape + (1,) * (outputs.ndim - 2)).astype(outputs.dtype)
        return w, max(int(np.count_nonzero(mask)) * (outputs.size // max(mask.size, 1)), 1)


config.register_kind(Loss, LOSSES)


class SoftmaxCE(Loss):
    r"""Softmax over classes fused with the mean cross-entropy loss: the loss of a classifier.

    For logits ``z`` (N, K) and integer labels ``y`` (N,):

    .. math::
        \log p_{n,k} = z_{n,k} - \max_j z_{n,j} - \log \sum_j e^{z_{n,j} - \max_j z_{n,j}}

        L = -\frac{1}{N} \sum_n \log p_{n, y_n}, \qquad
        \frac{\partial L}{\partial z} = \frac{p - \mathrm{onehot}(y)}{N}

    Subtracting the row maximum keeps every exponent ≤ 0, so logits of ±1e4 give finite
    values. Over sequences, logits (N, T, K) and labels (N, T), the mean is over the scored
    positions: those whose label is not ``ignore_index`` and (with a mask) not padded; a
    batch with none scores 0. Targets: class labels ``0..K-1`` (or ``ignore_index``).
    Metric: ``accuracy`` (on scored positions). ``predict``: the most probable class, shape
    (N,) or (N, T); ``probabilities``: the softmax, the logits' shape.

    Args:
        ignore_index: a label that is not scored (PyTorch's default, -100).
        name: a name for messages.

    Shape:
        logits (N, K) or (N, T, K); labels (N,) or (N, T).

    Example::

        model = Sequential([Flatten(), Dense(10)], input_shape=(1, 8, 8), loss=SoftmaxCE())
    """

    def __init__(self, ignore_index: int = -100, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.ignore_index = as_int(ignore_index, "ignore_index", self.name, minimum=-(2**63))

    def get_config(self) -> dict[str, Any]:
        return {"ignore_index": self.ignore_index}

    def check_shape(self, input_shape: Shape) -> None:
        if len(input_shape) not in (1, 2):
            raise ValueError(
                f"{self.name}: expects class scores (N, classes) or, for sequences, (N, T, classes), got per-sample "
                f"shape {input_shape}; put a Flatten() and a Dense(classes) before it"
            )

    def loss_and_grad(self, logits: np.ndarray, y: np.ndarray,
                      mask: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """Mean cross-entropy of ``logits`` against integer labels ``y`` and its gradient ``(p - onehot(y)) / M``."""
        self._check(logits, y, mask)
        if getattr(y, "shape", None) != logits.shape[:-1]:  # np.shape: a Python-level wrapper, ~0.4 µs at batch 1
            raise ValueError(f"{self.name}: labels must have shape {logits.shape[:-1]}, got {np.shape(y)}")
        labels = y.reshape(-1)
        dropped = labels == self.ignore_index
        if mask is not None:
            dropped |= ~mask.reshape(-1)
        value, grad = softmax_ce(logits.reshape(-1, logits.shape[-1]), labels, dropped)
        return value, grad.reshape(logits.shape)

    def prepare_targets(self, y: Any, n: int, name: str = "y", x_name: str = "X") -> np.ndarray:
        """``y`` as integer class labels ``0..K-1`` (or ``ignore_index``) of shape ``(n,)`` or ``(n, T)``;
        whole-number floats and bools are converted."""
        return class_labels(y, n, self._built_shape(), self.ignore_index, name, x_name)

    def metrics(self, logits: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``accuracy``: whether the highest score is the label's (NaN where nothing is scored)."""
        right = logits.argmax(axis=-1) == y
        if logits.ndim == 2:
            return {"accuracy": right}
        scored = (y != self.ignore_index) if mask is None else (y != self.ignore_index) & mask
        return {"accuracy": np.where(scored, right, np.nan)}

    def predict(self, logits: np.ndarray) -> np.ndarray:
        """The most probable class: shape (N,), or (N, T) over sequences."""
        return logits.argmax(axis=-1)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Class probabilities, the logits' shape."""
        shifted = logits - logits.max(axis=-1, keepdims=True)
        p = np.exp(shifted)
        return p / p.sum(axis=-1, keepdims=True)


class SigmoidBCE(Loss):
    r"""Sigmoid fused with the mean binary cross-entropy: binary and multi-label classification.

    For logits ``z`` and targets ``t`` in {0, 1} of the same shape (M elements in all):

    .. math::
        L = \frac{1}{M} \sum \big(\max(z, 0) - z t + \log(1 + e^{-|z|})\big), \qquad
        \frac{\partial L}{\partial z} = \frac{\sigma(z) - t}{M}

    Every exponent is ≤ 0, so logits of ±1e4 give finite values (PyTorch's
    ``BCEWithLogitsLoss``, Keras's ``BinaryCrossentropy(from_logits=True)``). Targets: 0/1
    (or bool) of the output's shape; with one output, ``(N,)`` too. With a mask, padded steps
    weigh 0 and ``M`` counts the valid elements. Metric: ``accuracy`` at threshold 0.5 (the
    share of correct outputs). ``predict``: 0/1 labels, shape (N,) for one output and the
    output's shape otherwise; ``probabilities``: ``σ(z)``.

    Args:
        name: a name for messages.

    Shape:
        logits and targets (N, \*) — any shape, e.g. (N, 1), (N, K) or per-pixel (N, C, H, W).

    Example::

        binary = Sequential([Flatten(), Dense(1)], input_shape=(1, 8, 8), loss=SigmoidBCE())
        binary.fit(X, y == 3)
    """

    def loss_and_grad(self, logits: np.ndarray, targets: np.ndarray,
                      mask: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """Mean binary cross-entropy of ``logits`` against 0/1 ``targets`` and its gradient ``(σ(z) - t) / M``."""
        weights, count = self._elementwise(logits, targets, mask)
        per = np.maximum(logits, 0) - logits * targets + np.log1p(np.exp(-np.abs(logits)))
        grad = _sigmoid(logits) - targets
        if weights is not None:
            per *= weights
            grad *= weights
        grad *= 1.0 / count
        return float(np.add.reduce(per, axis=None)) / count, grad

    def prepare_targets(self, y: Any, n: int, name: str = "y", x_name: str = "X") -> np.ndarray:
        """``y`` as 0/1 floats of the output's shape (bools and integers accepted)."""
        return binary_targets(y, n, self._built_shape(), np.dtype(self.dtype), self.name, name, x_name)

    def metrics(self, logits: np.ndarray, targets: np.ndarray,
                mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``accuracy``: the share of each sample's (or step's) outputs on the right side of 0.5."""
        return {"accuracy": per_position((logits > 0) == (targets == 1), mask)}

    def predict(self, logits: np.ndarray) -> np.ndarray:
        """0/1 labels: shape (N,) for a single output, the output's shape otherwise."""
        labels = (logits > 0).astype(np.intp)
        return labels[:, 0] if self.input_shape == (1,) else labels

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """``σ(z)``, the probability of 1 for each output, the output's shape."""
        return _sigmoid(logits)


class MSE(Loss):
    r"""Mean squared error, for regression (and autoencoders): the output is the prediction.

    For outputs ``o`` and targets ``t`` of the same shape (M elements in all):

    .. math:: L = \frac{1}{M} \sum (o - t)^2, \qquad \frac{\partial L}{\partial o} = \frac{2 (o - t)}{M}

    (PyTorch's ``MSELoss``, Keras's ``MeanSquaredError``). With a mask, padded steps weigh 0
    and ``M`` counts the valid elements. Targets: finite numbers of the output's shape; with
    one output, ``(N,)`` too. Metric: ``mae`` (mean absolute error). ``predict`` returns the
    values, shape (N, \*output_shape).

    Args:
        name: a name for messages.

    Shape:
        outputs and targets (N, \*) — any shape.

    Example::

        reg = Sequential([Flatten(), Dense(32), ReLU(), Dense(1)], input_shape=(1, 8, 8), loss=MSE())
        reg.fit(X, y_float)
    """

    def loss_and_grad(self, outputs: np.ndarray, targets: np.ndarray,
                      mask: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """Mean of ``(outputs - targets)²`` over every (valid) element and its gradient ``2 (o - t) / M``."""
        weights, count = self._elementwise(outputs, targets, mask)
        diff = outputs - targets
        if weights is not None:
            diff *= weights
        return float(np.vdot(diff, diff)) / count, diff * (2.0 / count)

    def metrics(self, outputs: np.ndarray, targets: np.ndarray,
                mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``mae``: each sample's (or step's) mean absolute error."""
        return {"mae": per_position(np.abs(outputs - targets), mask)}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + e^{-z})`` as ``e^{-log(1 + e^{-z})}``: no overflow, full precision in the left tail."""
    return np.exp(-np.logaddexp(0, -z))
