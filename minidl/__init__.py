"""minidl: a small, fast, honest deep-learning framework in pure NumPy."""

from .model import Sequential
from .saving import load

__version__ = "0.1.0"

__all__ = ["Sequential", "load", "__version__"]
