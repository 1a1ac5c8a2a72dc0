"""The layer contract: ``Parameter``, ``Buffer`` and the ``Layer`` base class.

A layer is built once for a per-sample input shape (``build``: ``compute_output_shape``, then
``create_parameters``), then maps batches forward and gradients backward. Parameters, buffers and
sub-layers are plain attributes (or lists, tuples and dicts of layers), found by one recursive walk
with dotted PyTorch-style names (``"1.layers.0.weight"``), so there is nothing to register.
docs/architecture.md shows how layers, containers, the model and the training loop fit together.

Layer classes register themselves by class name in :data:`LAYERS` when they are defined (an
abstract base opts out: ``class Base(Layer, register=False)``), so a saved architecture
(``to_config``) can be rebuilt (``from_config``; both in :mod:`minidl.config`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import config
# The argument checks live in minidl.arguments; layers and docs/extending.md import them from here.
from ..arguments import as_float, as_int, as_pair, as_shape, as_state_value, check_bool
from ..config import register_class

__all__ = ["Layer", "Parameter", "Buffer", "LAYERS", "Shape", "as_float", "as_int", "as_pair", "check_bool"]

Shape = tuple[int, ...]

#: Every ``Layer`` subclass by class name; filled in by ``Layer.__init_subclass__``.
LAYERS: dict[str, type["Layer"]] = {}


class _Holder:
    """An array ``data`` that a layer owns; ``shape``, ``dtype`` and ``size`` read through to it."""

    __slots__ = ("data",)

    def __init__(self, data: np.ndarray) -> None:
        self.data = data

    @property
    def shape(self) -> Shape:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size


class Parameter(_Holder):
    """A trainable array ``data`` and the gradient ``grad`` of the loss with respect to it."""

    __slots__ = ("grad", "trainable")

    def __init__(self, data: np.ndarray, trainable: bool = True) -> None:
        super().__init__(data)
        self.grad = np.zeros_like(data)
        self.trainable = trainable

    def __repr__(self) -> str:
        frozen = "" if self.trainable else ", trainable=False"
        return f"Parameter(shape={self.shape}, dtype={self.dtype}{frozen})"


class Buffer(_Holder):
    """A saved, never trained array ``data`` (no ``.grad``): e.g. running statistics.

    A layer updates its buffers itself (in ``forward``); optimizers never see them.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Buffer(shape={self.shape}, dtype={self.dtype})"


