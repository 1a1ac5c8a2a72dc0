"""Checking layers against the contract, for people who write layers (and for minidl's own tests).

The one call most users want::

    from minidl.testing import check_layer
    report = check_layer(MyLayer(...), input_shape=(3, 5, 5))   # AssertionError naming what is off
    print(report)                                               # one line per check

:func:`check_layer` runs every rule of the layer contract (see :mod:`minidl.layers.base`):
shapes, dtypes, gradients against finite differences, ``backward`` overwriting rather than
accumulating, rejecting bad input, and a save/load round trip. :func:`image_shapes`,
:func:`feature_shapes`, :func:`any_shapes` and :func:`layer_inputs` are Hypothesis strategies
to run it (or your own asserts) over random shapes. :func:`check_loss` checks a loss.

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

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import loads_as
from .layers.base import LAYERS, Layer
from .layers.losses import Loss
from .model import Sequential

__all__ = [
    "DEFAULT_EPS", "DEFAULT_TOL", "JUNK", "MEMORY_LAYOUTS", "ROUND_TRIP", "CheckResult", "LayerCheckError",
    "LayerCheckReport", "any_shapes", "central_differences", "check_layer", "check_layer_gradients", "check_loss",
    "check_model_gradients", "feature_shapes", "image_shapes", "layer_gradient_errors", "layer_inputs",
    "model_gradient_errors", "numerical_gradient", "relative_error", "rewinder", "stored_as", "tie_free_input",
]

DEFAULT_EPS = 1e-5
DEFAULT_TOL = 1e-6
#: What check_layer fills ``.grad`` with before calling ``backward`` again: an accumulating layer adds to it.
JUNK = 12345.0


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
    f: Callable[[], np.ndarray | float], x: np.ndarray, weights: np.ndarray | float = 1.0, eps: float = DEFAULT_EPS
) -> np.ndarray:
    """Central-difference gradient of ``Σ f() ⊙ weights`` with respect to ``x`` (perturbed in place, restored).

    The difference ``f(x+ε) - f(x-ε)`` is taken element-wise before it is weighted and summed,
    which keeps the rounding error at the scale of single outputs rather than of their sum.
    """
    return central_differences(f, x, weights, eps)[0]


def central_differences(
    f: Callable[[], np.ndarray | float], x: np.ndarray, weights: np.ndarray | float = 1.0, eps: float = DEFAULT_EPS
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`numerical_gradient`, and for each entry the round-off it may carry (see the module docstring)."""
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
    """End-to-end check through a model with a loss: ``"input"`` and every trainable parameter."""
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
    """Raise ``AssertionError`` unless every gradient of ``layer`` at ``x`` is within ``tol``; return the errors."""
    return _assert_report(layer.name, layer_gradient_errors(layer, x, rng, eps, training), tol)


def check_model_gradients(
    model: Sequential, x: np.ndarray, y: np.ndarray, tol: float = DEFAULT_TOL, eps: float = DEFAULT_EPS
) -> dict[str, float]:
    """Raise ``AssertionError`` unless every gradient through ``model`` is within ``tol``; return the errors."""
    return _assert_report("Sequential", model_gradient_errors(model, x, y, eps), tol)


# -- the whole contract ----------------------------------------------------------------------


@dataclass
class CheckResult:
    """One rule of the contract: its name, whether it held, and what was wrong (one problem a line)."""

    name: str
    passed: bool
    detail: str = ""


@dataclass
class LayerCheckReport:
    """What :func:`check_layer` found. ``ok`` is true when every check passed.

    ``gradient_errors[mode][name]`` is the largest relative error of ``"input"`` or of a
    parameter against finite differences, ``mode`` being ``"training"`` or ``"inference"``.
    """

    layer: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...] | None = None
    checks: list[CheckResult] = field(default_factory=list)
    gradient_errors: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def __str__(self) -> str:
        head = f"check_layer({self.layer}, input_shape={self.input_shape}) -> output shape {self.output_shape}"
        rows = [f"  {'ok  ' if c.passed else 'FAIL'} {c.name}" + "".join(f"\n      {d}" for d in c.detail.splitlines())
                for c in self.checks]
        return "\n".join([head, *rows])


