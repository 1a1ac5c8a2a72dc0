"""Argument checks shared by every module: the value as the type asked for, or a ``TypeError``/``ValueError``
naming the argument (and its owner, e.g. ``"Conv2D: stride must be >= 1, got 0"``) and quoting the value."""

from __future__ import annotations

import math
import reprlib
from typing import Any

import numpy as np

__all__ = ["check_bool", "as_int", "as_float", "as_pair", "as_shape", "as_type_of", "as_state_value"]

_INT64_MAX = int(np.iinfo(np.int64).max)


def check_bool(value: Any, arg: str, owner: str) -> bool:
    """``value`` as a bool; a ``TypeError`` quoting it otherwise (``"no"`` is truthy, so strings are refused)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {arg} must be a bool, got {value!r}")
    return bool(value)


def as_int(value: Any, arg: str, owner: str | None = None, minimum: int = 0) -> int:
    """``value`` as an int ``>= minimum``, or a ``TypeError``/``ValueError`` quoting it (``True`` is no int here)."""
    prefix = f"{owner}: " if owner else ""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{prefix}{arg} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{prefix}{arg} must be >= {minimum}, got {value!r}")
    return int(value)


def as_float(
    value: Any, arg: str, owner: str, low: float, high: float | None = None, low_inclusive: bool = True
) -> float:
    """``value`` as a float, or a ``TypeError``/``ValueError`` quoting it unless finite and in ``[low, high)``.

    ``low_inclusive=False`` makes the interval open at ``low``; ``high=None`` leaves it unbounded.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{owner}: {arg} must be a number, got {value!r}")
    span = f"{'(' if not low_inclusive else '['}{low}, {high if high is not None else 'inf'})"
    try:
        value = float(value)
    except OverflowError:
        raise ValueError(f"{owner}: {arg} must be finite and in {span}, got an int of {int(value).bit_length()} "
                         "bits, too large for a float") from None
    too_low = value < low or (value == low and not low_inclusive)
    if not math.isfinite(value) or too_low or (high is not None and value >= high):
        raise ValueError(f"{owner}: {arg} must be finite and in {span}, got {value!r}")
    return value


def as_pair(value: Any, arg: str, owner: str, minimum: int = 1) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(2, 3)`` stays; anything else is a ``ValueError``/``TypeError`` quoting it."""
    pair = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair):
        raise TypeError(f"{owner}: {arg} must be an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in pair):
        raise ValueError(f"{owner}: {arg} must be >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def as_shape(shape: Any, owner: str) -> tuple[int, ...]:
    """A per-sample input shape as a tuple of positive ints that NumPy can count."""
    try:
        if any(isinstance(d, (bool, np.bool_)) for d in shape):  # int(True) is 1: a typo, not a size
            raise TypeError
        out = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise TypeError(f"{owner}: input shape must be a tuple of ints, got {shape!r}") from None
    if any(d < 1 for d in out) or any(int(d) != d for d in shape):
        raise ValueError(f"{owner}: input shape must hold positive ints, got {shape!r}")
    if math.prod(out) > _INT64_MAX:  # NumPy counts elements in int64: beyond, sizes wrap around
        size = math.prod(out)
        # beyond a float's range the count is quoted as a power of two (formatting it as a float overflows)
        count = f"{size:.3g}" if size.bit_length() < 1000 else f"about 2**{size.bit_length() - 1}"
        raise ValueError(f"{owner}: input shape {reprlib.repr(out)} holds {count} values per sample, "
                         f"more than an int64 can count")
    return out


def as_type_of(current: Any, value: Any) -> Any:
    """``value`` (maybe a NumPy scalar or array read back from ``.npz``) as the type of ``current``.

    Args:
        current: the value being replaced (a tuple becomes a tuple of floats).
        value: the value read back.

    Example::

        as_type_of(0.1, np.float64(0.5))  # 0.5, a Python float
    """
    if isinstance(current, tuple):
        return tuple(float(v) for v in value)
    return type(current)(value)
def as_state_value(value: Any, name: str, shape: tuple[int, ...], dtype: np.dtype,
                   owner: str = "load_state_dict") -> np.ndarray:
    """``value``, a state entry for the parameter or buffer ``name`` of ``shape`` and ``dtype``, cast to ``dtype``.

    Everything a state must satisfy before any of it is written: the shape, a numeric dtype, finite
    values, and values that stay finite in the model's ``dtype`` (``1e300`` from a float64 file
    overflows a float32 model's weight to ``inf``). Each failure is an error naming ``name``.
    """
    value = np.asarray(value)
    if value.shape != shape:
        raise ValueError(f"{owner}: parameter {name!r} has shape {shape}, the state has {value.shape}")
    if value.dtype.kind not in "biuf":
        raise TypeError(f"{owner}: parameter {name!r} must be numeric, the state has dtype {value.dtype}")
    bad = value.size - np.count_nonzero(np.isfinite(value))
    if bad:
        raise ValueError(f"{owner}: {name!r} holds {bad} NaN or infinite value(s) of {value.size}; "
                         "such weights only give NaN outputs (was the state saved after training diverged?)")
    with np.errstate(over="ignore"):
        cast = value.astype(dtype)
    overflowed = cast.size - np.count_nonzero(np.isfinite(cast))
    if overflowed:
        largest = float(np.abs(value).max())
        raise ValueError(f"{owner}: {name!r} holds {overflowed} value(s) too large for the model's {dtype} "
                         f"(up to {largest:.3g}; {dtype} holds at most {float(np.finfo(dtype).max):.3g}), which "
                         f"would become inf; load the state into a float64 model (dtype=\"float64\") instead")
    return cast
