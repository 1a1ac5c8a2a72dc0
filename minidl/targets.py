"""Target preparation for the losses: ``y`` checked and converted once per data set, before training.

Each built-in loss's ``prepare_targets`` is one call here, so the losses hold their
mathematics and this module holds what ``y`` may look like and the messages when it does not
(one-hot labels where class labels were expected, labels out of range, non-0/1 targets, ...).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .inputs import as_array, check_finite, describe

__all__ = ["float_targets", "class_labels", "binary_targets", "check_outputs"]

Shape = tuple[int, ...]


def float_targets(y: Any, n: int, output_shape: Shape, dtype: np.dtype, owner: str, name: str = "y",
                  x_name: str = "X") -> np.ndarray:
    """``y`` as finite floats of ``dtype`` and shape ``(n, *output_shape)``; ``(n,)`` too for one output.

    Args:
        y: the targets as given.
        n: the number of samples.
        output_shape: the model's per-sample output shape.
        dtype: the model's float dtype.
        owner: the loss's name, for messages.
        name: the targets' argument name, for messages.
        x_name: the inputs' argument name, for messages.

    Example::

        float_targets([0.5, 1.0], 2, (1,), np.dtype("float64"), "MSE")  # shape (2, 1)
    """
    y = as_array(y, name)
    shape = (n, *output_shape)
    if y.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers (the targets of {owner}), got {describe(y)}")
    if y.shape == (n,) and output_shape == (1,):
        y = y[:, None]
    if y.shape != shape:
        raise ValueError(
            f"{name} must have shape {shape} to match {x_name} and the model's output (N, "
            f"{', '.join(map(str, output_shape))}), got {y.shape}"
        )
    with np.errstate(over="ignore"):  # beyond the dtype's range becomes inf, reported below
        y = np.ascontiguousarray(y, dtype=dtype)
    check_finite(y, name, dtype)
    return y


def class_labels(y: Any, n: int, output_shape: Shape, ignore_index: int, name: str = "y",
                 x_name: str = "X") -> np.ndarray:
    """``y`` as integer class labels ``0..K-1`` (or ``ignore_index``) of shape ``(n,)`` or ``(n, T)``.

    Whole-number floats and bools are converted; ``K`` is ``output_shape[-1]``.

    Args:
        y: the labels as given.
        n: the number of samples.
        output_shape: the model's per-sample output shape, ``(K,)`` or ``(T, K)``.
        ignore_index: a label that is not scored.
        name: the targets' argument name, for messages.
        x_name: the inputs' argument name, for messages.

    Example::

        class_labels([0, 2, 1], 3, (3,), -100)  # array([0, 2, 1])
    """
    classes, shape = output_shape[-1], (n, *output_shape[:-1])
    y = as_array(y, name)
    if y.shape != shape:
        hint = "; one-hot labels? pass y.argmax(axis=1)" if y.shape == (*shape, classes) else ""
        raise ValueError(f"{name} must have shape {shape} to match {x_name}, got {y.shape}{hint}")
    if y.dtype.kind == "f":
        fractional = ~np.isfinite(y) | (y != np.round(y))
        if fractional.any():
            raise TypeError(
                f"{name} must hold integer class labels, got dtype {y.dtype} with non-integer values "
                f"such as {y[fractional][0]}"
            )
    elif y.dtype.kind not in "biu":
        raise TypeError(
            f"{name} must hold integer class labels 0..K-1, got {describe(y)}; encode other labels first "
            "(e.g. sklearn.preprocessing.LabelEncoder)"
        )
    labels = y[y != ignore_index]  # checked before the cast, which wraps values beyond int64
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        low, high = (f"{v:g}" for v in (labels.min(), labels.max()))
        raise ValueError(f"{name} holds labels in [{low}, {high}], but the model has {classes} classes "
                         f"(0..{classes - 1})")
    return y.astype(np.intp, copy=False)


def binary_targets(y: Any, n: int, output_shape: Shape, dtype: np.dtype, owner: str, name: str = "y",
                   x_name: str = "X") -> np.ndarray:
    """``y`` as 0/1 floats of the output's shape (bools and integers accepted), for ``SigmoidBCE``.

    Args:
        y: the targets as given.
        n: the number of samples.
        output_shape: the model's per-sample output shape.
        dtype: the model's float dtype.
        owner: the loss's name, for messages.
        name: the targets' argument name, for messages.
        x_name: the inputs' argument name, for messages.

    Example::

        binary_targets([True, False], 2, (1,), np.dtype("float32"), "SigmoidBCE")  # [[1.], [0.]]
    """
    arr = as_array(y, name)
    if arr.shape == (n,) and output_shape != (1,):
        raise ValueError(
            f"{name} has shape {arr.shape}, one target per sample, but {owner} gets "
            f"{output_shape} outputs per sample: pass 0/1 targets of shape (N, "
            f"{', '.join(map(str, output_shape))}) (multi-label), end the model with Dense(1) "
            "for binary targets, or with SoftmaxCE for class labels"
        )
    targets = float_targets(arr, n, output_shape, dtype, owner, name, x_name)
    bad = (targets != 0) & (targets != 1)
    if bad.any():
        raise ValueError(
            f"{name} must hold 0/1 targets (or bools) for {owner}, got values such as {targets[bad][0]:g}"
        )
    return targets


def check_outputs(owner: str, input_shape: Shape | None, dtype: np.dtype | None, outputs: Any,
                  mask: np.ndarray | None) -> None:
    """A loss's check of its inputs: ``outputs`` of the built shape and dtype; ``mask`` (if any) ``(N, T)``.

    Args:
        owner: the loss's name, for messages.
        input_shape: the per-sample shape the loss was built for (``None``: not built).
        dtype: the dtype the loss was built for.
        outputs: the model's outputs.
        mask: the mask of sequence outputs, or ``None``.

    Example::

        check_outputs("MSE", (1,), np.dtype("float64"), np.zeros((4, 1)), None)
    """
    if not (isinstance(outputs, np.ndarray) and outputs.shape[1:] == input_shape
            and outputs.dtype == dtype and outputs.ndim > 1):
        if input_shape is None:
            raise ValueError(f"{owner} is not built: put it in a model (Sequential(..., loss=...)) "
                             "or call build(output_shape)")
        raise ValueError(f"{owner}: expected outputs of shape (N, {', '.join(map(str, input_shape))}) "
                         f"and dtype {dtype}, got {np.shape(outputs)} {getattr(outputs, 'dtype', '')}")
    if mask is not None and (outputs.ndim < 3 or np.shape(mask) != outputs.shape[:2]):
        raise ValueError(f"{owner}: mask must have shape (N, T) = {outputs.shape[:2]} for sequence outputs "
                         f"(N, T, ...), got {np.shape(mask)} for outputs {outputs.shape}")
