"""Property tests for every layer: shape pass, values against a reference, gradients against finite differences."""

import copy
import math

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from helpers import assert_shape_and_gradients, built
from minidl.layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU, SoftmaxCE
from minidl.layers.conv import resolve_padding
from minidl.testing import tie_free_input
from reference import conv2d_reference, maxpool2d_reference

small = st.integers(1, 3)
padding = st.one_of(st.sampled_from(["same", "valid"]), st.tuples(st.integers(0, 2), st.integers(0, 2)))


def expected_conv_size(size, kernel, stride, padding):
    """The textbook output-size formulas, written independently of minidl's."""
    if padding == "same":
        return math.ceil(size / stride)
    pad = 0 if padding == "valid" else padding
    return (size + 2 * pad - kernel) // stride + 1


@st.composite
def conv_cases(draw):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(small), draw(small))
    pad = draw(padding)
    size = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    pads = [pad if isinstance(pad, str) else pad[a] for a in range(2)]
    for a in range(2):
        total = 0 if pads[a] == "valid" else (2 * pads[a] if pads[a] != "same" else kernel[a] - 1)
        assume(kernel[a] <= size[a] + total)
    return dict(batch=draw(small), channels=draw(small), filters=draw(small),
                kernel=kernel, stride=stride, padding=pad, size=size, bias=draw(st.booleans()))


@given(conv_cases())
@example(dict(batch=1, channels=1, filters=1, kernel=(1, 1), stride=(1, 1), padding=(0, 0), size=(1, 1), bias=True))
@example(dict(batch=1, channels=2, filters=3, kernel=(5, 4), stride=(1, 1), padding="valid", size=(5, 4), bias=True))
@example(dict(batch=2, channels=1, filters=2, kernel=(2, 2), stride=(2, 2), padding="same", size=(1, 1), bias=False))
def test_conv2d_shape_values_and_gradients(case):
    layer = Conv2D(case["filters"], case["kernel"], stride=case["stride"], padding=case["padding"], use_bias=case["bias"])
    input_shape = (case["channels"], *case["size"])
    pad = case["padding"]
    expected = tuple(
        expected_conv_size(case["size"][a], case["kernel"][a], case["stride"][a],
                           pad if isinstance(pad, str) else pad[a]) for a in range(2))
    x = assert_shape_and_gradients(layer, case["batch"], input_shape)
    assert layer.output_shape == (case["filters"], *expected)
    assert layer.weight.shape == (case["filters"], case["channels"], *case["kernel"])
    assert (layer.bias is not None) == case["bias"]
    pads = resolve_padding(pad if isinstance(pad, str) else tuple(pad), case["size"], case["kernel"], case["stride"])
    reference = conv2d_reference(x, layer.weight.data, layer.bias.data if layer.bias else None, case["stride"], pads)
    np.testing.assert_allclose(layer.forward(x), reference, rtol=1e-12, atol=1e-12)


