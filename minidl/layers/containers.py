"""The chain: ``Sequential`` runs layers one after another (``Residual`` and ``Parallel``, the containers
that branch, are in :mod:`minidl.layers.branches`).

Each container owns how data splits and merges on the way forward, and so how gradients
merge and split on the way back; its children keep the ordinary layer contract. Where
``x`` feeds two paths (a residual block, every branch of a ``Parallel``) the input
gradients of the paths are summed. Shapes are inferred through the children when the
outer model builds, and a mismatch fails there, naming both shapes. Containers run their
children with :func:`~minidl.layers.base.call_forward`: a child that supports masking gets the
mask, and its forward hooks run. The outermost model, :class:`minidl.Sequential`, is a
``Sequential`` with a seed, a dtype, a loss and ``fit``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .base import Layer, Shape, call_forward, run_forward_hooks
from .losses import Loss

__all__ = ["Sequential"]


class Sequential(Layer):
    """Layers applied one after another; a layer itself, so it nests in any container.

    Args:
        layers: the layers, in order; kept as ``.layers``.

    Shape:
        ``(N, *input_shape) -> (N, *output_shape of the last layer)``.

    A mask (bool ``(N, T)``) goes to each layer that supports masking and follows the chain
    through each layer's ``compute_mask``; :attr:`output_mask` is the one after the last layer.
    The model you train is :class:`minidl.Sequential`, this chain with a seed, a dtype and a loss.

    Example::

        stem = Sequential([Conv2D(8, 3, padding="same"), ReLU()])
        model = minidl.Sequential([stem, Flatten(), Dense(10)], input_shape=(1, 8, 8), loss=SoftmaxCE())
    """

    supports_masking = True

    def __init__(self, layers: Iterable[Layer], *, trainable: bool = True, name: str | None = None) -> None:
        super().__init__(trainable=trainable, name=name)
        if isinstance(layers, Layer) or not isinstance(layers, Iterable):
            raise TypeError(f"Sequential: layers must be a list of Layer objects, got {layers!r}")
        self.layers: list[Layer] = list(layers)
        if not self.layers and type(self) is Sequential:
            raise ValueError("Sequential: got an empty layer list")
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Loss):
                raise ValueError(f"Sequential: {type(layer).__name__} at position {i} is a loss; only the outermost "
                                 "model has a loss (minidl.Sequential(layers, loss=...))")
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {i} is a {type(layer).__name__}, not a minidl Layer")
        # Whether a mask can arise or be used here: else forward takes the plain loop.
        self._masking = any(layer.supports_masking or type(layer).compute_mask is not Layer.compute_mask
                            for layer in self.layers)
        #: The mask of the last ``forward``'s output (``None`` without one).
        self.output_mask: np.ndarray | None = None

    def get_config(self) -> dict[str, Any]:
        return {"layers": self.layers}

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        return f"Sequential([{', '.join(map(repr, self.layers))}])"

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    def named_children(self) -> dict[str, Layer]:
        """``{"0": first layer, "1": ...}``: so parameters are named ``"0.weight"`` (PyTorch's naming)."""
        return {str(i): layer for i, layer in enumerate(self.layers)}

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        for i, layer in enumerate(self.layers):
            input_shape = at_layer(i, layer, input_shape, layer.compute_output_shape)
        return input_shape

    def create_parameters(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> None:
        for i, layer in enumerate(self.layers):
            input_shape = at_layer(i, layer, input_shape, layer.build, rng, dtype)

    def forward(self, x: np.ndarray, training: bool = False, mask: np.ndarray | None = None) -> np.ndarray:
        """Run every layer; returns the last one's output (a model's outputs: a classifier's logits)."""
        if mask is None and not self._masking:
            for layer in self.layers:
                y = layer.forward(x, training)
                if layer._forward_hooks:
                    run_forward_hooks(layer, x, y)
                x = y
            self.output_mask = None
            return x
        for layer in self.layers:
            y = call_forward(layer, x, training, mask)
            mask = layer.compute_mask(x, mask)
            x = y
        self.output_mask = mask
        return x

    def compute_mask(self, x: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
        """The mask after the last layer, as the last ``forward`` (on this ``x``) found it."""
        return self.output_mask

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """Back-propagate ``grad_out`` (``dL/doutputs``) through the layers; returns ``dL/dx``."""
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)
        return grad_out

    def backward_params(self, grad_out: np.ndarray) -> None:
        """``backward`` without ``dL/dx``: the first layer gets ``backward_params`` (see :class:`Layer`)."""
        layers = self.layers
        for i in range(len(layers) - 1, 0, -1):
            grad_out = layers[i].backward(grad_out)
        if layers:
            layers[0].backward_params(grad_out)


def at_layer(i: int, layer: Any, shape: Shape, step: Callable[..., Shape | None], *args: Any) -> Shape:
    """``step(shape, *args)`` for layer ``i`` (a check returning ``None`` keeps ``shape``); an error names the
    position, the class and the shape."""
    try:
        result = step(shape, *args)
        return shape if result is None else tuple(result)
    except (ValueError, TypeError) as err:
        raise type(err)(f"layer {i} ({type(layer).__name__}) got input shape {shape}: {err}") from None
