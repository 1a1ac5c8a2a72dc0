"""The layer contract as one call: :func:`check_layer` and its report.

:func:`check_layer` runs every rule of the layer contract (see :mod:`minidl.layers.base`):
shapes, dtypes, gradients against finite differences (:mod:`minidl.testing.gradcheck`),
``backward`` overwriting rather than accumulating, rejecting bad input, every memory layout,
and a save/load round trip.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import loads_as
from ..layers.base import LAYERS, Layer
from .gradcheck import (
    DEFAULT_EPS,
    DEFAULT_TOL,
    _generators,
    _token_ids,
    layer_gradient_errors,
    rewinder,
    tie_free_input,
)

__all__ = ["JUNK", "MEMORY_LAYOUTS", "ROUND_TRIP", "CheckResult", "LayerCheckError", "LayerCheckReport",
           "check_layer", "stored_as"]

#: What check_layer fills ``.grad`` with before calling ``backward`` again: an accumulating layer adds to it.
JUNK = 12345.0


@dataclass
class CheckResult:
    """One rule of the contract: its name, whether it held, and what was wrong (one problem a line).

    Args:
        name: the rule, e.g. ``"backward overwrites .grad [float64]"``.
        passed: whether it held.
        detail: what was wrong, one problem a line.

    Example::

        >>> CheckResult("shape pass", False, "expected (2,), got (3,)").passed
        False
    """

    name: str
    passed: bool
    detail: str = ""


@dataclass
class LayerCheckReport:
    """What :func:`check_layer` found. ``ok`` is true when every check passed.

    ``gradient_errors[mode][name]`` is the largest relative error of ``"input"`` or of a
    parameter against finite differences, ``mode`` being ``"training"`` or ``"inference"``.

    Args:
        layer: the checked layer's name.
        input_shape: the per-sample input shape it was checked with.
        output_shape: the output shape the shape pass gave (``None`` if it failed).
        checks: one :class:`CheckResult` per rule, in the order they ran.
        gradient_errors: the largest relative errors, by mode and by name.

    Example::

        report = check_layer(MyLayer(), (3, 8, 8), raise_on_failure=False)
        report.ok, report.gradient_errors["training"]["input"]
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
    """Raised by :func:`check_layer` when a check fails; ``report`` holds every result.

    Args:
        report: the :class:`LayerCheckReport` with every result.

    Example::

        try:
            check_layer(MyLayer(), (3, 8, 8))
        except LayerCheckError as err:
            print(err.report)
    """

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

    Args:
        layer: the layer to check (left untouched; unbuilt or built).
        input_shape: the per-sample input shape (no batch axis).
        batch: samples in the generated batch.
        x: your own input batch ``(batch, *input_shape)`` instead of the generated one.
        training: the mode or modes ``forward`` is checked in.
        dtypes: the dtypes the layer is built and checked in.
        tol: the largest relative gradient error accepted.
        eps: the finite-difference step.
        seed: seeds the copies' parameters and the generated inputs.
        raise_on_failure: raise :class:`LayerCheckError` when a check fails (``False``: just report).

    Example::

        >>> from minidl.layers import Dense
        >>> check_layer(Dense(3), (4,)).ok
        True
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
    """The values of ``x``, stored with its axes in ``order`` in memory (an NCHW-shaped view of a copy).

    Args:
        x: the array, ``(N, C, H, W)`` or any shape of ``len(order)`` axes.
        order: the axes of ``x`` from outermost to innermost in memory.

    Example::

        >>> y = stored_as(np.zeros((2, 3, 4, 5)), (1, 2, 3, 0))   # batch innermost
        >>> y.shape, y.strides[0]
        ((2, 3, 4, 5), 8)
    """
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


