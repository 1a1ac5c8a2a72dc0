"""``model.predict`` and ``predict_proba``: the model's outputs in chunks, turned into predictions by its loss."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import fit_checks
from .fit_checks import require_loss
from .inputs import raise_if_not_finite
from .sources import as_source, batch_size_for

if TYPE_CHECKING:
    from .model import Sequential

__all__ = ["predict"]


def predict(model: Sequential, X: Any, batch_size: int | None, proba: bool = False, steps: int | None = None
            ) -> np.ndarray:
    """``model.predict`` (or ``predict_proba``): the loss's predictions (or probabilities) for ``X``, in chunks.

    Without a loss, ``predict`` returns the model's outputs. ``batch_size=None`` means 256.
    """
    what = "predict_proba" if proba else "predict"
    batch_size = batch_size_for(X, batch_size, 256, what)
    loss = model.loss
    if proba:
        fit_checks.require_classifier(loss)
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
