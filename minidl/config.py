"""Architectures as JSON-able specs: the class registries and ``to_config`` / ``from_config``.

A spec is ``{"class": class name, "config": constructor keyword arguments}``; arguments that are
themselves layers (a container's children) are nested specs. Saved files (:mod:`minidl.saving`)
and ``repr`` use them. Classes are found by name in a registry per kind (``LAYERS`` for layers,
``LOSSES`` for losses), which subclasses join when they are defined; so rebuilding a spec only
calls registered constructors and never runs code from a file.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Configurable", "register_kind", "register_class", "loads_as", "to_config", "from_config"]

#: The base class of each kind of configurable object (``Layer``, ``Loss``) and its registry.
_KINDS: dict[type, dict[str, type]] = {}


def register_kind(base: type, registry: dict[str, type]) -> None:
    """Make instances of ``base`` (and its subclasses) configurable, their classes found in ``registry``.

    Args:
        base: the base class (``Layer``, ``Loss``).
        registry: the ``class name -> class`` dict its subclasses join.

    Example::

        register_kind(Layer, LAYERS)      # what minidl.layers.base does once
    """
    _KINDS[base] = registry


def register_class(registry: dict[str, type], cls: type) -> None:
    """Enter ``cls`` in ``registry`` under its class name; a user's class may not shadow a built-in one
    (saved files name built-ins by class name).

    Args:
        registry: the registry of the class's kind.
        cls: the class to enter.

    Example::

        register_class(LAYERS, MyLayer)   # what defining ``class MyLayer(Layer)`` does
    """
    taken = registry.get(cls.__name__)
    if taken is None or not taken.__module__.startswith("minidl.") or cls.__module__.startswith("minidl."):
        registry[cls.__name__] = cls


def loads_as(obj: Any) -> type | None:
    """The class :func:`from_config` makes of ``obj``'s spec: its own, or for one of minidl's unregistered
    subclasses (the model class ``minidl.Sequential``) the registered class of its name; ``None`` if the name
    leads elsewhere (a user's class named like a built-in one).

    Args:
        obj: a configurable object (a layer or a loss).

    Example::

        >>> from minidl.layers import Dense
        >>> loads_as(Dense(3)) is Dense
        True
    """
    registered = next((r.get(type(obj).__name__) for base, r in _KINDS.items() if isinstance(obj, base)), None)
    if registered is type(obj) or (registered is not None and isinstance(obj, registered)
                                   and type(obj).__module__.startswith("minidl.")):
        return registered
    return None


def to_config(obj: Any) -> dict[str, Any]:
    """``{"class": name, "config": kwargs}``: enough to make an equal, unbuilt copy of ``obj``.

    ``kwargs`` are ``obj.get_config()`` (layers among them become nested specs), its ``name``
    and, for a frozen layer, ``trainable=False``.

    Args:
        obj: a configurable object (a layer or a loss).

    Example::

        >>> from minidl.layers import Dense
        >>> to_config(Dense(3, name="out"))
        {'class': 'Dense', 'config': {'units': 3, 'use_bias': True, 'name': 'out'}}
    """
    config = {**_encode(obj.get_config()), "name": obj.name}
    if getattr(obj, "_trainable", True) is False:
        config["trainable"] = False
    return {"class": type(obj).__name__, "config": config}


def from_config(spec: Any, kind: type | None = None) -> Any:
    """Inverse of :func:`to_config`: a new object of the spec's class, looked up in ``kind``'s registry
    (every registry if ``None``); the class must be defined (imported) already.

    Args:
        spec: ``{"class": name, "config": kwargs}``, as :func:`to_config` returns it.
        kind: the base class whose registry to look in (``Layer``, ``Loss``); ``None`` for any.

    Example::

        >>> from minidl.layers import Dense, Layer
        >>> from_config({"class": "Dense", "config": {"units": 3}}, Layer)
        Dense(units=3, use_bias=True)
    """
    owner = f"{kind.__name__}.from_config" if kind is not None else "from_config"
    if not isinstance(spec, dict) or not isinstance(spec.get("class"), str) or not isinstance(spec.get("config"), dict):
        raise ValueError(f"{owner}: expected {{'class': str, 'config': dict}}, got {spec!r}")
    registries = [_KINDS[kind]] if kind is not None else list(_KINDS.values())
    cls = next((r[spec["class"]] for r in registries if spec["class"] in r), None)
    if cls is None:
        what = kind.__name__.lower() if kind is not None else "layer or loss"
        raise ValueError(f"{owner}: unknown {what} class {spec['class']!r}; import the module that defines it first")
    return cls(**_decode(spec["config"]))


def _encode(value: Any) -> Any:
    if isinstance(value, tuple(_KINDS)):
        return to_config(value)
    if isinstance(value, (list, tuple)):
        return type(value)(map(_encode, value))
    return {k: _encode(v) for k, v in value.items()} if isinstance(value, dict) else value


def _decode(value: Any) -> Any:
    """Inverse of :func:`_encode`: a ``{"class", "config"}`` dict is a nested spec."""
    if isinstance(value, dict) and value.keys() == {"class", "config"}:
        return from_config(value)
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return {k: _decode(v) for k, v in value.items()} if isinstance(value, dict) else value


def _kind_of(cls: type) -> type:
    return next(base for base in _KINDS if issubclass(cls, base))


class Configurable:
    """What layers and losses share: a ``name``, a registry entry per class, a config for saving and ``repr``.

    A kind's base class (``Layer``, ``Loss``) subclasses it with ``register=False`` and is entered
    by :func:`register_kind`; each of its subclasses joins the kind's registry when it is defined,
    unless it declares ``register=False`` (an abstract base no file can name).

    Example::

        class Scale(Layer):  # registered in LAYERS as "Scale"
            def __init__(self, factor=2.0, *, name=None):
                super().__init__(name=name)
                self.factor = factor
            def get_config(self):
                return {"factor": self.factor}
    """

    name: str

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if register:
            register_class(_KINDS[_kind_of(cls)], cls)

    def _set_name(self, name: str | None) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: name must be a str, got {name!r}")
        self.name = name or type(self).__name__

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as JSON-able values, so that ``type(self)(**get_config())`` is an equal,
        unbuilt object (saving and ``repr`` use them)."""
        return {}

    def to_config(self) -> dict[str, Any]:
        """``{"class": name, "config": kwargs}``: enough to make an equal, unbuilt object."""
        return to_config(self)

    @classmethod
    def from_config(cls, spec: dict[str, Any]) -> Any:
        """Inverse of :meth:`to_config`, found in the registry of this class's kind; the class must be
        defined (imported) already."""
        return from_config(spec, _kind_of(cls))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
