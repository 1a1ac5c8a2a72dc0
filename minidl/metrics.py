"""Running means of the loss and of the loss head's metrics, for ``fit`` (per epoch) and ``evaluate``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .layers.losses import Loss

__all__ = ["RunningMetrics"]


class RunningMetrics:
    """Means of the loss and of the loss head's metrics over the batches seen.

    Metrics are computed when someone reads them (:meth:`means`: a progress refresh, the end of
    an epoch) or the buffer of ``capacity`` samples is full, not per step: at batch 1 that
    would cost a noticeable part of the step. Until then each batch's loss-head inputs are
    copied into the buffer (a layer may reuse its output array) and its targets kept by
    reference (the batch producer hands out slices it does not overwrite). ``capacity=0``
    computes them at once, per batch.
    """

    def __init__(self, head: Loss, capacity: int) -> None:
        self.head, self.capacity = head, capacity
        self.loss_sum, self.seen = 0.0, 0
        self.sums: dict[str, float] = {}
        self._outputs: np.ndarray | None = None
        self._targets: list[np.ndarray] = []
        self._filled = 0

    def reset(self) -> None:
        self.loss_sum, self.seen, self.sums, self._targets, self._filled = 0.0, 0, {}, [], 0

    def add(self, loss: float, outputs: np.ndarray, targets: np.ndarray) -> None:
        size = len(outputs)
        self.loss_sum += loss * size
        self.seen += size
        start = self._filled
        stop = start + size
        if stop > self.capacity:
            self._flush()
            if size > self.capacity:
                self._accumulate(outputs, targets)
                return
            start, stop = 0, size
        if self._outputs is None:
            self._outputs = np.empty((self.capacity, *outputs.shape[1:]), dtype=outputs.dtype)
        self._outputs[start:stop] = outputs
        self._targets.append(targets)
        self._filled = stop

    def means(self) -> dict[str, float]:
        """``{"loss": ..., metric: ...}``, each a mean over the samples seen."""
        self._flush()
        return {"loss": self.loss_sum / self.seen} | {k: v / self.seen for k, v in self.sums.items()}

    def _flush(self) -> None:
        if self._filled:
            self._accumulate(self._outputs[:self._filled], np.concatenate(self._targets))
            self._targets, self._filled = [], 0

    def _accumulate(self, outputs: np.ndarray, targets: np.ndarray) -> None:
        for name, values in self.head.metrics(outputs, targets).items():
            self.sums[name] = self.sums.get(name, 0.0) + float(np.add.reduce(values, axis=None))
