"""minidl: a small, fast, honest deep-learning framework in pure NumPy."""

from __future__ import annotations

import sys


def _run_as_command() -> bool:
    """True while ``python -m minidl`` imports this package (``sys.argv[0]`` is ``"-m"`` until runpy found it)."""
    argv = getattr(sys, "orig_argv", [])
    return sys.argv[:1] == ["-m"] and ("-mminidl" in argv or any(
        a == "-m" and b == "minidl" for a, b in zip(argv, argv[1:], strict=False)))


if _run_as_command():  # first thing: Ctrl-C is held until the command's imports are done (minidl._sigint)
    from ._sigint import HELD

    HELD.hold()

import importlib  # noqa: E402
import importlib.util  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

__version__ = "0.2.0"

__all__ = ["Sequential", "load", "set_num_threads", "get_num_threads", "show_config", "__version__"]

#: Public names and the module defining each, imported on first use: ``import minidl`` itself
#: imports nothing heavy, so the command line (``python -m minidl``) starts inside its own
#: Ctrl-C handling and ``minidl --help`` never waits for NumPy's users to load.
_LAZY = {"Sequential": "model", "load": "model", "set_num_threads": "threads", "get_num_threads": "threads",
         "show_config": "backend"}

if TYPE_CHECKING:
    from .backend import show_config
    from .model import Sequential, load
    from .threads import get_num_threads, set_num_threads


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f".{name}", __name__)  # minidl.saving without importing it first
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
