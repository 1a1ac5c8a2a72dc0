"""Running means of the loss and of the loss's metrics, for ``fit`` (per epoch) and ``evaluate``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .layers.losses import Loss

__all__ = ["RunningMetrics", "per_position"]


class RunningMetrics:
    """Means of the loss and of the loss's metrics over the batches seen.

    Metrics are computed when someone reads them (:meth:`means`: a progress refresh, the end of
    an epoch) or the buffer of ``capacity`` samples is full, not per step: at batch 1 that
    would cost a noticeable part of the step. Until then each batch's outputs are copied into
    the buffer (a layer may reuse its output array) and its targets and mask kept by reference
    (the batch producer hands out slices it does not overwrite). ``capacity=0`` computes them
    at once, per batch. A metric's mean is over its non-NaN values (NaN marks a padded step).

    Args:
        loss: the :class:`~minidl.layers.Loss` whose ``metrics`` are averaged.
        capacity: how many samples to buffer before computing the metrics.

    Example::

        running = RunningMetrics(SoftmaxCE(), capacity=0)
    """

    def __init__(self, loss: Loss, capacity: int) -> None:
        self.loss, self.capacity = loss, capacity
        self.reset()
        self._outputs: np.ndarray | None = None

    def reset(self) -> None:
        self.loss_sum, self.seen, self._filled = 0.0, 0, 0
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._targets: list[np.ndarray] = []
        self._masks: list[np.ndarray | None] = []

    def add(self, loss: float, outputs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None) -> None:
        size = len(outputs)
        self.loss_sum += loss * size
        self.seen += size
        start = self._filled
        stop = start + size
        if stop > self.capacity:
            self._flush()
            if size > self.capacity:
                self._accumulate(outputs, targets, mask)
                return
            start, stop = 0, size
        if self._outputs is None or self._outputs.shape[1:] != outputs.shape[1:]:
            self._outputs = np.empty((self.capacity, *outputs.shape[1:]), dtype=outputs.dtype)
        self._outputs[start:stop] = outputs
        self._targets.append(targets)
        self._masks.append(mask)
        self._filled = stop

    def means(self) -> dict[str, float]:
        """``{"loss": ..., metric: ...}``, each a mean over the samples (or scored steps) seen."""
        self._flush()
        return {"loss": self.loss_sum / self.seen} | {k: v / max(self.counts[k], 1) for k, v in self.sums.items()}

    def _flush(self) -> None:
        if self._filled:
            assert self._outputs is not None  # add() allocated it
            # every batch of a pass has a mask, or none has
            mask = None if self._masks[0] is None else np.concatenate([m for m in self._masks if m is not None])
            self._accumulate(self._outputs[:self._filled], np.concatenate(self._targets), mask)
            self._targets, self._masks, self._filled = [], [], 0

    def _accumulate(self, outputs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None) -> None:
        # without a mask, called as a loss written before masks existed expects
        found = self.loss.metrics(outputs, targets) if mask is None else self.loss.metrics(outputs, targets, mask)
        for name, values in found.items():
            values = np.asarray(values)
            if values.dtype.kind == "f":
                scored = ~np.isnan(values)
                total, count = float(np.add.reduce(values[scored], axis=None)), int(np.count_nonzero(scored))
            else:
                total, count = float(np.add.reduce(values, axis=None)), values.size
            self.sums[name] = self.sums.get(name, 0.0) + total
            self.counts[name] = self.counts.get(name, 0) + count


def per_position(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Element-wise ``values`` (N, ...) as one mean per sample (N,), or per step (N, T) with NaN at padded steps."""
    if mask is None:
        return values.reshape(len(values), -1).mean(axis=1)
    means = values.reshape(*mask.shape, -1).mean(axis=2)
    means[~mask] = np.nan
    return means
