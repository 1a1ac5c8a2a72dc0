"""Containers: layers made of layers. ``Residual`` adds a shortcut, ``Parallel`` runs branches side by side.

Each container owns how data splits and merges on the way forward, and so how gradients
merge and split on the way back; its children keep the ordinary layer contract. Where
``x`` feeds two paths (a residual block, every branch of a ``Parallel``) the input
gradients of the paths are summed. Shapes are inferred through the children when the
outer model builds, and a mismatch fails there, naming both shapes.
(``Sequential``, the plain chain, is a container too; it lives in :mod:`minidl.model`.)
"""

from __future__ import annotations

from functools import reduce
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import Layer, Shape
from .losses import Loss

if TYPE_CHECKING:
    from ..model import Sequential

__all__ = ["Residual", "Parallel"]


def as_sequential(value: Any, arg: str, owner: str) -> Sequential:
    """A ``Sequential`` as is, a layer or a list of layers in a new one; a ``TypeError`` quoting anything else."""
    from ..model import Sequential  # minidl.model imports minidl.layers

    if isinstance(value, Layer):
        chain = value if isinstance(value, Sequential) else Sequential([value])
    elif isinstance(value, Loss) or (isinstance(value, (list, tuple)) and value
                                     and all(isinstance(v, (Layer, Loss)) for v in value)):
        chain = Sequential([value] if isinstance(value, Loss) else value)
    else:
        raise TypeError(f"{owner}: {arg} must be a layer or a non-empty list of layers, got {value!r}")
    if chain.loss is not None:
        raise ValueError(f"{owner}: {arg} ends in the loss {chain.loss.name}; only the outermost model has a loss")
    return chain


