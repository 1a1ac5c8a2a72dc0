"""``model.summary()``: the tree of layers as a Keras-style table; and the model's ``repr``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .layers.base import Layer
    from .model import Sequential

__all__ = ["print_summary", "model_repr"]


def print_summary(model: Sequential, print_fn: Callable[[str], None] = print) -> None:
    """Print the tree of layers of a built model, containers indented above their children: output
    shape and parameter count of each (a container counts its whole subtree); then the totals.

    As in Keras, buffers (e.g. BatchNorm2D's running statistics) count as non-trainable parameters.
    """
    size = lambda layer: sum(a.size for a in layer.parameters() + layer.buffers())  # noqa: E731

    def rows(layer: Layer, indent: str) -> Iterator[tuple[str, str, str]]:
        for key, child in layer.named_children().items():
            kind = "" if child.name == type(child).__name__ else f" ({type(child).__name__})"
            assert child.output_shape is not None  # the model is built (Sequential.summary checks)
            yield f"{indent}{key}: {child.name}{kind}", str((None, *child.output_shape)), f"{size(child):,}"
            yield from rows(child, indent + "  ")

    assert model.input_shape is not None  # built
    table = [("Layer (type)", "Output shape", "Param #"), *rows(model, "")]
    widths = [max(len(r[c]) for r in table) for c in range(3)]
    line = "-" * (sum(widths) + 4)
    fmt = lambda r: f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}"  # noqa: E731
    total, trainable = size(model), sum(p.size for p in model.parameters() if p.trainable)
    print_fn("\n".join([
        f"Sequential: input (None, {', '.join(map(str, model.input_shape))}), dtype {model.dtype}",
        line, fmt(table[0]), line, *map(fmt, table[1:]), line,
        f"Total params: {total:,}", f"Trainable params: {trainable:,}", f"Non-trainable params: {total - trainable:,}",
        *([f"Loss: {model.loss!r}"] if model.loss is not None else []),
    ]))


def model_repr(model: Sequential) -> str:
    """``repr(model)``: the constructor call that makes an equal, unbuilt-or-built model (arguments that differ
    from the defaults only).

    Example::

        model_repr(Sequential([Dense(2)], loss=MSE()))  # "Sequential([Dense(units=2, use_bias=True)], loss=MSE())"
    """
    extra = (f", input_shape={model.input_shape}" if model.built else "") + (
        f", seed={model.seed}" if model.seed is not None else "") + (
        f", dtype='{model.dtype}'" if model.dtype != "float32" else "")
    loss = f", loss={model.loss!r}" if model.loss is not None else ""
    return f"Sequential([{', '.join(map(repr, model.layers))}]{extra}{loss})"
