"""minidl: a small, fast, honest deep-learning framework in pure NumPy."""

from .model import Sequential

__version__ = "0.1.0"

__all__ = ["Sequential", "__version__"]
