"""Base helpers the layer tests are built on."""

import numpy as np

from minidl.layers import Layer
from minidl.testing import check_layer_gradients, tie_free_input


def built(layer: Layer, input_shape, dtype="float64", seed=0) -> Layer:
    layer.build(input_shape, rng=np.random.default_rng(seed), dtype=dtype)
    return layer


def assert_shape_and_gradients(layer: Layer, batch: int, input_shape, seed: int = 0) -> np.ndarray:
    """Build ``layer`` in float64, run it on a ties- and kink-free batch; check the shape pass and the gradients."""
    built(layer, input_shape, seed=seed)
    rng = np.random.default_rng(seed)
    x = tie_free_input((batch, *input_shape), rng)
    out = layer.forward(x, training=True)
    assert out.shape == (batch, *layer.output_shape)
    assert layer.output_shape == tuple(layer.compute_output_shape(tuple(input_shape)))
    check_layer_gradients(layer, x, rng=rng)
    return x
