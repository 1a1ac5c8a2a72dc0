"""The loss contract: :func:`check_loss`."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..layers.losses import Loss
from .gradcheck import DEFAULT_EPS, DEFAULT_TOL, central_differences, relative_error, tie_free_input

__all__ = ["check_loss"]


def check_loss(
    loss: Loss,
    input_shape: Sequence[int],
    *,
    batch: int = 3,
    outputs: np.ndarray | None = None,
    targets: Any = None,
    mask: np.ndarray | None = None,
    tol: float = DEFAULT_TOL,
    eps: float = DEFAULT_EPS,
    seed: int = 0,
) -> float:
    """Check a loss (:class:`minidl.layers.Loss`) against its contract; return the gradient's error.

    On a deep copy of ``loss`` built for model outputs of per-sample ``input_shape`` in float64,
    with ``outputs`` (default :func:`tie_free_input` of ``batch`` samples), ``targets`` (default:
    the first of normal floats, 0/1 values, class labels that ``loss.prepare_targets`` accepts)
    and ``mask`` (optional, bool ``(N, T)`` for sequence outputs):

    - ``loss_and_grad(outputs, targets, mask)`` gives a finite Python float and a gradient of
      ``outputs``' shape and dtype, leaves its arguments unchanged and gives the same when called
      again;
    - the gradient matches central finite differences of the value within ``tol`` (relative,
      as :func:`check_layer`);
    - ``metrics`` gives one value per sample ``(N,)`` or per step ``(N, T)``; ``predict`` gives
      one row per sample.

    Args:
        loss: the loss to check.
        input_shape: the per-sample shape of the model outputs it takes.

    Raises ``AssertionError`` listing every problem.

    Example::

        check_loss(Huber(delta=1.0), (3,))
    """
    if not isinstance(loss, Loss):
        raise TypeError(f"check_loss: expected a minidl.layers.Loss, got {type(loss).__name__}")
    input_shape = tuple(int(d) for d in input_shape)
    loss = copy.deepcopy(loss)
    loss.build(input_shape, dtype=np.float64)
    rng = np.random.default_rng(seed)
    z = np.array(outputs, dtype=np.float64) if outputs is not None else tie_free_input((batch, *input_shape), rng)
    n = len(z)
    t = loss.prepare_targets(targets if targets is not None else _example_targets(loss, n, rng), n)
    z0, t0 = z.copy(), t.copy()
    args = (t,) if mask is None else (t, mask)
    problems = []
    value, grad = loss.loss_and_grad(z, *args)
    grad = np.array(grad)
    if not isinstance(value, float) or not np.isfinite(value):
        problems.append(f"loss_and_grad gave the value {value!r}, not a finite Python float")
    if grad.shape != z.shape or grad.dtype != z.dtype:
        problems.append(f"loss_and_grad gave a gradient of shape {grad.shape} and dtype {grad.dtype}, "
                        f"expected {z.shape} and {z.dtype}")
    if not (np.array_equal(z, z0) and np.array_equal(t, t0)):
        problems.append("loss_and_grad changed its outputs or targets argument")
    error = np.inf
    if not problems:
        again = loss.loss_and_grad(z, *args)
        if again[0] != value or not np.array_equal(np.array(again[1]), grad):
            problems.append("loss_and_grad called twice gave different results")
        numeric, noise = central_differences(lambda: loss.loss_and_grad(z, *args)[0], z, 1.0, eps)
        error, where = relative_error(grad, numeric, noise)
        if not error <= tol:
            problems.append(f"gradient: max relative error {error:.3g} > {tol:.0e} at index {where} "
                            f"(loss_and_grad {grad[where]:.10g}, finite differences {numeric[where]:.10g})")
    for name, values in (loss.metrics(z, t) if mask is None else loss.metrics(z, t, mask)).items():
        if np.shape(values) not in ((n,), z.shape[:2]):
            problems.append(f"metrics()[{name!r}] has shape {np.shape(values)}, expected one value per sample "
                            f"({n},) or per step {z.shape[:2]}")
    if len(loss.predict(z)) != n:
        problems.append(f"predict gave {len(loss.predict(z))} rows for {n} samples")
    if problems:
        raise AssertionError(f"{loss.name}: " + "\n  ".join(["loss contract broken:", *problems]))
    return error


def _example_targets(loss: Loss, n: int, rng: np.random.Generator) -> np.ndarray:
    """The first kind of target ``loss`` accepts: normal floats, 0/1 values, or class labels."""
    assert loss.input_shape is not None  # built by the caller
    shape = (n, *loss.input_shape)
    candidates = [rng.standard_normal(shape), rng.integers(0, 2, shape), rng.integers(0, shape[-1], shape[:-1])]
    for candidate in candidates:
        try:
            loss.prepare_targets(candidate, n)
        except (TypeError, ValueError):
            continue
        return candidate
    raise ValueError(f"check_loss: {loss.name} accepts none of float, 0/1 or class-label targets; pass targets=")
