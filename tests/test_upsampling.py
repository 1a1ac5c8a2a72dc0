"""Upsample2D: shapes, values against a loop oracle and PyTorch, gradients, errors."""

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from helpers import assert_shape_and_gradients, built
from minidl import Sequential
from minidl.layers import Conv2D, Flatten, MaxPool2D, Upsample2D
from minidl.testing import image_shapes, tie_free_input

factors = st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3)))


def upsample_oracle(x: np.ndarray, fh: int, fw: int) -> np.ndarray:
    """Nearest-neighbour upsampling written pixel by pixel, as the definition reads."""
    n, c, h, w = x.shape
    y = np.empty((n, c, h * fh, w * fw), dtype=x.dtype)
    for i in range(h * fh):
        for j in range(w * fw):
            y[:, :, i, j] = x[:, :, i // fh, j // fw]
    return y


def pair(factor):
    return (factor, factor) if isinstance(factor, int) else factor


@given(batch=st.integers(1, 3), shape=image_shapes(height=(1, 5)), factor=factors)
@example(batch=1, shape=(1, 1, 1), factor=1)
@example(batch=1, shape=(1, 1, 1), factor=(3, 2))
@example(batch=2, shape=(3, 1, 4), factor=2)
def test_upsample2d_shape_values_and_gradients(batch, shape, factor):
    layer = Upsample2D(factor)
    x = assert_shape_and_gradients(layer, batch, shape)  # float64 finite differences of the input
    fh, fw = pair(factor)
    c, h, w = shape
    assert layer.output_shape == (c, h * fh, w * fw)
    y = layer.forward(x)
    np.testing.assert_array_equal(y, upsample_oracle(x, fh, fw))
    g = np.random.default_rng(1).standard_normal(y.shape)
    # dL/dx sums the gradient over each block: the adjoint of the oracle's copy
    expected = np.zeros_like(x)
    for i in range(h * fh):
        for j in range(w * fw):
            expected[:, :, i // fh, j // fw] += g[:, :, i, j]
    np.testing.assert_allclose(layer.backward(g), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("factor", [2, (1, 3), (3, 2)])
def test_upsample2d_matches_torch_nearest(factor):
    torch = pytest.importorskip("torch")
    x = tie_free_input((2, 3, 4, 5), np.random.default_rng(0))
    layer = built(Upsample2D(factor), (3, 4, 5))
    y = layer.forward(x)
    g = np.random.default_rng(1).standard_normal(y.shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.Upsample(scale_factor=pair(factor), mode="nearest")(xt)
    yt.backward(torch.tensor(g))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_allclose(layer.backward(g), xt.grad.numpy(), rtol=1e-12)


def test_upsample2d_keeps_float32():
    layer = built(Upsample2D(2), (2, 3, 3), dtype="float32")
    x = tie_free_input((1, 2, 3, 3), dtype=np.float32)
    y = layer.forward(x)
    assert y.dtype == np.float32 and layer.backward(np.ones_like(y)).dtype == np.float32


def test_upsample2d_undoes_pooling_in_a_model():
    """Pooling halves, Upsample2D doubles: the decoder's output has the input's size."""
    model = Sequential([Conv2D(4, 3, padding="same"), MaxPool2D(2), Upsample2D(2), Conv2D(1, 3, padding="same"),
                        Flatten()], input_shape=(1, 8, 8), seed=0)
    assert model.layers[2].output_shape == (4, 8, 8)
    out = model.forward(np.zeros((2, 1, 8, 8), dtype=np.float32))
    assert out.shape == (2, 64)


@pytest.mark.parametrize("bad, error, words", [
    (0, ValueError, r"Upsample2D: factor must be >= 1, got 0"),
    ((2, -1), ValueError, r"factor must be >= 1, got \(2, -1\)"),
    (1.5, TypeError, r"factor must be an int or a pair of ints, got 1.5"),
    ((2, 2, 2), TypeError, r"got \(2, 2, 2\)"),
    ("2", TypeError, r"got '2'"),
    (True, TypeError, r"got True"),
])
def test_upsample2d_rejects_bad_factors(bad, error, words):
    with pytest.raises(error, match=words):
        Upsample2D(bad)


def test_upsample2d_needs_images():
    with pytest.raises(ValueError, match=r"Upsample2D: expects images \(N, C, H, W\), got per-sample shape \(5,\)"):
        built(Upsample2D(2), (5,))