class LayerCheckError(AssertionError):
    """Raised by :func:`check_layer` when a check fails; ``report`` holds every result."""

    def __init__(self, report: LayerCheckReport) -> None:
        self.report = report
        failed = report.failures
        super().__init__(f"{len(failed)} of {len(report.checks)} checks failed\n{report}")


def check_layer(
    layer: Layer,
    input_shape: Sequence[int],
    *,
    batch: int = 2,
    x: np.ndarray | None = None,
    training: bool | Sequence[bool] = (True, False),
    dtypes: Sequence[Any] = ("float64", "float32"),
    tol: float = DEFAULT_TOL,
    eps: float = DEFAULT_EPS,
    seed: int = 0,
    raise_on_failure: bool = True,
) -> LayerCheckReport:
    """Run the whole layer contract on ``layer`` for per-sample ``input_shape``; return a report.

    ``layer`` itself is left untouched: the checks run on deep copies built with
    ``rng=np.random.default_rng(seed)``. For each dtype in ``dtypes`` and each mode in
    ``training`` (``forward(x, training=mode)``), on a batch ``x`` of ``batch`` samples
    (default: :func:`tie_free_input`, ties- and kink-free; pass your own ``x`` if your layer
    has kinks elsewhere; pass an integer ``x`` for a layer taking token ids, as ``Embedding``:
    it keeps its dtype, and ``backward`` must return ``None``, there being no gradient of ids):

    - **shapes**: ``build`` returns ``compute_output_shape(input_shape)``; ``forward`` gives
      ``(batch, *output_shape)``; ``backward`` gives ``x.shape`` and each ``.grad`` its
      parameter's shape; parameters, buffers, outputs and gradients have the layer's dtype;
      outputs are finite; ``forward`` leaves ``x`` and ``backward`` leaves ``grad_out`` unchanged.
    - **gradients** (float64 only): input and trainable-parameter gradients match central
      finite differences within ``tol`` (relative, see the module docstring).
    - **overwrite**: ``backward`` called again, with every ``.grad`` first filled with junk,
      returns the same input gradient and leaves the same parameter gradients, bit for bit.
    - **float32 vs float64**: the outputs agree to float32 precision (training mode is compared
      only for deterministic layers: a random mask is drawn differently per dtype).
    - **bad input**: ``forward`` on a batch with the last axis one longer raises ``ValueError``
      or ``TypeError`` (use ``check_input``).
    - **memory layouts** (image inputs): ``forward``/``backward`` on the same values stored
      NCHW, batch-innermost ``(C, H, W, N)`` (what ``Conv2D`` hands on) and channels-major
      ``(C, N, H, W)`` give the same results (:data:`MEMORY_LAYOUTS`).
    - **save/load**: ``to_config()`` survives JSON, ``Layer.from_config`` rebuilds an equal
      layer, and with the original's parameters and buffers (after a training step, so running
      statistics have moved) loaded into it, inference gives the same output bit for bit.

    Stochastic layers: before each forward of the gradient checks, the random generators and
    buffers of the layer are rewound (:func:`rewinder`), so the finite differences see one
    fixed mask. Layers must keep their randomness in ``np.random.Generator`` attributes.

    Raises :class:`LayerCheckError` (an ``AssertionError``) listing every failed check, with
    the parameter, index and sizes involved, unless ``raise_on_failure=False``.
    """
    modes = (training,) if isinstance(training, bool) else tuple(training)
    input_shape = tuple(int(d) for d in input_shape)
    report = LayerCheckReport(layer=repr(layer), input_shape=input_shape)
    if x is not None and np.shape(x)[1:] != input_shape:
        raise ValueError(f"check_layer: x has shape {np.shape(x)}, expected (batch, *{input_shape})")
    base = np.array(x, dtype=None if _token_ids(x) else np.float64) if x is not None else tie_free_input(
        (batch, *input_shape), np.random.default_rng(seed))
    outputs: dict[tuple[str, bool], np.ndarray] = {}
    stochastic = False
    for dtype in map(np.dtype, dtypes):
        built = _check_build(report, layer, input_shape, dtype, seed)
        if built is None:
            continue
        stochastic |= bool(_generators(built))
        xd = base if _token_ids(base) else base.astype(dtype)
        rewind = rewinder(built)
        for mode in modes:
            rewind()  # every mode starts from the freshly built state, in every dtype
            label = f"{dtype}, {'training' if mode else 'inference'}"
            outputs[str(dtype), mode] = _guarded(report, f"forward/backward [{label}]", _check_passes,
                                                 built, xd, mode, label, seed)
        if dtype == np.float64:
            for mode in modes:
                _guarded(report, f"gradients vs finite differences [float64, {'training' if mode else 'inference'}]",
                         _check_gradients, built, xd, mode, tol, eps, seed)
            _guarded(report, "rejects input of the wrong shape", _check_bad_input, built, xd)
            _guarded(report, ROUND_TRIP, _check_round_trip, built, xd, seed)
            _guarded(report, "memory layouts", _check_layouts, built, xd, seed)
    _guarded(report, "float32 agrees with float64", _compare_dtypes, outputs, stochastic)
    if raise_on_failure and not report.ok:
        raise LayerCheckError(report)
    return report