class Layer:
    """Base class of every layer. Subclasses override the methods below as needed.

    - ``__init__(..., *, trainable=True, name=None)``: store and validate the hyper-parameters
      (raise ``ValueError``/``TypeError`` quoting the bad value); call ``super().__init__``.
      No shapes are known yet.
    - ``compute_output_shape(input_shape)``: per-sample output shape (no batch axis); raise
      ``ValueError`` here if the layer cannot take ``input_shape``. Default: unchanged shape.
    - ``create_parameters(input_shape, rng, dtype)``: assign :class:`Parameter` (trained) and
      :class:`Buffer` (saved, not trained) attributes of ``dtype``, drawing initial values
      from ``rng`` only; derive a layer's own ``Generator`` from ``rng`` here if ``forward``
      is random (never NumPy's global state: ``check_layer`` rewinds such generators between
      its evaluations). Default: none.
    - ``forward(x, training=False)``: ``(N, *input_shape) -> (N, *output_shape)``; call
      ``self.check_input(x)`` first; cache what ``backward`` needs. ``training`` switches
      training-time behaviour (dropout masks, batch statistics).
    - ``backward(grad_out)``: ``dL/dy -> dL/dx`` for the last ``forward``; write ``dL/dθ``
      into each trainable parameter's ``.grad``, overwriting it. Calling it twice gives
      the same result.
    - ``backward_params(grad_out)``: optional; the parameter gradients of ``backward`` without
      ``dL/dx`` (default: calls ``backward``), for a layer whose input gradient is costly.
    - ``get_config()``: the constructor arguments as JSON-able values, so that
      ``type(self)(**get_config())`` is an equal, unbuilt layer (``repr`` and saving use it).

    ``minidl.testing.check_layer(layer, input_shape)`` checks all of this for any layer.
    """

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if register:  # ``class MyBase(Layer, register=False)``: an abstract base no file can name
            register_class(LAYERS, cls)

    def __init__(self, *, trainable: bool = True, name: str | None = None) -> None:
        check_bool(trainable, "trainable", type(self).__name__)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: name must be a str, got {name!r}")
        self.name = name or type(self).__name__
        self.input_shape: Shape | None = None
        self.output_shape: Shape | None = None
        self.dtype: np.dtype | None = None
        self._trainable = trainable

    # -- the contract -------------------------------------------------------------------
    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def create_parameters(self, input_shape: Shape, rng: np.random.Generator, dtype: np.dtype) -> None:
        """Create this layer's parameters for ``input_shape``; layers without parameters skip it."""

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement backward")

    def backward_params(self, grad_out: np.ndarray) -> None:
        """``backward`` for when nobody needs ``dL/dx`` (a model's first layer in ``fit``): write the
        parameter gradients only. The default calls ``backward``; a layer overrides it to skip the
        input gradient's cost (``Conv2D`` skips its col2im)."""
        self.backward(grad_out)

    def get_config(self) -> dict[str, Any]:
        return {}

    def to_config(self) -> dict[str, Any]:
        """``{"class": name, "config": kwargs}``: enough to make an equal, unbuilt layer (see :mod:`minidl.config`)."""
        return config.to_config(self)

    @staticmethod
    def from_config(spec: dict[str, Any]) -> "Layer":
        """Inverse of :meth:`to_config`; the class must be defined (imported) already."""
        return config.from_config(spec, Layer)

    # -- machinery shared by every layer ---------------------------------------------
    def build(
        self,
        input_shape: Shape,
        rng: np.random.Generator | None = None,
        dtype: Any = np.float32,
    ) -> Shape:
        """Check ``input_shape`` (per sample, no batch axis), create parameters, return the output shape.

        A layer already built for this shape and dtype keeps its weights (reusing trained layers in a
        new model); for another shape or dtype it refuses. A failed build leaves no trace: every layer
        of the subtree it built is unbuilt again and ``rng`` is rewound.
        """
        input_shape = as_shape(input_shape, self.name)
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"{self.name}: dtype must be a floating type, got {dtype}")
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise TypeError(
                f"{self.name}: rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {rng!r}"
            )
        if self.built:
            if (input_shape, dtype) != (self.input_shape, self.dtype):
                raise ValueError(
                    f"{self.name} is already built for input shape {self.input_shape} and dtype {self.dtype}, "
                    f"so it cannot take input shape {input_shape} and dtype {dtype}; use a new layer here"
                )
            return self.output_shape
        rng = rng if rng is not None else np.random.default_rng()
        undo = [(layer, dict(vars(layer))) for layer in (self, *self.named_layers().values()) if not layer.built]
        rng_state = rng.bit_generator.state
        try:
            output_shape = tuple(self.compute_output_shape(input_shape))
            self.create_parameters(input_shape, rng, dtype)
        except BaseException:
            for layer, attributes in undo:
                vars(layer).clear()
                vars(layer).update(attributes)
            rng.bit_generator.state = rng_state
            raise
        self.input_shape, self.output_shape, self.dtype = input_shape, output_shape, dtype
        if not self._trainable:
            self.trainable = False  # freeze the new parameters, and the subtree's
        return output_shape

    @property
    def built(self) -> bool:
        return self.input_shape is not None

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        """Freeze (or unfreeze) this layer and every layer below it."""
        value = check_bool(value, "trainable", self.name)
        for layer in (self, *self.named_layers().values()):
            layer._trainable = value
            for p in vars(layer).values():
                if isinstance(p, Parameter):
                    p.trainable = value

    # -- the tree: found by walking attributes, so there is nothing to register ------------
    def named_children(self) -> dict[str, "Layer"]:
        """Direct sub-layers: attributes holding a Layer, or lists, tuples or dicts of Layers at any depth
        (``"inner"``, ``"blocks.0"``), in attribute order."""
        return dict(_layers_in("", vars(self)))

    def named_layers(self) -> dict[str, "Layer"]:
        """Every layer below this one by dotted path (``"1.layers.0"``), pre-order.

        Raises ``ValueError`` if one layer object is found in two places.
        """
        found: dict[str, Layer] = {}
        seen = {id(self): "the top"}

        def visit(layer: Layer, prefix: str) -> None:
            for name, child in layer.named_children().items():
                path = prefix + name
                if id(child) in seen:
                    raise ValueError(
                        f"{self.name}: the same layer object appears twice ({type(child).__name__} at "
                        f"{seen[id(child)]!r} and {path!r}); a layer may be in only one place of a model: "
                        "create a new one for each place"
                    )
                seen[id(child)] = path
                found[path] = child
                visit(child, path + ".")

        visit(self, "")
        return found

    def _named_state(self, kind: type) -> dict[str, Any]:
        layers = {"": self} | {f"{path}.": layer for path, layer in self.named_layers().items()}
        return {prefix + k: v for prefix, layer in layers.items() for k, v in vars(layer).items() if isinstance(v, kind)}

    def named_parameters(self) -> dict[str, Parameter]:
        """Parameters of this layer and every layer below, by dotted name (``"1.layers.0.weight"``)."""
        return self._named_state(Parameter)

    def parameters(self) -> list[Parameter]:
        return list(self.named_parameters().values())

    def named_buffers(self) -> dict[str, Buffer]:
        """Buffers, found and named like the parameters."""
        return self._named_state(Buffer)

    def buffers(self) -> list[Buffer]:
        return list(self.named_buffers().values())

    def state_dict(self) -> dict[str, np.ndarray]:
        """A flat ``name → array`` copy of every parameter and buffer."""
        return {k: p.data.copy() for k, p in (self.named_parameters() | self.named_buffers()).items()}

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        """Copy arrays into the parameters and buffers (in place, so optimizers keep working).

        Names, shapes, dtypes and values are checked before anything is written: with ``strict=True``
        a state with missing or unexpected keys raises ``ValueError`` listing both (as PyTorch does),
        and a NaN or infinite value is refused rather than stored.
        """
        params = self.named_parameters() | self.named_buffers()
        if strict:
            missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
            if missing or unexpected:
                raise ValueError(f"load_state_dict: the state does not fit {type(self).__name__}: missing key(s) "
                                 f"{missing}, unexpected key(s) {unexpected} (strict=False loads the keys that match)")
        values = {}
        for name, p in params.items():  # check everything before writing anything: no half-loaded model
            if name not in state:
                continue
            value = as_state_value(state[name], name, p.shape, p.dtype)
            values[name] = value
        for name, value in values.items():
            params[name].data[...] = value

    def check_input(self, x: Any) -> None:
        """Raise a clear error unless ``x`` is a float array of shape ``(N, *input_shape)``."""
        # The common case in one exact test (a few hundred ns count at batch 1); the messages below only on failure.
        # (An unbuilt layer has input_shape None, which no shape tuple equals.)
        if isinstance(x, np.ndarray) and x.shape[1:] == self.input_shape and x.dtype == self.dtype and x.ndim > 1:
            return
        if not self.built:
            raise ValueError(
                f"{self.name} is not built: call build(input_shape) or put it in a Sequential first"
            )
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{self.name}: input must be a numpy array, got {type(x).__name__}")
        if x.shape[1:] != self.input_shape or x.ndim != len(self.input_shape) + 1:
            raise ValueError(
                f"{self.name}: expected input of shape (N, {', '.join(map(str, self.input_shape))}), "
                f"got {x.shape}"
            )
        if x.dtype != self.dtype:
            raise TypeError(
                f"{self.name}: input dtype {x.dtype} does not match the layer's dtype {self.dtype}"
            )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __getattr__(self, attr: str) -> Any:
        # Only reached when normal lookup fails: the base attributes are missing if __init__ skipped ours.
        if attr in _BASE_ATTRIBUTES:
            raise AttributeError(
                f"{type(self).__name__} has no attribute {attr!r}: its __init__ must call super().__init__() "
                "(Layer.__init__ sets name, trainable and the shapes)"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")


config.register_kind(Layer, LAYERS)

#: What ``Layer.__init__`` sets on every layer.
_BASE_ATTRIBUTES = frozenset({"name", "input_shape", "output_shape", "dtype", "_trainable",
                              "built", "trainable"})  # the properties that read them fail over to __getattr__


def _layers_in(prefix: str, value: Any) -> Iterator[tuple[str, Layer]]:
    """``(dotted name, layer)`` for every Layer in ``value``, looking inside lists, tuples and dicts."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(item, Layer):
            yield f"{prefix}{key}", item
        elif isinstance(item, (list, tuple, dict)):
            yield from _layers_in(f"{prefix}{key}.", item)
