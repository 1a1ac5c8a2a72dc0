"""Containers that branch: ``Residual`` adds a shortcut to a chain, ``Parallel`` runs chains side by side.

Where ``x`` feeds two paths (a residual block, every branch of a ``Parallel``) the input
gradients of the paths are summed. Each path is a :class:`~minidl.layers.containers.Sequential`;
shapes are inferred through it when the outer model builds, and a mismatch fails there, naming
both shapes. Children run with :func:`~minidl.layers.base.call_forward` (masks and forward hooks).
"""

from __future__ import annotations

from functools import reduce
from typing import Any

import numpy as np

from ..backend import get_backend
from .base import Layer, Shape, call_forward
from .containers import Sequential
from .losses import Loss

__all__ = ["Residual", "Parallel", "as_sequential"]


def as_sequential(value: Any, arg: str, owner: str) -> Sequential:
    """A ``Sequential`` as is, a layer or a list of layers in a new one; a ``TypeError`` quoting anything else."""
    items = value if isinstance(value, (list, tuple)) else [value]
    loss = next((v for v in items if isinstance(v, Loss)), None)
    if loss is not None:
        raise ValueError(f"{owner}: {arg} holds the loss {loss.name}; only the outermost model has a loss")
    if isinstance(value, Layer):
        return value if isinstance(value, Sequential) else Sequential([value])
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Layer) for v in value):
        return Sequential(value)
    raise TypeError(f"{owner}: {arg} must be a layer or a non-empty list of layers, got {value!r}")


class Residual(Layer):
    """A residual block (He et al., 2016): ``y = F(x) + S(x)``, ``S`` the identity by default.

    Args:
        layers: ``F``, a layer or a list of layers; kept as ``.layers``, a :class:`Sequential`.
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

    supports_masking = True

    def forward(self, x: np.ndarray, training: bool = False, mask: np.ndarray | None = None) -> np.ndarray:
        self.check_input(x)
        out = call_forward(self.layers, x, training, mask)  # before the shortcut: the order random layers draw in
        return get_backend().add(out, x if self.shortcut is None else call_forward(self.shortcut, x, training, mask))

    def compute_mask(self, x: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
        """The input's mask carries through (both paths keep the shape, so the time axis too)."""
        return mask

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        short = grad_out if self.shortcut is None else self.shortcut.backward(grad_out)
        return get_backend().add(self.layers.backward(grad_out), short)

    def backward_params(self, grad_out: np.ndarray) -> None:
        self.layers.backward_params(grad_out)
        if self.shortcut is not None:
            self.shortcut.backward_params(grad_out)


def _concat_axis(shape: Shape) -> int:
    """The per-sample axis ``merge="concat"`` joins: features for vectors and for sequences ``(T, D)``
    (the last axis, as Keras), channels for channels-first images ``(C, H, W)`` (the first)."""
    return len(shape) - 1 if len(shape) <= 2 else 0


def _projection(input_shape: Shape, output_shape: Shape) -> str:
    if len(input_shape) == len(output_shape) == 3:
        stride = max(1, input_shape[1] // output_shape[1])
        return f"Conv2D({output_shape[0]}, 1{f', stride={stride}' if stride > 1 else ''})"
    return f"Dense({output_shape[0]})" if len(output_shape) == 1 else "a layer of that output shape"


class Parallel(Layer):
    """Branches side by side (Inception-style): each gets ``x``; their outputs are merged.

    Args:
        branches: a list; each branch a layer or a list of layers, kept in ``.branches``
            as :class:`Sequential` objects.
        merge: ``"concat"`` concatenates the outputs: images ``(C, H, W)`` along the channel axis
            (axis 1 of the batch; minidl's images are channels-first), feature vectors ``(D,)`` and
            sequences ``(T, D)`` along the last axis (as Keras); ``"add"`` sums them.

    Shape:
        ``(N, *input_shape) -> (N, C_1 + ... + C_k, H, W)`` for ``"concat"`` on images, where every
        branch outputs ``(N, C_i, H, W)``; ``(N, T, D_1 + ... + D_k)`` on sequences; ``"add"``
        needs equal output shapes and keeps them. A mask of the input carries through.

    Backward: ``"concat"`` splits ``dL/dy`` along the concatenated axis between the branches,
    ``"add"`` gives each all of it; the branches' input gradients are summed.

    Example::

        Parallel([[Conv2D(8, 1)], [Conv2D(8, 3, padding="same"), ReLU()]], merge="concat")  # 16 channels
    """

    def __init__(self, branches: Any, merge: str = "concat", *, trainable: bool = True,
                 name: str | None = None) -> None:
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
            axis = _concat_axis(first)
            differ = len(shape) != len(first) or any(
                a != b for j, (a, b) in enumerate(zip(shape, first, strict=True)) if j != axis)
            if self.merge == "concat" and differ:
                raise ValueError(f"{self.name}: branch {i} outputs shape {shape} but branch 0 outputs {first}; "
                                 f'merge="concat" joins them along per-sample axis {axis}, so every other axis '
                                 "must match")
        if self.merge == "add":
            return first
        axis = _concat_axis(first)
        return tuple(sum(s[axis] for s in shapes) if i == axis else d for i, d in enumerate(first))

    def create_parameters(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> None:
        shapes = [branch.build(input_shape, rng, dtype) for branch in self.branches]
        axis = _concat_axis(shapes[0])
        self._axis = axis + 1  # of the batch
        self._splits = np.cumsum([shape[axis] for shape in shapes])[:-1].tolist()

    supports_masking = True

    def forward(self, x: np.ndarray, training: bool = False, mask: np.ndarray | None = None) -> np.ndarray:
        self.check_input(x)
        outputs = [call_forward(branch, x, training, mask) for branch in self.branches]
        return reduce(np.add, outputs) if self.merge == "add" else np.concatenate(outputs, axis=self._axis)

    def compute_mask(self, x: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
        """The input's mask carries through; a branch that changes the time axis refuses it in its forward."""
        return mask

    def _split(self, grad_out: np.ndarray) -> list[np.ndarray]:
        if self.merge == "add":
            return [grad_out] * len(self.branches)
        return np.split(grad_out, self._splits, axis=self._axis)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        return reduce(np.add, [b.backward(g) for b, g in zip(self.branches, self._split(grad_out), strict=True)])

    def backward_params(self, grad_out: np.ndarray) -> None:
        for branch, g in zip(self.branches, self._split(grad_out), strict=True):
            branch.backward_params(g)
