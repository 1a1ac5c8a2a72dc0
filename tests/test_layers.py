"""Property tests for every layer: shape pass, values against a reference, gradients against finite differences."""

import copy
import math

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from helpers import assert_shape_and_gradients, built
from minidl import Sequential
from minidl.layers import (
    AvgPool2D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D, Identity, LeakyReLU, MaxPool2D, ReLU,
    Sigmoid, Softmax, SoftmaxCE, Tanh,
)
from minidl.layers.conv import resolve_padding
from minidl.optim import SGD
from minidl.testing import any_shapes, check_layer_gradients, image_shapes, tie_free_input
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


# == activations, average pooling, Dropout, BatchNorm2D (the layers of issue 4) ==================

# -- element-wise activations -------------------------------------------------------------------------

ELEMENTWISE = [
    (lambda: LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    (lambda: LeakyReLU(0.0), lambda x: np.maximum(x, 0)),
    (lambda: Tanh(), np.tanh),
    (lambda: Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    (lambda: Identity(), lambda x: x),
]


@pytest.mark.parametrize("make, reference", ELEMENTWISE, ids=lambda v: getattr(v, "__name__", None))
@given(batch=small, shape=any_shapes())
@example(batch=1, shape=(1,))
def test_elementwise_activation_shape_values_and_gradients(make, reference, batch, shape):
    layer = make()
    x = assert_shape_and_gradients(layer, batch, shape)
    np.testing.assert_allclose(layer.forward(x), reference(x), rtol=1e-14, atol=1e-15)


def test_leaky_relu_slope_at_zero_is_the_negative_slope():
    layer = built(LeakyReLU(0.1), (3,))
    layer.forward(np.array([[-1.0, 0.0, 1.0]]))
    np.testing.assert_array_equal(layer.backward(np.ones((1, 3))), [[0.1, 0.1, 1.0]])


def test_sigmoid_and_tanh_are_stable_at_extreme_inputs():
    x = np.array([[-1e4, -40.0, 0.0, 40.0, 1e4]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is right
        y = built(Sigmoid(), (5,)).forward(x)
        t = built(Tanh(), (5,)).forward(x)
    np.testing.assert_allclose(y, [[0.0, 4.248354255291589e-18, 0.5, 1.0, 1.0]], rtol=1e-14)
    np.testing.assert_array_equal(t, [[-1, -1, 0, 1, 1]])
    y32 = built(Sigmoid(), (5,), dtype="float32").forward(x.astype(np.float32))
    assert y32.dtype == np.float32 and np.isfinite(y32).all()


@pytest.mark.parametrize("bad", [-0.1, float("nan"), "0.1", True])
def test_leaky_relu_rejects_bad_slopes(bad):
    with pytest.raises((ValueError, TypeError), match="negative_slope.*" + repr(bad)[:3]):
        LeakyReLU(bad)


# -- Softmax ------------------------------------------------------------------------------------------


@given(batch=small, shape=any_shapes(ndim=(1, 3), size=(1, 4)), data=st.data())
def test_softmax_shape_values_and_gradients(batch, shape, data):
    axis = data.draw(st.sampled_from([a for a in range(-len(shape), len(shape) + 1) if a % (len(shape) + 1)]))
    layer = Softmax(axis)
    x = assert_shape_and_gradients(layer, batch, shape)
    p = layer.forward(x)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    np.testing.assert_allclose(p, e / e.sum(axis=axis, keepdims=True), rtol=1e-13)
    np.testing.assert_allclose(p.sum(axis=axis), 1.0, rtol=1e-13)


def test_softmax_is_stable_at_extreme_logits_and_matches_softmax_ce():
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]])
    p = built(Softmax(), (3,)).forward(x)
    np.testing.assert_allclose(p, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]])
    loss = SoftmaxCE()
    loss.build((3,), "float64")
    np.testing.assert_array_equal(p, loss.probabilities(x))


