"""Gradients against finite differences: the pieces :func:`~minidl.testing.check_layer` is built on.

The pieces underneath, to check gradients by hand::

    from minidl.testing import check_layer_gradients, tie_free_input
    layer = MyLayer(...)
    layer.build((3, 5, 5), dtype="float64")
    x = tie_free_input((2, 3, 5, 5), rng=np.random.default_rng(0))
    check_layer_gradients(layer, x)          # AssertionError naming what is off, by how much

The check treats the layer's output ``y`` as feeding a loss ``L = Σ y ⊙ G`` for a fixed random
``G``; then ``dL/dy = G``, and ``backward(G)`` must equal the central difference
``(L(θ + ε) - L(θ - ε)) / 2ε`` for every entry of the input and of every trainable parameter.
Work in float64: in float32 rounding swamps the differences.

Errors are element-wise relative errors ``(|a - n| - r) / max(|a|, |n|, floor)``, the floor being
``1e-3`` of the largest gradient entry, so that entries that are exactly zero compare
absolutely, and ``r`` the round-off the finite difference itself may carry (a difference within
it is not counted). Each output ``f_j`` is computed to about one unit in its last place
(machine epsilon ``u``: 2.2e-16 in float64) relative to ``|f_j|``, so the difference quotient of
an entry carries up to ``r = u · Σ_j |G_j| (|f_j(θ+ε)| + |f_j(θ-ε)|) / 2ε``, summed over the
outputs that moved (an output computed bit for bit the same both times carries none). With
``ε = 1e-5`` and outputs of order 1 that is ~1e-11 per output: it matters only for gradient
entries far smaller than the outputs, where it would otherwise read as a relative error
(4e-6 computed to 6e-12 is "1.4e-6"); a wrong gradient differs by far more than ``r``.

Inputs must keep clear of kinks (ReLU at 0) and ties (two maxima of a pooling
window) by more than ``ε``; :func:`tie_free_input` makes such inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..layers.base import Layer
from ..model import Sequential

__all__ = [
    "DEFAULT_EPS", "DEFAULT_TOL", "central_differences", "check_layer_gradients", "check_model_gradients",
    "layer_gradient_errors", "model_gradient_errors", "numerical_gradient", "relative_error", "rewinder",
    "tie_free_input",
]

DEFAULT_EPS = 1e-5
DEFAULT_TOL = 1e-6


def tie_free_input(
    shape: tuple[int, ...], rng: np.random.Generator | None = None, gap: float | None = None, dtype=np.float64
) -> np.ndarray:
    """Random array whose entries differ pairwise by at least ``gap`` and keep ``gap/2`` away from 0.

    Its absolute values are ``(k + 0.5)·gap`` for ``k = 0..size-1`` in random order, with random
    signs, so neither ReLU kinks nor max-pool ties sit within a finite-difference step. ``gap``
    defaults to ``min(0.1, 2 / size)`` (entries stay within about ±2).

    Args:
        shape: the array's shape.
        rng: where the order and signs come from (default: a fresh generator).
        gap: the smallest distance between two entries, and twice the distance to 0.
        dtype (np.dtype or str): the array's dtype.

    Example::

        >>> x = tie_free_input((2, 3), np.random.default_rng(0))
        >>> x.shape, bool(np.all(np.abs(x) >= 0.05)), len(set(np.abs(x).ravel().round(9)))
        ((2, 3), True, 6)
    """
    rng = rng if rng is not None else np.random.default_rng()
    size = int(np.prod(shape))
    gap = min(0.1, 2.0 / size) if gap is None else gap
    magnitudes = (rng.permutation(size) + 0.5) * gap
    signs = rng.choice(np.array([-1.0, 1.0]), size=size)
    return (magnitudes * signs).reshape(shape).astype(dtype)


def numerical_gradient(
    f: Callable[[], np.ndarray | float], x: np.ndarray, weights: np.ndarray | float = 1.0, eps: float = DEFAULT_EPS
) -> np.ndarray:
    """Central-difference gradient of ``Σ f() ⊙ weights`` with respect to ``x`` (perturbed in place, restored).

    The difference ``f(x+ε) - f(x-ε)`` is taken element-wise before it is weighted and summed,
    which keeps the rounding error at the scale of single outputs rather than of their sum.

    Args:
        f: computes the outputs from the current values of ``x`` (no arguments).
        x: the array to perturb, in place (restored afterwards).
        weights: the fixed ``G`` of ``L = Σ f() ⊙ G``, or a scalar.
        eps: the finite-difference step.

    Example::

        >>> x = np.array([1.0, 2.0])
        >>> numerical_gradient(lambda: x ** 2, x).round(6)
        array([2., 4.])
    """
    return central_differences(f, x, weights, eps)[0]


def central_differences(
    f: Callable[[], np.ndarray | float], x: np.ndarray, weights: np.ndarray | float = 1.0, eps: float = DEFAULT_EPS
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`numerical_gradient`, and for each entry the round-off it may carry (see the module docstring).

    Args:
        f: computes the outputs from the current values of ``x`` (no arguments).
        x: the array to perturb, in place (restored afterwards).
        weights: the fixed ``G`` of ``L = Σ f() ⊙ G``, or a scalar.
        eps: the finite-difference step.

    Example::

        >>> x = np.array([3.0])
        >>> grad, noise = central_differences(lambda: x ** 2, x)
        >>> grad.round(6), bool(noise[0] < 1e-9)
        (array([6.]), True)
    """
    grad = np.zeros_like(x, dtype=np.float64)
    noise = np.zeros_like(grad)
    flat = x.reshape(-1)
    if not np.shares_memory(flat, x):
        raise ValueError("numerical_gradient: x must be contiguous so it can be perturbed in place")
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        plus = np.array(f())  # a copy: a layer may hand out a buffer that its next forward pass reuses
        flat[i] = original - eps
        minus = np.array(f())
        flat[i] = original
        unit = np.finfo(plus.dtype if plus.dtype.kind == "f" else np.float64).eps
        plus, minus = plus.astype(np.float64), minus.astype(np.float64)
        grad.reshape(-1)[i] = np.sum((plus - minus) * weights) / (2 * eps)
        # Outputs that came out bit for bit the same carry no round-off into the difference; each other
        # output carries up to about one unit in the last place of f(x+ε) and of f(x-ε).
        moved = np.abs(weights) * (np.abs(plus) + np.abs(minus)) * (plus != minus)
        noise.reshape(-1)[i] = unit * np.sum(moved) / (2 * eps)
    return grad, noise


