"""The checks of ``minidl.Sequential``'s constructor: where the loss may be, the dtypes and the seed.

:class:`minidl.model.Sequential` calls these before it stores anything, so a bad argument is
refused with a message naming it, what it got and what was expected.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .arguments import as_int
from .layers.base import Layer
from .layers.losses import Loss

__all__ = ["require_built", "split_loss", "check_nested_losses", "float_dtype", "input_dtype_of", "check_seed"]


def split_loss(layers: Any, loss: Any) -> tuple[list[Layer], Loss | None]:
    """``(layers, loss)`` with a trailing loss of ``layers`` taken out as the model's loss.

    A model has one loss, at the end of the list or given as ``loss=``; anything else is refused.

    Args:
        layers: what ``Sequential`` got as its layers.
        loss: what it got as ``loss=``.

    Example::

        layers, loss = split_loss([Flatten(), Dense(10), SoftmaxCE()], None)  # loss: the SoftmaxCE
    """
    if isinstance(layers, Layer) or not isinstance(layers, Iterable):
        raise TypeError(f"Sequential: layers must be a list of Layer objects, got {layers!r}")
    layers = list(layers)
    losses = [i for i, layer in enumerate(layers) if isinstance(layer, Loss)]
    if len(losses) + (loss is not None) > 1:
        where = f"one at each of positions {losses}" + (" and loss=" if loss is not None else "")
        raise ValueError(f"Sequential: a model has one loss, found {where}")
    if layers and isinstance(layers[-1], Loss):  # Sequential([..., SoftmaxCE()]): the model's loss
        loss = layers.pop()
    if not layers and loss is None:
        raise ValueError("Sequential: got an empty layer list")
    if losses and losses[0] < len(layers):
        i = losses[0]
        raise ValueError(f"Sequential: {type(layers[i]).__name__} must be the last layer, found at position {i} "
                         f"of {len(layers) + (loss is not None)} (followed by {type(layers[i + 1]).__name__})")
    if loss is not None and not isinstance(loss, Loss):
        raise TypeError(f"Sequential: loss must be a minidl Loss such as SoftmaxCE(), got {loss!r}")
    return layers, loss


def check_nested_losses(named_layers: dict[str, Layer]) -> None:
    """Refuse a nested model with a loss: only the outermost model has one.

    Args:
        named_layers: the model's layers by path (``model.named_layers()``).

    Example::

        check_nested_losses(model.named_layers())
    """
    for path, layer in named_layers.items():
        nested_loss = getattr(layer, "loss", None)
        if isinstance(nested_loss, Loss):
            raise ValueError(f"Sequential: the Sequential at {path} has the loss {nested_loss.name}; only the "
                             "outermost model has a loss")


def float_dtype(dtype: Any) -> np.dtype:
    """``dtype`` as ``np.float32`` or ``np.float64``, or a ``TypeError``.

    Example::

        float_dtype("float64")  # dtype('float64')
    """
    try:
        checked = np.dtype(dtype)
    except TypeError:
        checked = None
    if checked not in (np.float32, np.float64):
        raise TypeError(f"Sequential: dtype must be float32 or float64, got {dtype!r}")
    return np.dtype(checked)


def input_dtype_of(input_dtype: Any) -> np.dtype | None:
    """``input_dtype`` as ``None`` or an integer or float dtype, or a ``TypeError``.

    Example::

        input_dtype_of("int64")  # dtype('int64')
    """
    if input_dtype is None:
        return None
    try:
        checked = np.dtype(input_dtype)
    except TypeError:
        checked = np.dtype(object)
    if checked.kind not in "iuf":
        raise TypeError(f"Sequential: input_dtype must be None or an integer or float type such as 'int64', "
                        f"got {input_dtype!r}")
    return checked


def check_seed(seed: Any) -> None:
    """A ``seed`` is ``None``, an int or a list of ints (``SeedSequence`` takes lists too).

    Example::

        check_seed([0, 1])
    """
    if seed is not None:
        for entropy in seed if isinstance(seed, (list, tuple)) else [seed]:
            as_int(entropy, "seed", "Sequential")


def require_built(built: bool, what: str) -> None:
    """A ``ValueError`` for ``Sequential.<what>`` on a model that is not built yet.

    Example::

        require_built(model.built, "summary")
    """
    if not built:
        raise ValueError(f"Sequential.{what}: the model is not built; pass input_shape= or call build()")
