"""Gradient checking for people who write layers: compare ``backward`` with finite differences.

Typical use, for a layer of your own::

    from minidl.testing import check_layer_gradients, tie_free_input
    layer = MyLayer(...)
    layer.build((3, 5, 5), dtype="float64")
    x = tie_free_input((2, 3, 5, 5), rng=np.random.default_rng(0))
    check_layer_gradients(layer, x)          # AssertionError naming what is off, by how much

The check treats the layer's output ``y`` as feeding a loss ``L = Σ y ⊙ G`` for a fixed random
``G``; then ``dL/dy = G``, and ``backward(G)`` must equal the central difference
``(L(θ + ε) - L(θ - ε)) / 2ε`` for every entry of the input and of every trainable parameter.
Work in float64: in float32 rounding swamps the differences.

Errors are element-wise relative errors ``|a - n| / max(|a|, |n|, floor)``, the floor being
``1e-3`` of the largest gradient entry, so that entries that are exactly zero compare
absolutely. Inputs must keep clear of kinks (ReLU at 0) and ties (two maxima of a pooling
window) by more than ``ε``; :func:`tie_free_input` makes such inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .layers.base import Layer
from .model import Sequential

DEFAULT_EPS = 1e-5
DEFAULT_TOL = 1e-6


def tie_free_input(
    shape: tuple[int, ...], rng: np.random.Generator | None = None, gap: float | None = None, dtype=np.float64
) -> np.ndarray:
    """Random array whose entries differ pairwise by at least ``gap`` and keep ``gap/2`` away from 0.

    Its absolute values are ``(k + 0.5)·gap`` for ``k = 0..size-1`` in random order, with random
    signs, so neither ReLU kinks nor max-pool ties sit within a finite-difference step. ``gap``
    defaults to ``min(0.1, 2 / size)`` (entries stay within about ±2).
    """
    rng = rng if rng is not None else np.random.default_rng()
    size = int(np.prod(shape))
    gap = min(0.1, 2.0 / size) if gap is None else gap
    magnitudes = (rng.permutation(size) + 0.5) * gap
    signs = rng.choice(np.array([-1.0, 1.0]), size=size)
    return (magnitudes * signs).reshape(shape).astype(dtype)


def numerical_gradient(
    f: Callable[[], np.ndarray], x: np.ndarray, weights: np.ndarray | float = 1.0, eps: float = DEFAULT_EPS
) -> np.ndarray:
    """Central-difference gradient of ``Σ f() ⊙ weights`` with respect to ``x`` (perturbed in place, restored).

    The difference ``f(x+ε) - f(x-ε)`` is taken element-wise before it is weighted and summed,
    which keeps the rounding error at the scale of single outputs rather than of their sum.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    flat = x.reshape(-1)
    if not np.shares_memory(flat, x):
        raise ValueError("numerical_gradient: x must be contiguous so it can be perturbed in place")
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        plus = np.array(f(), dtype=np.float64)
        flat[i] = original - eps
        minus = np.array(f(), dtype=np.float64)
        flat[i] = original
        grad.reshape(-1)[i] = np.sum((plus - minus) * weights) / (2 * eps)
    return grad


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> tuple[float, tuple[int, ...]]:
    """Largest element-wise relative error and where it is (see the module docstring for the floor)."""
    analytic, numeric = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    if analytic.shape != numeric.shape:
        raise AssertionError(f"gradient has shape {analytic.shape}, expected {numeric.shape}")
    if analytic.size == 0:
        return 0.0, ()
    scale = max(np.abs(analytic).max(), np.abs(numeric).max())
    floor = max(1e-3 * scale, 1e-12)
    err = np.abs(analytic - numeric) / np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor)
    where = np.unravel_index(int(np.argmax(err)), err.shape)
    return float(err[where]), tuple(int(i) for i in where)


def layer_gradient_errors(
    layer: Layer, x: np.ndarray, rng: np.random.Generator | None = None, eps: float = DEFAULT_EPS
) -> dict[str, tuple[float, tuple[int, ...], float, float]]:
    """For ``"input"`` and each trainable parameter: ``(max relative error, index, analytic, numeric)``."""
    rng = rng if rng is not None else np.random.default_rng(0)
    x = np.array(x, dtype=layer.dtype, order="C")
    out = layer.forward(x, training=True)
    weights = rng.standard_normal(out.shape).astype(layer.dtype)
    grad_x = layer.backward(weights)
    return _compare(lambda: layer.forward(x, training=True), weights, x, grad_x, layer.named_parameters(), eps)


def model_gradient_errors(
    model: Sequential, x: np.ndarray, y: np.ndarray, eps: float = DEFAULT_EPS
) -> dict[str, tuple[float, tuple[int, ...], float, float]]:
    """End-to-end check through a model with a loss head: ``"input"`` and every trainable parameter."""
    head = model.head
    if head is None:
        raise ValueError("model_gradient_errors: the model must end with a loss layer (SoftmaxCE)")
    x = np.array(x, dtype=model.dtype, order="C")

    def loss() -> float:
        z = x
        for layer in model.layers[:-1]:
            z = layer.forward(z, training=True)
        return head.loss(z, y)

    loss()
    grad_x = model.backward(head.backward())
    return _compare(loss, 1.0, x, grad_x, model.named_parameters(), eps)


def _compare(f, weights, x, grad_x, named_params, eps) -> dict[str, tuple[float, tuple[int, ...], float, float]]:
    """Finite differences of ``Σ f() ⊙ weights`` against the analytic gradients just computed."""
    params = {k: p for k, p in named_params.items() if p.trainable}
    analytic = {"input": np.array(grad_x)} | {k: p.grad.copy() for k, p in params.items()}
    targets = {"input": x} | {k: p.data for k, p in params.items()}
    report = {}
    for name, array in targets.items():
        numeric = numerical_gradient(f, array, weights, eps)
        err, where = relative_error(analytic[name], numeric)
        report[name] = (err, where, float(analytic[name][where]), float(numeric[where]))
    return report


def _assert_report(owner: str, report: dict, tol: float) -> dict[str, float]:
    bad = {k: v for k, v in report.items() if not v[0] <= tol}
    if bad:
        lines = [
            f"  {k}: max relative error {err:.3g} > {tol:.0e} at index {where} (backward {a:.10g}, finite differences {n:.10g})"
            for k, (err, where, a, n) in bad.items()
        ]
        raise AssertionError(f"{owner}: gradients disagree with finite differences\n" + "\n".join(lines))
    return {k: v[0] for k, v in report.items()}


def check_layer_gradients(
    layer: Layer, x: np.ndarray, tol: float = DEFAULT_TOL, rng: np.random.Generator | None = None, eps: float = DEFAULT_EPS
) -> dict[str, float]:
    """Raise ``AssertionError`` unless every gradient of ``layer`` at ``x`` is within ``tol``; return the errors."""
    return _assert_report(layer.name, layer_gradient_errors(layer, x, rng, eps), tol)


def check_model_gradients(
    model: Sequential, x: np.ndarray, y: np.ndarray, tol: float = DEFAULT_TOL, eps: float = DEFAULT_EPS
) -> dict[str, float]:
    """Raise ``AssertionError`` unless every gradient through ``model`` is within ``tol``; return the errors."""
    return _assert_report("Sequential", model_gradient_errors(model, x, y, eps), tol)
