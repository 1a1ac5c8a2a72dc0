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

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .. import config

# The argument checks live in minidl.arguments; layers and docs/extending.md import them from here.
from ..arguments import as_float, as_int, as_pair, check_bool
from . import checks, hooks
from . import state as _state
from .hooks import RemovableHandle, call_forward, run_forward_hooks
from .state import Buffer, Parameter

__all__ = ["Layer", "Parameter", "Buffer", "LAYERS", "Shape", "RemovableHandle", "call_forward", "run_forward_hooks",
           "as_float", "as_int", "as_pair", "check_bool"]

Shape = tuple[int, ...]

#: Every ``Layer`` subclass by class name; filled in as they are defined (``config.Configurable``).
LAYERS: dict[str, type[Layer]] = {}


class Layer(config.Configurable, register=False):
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
    - Sequences with padding: declare ``supports_masking = True`` and take
      ``forward(x, training=False, mask=None)`` to get the mask (bool ``(N, T)``);
      ``compute_mask(x, mask)`` gives the output's mask (default: passed through when the time
      axis is kept). A layer taking integer ids overrides ``check_input``.

    ``build`` sets ``output_shape`` before ``create_parameters`` runs. An abstract base stays out
    of the registry with ``class Base(Layer, register=False)``.
    ``minidl.testing.check_layer(layer, input_shape)`` checks all of this for any layer.

    Args:
        trainable: ``False`` freezes the layer's parameters (and those of the layers below it).
        name: a name for messages and ``summary`` (default: the class name).

    Shape:
        - Input: ``(N, *input_shape)``; the batch axis ``N`` is never part of ``input_shape``.
        - Output: ``(N, *output_shape)``, ``output_shape = compute_output_shape(input_shape)``.

    Example::

        class Scale(Layer):
            def forward(self, x, training=False):
                self.check_input(x)
                return 2 * x
            def backward(self, grad_out):
                return 2 * grad_out
    """

    #: Whether ``forward`` takes ``mask=`` (bool ``(N, T)``, True at valid steps of a sequence input).
    supports_masking = False
    #: Functions called after ``forward`` (see :meth:`register_forward_hook`); empty for most layers.
    _forward_hooks: dict[int, Callable[..., Any]] = {}

    def __init__(self, *, trainable: bool = True, name: str | None = None) -> None:
        check_bool(trainable, "trainable", type(self).__name__)
        self._set_name(name)
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

    def compute_mask(self, x: np.ndarray, mask: np.ndarray | None) -> np.ndarray | None:
        """The mask of this layer's output, given its input ``x`` and the input's ``mask``.

        Default: ``mask`` passes through when the layer keeps the time axis (the first per-sample
        axis); a layer that changes it cannot carry a mask and raises ``ValueError``.
        """
        if mask is None or (self.output_shape or ())[:1] == (self.input_shape or ())[:1]:
            return mask
        raise ValueError(f"{self.name}: a mask (padded steps) cannot follow this layer, which changes the time axis "
                         f"(input shape {self.input_shape}, output shape {self.output_shape})")

    def register_forward_hook(self, hook: Callable[[Layer, np.ndarray, np.ndarray], None]) -> RemovableHandle:
        """Call ``hook(layer, input, output)`` after every ``forward`` of this layer inside a model
        (PyTorch's forward hook); returns a handle whose ``remove()`` takes it away.

        Containers (``Sequential``, ``Residual``, ``Parallel``) call the hooks of their children,
        so a hook fires wherever the layer sits in a model. ``output`` is the layer's own array:
        copy it to keep it.

        Example::

            maps = []
            handle = model[0].register_forward_hook(lambda layer, x, y: maps.append(y.copy()))
            model.predict(X)
            handle.remove()
        """
        return hooks.add_forward_hook(self, hook)

    # -- machinery shared by every layer ---------------------------------------------
    def build(
        self,
        input_shape: Sequence[int],
        rng: np.random.Generator | None = None,
        dtype: Any = np.float32,
    ) -> Shape:
        """Check ``input_shape`` (per sample, no batch axis), create parameters, return the output shape.

        A layer already built for this shape and dtype keeps its weights (reusing trained layers in a
        new model); for another shape or dtype it refuses. A failed build leaves no trace: every layer
        of the subtree it built is unbuilt again and ``rng`` is rewound.
        """
        input_shape, dtype = checks.build_arguments(self.name, input_shape, rng, dtype)
        if self.output_shape is not None and self.built:
            checks.same_build(self.name, (self.input_shape, self.dtype), (input_shape, dtype))
            return self.output_shape
        rng = rng if rng is not None else np.random.default_rng()
        undo = [(layer, dict(vars(layer))) for layer in (self, *_state.named_layers(self).values()) if not layer.built]
        rng_state = rng.bit_generator.state
        try:
            self.output_shape = tuple(self.compute_output_shape(input_shape))  # create_parameters may read it
            self.create_parameters(input_shape, rng, dtype)
        except BaseException:
            for layer, attributes in undo:
                vars(layer).clear()
                vars(layer).update(attributes)
            rng.bit_generator.state = rng_state
            raise
        self.input_shape, self.dtype = input_shape, dtype
        if not self._trainable:
            self.trainable = False  # freeze the new parameters, and the subtree's
        return self.output_shape

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
    def named_children(self) -> dict[str, Layer]:
        """Direct sub-layers: attributes holding a Layer, or lists, tuples or dicts of Layers at any depth
        (``"inner"``, ``"blocks.0"``), in attribute order."""
        return dict(_layers_in("", vars(self)))

    # -- state: one-line wrappers of minidl.layers.state ------------------------------------
    def named_layers(self) -> dict[str, Layer]:
        """Every layer below this one by dotted path (``"1.layers.0"``), pre-order (see :mod:`.state`)."""
        return _state.named_layers(self)

    def named_parameters(self) -> dict[str, Parameter]:
        """Parameters of this layer and every layer below, by dotted name (``"1.layers.0.weight"``)."""
        return _state.named_parameters(self)

    def parameters(self) -> list[Parameter]:
        return list(self.named_parameters().values())

    def named_buffers(self) -> dict[str, Buffer]:
        """Buffers, found and named like the parameters."""
        return _state.named_buffers(self)

    def buffers(self) -> list[Buffer]:
        return list(self.named_buffers().values())

    def state_dict(self) -> dict[str, np.ndarray]:
        """A flat ``name → array`` copy of every parameter and buffer."""
        return _state.state_dict(self)

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        """Copy arrays into the parameters and buffers (in place); see :func:`.state.load_state_dict`."""
        _state.load_state_dict(self, state, strict)

    def check_input(self, x: Any) -> None:
        """Raise a clear error unless ``x`` is a float array of shape ``(N, *input_shape)``."""
        # The common case in one exact test (a few hundred ns count at batch 1); the messages below only on failure.
        # (An unbuilt layer has input_shape None, which no shape tuple equals.)
        if isinstance(x, np.ndarray) and x.shape[1:] == self.input_shape and x.dtype == self.dtype and x.ndim > 1:
            return
        raise checks.input_error(self.name, self.input_shape, self.dtype, x)

    def __getattr__(self, attr: str) -> Any:
        raise checks.missing_attribute(self, attr)  # only reached when normal lookup fails


config.register_kind(Layer, LAYERS)


def _layers_in(prefix: str, value: Any) -> Iterator[tuple[str, Layer]]:
    """``(dotted name, layer)`` for every Layer in ``value``, looking inside lists, tuples and dicts."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(item, Layer):
            yield f"{prefix}{key}", item
        elif isinstance(item, (list, tuple, dict)):
            yield from _layers_in(f"{prefix}{key}.", item)
