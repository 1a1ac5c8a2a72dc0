"""Who exports which layer: one registry per target format, looked up along the layer's class hierarchy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["ExporterRegistry", "ONNX_EXPORTERS", "TORCH_EXPORTERS", "register_onnx", "register_torch", "built"]

_T = TypeVar("_T")


def built(value: _T | None) -> _T:
    """``value`` (an input shape or a parameter) of a layer that must be built by now: models are exported built."""
    if value is None:
        raise ValueError("export: the model is not built; build it (or fit it) before exporting")
    return value


class ExporterRegistry:
    """Maps layer classes to exporter functions for one target (``"ONNX"`` or ``"PyTorch"``).

    ``lookup(layer)`` walks ``type(layer).__mro__``, so an exporter registered for a class also
    serves its subclasses unless they register their own.
    """

    def __init__(self, target: str, register_name: str) -> None:
        self.target = target
        self.register_name = register_name
        self._exporters: dict[type, Callable[..., Any]] = {}  # the users'
        # minidl's own, apart: registered when their module is first imported, whatever a user did before
        self._builtins: dict[type, Callable[..., Any]] = {}

    def register(self, cls: type, *, builtin: bool = False) -> Callable[[Callable], Callable]:
        if not isinstance(cls, type):
            raise TypeError(f"{self.register_name}: expected a layer class, got {cls!r}")

        def decorate(fn: Callable) -> Callable:
            if not callable(fn):
                raise TypeError(f"{self.register_name}({cls.__name__}): expected a function, got {fn!r}")
            # a user's own exporter for a built-in class wins, whenever it was registered (lookup)
            (self._builtins if builtin else self._exporters)[cls] = fn
            return fn

        return decorate

    def is_builtin(self, layer: Any) -> bool:
        """Whether ``layer`` is exported by minidl's own exporter (rather than one a user registered)."""
        return self.lookup(layer) in self._builtins.values()

    def lookup(self, layer: Any) -> Callable[..., Any]:
        for cls in type(layer).__mro__:
            fn = self._exporters.get(cls, self._builtins.get(cls))
            if fn is not None:
                return fn
        name = type(layer).__name__
        raise TypeError(
            f"no {self.target} exporter for layer {getattr(layer, 'name', name)!r} ({type(layer).__module__}.{name}); "
            f"register one with @minidl.export.{self.register_name}({name}) "
            "(docs/extending.md, 'Exporting your layer')"
        )


ONNX_EXPORTERS = ExporterRegistry("ONNX", "register_onnx")
TORCH_EXPORTERS = ExporterRegistry("PyTorch", "register_torch")


def register_onnx(cls: type) -> Callable[[Callable], Callable]:
    """Decorator: ``fn(layer, graph, x) -> y`` writes ``layer`` into an ONNX graph.

    ``x`` is the name of the layer's input tensor; ``fn`` adds nodes with ``graph.node(...)``
    and weights with ``graph.initializer(...)`` and returns the name of the output tensor.

    Args:
        cls: the layer class the decorated function exports.

    Example::

        @register_onnx(Scale)
        def _(layer, graph, x):
            return graph.node("Mul", [x, graph.initializer(np.array(2.0, graph.dtype))])
    """
    return ONNX_EXPORTERS.register(cls)


def register_torch(cls: type) -> Callable[[Callable], Callable]:
    """Decorator: ``fn(layer, ctx) -> torch.nn.Module`` equivalent to ``layer`` in inference mode.

    ``ctx.nn`` is ``torch.nn``, ``ctx.tensor(array)`` makes a tensor of the model's dtype and
    ``ctx.convert(child)`` converts a layer held by ``layer`` (for composite layers).

    Args:
        cls: the layer class the decorated function exports.

    Example::

        @register_torch(Scale)
        def _(layer, ctx):
            class Double(ctx.nn.Module):
                def forward(self, x):
                    return 2 * x
            return Double()
    """
    return TORCH_EXPORTERS.register(cls)