@st.composite
def pool_cases(draw):
    pool = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = draw(st.one_of(st.none(), st.tuples(small, small)))
    pad = (draw(st.integers(0, pool[0] // 2)), draw(st.integers(0, pool[1] // 2)))
    size = (draw(st.integers(1, 8)), draw(st.integers(1, 8)))
    assume(pool[0] <= size[0] + 2 * pad[0] and pool[1] <= size[1] + 2 * pad[1])
    return dict(batch=draw(small), channels=draw(small), pool=pool, stride=stride, padding=pad, size=size)


@given(pool_cases())
@example(dict(batch=1, channels=1, pool=(1, 1), stride=None, padding=(0, 0), size=(1, 1)))
@example(dict(batch=1, channels=2, pool=(3, 3), stride=None, padding=(0, 0), size=(3, 3)))
@example(dict(batch=2, channels=3, pool=(2, 2), stride=None, padding=(0, 0), size=(5, 7)))
def test_maxpool2d_shape_values_and_gradients(case):
    layer = MaxPool2D(case["pool"], stride=case["stride"], padding=case["padding"])
    stride = case["stride"] or case["pool"]
    x = assert_shape_and_gradients(layer, case["batch"], (case["channels"], *case["size"]))
    expected = tuple((case["size"][a] + 2 * case["padding"][a] - case["pool"][a]) // stride[a] + 1 for a in range(2))
    assert layer.output_shape == (case["channels"], *expected)
    np.testing.assert_array_equal(layer.forward(x), maxpool2d_reference(x, case["pool"], stride, case["padding"]))


def test_maxpool2d_sends_gradient_to_first_maximum_on_ties():
    layer = built(MaxPool2D(2), (1, 2, 2))
    x = np.ones((1, 1, 2, 2))
    layer.forward(x)
    grad = layer.backward(np.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(grad, [[[[1.0, 0.0], [0.0, 0.0]]]])


shapes = st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple)


@given(small, shapes)
def test_relu_shape_and_gradients(batch, shape):
    layer = ReLU()
    x = assert_shape_and_gradients(layer, batch, shape)
    np.testing.assert_array_equal(layer.forward(x), np.where(x > 0, x, 0.0))


@given(small, shapes)
def test_flatten_shape_and_gradients(batch, shape):
    layer = Flatten()
    assert_shape_and_gradients(layer, batch, shape)
    assert layer.output_shape == (math.prod(shape),)


@given(small, st.integers(1, 12), st.integers(1, 6), st.booleans())
def test_dense_shape_values_and_gradients(batch, features, units, bias):
    layer = Dense(units, use_bias=bias)
    x = assert_shape_and_gradients(layer, batch, (features,))
    expected = x @ layer.weight.data + (layer.bias.data if bias else 0)
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-12)


@pytest.mark.parametrize(
    "layer, input_shape",
    [
        (Conv2D(3, 2, stride=2, padding=1), (2, 5, 5)),
        (MaxPool2D(3, stride=2, padding=1), (2, 6, 5)),
        (Dense(4), (7,)),
        (ReLU(), (2, 3, 3)),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, tuple) else str(v),
)
def test_float32_forward_matches_float64(layer, input_shape):
    x64 = tie_free_input((3, *input_shape), np.random.default_rng(1))
    out64 = built(copy.deepcopy(layer), input_shape, "float64").forward(x64)
    out32 = built(copy.deepcopy(layer), input_shape, "float32").forward(x64.astype(np.float32))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, out64, rtol=1e-4, atol=1e-5)


def test_backward_overwrites_gradients_instead_of_accumulating():
    layer = built(Conv2D(2, 3), (1, 5, 5))
    x = np.random.default_rng(0).standard_normal((2, 1, 5, 5))
    g = np.ones((2, 2, 3, 3))
    layer.forward(x)
    first_dx = layer.backward(g).copy()
    first_dw = layer.weight.grad.copy()
    second_dx = layer.backward(g)
    np.testing.assert_array_equal(layer.weight.grad, first_dw)
    np.testing.assert_array_equal(second_dx, first_dx)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_ce_is_stable_for_extreme_logits(dtype):
    layer = SoftmaxCE()
    layer.build((3,), dtype)
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], dtype=dtype)
    y = np.array([1, 2, 0])
    loss, grad = layer.loss_and_grad(logits, y)
    # row 0: the true class is 2e4 below the winner; row 1: uniform; row 2: a two-way tie
    assert loss == pytest.approx((2e4 + np.log(3) + np.log(2)) / 3, rel=1e-6)
    expected = np.array([[1, -1, 0], [1 / 3, 1 / 3, -2 / 3], [-0.5, 0.5, 0]]) / 3
    np.testing.assert_allclose(grad, expected, atol=1e-7)
    assert np.isfinite(layer.probabilities(logits)).all()


def test_softmax_ce_loss_gradient_is_p_minus_onehot_over_n():
    layer = SoftmaxCE()
    layer.build((4,), "float64")
    z = tie_free_input((5, 4), np.random.default_rng(2))
    y = np.array([0, 3, 1, 1, 2])
    loss, grad = layer.loss_and_grad(z, y)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    assert loss == pytest.approx(-np.log(p[np.arange(5), y]).mean(), rel=1e-12)
    np.testing.assert_allclose(grad, (p - np.eye(4)[y]) / 5, rtol=1e-12, atol=1e-15)
