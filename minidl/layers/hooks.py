"""Forward hooks (PyTorch's ``register_forward_hook``) and how a container runs a child.

``Layer.register_forward_hook`` stores a hook in the layer's own ``_forward_hooks`` dict;
containers run their children with :func:`call_forward`, which passes a mask to a child that
takes one and then calls the child's hooks, so a hook fires wherever its layer sits in a model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .base import Layer

__all__ = ["RemovableHandle", "add_forward_hook", "call_forward", "run_forward_hooks"]


class RemovableHandle:
    """What :meth:`Layer.register_forward_hook` returns: ``remove()`` unregisters the hook.

    Args:
        hooks: the layer's dict of hooks.

    Example::

        handle = layer.register_forward_hook(print)
        handle.remove()
    """

    _next_id = 0

    def __init__(self, hooks: dict[int, Any]) -> None:
        self._hooks = hooks
        self.id = RemovableHandle._next_id
        RemovableHandle._next_id += 1

    def remove(self) -> None:
        """Take the hook away (again: nothing happens)."""
        self._hooks.pop(self.id, None)


def add_forward_hook(layer: Layer, hook: Callable[[Layer, np.ndarray, np.ndarray], None]) -> RemovableHandle:
    """Register ``hook(layer, input, output)`` on ``layer`` (see :meth:`Layer.register_forward_hook`).

    Example::

        handle = add_forward_hook(layer, lambda layer, x, y: print(y.shape))
    """
    if not callable(hook):
        raise TypeError(f"{layer.name}: register_forward_hook takes a function (layer, input, output), got {hook!r}")
    hooks = layer.__dict__.setdefault("_forward_hooks", {})  # the class-level {} stays empty and shared
    handle = RemovableHandle(hooks)
    hooks[handle.id] = hook
    return handle


def call_forward(layer: Layer, x: np.ndarray, training: bool, mask: np.ndarray | None = None) -> np.ndarray:
    """``layer.forward(x, training)`` as a container runs a child: with ``mask=`` if the child takes masks,
    then the child's forward hooks."""
    forward: Callable[..., np.ndarray] = layer.forward  # a masking layer's forward also takes mask=
    y = forward(x, training, mask=mask) if mask is not None and layer.supports_masking else forward(x, training)
    if layer._forward_hooks:
        run_forward_hooks(layer, x, y)
    return y


def run_forward_hooks(layer: Layer, x: np.ndarray, y: np.ndarray) -> None:
    """Call ``layer``'s forward hooks with its input and output (a copy of the dict: a hook may remove itself)."""
    for hook in list(layer._forward_hooks.values()):
        hook(layer, x, y)