def relative_error(
    analytic: np.ndarray, numeric: np.ndarray, noise: np.ndarray | float = 0.0
) -> tuple[float, tuple[int, ...]]:
    """Largest element-wise relative error and where it is (see the module docstring for the floor).

    ``noise`` (from :func:`central_differences`) is the round-off each finite difference may carry:
    a difference within it is no evidence against the analytic gradient and is not counted.

    Args:
        analytic: the gradient ``backward`` computed.
        numeric: the finite-difference gradient, of the same shape.
        noise: the round-off each entry of ``numeric`` may carry.

    Example::

        >>> error, where = relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.002]))
        >>> round(error, 6), where
        (0.000999, (1,))
    """
    analytic, numeric = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    if analytic.shape != numeric.shape:
        raise AssertionError(f"gradient has shape {analytic.shape}, expected {numeric.shape}")
    if analytic.size == 0:
        return 0.0, ()
    scale = max(np.abs(analytic).max(), np.abs(numeric).max())
    floor = max(1e-3 * scale, 1e-12)
    unexplained = np.maximum(np.abs(analytic - numeric) - noise, 0.0)
    err = unexplained / np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor)
    where = np.unravel_index(int(np.argmax(err)), err.shape)
    return float(err[where]), tuple(int(i) for i in where)


