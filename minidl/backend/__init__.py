"""The one place that knows how arrays are computed: ``get_backend()``, ``set_backend(name)``.

minidl's image layers are written as the textbook has them and call the current backend for the
heavy work (:class:`~minidl.backend.base.Backend` lists the operations). Two backends:

- ``"numpy"`` (:mod:`minidl.backend.numpy`): NumPy and its BLAS, minidl's own thread pool for the
  convolution products. Always there; the reference every other backend is tested against.
- ``"fast"`` (:mod:`minidl.backend.fast`): the same operations compiled with Numba, every core
  for batch norm, pooling, the im2col copies and ReLU (``pip install "minidl[fast]"``).

Which one: ``set_backend(name)`` if called; else the ``MINIDL_BACKEND`` environment variable;
else ``"fast"`` when Numba is installed, ``"numpy"`` otherwise. Layers written against plain
NumPy (custom layers) never see the backend and work under any.

Example::

    >>> import minidl.backend as backend
    >>> backend.set_backend("numpy")
    >>> backend.get_backend().name
    'numpy'
    >>> backend.set_backend(None)   # back to the default
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import sys
import threading
from typing import Any, TextIO

from .base import Backend

__all__ = ["Backend", "get_backend", "set_backend", "available_backends", "config", "show_config", "ENV_VAR",
           "BACKENDS"]

#: The environment variable that picks the backend when ``set_backend`` was not called.
ENV_VAR = "MINIDL_BACKEND"
#: Each backend's name and the ``module:class`` that implements it.
BACKENDS = {"numpy": "minidl.backend.numpy:NumpyBackend", "fast": "minidl.backend.fast:FastBackend"}

_current: Backend | None = None
_lock = threading.Lock()


def available_backends() -> list[str]:
    """The backends that can run here: ``"numpy"``, and ``"fast"`` when Numba is installed.

    Example::

        >>> "numpy" in available_backends()
        True
    """
    return ["numpy"] + (["fast"] if "fast" in BACKENDS and importlib.util.find_spec("numba") is not None else [])


def _default_name() -> str:
    name = os.environ.get(ENV_VAR, "").strip()
    if name:
        return name
    return "fast" if "fast" in available_backends() else "numpy"


def _make(name: str, source: str) -> Backend:
    if name not in BACKENDS:
        raise ValueError(f"{source}: unknown backend {name!r}; expected one of {sorted(BACKENDS)}")
    if name not in available_backends():
        raise ValueError(f"{source}: backend {name!r} needs Numba: pip install \"minidl[fast]\"")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)()


def get_backend() -> Backend:
    """The backend the layers compute with now (made on first use; see the module for which one).

    Example::

        >>> import numpy as np
        >>> y, ctx = get_backend().relu(np.array([-1.0, 3.0]))
        >>> y
        array([0., 3.])
    """
    backend = _current
    if backend is None:
        with _lock:
            if _current is None:
                _set(_make(_default_name(), f"the environment variable {ENV_VAR}" if os.environ.get(ENV_VAR)
                           else "the default backend"))
            backend = _current
    assert backend is not None  # _set made one
    return backend


def set_backend(name: str | None) -> None:
    """Compute with backend ``name`` from now on (``None``: the default again, see the module).

    Args:
        name: ``"numpy"``, ``"fast"`` or ``None``.

    Example::

        >>> set_backend("numpy")
        >>> get_backend().name
        'numpy'
        >>> set_backend(None)

    A layer's forward and its backward must run under the same backend.
    """
    if name is not None and not isinstance(name, str):
        raise TypeError(f"set_backend: name must be a str or None, got {type(name).__name__}")
    with _lock:
        _set(None if name is None else _make(name, "set_backend"))


def _set(backend: Backend | None) -> None:
    global _current
    _current = backend


def config() -> dict[str, Any]:
    """What minidl computes with here: backend, threads, the BLAS libraries (with OpenBLAS's kernel
    architecture), the CPU, and the environment variables that change any of them.

    Example::

        >>> config()["backend"] in available_backends()
        True
    """
    from threadpoolctl import threadpool_info

    from .. import __version__

    blas = [f"{i.get('internal_api')} {i.get('version')} '{i.get('architecture', '?')}' ({i.get('filepath')})"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "MKL_", "OMP_", "NUMBA_", "MINIDL_"))}
    return {"minidl": __version__, "python": platform.python_version(), **get_backend().describe(),
            "available backends": available_backends(), "blas": blas, "cpu": _cpu_model(),
            "cpus": os.cpu_count(), "environment": env}


def show_config(file: TextIO | None = None) -> None:
    """Print :func:`config`, one ``key: value`` line each (``minidl --version`` prints the same).

    Args:
        file: where to print (default ``sys.stdout``).

    Example::

        >>> show_config()  # doctest: +SKIP
        minidl: 0.1.0
        backend: fast
        ...
    """
    for key, value in config().items():
        if isinstance(value, list):
            value = "; ".join(map(str, value)) or "none"
        elif isinstance(value, dict):
            value = " ".join(f"{k}={v}" for k, v in sorted(value.items())) or "none set"
        print(f"{key}: {value}", file=file or sys.stdout)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
