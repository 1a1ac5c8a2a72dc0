"""Loss heads: ``SoftmaxCE``, softmax fused with mean cross-entropy."""

from __future__ import annotations

import numpy as np

from .activations import log_softmax, softmax_backward
from .base import Layer, Shape


class SoftmaxCE(Layer):
    r"""Softmax over classes fused with the mean cross-entropy loss; the last layer of a model.

    For logits ``z`` (N, K) and integer labels ``y`` (N,):

    .. math::
        \log p_{n,k} = z_{n,k} - \max_j z_{n,j} - \log \sum_j e^{z_{n,j} - \max_j z_{n,j}}

        L = -\frac{1}{N} \sum_n \log p_{n, y_n}, \qquad
        \frac{\partial L}{\partial z} = \frac{p - \mathrm{onehot}(y)}{N}

    Subtracting the row maximum keeps every exponent ≤ 0, so logits of ±1e4 give finite
    values. ``forward`` returns the probabilities (inference); ``loss(z, y)`` computes
    the loss (training). Each caches what ``backward`` needs to differentiate it.
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