def layer_gradient_errors(
    layer: Layer,
    x: np.ndarray,
    rng: np.random.Generator | None = None,
    eps: float = DEFAULT_EPS,
    training: bool = True,
) -> dict[str, tuple[float, tuple[int, ...], float, float]]:
    """For ``"input"`` and each trainable parameter: ``(max relative error, index, analytic, numeric)``.

    Every forward pass starts from the same random and buffer state (see :func:`rewinder`), so
    a stochastic layer is differentiated with one fixed mask.

    Args:
        layer: a built layer (float64 parameters).
        x: an input batch, away from kinks and ties (see :func:`tie_free_input`).
        rng: draws the fixed output gradient ``G`` (default: a fresh generator).
        eps: the finite-difference step.
        training: the mode ``forward`` runs in.

    Example::

        >>> from minidl.layers import Dense
        >>> layer = Dense(2)
        >>> layer.build((3,), dtype="float64")
        (2,)
        >>> errors = layer_gradient_errors(layer, tie_free_input((4, 3), np.random.default_rng(0)))
        >>> sorted(errors), all(e[0] < 1e-6 for e in errors.values())
        (['bias', 'input', 'weight'], True)
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    integer = _token_ids(x)
    x = np.array(x, dtype=None if integer else layer.dtype, order="C")
    rewind = rewinder(layer)

    def forward() -> np.ndarray:
        rewind()
        return layer.forward(x, training=training)

    out = forward()
    weights = rng.standard_normal(out.shape).astype(layer.dtype)
    for p in layer.parameters():
        p.grad[...] = 0  # compare values only; check_layer's "overwrites" check catches accumulation
    grad_x = layer.backward(weights)
    return _compare(forward, weights, None if integer else x, grad_x, layer.named_parameters(), eps)


def rewinder(layer: Layer) -> Callable[[], None]:
    """Snapshot the random generators and buffers of ``layer`` and the layers below it; the returned
    function restores them.

    This is how the checkers handle stochastic layers: a layer keeps its randomness in
    ``np.random.Generator`` attributes (as the contract asks), so rewinding their bit-generator
    state makes the next ``forward`` draw the same dropout mask again. Buffers (running
    statistics) are restored too, so a training-mode ``forward`` cannot drift between calls.

    Args:
        layer: the layer whose generators and buffers (and those of its sub-layers) to snapshot.

    Example::

        >>> from minidl.layers import Dropout
        >>> drop = Dropout(0.5)
        >>> drop.build((8,), dtype="float64")
        (8,)
        >>> rewind = rewinder(drop)
        >>> a = drop.forward(np.ones((1, 8)), training=True)
        >>> rewind()
        >>> bool(np.array_equal(a, drop.forward(np.ones((1, 8)), training=True)))
        True
    """
    generators = [(g, g.bit_generator.state) for g in _generators(layer)]
    buffers = [(b, b.data.copy()) for b in layer.buffers()]

    def rewind() -> None:
        for g, state in generators:
            g.bit_generator.state = state
        for b, data in buffers:
            b.data[...] = data

    return rewind


def _generators(layer: Layer) -> list[np.random.Generator]:
    """The ``Generator`` attributes of ``layer`` and of every layer below it."""
    layers = (layer, *layer.named_layers().values())
    return [g for sub in layers for g in vars(sub).values() if isinstance(g, np.random.Generator)]


def model_gradient_errors(
    model: Sequential, x: np.ndarray, y: np.ndarray, eps: float = DEFAULT_EPS
) -> dict[str, tuple[float, tuple[int, ...], float, float]]:
    """End-to-end check through a model with a loss: ``"input"`` and every trainable parameter.

    Args:
        model: a built float64 model with a loss.
        x: an input batch.
        y: its targets.
        eps: the finite-difference step.

    Example::

        errors = model_gradient_errors(model, X[:4], y[:4])
        errors["input"][0]             # the input gradient's largest relative error
    """
    if model.loss is None:
        raise ValueError("model_gradient_errors: the model needs a loss (Sequential(..., loss=SoftmaxCE()))")
    x = np.array(x, dtype=model.dtype, order="C")
    loss = model.loss

    def loss_and_grad() -> tuple[float, np.ndarray]:
        return loss.loss_and_grad(model.forward(x, training=True), y)

    grad_x = model.backward(loss_and_grad()[1])
    return _compare(lambda: loss_and_grad()[0], 1.0, x, grad_x, model.named_parameters(), eps)


def _compare(f, weights, x, grad_x, named_params, eps) -> dict[str, tuple[float, tuple[int, ...], float, float]]:
    """Finite differences of ``Σ f() ⊙ weights`` against the analytic gradients just computed."""
    params = {k: p for k, p in named_params.items() if p.trainable}
    analytic = ({} if x is None else {"input": np.array(grad_x)}) | {k: p.grad.copy() for k, p in params.items()}
    targets = ({} if x is None else {"input": x}) | {k: p.data for k, p in params.items()}
    report = {}
    for name, array in targets.items():
        numeric, noise = central_differences(f, array, weights, eps)
        err, where = relative_error(analytic[name], numeric, noise)
        report[name] = (err, where, float(analytic[name][where]), float(numeric[where]))
    return report


def _assert_report(owner: str, report: dict, tol: float) -> dict[str, float]:
    bad = {k: v for k, v in report.items() if not v[0] <= tol}
    if bad:
        lines = [
            f"  {k}: max relative error {err:.3g} > {tol:.0e} at index {where} "
            f"(backward {a:.10g}, finite differences {n:.10g})"
            for k, (err, where, a, n) in bad.items()
        ]
        raise AssertionError(f"{owner}: gradients disagree with finite differences\n" + "\n".join(lines))
    return {k: v[0] for k, v in report.items()}


def check_layer_gradients(
    layer: Layer,
    x: np.ndarray,
    tol: float = DEFAULT_TOL,
    rng: np.random.Generator | None = None,
    eps: float = DEFAULT_EPS,
    training: bool = True,
) -> dict[str, float]:
    """Raise ``AssertionError`` unless every gradient of ``layer`` at ``x`` is within ``tol``; return the errors.

    Args:
        layer: a built layer (float64 parameters).
        x: an input batch, away from kinks and ties.
        tol: the largest relative error accepted.
        rng: draws the fixed output gradient ``G``.
        eps: the finite-difference step.
        training: the mode ``forward`` runs in.

    Example::

        >>> from minidl.layers import Dense
        >>> layer = Dense(2)
        >>> layer.build((3,), dtype="float64")
        (2,)
        >>> sorted(check_layer_gradients(layer, tie_free_input((4, 3), np.random.default_rng(0))))
        ['bias', 'input', 'weight']
    """
    return _assert_report(layer.name, layer_gradient_errors(layer, x, rng, eps, training), tol)


def check_model_gradients(
    model: Sequential, x: np.ndarray, y: np.ndarray, tol: float = DEFAULT_TOL, eps: float = DEFAULT_EPS
) -> dict[str, float]:
    """Raise ``AssertionError`` unless every gradient through ``model`` is within ``tol``; return the errors.

    Args:
        model: a built float64 model with a loss.
        x: an input batch.
        y: its targets.
        tol: the largest relative error accepted.
        eps: the finite-difference step.

    Example::

        model = Sequential([Dense(3), Tanh(), Dense(2)], input_shape=(4,), dtype="float64", loss=SoftmaxCE())
        check_model_gradients(model, tie_free_input((5, 4)), np.array([0, 1, 1, 0, 1]))
    """
    return _assert_report("Sequential", model_gradient_errors(model, x, y, eps), tol)



def _token_ids(x: Any) -> bool:
    """Whether ``x`` is an integer array (token ids): it has no gradient, and keeps its dtype in the checks."""
    return isinstance(x, np.ndarray) and x.dtype.kind in "iu"