def _guarded(report: LayerCheckReport, name: str, check: Callable[..., Any], *args: Any) -> Any:
    """``check(report, *args)``; an error it trips over (the layer broke one of its assumptions) is a failed
    line naming the check, not a crash of ``check_layer``: reporting such mistakes is its job."""
    try:
        return check(report, *args)
    except Exception as err:  # noqa: BLE001 - the report names whatever went wrong
        _record(report, name, [f"the check stopped on {type(err).__name__}: {err}"])
        return None


def _record(report: LayerCheckReport, name: str, problems: list[str]) -> bool:
    report.checks.append(CheckResult(name, not problems, "\n".join(problems)))
    return not problems


def _check_build(report: LayerCheckReport, layer: Layer, input_shape, dtype: np.dtype, seed: int) -> Layer | None:
    built = copy.deepcopy(layer)
    try:
        declared = tuple(built.compute_output_shape(input_shape))
        shape = built.build(input_shape, rng=np.random.default_rng(seed), dtype=dtype)
    except Exception as err:  # noqa: BLE001 - the report names whatever the layer raised
        _record(report, f"build [{dtype}]", [f"build{input_shape} raised {type(err).__name__}: {err}"])
        return None
    problems = []
    if shape != declared:
        problems.append(f"build returned {shape}, compute_output_shape returned {declared}")
    report.output_shape = shape
    for kind, named in (("parameter", built.named_parameters()), ("buffer", built.named_buffers())):
        problems += [f"{kind} {k!r} has dtype {v.dtype}, expected {dtype}"
                     for k, v in named.items() if v.dtype != dtype]
    _record(report, f"build [{dtype}]", problems)
    return built