@pytest.mark.parametrize("axis, shape", [(0, None), (2, (3,)), (-3, (3,)), (4, (2, 2, 2))])
def test_softmax_rejects_the_batch_axis_and_missing_axes(axis, shape):
    with pytest.raises(ValueError, match=f"axis {axis}" if shape else "batch axis"):
        built(Softmax(axis), shape)


# -- AvgPool2D and GlobalAvgPool2D ------------------------------------------------------------------


def avgpool_reference(x, pool, stride, padding):
    """Average pooling as a depthwise convolution with constant 1/(kh·kw) kernels (zero padding counted)."""
    c = x.shape[1]
    weight = np.eye(c)[:, :, None, None] * np.full(pool, 1 / (pool[0] * pool[1]))
    return conv2d_reference(x, weight, None, stride, ((padding[0],) * 2, (padding[1],) * 2))


@given(pool_cases())
@example(dict(batch=1, channels=1, pool=(1, 1), stride=None, padding=(0, 0), size=(1, 1)))
@example(dict(batch=1, channels=2, pool=(3, 4), stride=None, padding=(0, 0), size=(3, 4)))
@example(dict(batch=2, channels=1, pool=(3, 3), stride=(1, 1), padding=(1, 1), size=(2, 2)))
def test_avgpool2d_shape_values_and_gradients(case):
    layer = AvgPool2D(case["pool"], stride=case["stride"], padding=case["padding"])
    stride = case["stride"] or case["pool"]
    x = assert_shape_and_gradients(layer, case["batch"], (case["channels"], *case["size"]))
    expected = tuple((case["size"][a] + 2 * case["padding"][a] - case["pool"][a]) // stride[a] + 1 for a in range(2))
    assert layer.output_shape == (case["channels"], *expected)
    np.testing.assert_allclose(layer.forward(x), avgpool_reference(x, case["pool"], stride, case["padding"]),
                               rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("args, input_shape, match", [
    (dict(pool_size=3), (1, 2, 5), r"pool window \(3, 3\) is bigger than its padded input \(2, 5\)"),
    (dict(pool_size=2, padding=2), None, "padding must be at most half"),
    (dict(pool_size=0), None, "pool_size must be >= 1, got 0"),
    (dict(pool_size=2), (4, 4), r"expects images \(N, C, H, W\), got per-sample shape \(4, 4\)"),
])
def test_avgpool2d_rejects_bad_arguments_and_shapes(args, input_shape, match):
    with pytest.raises(ValueError, match=match):
        built(AvgPool2D(**args), input_shape)


@given(batch=small, shape=image_shapes())
@example(batch=1, shape=(1, 1, 1))
def test_global_avgpool2d_shape_values_and_gradients(batch, shape):
    layer = GlobalAvgPool2D()
    x = assert_shape_and_gradients(layer, batch, shape)
    assert layer.output_shape == (shape[0],)
    np.testing.assert_allclose(layer.forward(x), x.mean(axis=(2, 3)), rtol=1e-13)
    full = built(AvgPool2D(shape[1:]), shape)
    np.testing.assert_allclose(full.forward(x)[:, :, 0, 0], layer.forward(x), rtol=1e-13)


def test_global_avgpool2d_rejects_non_images():
    with pytest.raises(ValueError, match="GlobalAvgPool2D: expects images"):
        built(GlobalAvgPool2D(), (3, 4))


# -- Dropout --------------------------------------------------------------------------------------------


@given(batch=small, shape=any_shapes(), rate=st.sampled_from([0.0, 0.1, 0.5, 0.9]))
def test_dropout_shape_and_gradients_with_a_fixed_mask(batch, shape, rate):
    layer = built(Dropout(rate), shape)
    x = tie_free_input((batch, *shape), np.random.default_rng(0))
    assert layer.forward(x, training=True).shape == x.shape
    check_layer_gradients(layer, x, training=True)
    check_layer_gradients(layer, x, training=False)


def test_dropout_is_inverted_and_uses_one_mask_for_forward_and_backward():
    rate = 0.25
    layer = built(Dropout(rate), (100, 100), dtype="float32")
    x = np.full((4, 100, 100), 2.0, dtype=np.float32)
    y = layer.forward(x, training=True)
    kept = y != 0
    np.testing.assert_array_equal(y[kept], np.float32(2.0 / (1 - rate)))
    assert abs(1 - kept.mean() - rate) < 0.01  # 40 000 draws: 5 standard deviations is 0.011
    assert abs(y.mean() - 2.0) < 0.03  # the expectation is kept
    g = np.arange(x.size, dtype=np.float32).reshape(x.shape)
    np.testing.assert_allclose(layer.backward(g), np.where(kept, g / (1 - rate), 0), rtol=3e-7)  # float32 ulps
    assert y.dtype == layer.backward(g).dtype == np.float32


def test_dropout_is_the_identity_at_inference_and_at_rate_zero():
    layer = built(Dropout(0.5), (3, 4))
    x = tie_free_input((2, 3, 4))
    np.testing.assert_array_equal(layer.forward(x), x)
    g = tie_free_input((2, 3, 4))
    np.testing.assert_array_equal(layer.backward(g), g)
    np.testing.assert_array_equal(built(Dropout(0.0), (3, 4)).forward(x, training=True), x)


def dropout_model(seed):
    return Sequential([Flatten(), Dense(16), Dropout(0.5), Dense(3), SoftmaxCE()], input_shape=(1, 4, 4), seed=seed)


def test_dropout_masks_follow_the_model_seed_not_numpys_global_state():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((32, 1, 4, 4)), rng.integers(0, 3, 32)
    np.random.seed(123)
    global_state = np.random.get_state()[1].copy()
    curves = [dropout_model(seed).fit(X, y, epochs=3, batch_size=8, verbose=0).history["loss"] for seed in (7, 7, 8)]
    assert curves[0] == curves[1] and curves[0] != curves[2]
    np.testing.assert_array_equal(np.random.get_state()[1], global_state)
    a, b = dropout_model(7), dropout_model(7)
    np.testing.assert_array_equal(a[2].forward(np.ones((2, 16), np.float32), training=True),
                                  b[2].forward(np.ones((2, 16), np.float32), training=True))


@pytest.mark.parametrize("bad", [1.0, -0.1, float("inf"), None])
def test_dropout_rejects_bad_rates(bad):
    with pytest.raises((ValueError, TypeError), match=f"Dropout: rate must .*got {bad!r}"):
        Dropout(bad)


# -- BatchNorm2D ------------------------------------------------------------------------------------------


@st.composite
def batchnorm_cases(draw):
    batch, shape = draw(small), draw(image_shapes(height=(1, 4)))
    if batch * shape[1] * shape[2] < 2:  # batch statistics need two values per channel
        batch = 2
    return batch, shape


def with_affine(layer, seed=0):
    """Random γ and β, so the gradient check does not sit at γ=1, β=0."""
    rng = np.random.default_rng(seed)
    layer.weight.data[...] = rng.uniform(0.5, 2.0, layer.weight.shape)
    layer.bias.data[...] = rng.standard_normal(layer.bias.shape)
    return layer


@given(batchnorm_cases())
@example((2, (1, 1, 1)))
@example((1, (3, 2, 1)))
@example((2, (3, 1, 1)))  # an input gradient of 4e-6 whose finite difference's round-off (6e-12) read as 1.4e-6
def test_batchnorm2d_training_values_and_gradients(case):
    batch, shape = case
    layer = with_affine(built(BatchNorm2D(), shape))
    x = tie_free_input((batch, *shape), np.random.default_rng(1)) * 3 + 1
    y = layer.forward(x, training=True)
    x_hat = (y - layer.bias.data[:, None, None]) / layer.weight.data[:, None, None]
    np.testing.assert_allclose(x_hat.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    var = x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(x_hat.var(axis=(0, 2, 3)), var / (var + 1e-5), rtol=1e-10)
    check_layer_gradients(layer, x, training=True)


@given(batchnorm_cases())
def test_batchnorm2d_inference_gradients(case):
    batch, shape = case
    layer = with_affine(built(BatchNorm2D(), shape))
    layer.running_mean.data[...] = np.linspace(-1, 1, shape[0])
    layer.running_var.data[...] = np.linspace(0.5, 2, shape[0])
    check_layer_gradients(layer, tie_free_input((batch, *shape), np.random.default_rng(2)), training=False)


def test_batchnorm2d_running_statistics_follow_pytorchs_rule():
    layer = with_affine(built(BatchNorm2D(momentum=0.2), (2, 3, 3)))
    rng = np.random.default_rng(0)
    mean, var = np.zeros(2), np.ones(2)
    for _ in range(3):
        x = rng.standard_normal((4, 2, 3, 3)) * 2 + 5
        layer.forward(x, training=True)
        m = 4 * 3 * 3
        mean = 0.8 * mean + 0.2 * x.mean(axis=(0, 2, 3))
        var = 0.8 * var + 0.2 * x.var(axis=(0, 2, 3)) * m / (m - 1)  # unbiased, as PyTorch keeps it
    np.testing.assert_allclose(layer.running_mean.data, mean, rtol=1e-13)
    np.testing.assert_allclose(layer.running_var.data, var, rtol=1e-13)
    # inference: the fixed affine map of the running statistics, and no update
    x = rng.standard_normal((2, 2, 3, 3))
    expected = (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5)
    expected = expected * layer.weight.data[:, None, None] + layer.bias.data[:, None, None]
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-12)
    np.testing.assert_allclose(layer.running_mean.data, mean, rtol=1e-13)


def test_frozen_batchnorm2d_uses_running_statistics_in_training():
    layer = with_affine(built(BatchNorm2D(), (2, 2, 2)))
    layer.running_mean.data[...] = [0.5, -0.5]
    layer.trainable = False
    x = tie_free_input((3, 2, 2, 2))
    np.testing.assert_array_equal(layer.forward(x, training=True), layer.forward(x, training=False))
    np.testing.assert_array_equal(layer.running_mean.data, [0.5, -0.5])
    check_layer_gradients(layer, x, training=True)


def test_batchnorm2d_errors_are_clear():
    with pytest.raises(ValueError, match=r"more than one value per channel.*\(1, 2, 1, 1\)"):
        built(BatchNorm2D(), (2, 1, 1)).forward(np.ones((1, 2, 1, 1)), training=True)
    with pytest.raises(ValueError, match=r"BatchNorm2D: expects images"):
        built(BatchNorm2D(), (4,))
    with pytest.raises(ValueError, match=r"momentum must be finite and in \[0.0, 1.0\), got 1.5"):
        BatchNorm2D(momentum=1.5)
    with pytest.raises(ValueError, match=r"eps must be finite and in \(0.0, inf\), got 0"):
        BatchNorm2D(eps=0)


def test_a_model_with_batchnorm_and_dropout_trains_reproducibly():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 1, 6, 6))
    y = (X[:, 0, :3].sum(axis=(1, 2)) > X[:, 0, 3:].sum(axis=(1, 2))).astype(int)

    def run(seed):
        model = Sequential([Conv2D(4, 3, padding="same"), BatchNorm2D(), LeakyReLU(), AvgPool2D(2), Dropout(0.2),
                            Conv2D(4, 3), Tanh(), GlobalAvgPool2D(), Dense(2), SoftmaxCE()],
                           input_shape=(1, 6, 6), seed=seed)
        history = model.fit(X, y, optimizer=SGD(model.parameters(), lr=0.05, momentum=0.9), epochs=15,
                            batch_size=16, verbose=0)
        return history.history["loss"], model.evaluate(X, y)["accuracy"]

    (loss_a, acc_a), (loss_b, _) = run(0), run(0)
    assert loss_a == loss_b
    assert loss_a[-1] < loss_a[0] and acc_a > 0.8
