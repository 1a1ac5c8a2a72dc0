"""What a layer tree holds: ``Parameter`` and ``Buffer``, found by one walk, and the state dict.

Parameters, buffers and sub-layers are plain attributes of a layer (sub-layers also in lists,
tuples and dicts), so there is nothing to register: :func:`named_layers` walks
``layer.named_children()`` and the functions below read each layer's attributes, naming what
they find with dotted PyTorch-style paths (``"1.layers.0.weight"``). ``Layer`` has a one-line
method for each (``layer.named_parameters()``, ``layer.state_dict()``, ...).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ..arguments import as_state_value

__all__ = ["Parameter", "Buffer", "named_layers", "named_parameters", "named_buffers", "state_dict",
           "load_state_dict"]


class _Node(Protocol):
    """What the walk needs of a layer: its direct sub-layers by name."""

    name: str

    def named_children(self) -> dict[str, Any]: ...


class _Holder:
    """An array ``data`` that a layer owns; ``shape``, ``dtype`` and ``size`` read through to it."""

    __slots__ = ("data",)

    def __init__(self, data: np.ndarray) -> None:
        self.data = data

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size


class Parameter(_Holder):
    """A trainable array ``data`` and the gradient ``grad`` of the loss with respect to it.

    Args:
        data: the initial values (kept, not copied).
        trainable: whether optimizers update it.

    Example::

        weight = Parameter(np.zeros((3, 2)))   # weight.grad: zeros of the same shape
    """

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

    Args:
        data: the initial values (kept, not copied).

    Example::

        running_mean = Buffer(np.zeros(8))
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Buffer(shape={self.shape}, dtype={self.dtype})"


def named_layers(top: _Node) -> dict[str, Any]:
    """Every layer below ``top`` by dotted path (``"1.layers.0"``), pre-order.

    Raises ``ValueError`` if one layer object is found in two places.

    Args:
        top: the layer (or container) to walk.

    Example::

        >>> from minidl.layers import Dense, Sequential
        >>> net = Sequential([Dense(2), Sequential([Dense(1)])])
        >>> net.build((3,))
        (1,)
        >>> list(named_layers(net))
        ['0', '1', '1.0']
    """
    found: dict[str, Any] = {}
    seen = {id(top): "the top"}

    def visit(layer: _Node, prefix: str) -> None:
        for name, child in layer.named_children().items():
            path = prefix + name
            if id(child) in seen:
                raise ValueError(
                    f"{top.name}: the same layer object appears twice ({type(child).__name__} at "
                    f"{seen[id(child)]!r} and {path!r}); a layer may be in only one place of a model: "
                    "create a new one for each place"
                )
            seen[id(child)] = path
            found[path] = child
            visit(child, path + ".")

    visit(top, "")
    return found


def _named(top: _Node, kind: type) -> dict[str, Any]:
    layers = {"": top} | {f"{path}.": layer for path, layer in named_layers(top).items()}
    return {prefix + k: v for prefix, layer in layers.items() for k, v in vars(layer).items() if isinstance(v, kind)}


def named_parameters(top: _Node) -> dict[str, Parameter]:
    """Parameters of ``top`` and every layer below, by dotted name (``"1.layers.0.weight"``).

    Args:
        top: the layer (or container) to walk.

    Example::

        >>> from minidl.layers import Dense, Sequential
        >>> net = Sequential([Dense(2), Sequential([Dense(1)])])
        >>> net.build((3,))
        (1,)
        >>> list(named_parameters(net))
        ['0.weight', '0.bias', '1.0.weight', '1.0.bias']
    """
    return _named(top, Parameter)


def named_buffers(top: _Node) -> dict[str, Buffer]:
    """Buffers, found and named like the parameters.

    Args:
        top: the layer (or container) to walk.

    Example::

        >>> from minidl.layers import BatchNorm2D
        >>> bn = BatchNorm2D()
        >>> bn.build((3, 4, 4))
        (3, 4, 4)
        >>> list(named_buffers(bn))
        ['running_mean', 'running_var']
    """
    return _named(top, Buffer)


def state_dict(top: _Node) -> dict[str, np.ndarray]:
    """A flat ``name → array`` copy of every parameter and buffer.

    Args:
        top: the layer (or container) to walk.

    Example::

        >>> from minidl.layers import Dense, Sequential
        >>> net = Sequential([Dense(2), Sequential([Dense(1)])])
        >>> net.build((3,))
        (1,)
        >>> {k: v.shape for k, v in state_dict(net).items()}
        {'0.weight': (3, 2), '0.bias': (2,), '1.0.weight': (2, 1), '1.0.bias': (1,)}
    """
    return {k: p.data.copy() for k, p in (named_parameters(top) | named_buffers(top)).items()}


def load_state_dict(top: _Node, state: dict[str, np.ndarray], strict: bool = True) -> None:
    """Copy arrays into the parameters and buffers of ``top`` (in place, so optimizers keep working).

    Names, shapes, dtypes and values are checked before anything is written: with ``strict=True``
    a state with missing or unexpected keys raises ``ValueError`` listing both (as PyTorch does),
    and a NaN or infinite value is refused rather than stored.

    Args:
        top: the layer (or container) whose parameters and buffers receive the arrays.
        state: ``name -> array``, as :func:`state_dict` returns it.
        strict: refuse missing or unexpected names (``False``: load the names both have).

    Example::

        >>> from minidl.layers import Dense, Sequential
        >>> net = Sequential([Dense(2), Sequential([Dense(1)])])
        >>> net.build((3,))
        (1,)
        >>> load_state_dict(net, state_dict(net))
    """
    params = named_parameters(top) | named_buffers(top)
    if strict:
        missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        if missing or unexpected:
            raise ValueError(f"load_state_dict: the state does not fit {type(top).__name__}: missing key(s) "
                             f"{missing}, unexpected key(s) {unexpected} (strict=False loads the keys that match)")
    values = {}
    for name, p in params.items():  # check everything before writing anything: no half-loaded model
        if name not in state:
            continue
        values[name] = as_state_value(state[name], name, p.shape, p.dtype)
    for name, value in values.items():
        params[name].data[...] = value
