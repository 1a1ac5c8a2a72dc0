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

The pieces underneath, to check gradients by hand (:mod:`minidl.testing.gradcheck`)::

    from minidl.testing import check_layer_gradients, tie_free_input
    layer = MyLayer(...)
    layer.build((3, 5, 5), dtype="float64")
    x = tie_free_input((2, 3, 5, 5), rng=np.random.default_rng(0))
    check_layer_gradients(layer, x)          # AssertionError naming what is off, by how much

The modules: :mod:`~minidl.testing.gradcheck` (finite differences), :mod:`~minidl.testing.contract`
(:func:`check_layer`), :mod:`~minidl.testing.strategies` (Hypothesis strategies) and
:mod:`~minidl.testing.losses` (:func:`check_loss`); every name is importable from ``minidl.testing``.
"""

from __future__ import annotations

from .contract import (
    JUNK,
    MEMORY_LAYOUTS,
    ROUND_TRIP,
    CheckResult,
    LayerCheckError,
    LayerCheckReport,
    check_layer,
    stored_as,
)
from .gradcheck import (
    DEFAULT_EPS,
    DEFAULT_TOL,
    central_differences,
    check_layer_gradients,
    check_model_gradients,
    layer_gradient_errors,
    model_gradient_errors,
    numerical_gradient,
    relative_error,
    rewinder,
    tie_free_input,
)
from .losses import check_loss
from .strategies import any_shapes, feature_shapes, image_shapes, layer_inputs

__all__ = [
    "DEFAULT_EPS", "DEFAULT_TOL", "JUNK", "MEMORY_LAYOUTS", "ROUND_TRIP", "CheckResult", "LayerCheckError",
    "LayerCheckReport", "any_shapes", "central_differences", "check_layer", "check_layer_gradients", "check_loss",
    "check_model_gradients", "feature_shapes", "image_shapes", "layer_gradient_errors", "layer_inputs",
    "model_gradient_errors", "numerical_gradient", "relative_error", "rewinder", "stored_as", "tie_free_input",
]
