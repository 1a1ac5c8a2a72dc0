"""Input preparation for ``fit / evaluate / predict``: data is checked and converted once, before any work.

- :func:`prepare_inputs` turns ``X`` into a C-contiguous float array of the model's dtype and
  shape ``(N, *model.input_shape)`` (building an unbuilt model from it), with errors naming the argument.
- :func:`prepare_labels` turns ``y`` into integer class labels for a ``SoftmaxCE`` head.
- :func:`raise_if_not_finite` makes a NaN or infinite result an error, never a silent answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .model import Sequential

__all__ = ["prepare_inputs", "prepare_labels", "raise_if_not_finite", "as_array", "describe"]


def prepare_inputs(model: Sequential, X: Any, name: str) -> np.ndarray:
    """``X`` as a float array ``(N, *model.input_shape)`` of the model's dtype; builds an unbuilt model from it.

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
    if X.ndim == len(expected) and len(expected) == 3 and expected[0] == 1:
        X = X[:, None]  # (N, H, W) images for a single-channel model, as the blog's data is
    if X.shape[1:] != expected or X.ndim != len(expected) + 1:
        raise ValueError(f"{name} has shape {X.shape}, but the model expects (N, {', '.join(map(str, expected))})")
    with np.errstate(over="ignore"):  # values beyond the dtype's range become inf, reported just below
        X = np.ascontiguousarray(X, dtype=model.dtype)
    bad = np.size(X) - np.count_nonzero(np.isfinite(X))
    if bad:
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(X))[0])
        raise ValueError(
            f"{name} contains {bad} NaN or infinite value(s) (first at index {where}) after conversion to "
            f"{model.dtype}; clean or rescale the data"
        )
    return X


def prepare_labels(y: Any, name: str, x_name: str, n: int, classes: int) -> np.ndarray:
    """``y`` as integer class labels ``0..classes-1`` of shape ``(n,)``, matching ``x_name``'s ``n`` samples."""
    y = as_array(y, name)
    if y.ndim != 1 or len(y) != n:
        hint = "; one-hot labels? pass y.argmax(axis=1)" if y.ndim == 2 and y.shape == (n, classes) else ""
        raise ValueError(f"{name} must have shape ({n},) to match {x_name}, got {y.shape}{hint}")
    if y.dtype.kind == "f":
        fractional = ~np.isfinite(y) | (y != np.round(y))
        if fractional.any():
            raise TypeError(
                f"{name} must hold integer class labels, got dtype {y.dtype} with non-integer values "
                f"such as {y[fractional][0]}"
            )
        if y.size and (y.min() < 0 or y.max() >= classes):  # before the cast, which wraps values beyond int64
            raise ValueError(f"{name} holds labels in [{y.min():g}, {y.max():g}], but the model has {classes} "
                             f"classes (0..{classes - 1})")
        y = y.astype(np.intp)
    if y.dtype.kind not in "biu":
        raise TypeError(
            f"{name} must hold integer class labels 0..K-1, got {describe(y)}; encode other labels first "
            "(e.g. sklearn.preprocessing.LabelEncoder)"
        )
    if y.min() < 0 or y.max() >= classes:
        raise ValueError(
            f"{name} holds labels in [{y.min()}, {y.max()}], but the model has {classes} classes (0..{classes - 1})"
        )
    return y.astype(np.intp, copy=False)


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
    """``"an array of dtype <U3 and shape (4,)"``, or the type and value of a 0-d object array, for messages."""
    if a.dtype == object and a.ndim == 0:
        return f"{type(a.item()).__name__} {a.item()!r}"
    return f"an array of dtype {a.dtype} and shape {a.shape}"
