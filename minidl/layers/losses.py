"""Loss heads: the :class:`Loss` contract and the built-ins ``SoftmaxCE``, ``SigmoidBCE`` and ``MSE``.

A loss is a model's last layer. ``fit``, ``evaluate`` and ``predict`` ask it everything that
depends on the kind of problem (how targets look, which metrics to report, what a prediction
is), so the training loop (:mod:`minidl.training`) treats every loss the same way, a user's too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..inputs import as_array, check_finite, describe
from .activations import log_softmax, softmax_backward
from .base import LAYERS, Layer, Shape

__all__ = ["Loss", "SoftmaxCE", "SigmoidBCE", "MSE"]


class Loss(Layer):
    r"""Base class of loss heads. A loss is the last layer of a model; ``fit`` trains through it.

    Its input ``outputs`` (N, \*input_shape) is the output of the layer before it (scores, logits or
    values). Implement three methods:

    - ``forward(x, training=False)``: the inference output for ``x`` (probabilities for a
      classifier, ``x`` itself for a regression loss); ``model.forward`` ends with it.
    - ``loss(outputs, targets) -> float``: the loss, a mean over the batch; cache what
      ``backward`` needs. ``targets`` are as :meth:`prepare_targets` returns them.
    - ``backward() -> dL/doutputs``: the gradient of the last ``loss`` with respect to
      ``outputs``, shape ``outputs.shape``.

    What ``fit``/``evaluate``/``predict`` need beyond that has defaults that suit regression;
    override them for other kinds of targets:

    - :meth:`prepare_targets`: check and convert ``y`` once, before training (default: finite
      floats of the outputs' shape).
    - :meth:`metrics`: per-sample values ``fit`` reports beside the loss (default: none).
    - :meth:`predict`: what ``model.predict`` returns (default: ``forward(outputs)``).
    - :meth:`predict_proba`: classifiers only (default: an error).

    ``minidl.testing.check_loss`` checks ``backward`` against finite differences of ``loss``.

    Example (an L1 loss; a Huber loss trained with ``fit`` is in docs/extending.md)::

        class L1(Loss):
            def forward(self, x, training=False):
                self.check_input(x)
                return x                                   # regression: outputs are predictions
            def loss(self, outputs, targets):
                self._sign = np.sign(outputs - targets)
                return float(np.mean(np.abs(outputs - targets)))
            def backward(self):
                return self._sign / self._sign.size
    """

    def loss(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        raise NotImplementedError(f"{type(self).__name__} must implement loss(outputs, targets)")

    def prepare_targets(self, y: Any, n: int, name: str = "y", x_name: str = "X") -> np.ndarray:
        """``y`` checked and converted for :meth:`loss`: here finite floats of shape ``(n, *input_shape)``.

        Called once per data set by ``fit``/``evaluate``/``forward_backward``; ``name`` and
        ``x_name`` are the arguments' names for the messages, ``n`` the number of samples.
        A single output (``input_shape == (1,)``) also takes ``y`` of shape ``(n,)``.
        """
        y = as_array(y, name)
        shape = (n, *self.input_shape)
        if y.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold numbers (the targets of {self.name}), got {describe(y)}")
        if y.shape == (n,) and self.input_shape == (1,):
            y = y[:, None]
        if y.shape != shape:
            raise ValueError(
                f"{name} must have shape {shape} to match {x_name} and the model's output (N, "
                f"{', '.join(map(str, self.input_shape))}), got {y.shape}"
            )
        with np.errstate(over="ignore"):  # beyond the dtype's range becomes inf, reported below
            y = np.ascontiguousarray(y, dtype=self.dtype)
        check_finite(y, name, self.dtype)
        return y

    def metrics(self, outputs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        """Metrics of a batch besides the loss: ``{name: per-sample values, shape (N,)}``.

        ``fit`` and ``evaluate`` report each as its mean over the data (``history[name]``,
        ``history["val_" + name]``). ``outputs`` are the loss's inputs, ``targets`` as
        :meth:`prepare_targets` returns them. Default: none.
        """
        return {}

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        """What ``model.predict`` returns for ``outputs``; default: the inference output ``forward(outputs)``."""
        return self.forward(outputs)

    def predict_proba(self, outputs: np.ndarray) -> np.ndarray:
        """Probabilities for ``model.predict_proba``; only classifier losses have them."""
        raise ValueError(
            f"predict_proba needs a classifier loss (SoftmaxCE or SigmoidBCE), but the model ends with "
            f"{self.name}; use predict for its values"
        )


del LAYERS["Loss"]  # an abstract base: no model can hold, save or load one


class SoftmaxCE(Loss):
    r"""Softmax over classes fused with the mean cross-entropy loss; the last layer of a classifier.

    For logits ``z`` (N, K) and integer labels ``y`` (N,):

    .. math::
        \log p_{n,k} = z_{n,k} - \max_j z_{n,j} - \log \sum_j e^{z_{n,j} - \max_j z_{n,j}}

        L = -\frac{1}{N} \sum_n \log p_{n, y_n}, \qquad
        \frac{\partial L}{\partial z} = \frac{p - \mathrm{onehot}(y)}{N}

    Subtracting the row maximum keeps every exponent ≤ 0, so logits of ±1e4 give finite
    values. ``forward`` returns the probabilities (inference); ``loss(z, y)`` computes
    the loss (training). Each caches what ``backward`` needs to differentiate it.
    Targets: class labels ``0..K-1``. Metric: ``accuracy``. ``predict``: the most probable
    class, shape (N,); ``predict_proba``: the probabilities (N, K).

    Shape: input and output (N, K).

    Example::

        model = Sequential([Flatten(), Dense(10), SoftmaxCE()], input_shape=(1, 8, 8))
    """

    _rows = np.arange(0)  # 0..N-1 for the label gather, kept while the batch size repeats

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 1:
            raise ValueError(
                f"{self.name}: expects class scores (N, classes), got per-sample shape {input_shape}; "
                "put a Flatten() and a Dense(classes) before it"
            )
        return tuple(input_shape)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        self._p, self._y = np.exp(log_softmax(x, axis=1)), None
        return self._p

    def loss(self, logits: np.ndarray, y: np.ndarray) -> float:
        """Mean cross-entropy of ``logits`` (N, K) against integer labels ``y`` (N,)."""
        self.check_input(logits)
        y = np.asarray(y)
        if y.shape != (logits.shape[0],):
            raise ValueError(f"{self.name}: labels must have shape ({logits.shape[0]},), got {y.shape}")
        # -log p_y = log Σ_j e^{s_j} - s_y with s = z - max z: one exp serves both the loss and p,
        # and np.*.reduce skips the dispatch that dominates a batch-of-one step.
        shifted = logits - np.maximum.reduce(logits, axis=1, keepdims=True)
        p = np.exp(shifted)
        total = np.add.reduce(p, axis=1, keepdims=True)
        p /= total
        if len(self._rows) != len(y):
            self._rows = np.arange(len(y))
        self._p, self._y, rows = p, y, self._rows
        return float(np.add.reduce(np.log(total), axis=None) - np.add.reduce(shifted[rows, y], axis=None)) / len(y)

    def backward(self, grad_out: float | np.ndarray = 1.0) -> np.ndarray:
        """Gradient w.r.t. the logits of whatever was computed last.

        After ``loss``: ``grad_out · (p - onehot(y)) / N`` (``grad_out`` a scalar, default 1).
        After ``forward``: the softmax vector-Jacobian product ``p ⊙ (g - Σ_k g_k p_k)`` for
        ``g = grad_out`` of shape (N, K).
        """
        if self._y is None:
            return softmax_backward(self._p, grad_out, axis=1)
        grad = self._p.copy()
        grad[self._rows, self._y] -= 1.0
        grad *= grad_out / len(self._y)
        return grad

    def prepare_targets(self, y: Any, n: int, name: str = "y", x_name: str = "X") -> np.ndarray:
        """``y`` as integer class labels ``0..K-1`` of shape ``(n,)``; whole-number floats and bools are converted."""
        classes = self.input_shape[0]
        y = as_array(y, name)
        if y.ndim != 1 or len(y) != n:
            hint = "; one-hot labels? pass y.argmax(axis=1)" if y.shape == (n, classes) else ""
            raise ValueError(f"{name} must have shape ({n},) to match {x_name}, got {y.shape}{hint}")
        if y.dtype.kind == "f":
            fractional = ~np.isfinite(y) | (y != np.round(y))
            if fractional.any():
                raise TypeError(
                    f"{name} must hold integer class labels, got dtype {y.dtype} with non-integer values "
                    f"such as {y[fractional][0]}"
                )
            if y.size and (y.min() < 0 or y.max() >= classes):  # before the cast, which wraps values beyond int64
                raise ValueError(f"{name} holds labels in [{y.min():g}, {y.max():g}], but the model has {classes} "
                                 f"classes (0..{classes - 1})")
            y = y.astype(np.intp)
        if y.dtype.kind not in "biu":
            raise TypeError(
                f"{name} must hold integer class labels 0..K-1, got {describe(y)}; encode other labels first "
                "(e.g. sklearn.preprocessing.LabelEncoder)"
            )
        if y.min() < 0 or y.max() >= classes:
            raise ValueError(
                f"{name} holds labels in [{y.min()}, {y.max()}], but the model has {classes} classes "
                f"(0..{classes - 1})"
            )
        return y.astype(np.intp, copy=False)

    def metrics(self, logits: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        """``accuracy``: whether the highest score is the label's."""
        return {"accuracy": logits.argmax(axis=1) == y}

    def predict(self, logits: np.ndarray) -> np.ndarray:
        """The most probable class of each sample, shape (N,)."""
        return logits.argmax(axis=1)

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (N, K)."""
        return self.forward(logits)


class SigmoidBCE(Loss):
    r"""Sigmoid fused with the mean binary cross-entropy: binary and multi-label classification.

    For logits ``z`` and targets ``t`` in {0, 1} of the same shape (M elements in all):

    .. math::
        L = \frac{1}{M} \sum \big(\max(z, 0) - z t + \log(1 + e^{-|z|})\big), \qquad
        \frac{\partial L}{\partial z} = \frac{\sigma(z) - t}{M}

    Every exponent is ≤ 0, so logits of ±1e4 give finite values (PyTorch's
    ``BCEWithLogitsLoss``, Keras's ``BinaryCrossentropy(from_logits=True)``). ``forward``
    returns the probabilities ``σ(z)``. Targets: 0/1 (or bool) of the output's shape; with one
    output, ``(N,)`` too. Metric: ``accuracy`` at threshold 0.5 (the share of correct outputs).
    ``predict``: 0/1 labels, shape (N,) for one output and (N, K) otherwise; ``predict_proba``:
    ``σ(z)``, shape (N, K).

    Shape: input and output (N, \*) — any shape, e.g. (N, 1), (N, K) or per-pixel (N, C, H, W).

    Example::

        binary = Sequential([Flatten(), Dense(1), SigmoidBCE()], input_shape=(1, 8, 8))
        binary.fit(X, y == 3)
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        self._p, self._t = _sigmoid(x), None
        return self._p

    def loss(self, logits: np.ndarray, targets: np.ndarray) -> float:
        """Mean binary cross-entropy of ``logits`` against 0/1 ``targets`` of the same shape."""
        self.check_input(logits)
        if np.shape(targets) != logits.shape:
            raise ValueError(f"{self.name}: targets must have shape {logits.shape}, got {np.shape(targets)}")
        self._p, self._t = _sigmoid(logits), targets
        per = np.maximum(logits, 0) - logits * targets + np.log1p(np.exp(-np.abs(logits)))
        return float(np.add.reduce(per, axis=None)) / per.size

    def backward(self, grad_out: float | np.ndarray = 1.0) -> np.ndarray:
        """After ``loss``: ``grad_out · (σ(z) - t) / M``. After ``forward``: ``grad_out ⊙ σ(z)(1 - σ(z))``."""
        if self._t is None:
            return grad_out * self._p * (1 - self._p)
        return (self._p - self._t) * (grad_out / self._p.size)

    def prepare_targets(self, y: Any, n: int, name: str = "y", x_name: str = "X") -> np.ndarray:
        """``y`` as 0/1 floats of the output's shape (bools and integers accepted)."""
        arr = as_array(y, name)
        if arr.shape == (n,) and self.input_shape != (1,):
            raise ValueError(
                f"{name} has shape {arr.shape}, one target per sample, but {self.name} gets "
                f"{self.input_shape} outputs per sample: pass 0/1 targets of shape (N, "
                f"{', '.join(map(str, self.input_shape))}) (multi-label), end the model with Dense(1) "
                "for binary targets, or with SoftmaxCE for class labels"
            )
        targets = super().prepare_targets(arr, n, name, x_name)
        bad = (targets != 0) & (targets != 1)
        if bad.any():
            raise ValueError(
                f"{name} must hold 0/1 targets (or bools) for {self.name}, got values such as {targets[bad][0]:g}"
            )
        return targets

    def metrics(self, logits: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        """``accuracy``: the share of each sample's outputs on the right side of 0.5."""
        right = (logits > 0) == (targets == 1)
        return {"accuracy": right.reshape(len(right), -1).mean(axis=1)}

    def predict(self, logits: np.ndarray) -> np.ndarray:
        """0/1 labels: shape (N,) for a single output, the output's shape otherwise."""
        labels = (logits > 0).astype(np.intp)
        return labels[:, 0] if self.input_shape == (1,) else labels

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        """``σ(z)``, the probability of 1 for each output, the output's shape."""
        return self.forward(logits)


class MSE(Loss):
    r"""Mean squared error, for regression (and autoencoders): the output is the prediction.

    For outputs ``o`` and targets ``t`` of the same shape (M elements in all):

    .. math:: L = \frac{1}{M} \sum (o - t)^2, \qquad \frac{\partial L}{\partial o} = \frac{2 (o - t)}{M}

    (PyTorch's ``MSELoss``, Keras's ``MeanSquaredError``). ``forward`` returns its input.
    Targets: finite numbers of the output's shape; with one output, ``(N,)`` too. Metric:
    ``mae`` (mean absolute error). ``predict`` returns the values, shape (N, \*output_shape).

    Shape: input and output (N, \*) — any shape.

    Example::

        reg = Sequential([Flatten(), Dense(32), ReLU(), Dense(1), MSE()], input_shape=(1, 8, 8))
        reg.fit(X, y_float)
    """

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        self._diff = None
        return x

    def loss(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        """Mean of ``(outputs - targets)²`` over every element."""
        self.check_input(outputs)
        if np.shape(targets) != outputs.shape:
            raise ValueError(f"{self.name}: targets must have shape {outputs.shape}, got {np.shape(targets)}")
        self._diff = diff = outputs - targets
        return float(np.vdot(diff, diff)) / diff.size

    def backward(self, grad_out: float | np.ndarray = 1.0) -> np.ndarray:
        """After ``loss``: ``grad_out · 2 (o - t) / M``. After ``forward`` (the identity): ``grad_out``."""
        if self._diff is None:
            return grad_out
        return self._diff * (2 * grad_out / self._diff.size)

    def metrics(self, outputs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        """``mae``: each sample's mean absolute error."""
        return {"mae": np.abs(outputs - targets).reshape(len(outputs), -1).mean(axis=1)}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + e^{-z})`` as ``e^{-log(1 + e^{-z})}``: no overflow, full precision in the left tail."""
    return np.exp(-np.logaddexp(0, -z))

