"""Input preparation for ``fit / evaluate / predict``: data is checked and converted once, before any work.

- :func:`prepare_inputs` turns ``X`` into a C-contiguous array of the model's dtype (or its
  ``input_dtype``, e.g. integer token ids) and shape ``(N, *model.input_shape)`` (building an unbuilt model
  from it), with errors naming the argument.
  Targets are the loss's business: :meth:`minidl.layers.Loss.prepare_targets`.
- :func:`raise_if_not_finite` makes a NaN or infinite result an error, never a silent answer.
"""

from __future__ import annotations

import reprlib
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .model import Sequential

__all__ = ["prepare_inputs", "check_finite", "raise_if_not_finite", "as_array", "describe", "channels_first_hint"]


def prepare_inputs(model: Sequential, X: Any, name: str) -> np.ndarray:
    """``X`` as an array ``(N, *model.input_shape)`` of the model's ``input_dtype`` (default: its float dtype);
    builds an unbuilt model from it.

    ``(N, H, W)`` images are accepted for a single-channel model (the blog's data). Raises
    ``TypeError``/``ValueError`` naming ``name`` for non-numeric, empty, misshapen or non-finite data.
    """
    X = as_array(X, name)
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a numeric array, got {describe(X)}")
    if X.ndim >= 1 and len(X) == 0:
        raise ValueError(f"{name} is empty (shape {X.shape})")
    if not model.built:
        if X.ndim < 2:
            raise ValueError(f"{name} must have a batch axis and at least one feature axis, got shape {X.shape}")
        try:
            model.build(X.shape[1:])
        except ValueError as err:
            if X.ndim != 3:
                raise
            try:  # (N, H, W) images for a model whose first layer wants (C, H, W): one channel
                model.build((1, *X.shape[1:]))
            except ValueError:
                raise err from None
    expected = model.input_shape
    assert expected is not None and model.dtype is not None  # built above
    if X.ndim == len(expected) and len(expected) == 3 and expected[0] == 1:
        X = X[:, None]  # (N, H, W) images for a single-channel model, as the blog's data is
    if X.shape[1:] != expected or X.ndim != len(expected) + 1:
        raise ValueError(f"{name} has shape {X.shape}, but the model expects (N, {', '.join(map(str, expected))})"
                         + _reshape_hint(X.shape, expected, name))
    target = model.input_dtype if model.input_dtype is not None else model.dtype
    if target.kind in "iu":  # token ids: whole numbers within the type's range, no rounding
        return _as_integers(X, name, target)
    with np.errstate(over="ignore"):  # values beyond the dtype's range become inf, reported just below
        X = np.ascontiguousarray(X, dtype=target)
    check_finite(X, name, target)
    return X


def channels_first_hint(shape: tuple[int, ...]) -> str:
    """For a per-sample shape that looks channels-last ``(H, W, C)``: the advice to pass ``(C, H, W)``, else ``""``.

    Args:
        shape: an ``input_shape`` that a model could not be built for.

    Example::

        channels_first_hint((8, 8, 1))  # "; minidl is channels-first (C, H, W): did you mean ..."
    """
    if len(shape) != 3 or shape[2] not in (1, 3, 4) or min(shape[0], shape[1]) <= shape[2]:
        return ""
    return (f"; minidl is channels-first (C, H, W): did you mean input_shape={(shape[2], shape[0], shape[1])}? "
            "(and X.transpose(0, 3, 1, 2) for channels-last (N, H, W, C) data)")


def _reshape_hint(shape: tuple[int, ...], expected: tuple[int, ...], name: str) -> str:
    """How to turn channels-last ``(N, H, W, C)`` or flat ``(N, C*H*W)`` images into ``(N, C, H, W)``."""
    if len(expected) != 3:
        return ""
    arg = name.split(": ")[-1].split("[")[0]  # "X batch 3: X" and "X[:1]" are X
    c, h, w = expected
    if shape[1:] == (h, w, c):
        return f"; minidl is channels-first: pass {arg}.transpose(0, 3, 1, 2)"
    if len(shape) == 2 and shape[1] == c * h * w:
        return f"; these look like flattened images: pass {arg}.reshape(-1, {c}, {h}, {w})"
    return ""


def _as_integers(X: np.ndarray, name: str, dtype: np.dtype) -> np.ndarray:
    """``X`` as C-contiguous integers of ``dtype`` (a model's ``input_dtype``); whole-number floats convert."""
    if X.dtype.kind == "f":
        check_finite(X, name, X.dtype)
        fractional = X != np.round(X)
        if fractional.any():
            raise TypeError(f"{name} must hold whole numbers (the model's input_dtype is {dtype}), got values such as "
                            f"{X[fractional][0]}")
    info = np.iinfo(dtype)
    if X.size and (X.min() < info.min or X.max() > info.max):
        raise ValueError(f"{name} holds values in [{X.min()}, {X.max()}], beyond the model's input_dtype {dtype}")
    return np.ascontiguousarray(X, dtype=dtype)


def check_finite(a: np.ndarray, name: str, dtype: np.dtype) -> None:
    """A ``ValueError`` naming ``name``, the count and the first index of NaN or infinite values in ``a``."""
    bad = np.size(a) - np.count_nonzero(np.isfinite(a))
    if bad:
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        raise ValueError(
            f"{name} contains {bad} NaN or infinite value(s) (first at index {where}) after conversion to "
            f"{dtype}; clean or rescale the data"
        )


def raise_if_not_finite(values: np.ndarray, what: str) -> None:
    """A NaN or inf result is an error, never a silent answer."""
    if not np.isfinite(values).all():
        raise FloatingPointError(
            f"{what} came out NaN or infinite: the inputs are too large for the model's dtype "
            "or the weights have diverged"
        )


def as_array(value: Any, arg: str) -> np.ndarray:
    """``np.asarray`` that names the argument when the data is ragged or not array-like, or masked."""
    if isinstance(value, np.ma.MaskedArray) and np.ma.is_masked(value):
        # np.asarray would drop the mask and hand over the hidden values as if they were data.
        raise ValueError(
            f"{arg} is a masked array with {np.ma.count_masked(value)} masked value(s); minidl does not skip them: "
            f"fill them ({arg}.filled(value)) or drop those samples first"
        )
    try:
        return np.asarray(value)
    except (ValueError, TypeError):
        raise ValueError(
            f"{arg} could not be made into an array: are its nested sequences of different lengths (ragged)?"
        ) from None


def describe(a: np.ndarray) -> str:
    """``"an array of dtype <U3 and shape (4,)"``, or the type and (shortened) value of what a 0-d array wraps.

    A dict of arrays or a file name passed as ``X`` is quoted as such, in a line, rather than as a 0-d array.
    """
    if a.ndim == 0 and a.dtype.kind in "OUS":
        return f"{type(a.item()).__name__} {reprlib.repr(a.item())}"
    return f"an array of dtype {a.dtype} and shape {a.shape}"