class Residual(Layer):
    """A residual block (He et al., 2016): ``y = F(x) + S(x)``, ``S`` the identity by default.

    Args:
        layers: ``F``, a layer or a list of layers; kept as ``.layers``, a :class:`~minidl.Sequential`.
        shortcut: ``S``: ``None`` for the identity, or a layer or list of layers (a projection such
            as ``Conv2D(channels, 1, stride=2)`` when ``F`` changes the shape); kept as ``.shortcut``.

    Shape:
        ``(N, *input_shape) -> (N, *F's output shape)``; ``S(x)`` must have the same shape.

    Backward: ``dL/dx = F'(x)ᵀ g + S'(x)ᵀ g`` for ``g = dL/dy``: both paths get ``g``.

    Example::

        block = Residual([Conv2D(16, 3, padding="same"), ReLU(), Conv2D(16, 3, padding="same")])
        down = Residual([Conv2D(32, 3, stride=2, padding="same")], shortcut=Conv2D(32, 1, stride=2))
    """

    def __init__(self, layers: Any, shortcut: Any = None, *, trainable: bool = True, name: str | None = None) -> None:
        super().__init__(trainable=trainable, name=name)
        self.layers = as_sequential(layers, "layers", self.name)
        self.shortcut = None if shortcut is None else as_sequential(shortcut, "shortcut", self.name)

    def get_config(self) -> dict[str, Any]:
        return {"layers": self.layers, "shortcut": self.shortcut}

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        out = self.layers.compute_output_shape(input_shape)
        short = input_shape if self.shortcut is None else self.shortcut.compute_output_shape(input_shape)
        if out != short:
            which = "the identity shortcut gives x" if self.shortcut is None else "the shortcut S(x) has"
            raise ValueError(
                f"{self.name}: F(x) has shape {out} but {which} shape {short} (input {input_shape}), so they "
                f"cannot be added; use a projection shortcut that maps {input_shape} to {out}, "
                f"e.g. shortcut={_projection(input_shape, out)}"
            )
        return out

    def create_parameters(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> None:
        self.layers.build(input_shape, rng, dtype)
        if self.shortcut is not None:
            self.shortcut.build(input_shape, rng, dtype)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        return self.layers.forward(x, training) + (x if self.shortcut is None else self.shortcut.forward(x, training))

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        short = grad_out if self.shortcut is None else self.shortcut.backward(grad_out)
        return self.layers.backward(grad_out) + short

    def backward_params(self, grad_out: np.ndarray) -> None:
        self.layers.backward_params(grad_out)
        if self.shortcut is not None:
            self.shortcut.backward_params(grad_out)


def _projection(input_shape: Shape, output_shape: Shape) -> str:
    if len(input_shape) == len(output_shape) == 3:
        stride = max(1, input_shape[1] // output_shape[1])
        return f"Conv2D({output_shape[0]}, 1{f', stride={stride}' if stride > 1 else ''})"
    return f"Dense({output_shape[0]})" if len(output_shape) == 1 else "a layer of that output shape"


class Parallel(Layer):
    """Branches side by side (Inception-style): each gets ``x``; their outputs are merged.

    Args:
        branches: a list; each branch a layer or a list of layers, kept in ``.branches``
            as :class:`~minidl.Sequential` objects.
        merge: ``"concat"`` concatenates the outputs along the channel axis (axis 1 of the batch,
            the first per-sample axis); ``"add"`` sums them.

    Shape:
        ``(N, *input_shape) -> (N, C_1 + ... + C_k, *rest)`` for ``"concat"``, where every branch
        outputs ``(N, C_i, *rest)``; ``"add"`` needs equal output shapes and keeps them.

    Backward: ``"concat"`` splits ``dL/dy`` along axis 1 between the branches, ``"add"`` gives
    each all of it; the branches' input gradients are summed.

    Example::

        Parallel([[Conv2D(8, 1)], [Conv2D(8, 3, padding="same"), ReLU()]], merge="concat")  # 16 channels
    """

    def __init__(self, branches: Any, merge: str = "concat", *, trainable: bool = True, name: str | None = None) -> None:
        super().__init__(trainable=trainable, name=name)
        if not isinstance(branches, (list, tuple)) or not branches:
            raise TypeError(f"{self.name}: branches must be a non-empty list of branches (layers or lists of "
                            f"layers), got {branches!r}")
        self.branches = [as_sequential(b, f"branches[{i}]", self.name) for i, b in enumerate(branches)]
        if merge not in ("concat", "add"):
            raise ValueError(f'{self.name}: merge must be "concat" or "add", got {merge!r}')
        self.merge = merge

    def get_config(self) -> dict[str, Any]:
        return {"branches": self.branches, "merge": self.merge}

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        shapes = [b.compute_output_shape(input_shape) for b in self.branches]
        first = shapes[0]
        for i, shape in enumerate(shapes[1:], 1):
            if self.merge == "add" and shape != first:
                raise ValueError(f"{self.name}: branch {i} outputs shape {shape} but branch 0 outputs {first}; "
                                 'merge="add" needs equal shapes')
            if self.merge == "concat" and shape[1:] != first[1:]:
                raise ValueError(f"{self.name}: branch {i} outputs shape {shape} but branch 0 outputs {first}; "
                                 'merge="concat" joins them along the channel axis, so every other axis must match')
        return first if self.merge == "add" else (sum(s[0] for s in shapes), *first[1:])

    def create_parameters(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> None:
        for branch in self.branches:
            branch.build(input_shape, rng, dtype)
        self._splits = np.cumsum([b.output_shape[0] for b in self.branches])[:-1].tolist()

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        self.check_input(x)
        outputs = [branch.forward(x, training) for branch in self.branches]
        return reduce(np.add, outputs) if self.merge == "add" else np.concatenate(outputs, axis=1)

    def _split(self, grad_out: np.ndarray) -> list[np.ndarray]:
        return [grad_out] * len(self.branches) if self.merge == "add" else np.split(grad_out, self._splits, axis=1)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return reduce(np.add, [b.backward(g) for b, g in zip(self.branches, self._split(grad_out))])

    def backward_params(self, grad_out: np.ndarray) -> None:
        for branch, g in zip(self.branches, self._split(grad_out)):
            branch.backward_params(g)