def _check_passes(report: LayerCheckReport, layer: Layer, x: np.ndarray, mode: bool, label: str, seed: int):
    """Shapes, dtypes and finiteness of one forward/backward; then backward again over junk grads."""
    problems: list[str] = []
    x_before = x.copy()
    try:
        y = layer.forward(x, training=mode)
    except Exception as err:  # noqa: BLE001
        _record(report, f"forward/backward [{label}]", [f"forward raised {type(err).__name__}: {err}"])
        return None
    assert layer.output_shape is not None  # built
    expected = (x.shape[0], *layer.output_shape)
    if not isinstance(y, np.ndarray) or y.shape != expected:
        _record(report, f"forward/backward [{label}]",
                [f"forward returned shape {getattr(y, 'shape', type(y).__name__)}, expected {expected}"])
        return None
    if y.dtype != layer.dtype:
        problems.append(f"forward returned dtype {y.dtype}, expected {layer.dtype}")
    if not np.isfinite(y).all():
        problems.append(f"forward returned {np.count_nonzero(~np.isfinite(y))} non-finite values")
    if not np.array_equal(x, x_before):
        problems.append("forward modified its input x in place")
    y = y.copy()  # the layer may hand out a view of its own cache
    g = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(layer.dtype)
    g_before = g.copy()
    params = {k: p for k, p in layer.named_parameters().items() if p.trainable}
    for p in params.values():
        p.grad[...] = 0
    try:
        dx = layer.backward(g)
    except Exception as err:  # noqa: BLE001
        _record(report, f"forward/backward [{label}]", problems + [f"backward raised {type(err).__name__}: {err}"])
        return y
    if not np.array_equal(g, g_before):
        problems.append("backward modified grad_out in place")
    if _token_ids(x):
        if dx is not None:
            problems.append(f"backward returned {type(dx).__name__} for integer inputs, expected None (no gradient)")
    elif not isinstance(dx, np.ndarray) or dx.shape != x.shape:
        problems.append(f"backward returned shape {getattr(dx, 'shape', type(dx).__name__)}, expected {x.shape}")
    elif dx.dtype != x.dtype:
        problems.append(f"backward returned dtype {dx.dtype}, expected {x.dtype}")
    for k, p in params.items():
        if p.grad.shape != p.shape or p.grad.dtype != p.dtype:
            problems.append(f"{k}.grad has shape {p.grad.shape} and dtype {p.grad.dtype}, "
                            f"expected {p.shape} and {p.dtype}")
    _record(report, f"forward/backward [{label}]", problems)
    if problems:
        return y
    first = {"input": np.array(dx)} | {k: p.grad.copy() for k, p in params.items()}
    for p in params.values():
        p.grad[...] = JUNK
    again = {"input": np.array(layer.backward(g))} | {k: p.grad for k, p in params.items()}
    _record(report, f"backward overwrites, twice gives the same [{label}]", [
        f"{k}: backward called again (every .grad first set to {JUNK}) differs from the first call by up to "
        f"{_max_diff(first[k], again[k]):.3g} at index {_argmax_diff(first[k], again[k])}; "
        "backward must overwrite .grad, not add to it, and keep no state between calls"
        for k in first if not np.array_equal(first[k], again[k])
    ])
    return y


def _token_ids(x: Any) -> bool:
    """Whether ``x`` is an integer array (token ids): it has no gradient, and keeps its dtype in the checks."""
    return isinstance(x, np.ndarray) and x.dtype.kind in "iu"


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - b))) if a.size else 0.0


def _argmax_diff(a: np.ndarray, b: np.ndarray) -> tuple[int, ...]:
    diff = np.abs(np.asarray(a, np.float64) - b)
    return tuple(int(i) for i in np.unravel_index(int(np.nanargmax(diff)), diff.shape)) if a.size else ()


def _check_gradients(report: LayerCheckReport, layer: Layer, x: np.ndarray, mode: bool, tol, eps, seed) -> None:
    label = "training" if mode else "inference"
    try:
        errors = layer_gradient_errors(layer, x, np.random.default_rng(seed + 2), eps, training=mode)
    except Exception as err:  # noqa: BLE001
        _record(report, f"gradients vs finite differences [float64, {label}]", [f"{type(err).__name__}: {err}"])
        return
    report.gradient_errors[label] = {k: v[0] for k, v in errors.items()}
    _record(report, f"gradients vs finite differences [float64, {label}]", [
        f"{k}: max relative error {err:.3g} > {tol:.0e} at index {where} "
        f"(backward {a:.10g}, finite differences {n:.10g})"
        for k, (err, where, a, n) in errors.items() if not err <= tol
    ])


def _check_bad_input(report: LayerCheckReport, layer: Layer, x: np.ndarray) -> None:
    wrong = np.zeros((*x.shape[:-1], x.shape[-1] + 1), dtype=x.dtype)
    try:
        layer.forward(wrong)
    except (ValueError, TypeError):
        problems = []
    except Exception as err:  # noqa: BLE001
        problems = [f"forward on shape {wrong.shape} raised {type(err).__name__} ({err}), "
                    "expected ValueError or TypeError: call self.check_input(x) first"]
    else:
        problems = [f"forward accepted shape {wrong.shape} for input shape {layer.input_shape}: "
                    "call self.check_input(x) first"]
    _record(report, "rejects input of the wrong shape", problems)


