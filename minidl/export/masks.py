"""What happens to a sequence mask at each layer of an exported model: both exporters follow minidl's rules.

minidl's containers hand a mask (bool ``(N, T)``, True at valid steps) from layer to layer through each
layer's ``compute_mask``; an exported model has to do the same with its own tensors. :func:`mask_rule` says,
at export time, what the layer does to the mask, so that the exporters can carry it (or refuse the layer).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..layers import Embedding, Loss, containers
from .registry import built

__all__ = ["mask_rule"]


def mask_rule(layer: Any, masked: bool, what: str) -> str:
    """What ``layer`` does to the mask reaching it (``masked``: whether one can).

    Returns ``"make"`` (an ``Embedding(mask_zero=True)``: its exporter makes the mask from the ids),
    ``"chain"`` (a ``Sequential``: its children decide), ``"keep"`` (the mask passes on) or ``"drop"``
    (no mask after it: the layer consumed the time axis). A layer that cannot take a mask (one that
    changes the time axis, such as ``Conv1D`` or ``Flatten``) is refused with minidl's own reason,
    as minidl refuses it when the model runs.

    Args:
        layer: the layer (or loss) about to be exported.
        masked: whether a mask can reach it.
        what: ``"to_onnx"`` or ``"to_torch"``, for the error message.
    """
    if isinstance(layer, Embedding):
        return "make" if layer.mask_zero else "keep"
    if isinstance(layer, containers.Sequential):
        return "chain"
    if not masked or isinstance(layer, Loss):  # a loss's inference output is per position
        return "keep"
    # The layer's own compute_mask on a stand-in batch of one: it looks at shapes, never at values.
    shape = built(layer.input_shape)
    mask = np.ones((1, shape[0]), dtype=bool)
    try:
        after = layer.compute_mask(np.zeros((1, *shape)), mask)
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from None
    if after is None:
        return "drop"
    if after is mask:
        return "keep"
    raise ValueError(f"{what}: {layer.name} ({type(layer).__name__}) computes a mask of its own, which the export "
                     "cannot follow; export a model without mask_zero=True, or remove the layer")