ROUND_TRIP = "save/load round trip (to_config, from_config, state)"

#: Memory orders of (N, C, H, W) arrays the built-in layers produce: axis order in memory, outermost first.
MEMORY_LAYOUTS = {"NCHW": (0, 1, 2, 3), "batch-innermost (C, H, W, N)": (1, 2, 3, 0),
                  "channels-major (C, N, H, W)": (1, 0, 2, 3)}


def stored_as(x: np.ndarray, order: Sequence[int]) -> np.ndarray:
    """The values of ``x``, stored with its axes in ``order`` in memory (an NCHW-shaped view of a copy)."""
    return np.ascontiguousarray(x.transpose(order)).transpose(np.argsort(order))


def _check_layouts(report: LayerCheckReport, layer: Layer, x: np.ndarray, seed: int) -> None:
    """Inference forward and backward on ``x`` in every memory layout agree with the NCHW ones."""
    if x.ndim != 4:
        return
    rewind = rewinder(layer)
    g = None
    results = {}
    try:
        for name, order in MEMORY_LAYOUTS.items():
            rewind()
            y = np.array(layer.forward(stored_as(x, order), training=False))
            if g is None:
                g = np.random.default_rng(seed + 2).standard_normal(y.shape).astype(x.dtype)
            dx = layer.backward(stored_as(g, order) if g.ndim == 4 else g)
            results[name] = (y, np.array(dx))
    except Exception as err:  # noqa: BLE001
        _record(report, "memory layouts", [f"{name}: raised {type(err).__name__}: {err}"])
        return
    ref_y, ref_dx = results["NCHW"]
    problems = [f"{name}: {what} differs from NCHW input's by up to {np.max(np.abs(a - b)):.3g}"
                for name, (y, dx) in results.items()
                for what, a, b in (("output", y, ref_y), ("input gradient", dx, ref_dx))
                if not np.allclose(a, b, rtol=1e-10, atol=1e-12)]
    _record(report, "memory layouts", problems)


def _check_round_trip(report: LayerCheckReport, layer: Layer, x: np.ndarray, seed: int) -> None:
    name = ROUND_TRIP
    cls = type(layer)
    expected = loads_as(layer)
    if expected is None:
        taken = LAYERS.get(cls.__name__)
        if taken is None:  # declared with register=False
            _record(report, name, [f"{cls.__name__} is not registered, so from_config cannot make it"])
            return
        _record(report, name, [f"class name {cls.__name__!r} is taken by {taken.__module__}.{taken.__qualname__}; "
                               "rename your layer so from_config can find it"])
        return
    try:
        spec = layer.to_config()
        text = json.dumps(spec)
        clone = Layer.from_config(json.loads(text))
    except Exception as err:  # noqa: BLE001
        _record(report, name, [f"{type(err).__name__}: {err} (get_config must return the constructor's "
                               "keyword arguments as JSON values)"])
        return
    problems = []
    if type(clone) is not expected:
        problems.append(f"from_config made a {type(clone).__name__}, expected {expected.__name__}")
    elif json.dumps(clone.to_config()) != text:
        problems.append(f"config changed in the round trip: {text} became {json.dumps(clone.to_config())}")
    if problems:
        _record(report, name, problems)
        return
    layer.forward(x, training=True)  # move any running statistics away from their initial values
    assert layer.input_shape is not None  # built
    try:
        clone.build(layer.input_shape, rng=np.random.default_rng(seed + 3), dtype=layer.dtype)
    except Exception as err:  # noqa: BLE001
        _record(report, name, [f"the rebuilt layer failed to build: {type(err).__name__}: {err}"])
        return
    source = layer.named_parameters() | layer.named_buffers()
    target = clone.named_parameters() | clone.named_buffers()
    if source.keys() != target.keys():
        _record(report, name, [f"the rebuilt layer has state {sorted(target)}, the original {sorted(source)}"])
        return
    for k, v in source.items():
        if v.shape != target[k].shape:
            problems.append(f"{k!r} has shape {target[k].shape} after loading, {v.shape} before")
        else:
            target[k].data[...] = v.data
    if not problems:
        before, after = layer.forward(x), clone.forward(x)
        if before.shape != after.shape:
            problems.append(f"inference output has shape {after.shape} after the round trip, {before.shape} before: "
                            "does get_config return every constructor argument that changes the output shape?")
        elif not np.array_equal(before, after):
            problems.append(f"inference output differs after the round trip by up to {_max_diff(before, after):.3g} "
                            "(is some state kept outside Parameter/Buffer attributes?)")
    _record(report, name, problems)


def _compare_dtypes(report: LayerCheckReport, outputs: dict, stochastic: bool) -> None:
    modes = sorted({m for (_, m) in outputs})
    for mode in modes:
        a, b = outputs.get(("float64", mode)), outputs.get(("float32", mode))
        if a is None or b is None or (mode and stochastic):
            continue
        scale = max(float(np.abs(a).max()), 1.0) if a.size else 1.0
        err = _max_diff(a, b)
        _record(report, f"float32 agrees with float64 [{'training' if mode else 'inference'}]",
                [] if err <= 1e-4 * scale else [f"outputs differ by up to {err:.3g} at index {_argmax_diff(a, b)} "
                                               f"(allowed {1e-4 * scale:.3g})"])


# -- Hypothesis strategies (hypothesis is a test dependency: imported only when these are called) --


def _span(value: int | tuple[int, int], arg: str) -> tuple[int, int]:
    low, high = (value, value) if isinstance(value, int) else value
    if not 1 <= low <= high:
        raise ValueError(f"{arg} must be a positive int or a (low, high) pair with 1 <= low <= high, got {value!r}")
    return low, high


def image_shapes(
    channels: int | tuple[int, int] = (1, 3),
    height: int | tuple[int, int] = (1, 8),
    width: int | tuple[int, int] | None = None,
):
    """Strategy for per-sample image shapes ``(C, H, W)``; each size an int or an inclusive ``(low, high)``.

    ``width`` defaults to the same range as ``height`` (drawn independently). For a layer with a
    ``k × k`` window use ``height=(k, 8)`` so that every drawn image can hold it.
    """
    from hypothesis import strategies as st

    ints = [st.integers(*_span(v, arg)) for v, arg in
            ((channels, "channels"), (height, "height"), (height if width is None else width, "width"))]
    return st.tuples(*ints)


def feature_shapes(features: int | tuple[int, int] = (1, 12)):
    """Strategy for per-sample feature-vector shapes ``(D,)``, as ``Dense`` takes."""
    from hypothesis import strategies as st

    return st.tuples(st.integers(*_span(features, "features")))


def any_shapes(ndim: int | tuple[int, int] = (1, 3), size: int | tuple[int, int] = (1, 5)):
    """Strategy for per-sample shapes of ``ndim`` axes, each of ``size``: for layers that take any shape."""
    from hypothesis import strategies as st

    return st.lists(st.integers(*_span(size, "size")), min_size=_span(ndim, "ndim")[0],
                    max_size=_span(ndim, "ndim")[1]).map(tuple)


def layer_inputs(shapes=None, batch: int | tuple[int, int] = (1, 3), dtype: Any = np.float64):
    """Strategy for input batches ``(N, *shape)``: ties- and kink-free arrays (:func:`tie_free_input`).

    ``shapes`` is a strategy of per-sample shapes (default :func:`image_shapes`). Read the
    per-sample shape of a drawn ``x`` as ``x.shape[1:]``::

        @given(layer_inputs(image_shapes(height=(3, 8))))
        def test_my_layer(x):
            check_layer(MyLayer(3), x.shape[1:], x=x)
    """
    from hypothesis import strategies as st

    shapes = image_shapes() if shapes is None else shapes
    return st.builds(
        lambda n, shape, seed: tie_free_input((n, *shape), np.random.default_rng(seed), dtype=dtype),
        st.integers(*_span(batch, "batch")), shapes, st.integers(0, 2**32 - 1),
    )


# -- losses ------------------------------------------------------------------------------------


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
