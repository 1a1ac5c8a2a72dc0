"""The residual add (minidl.backend.elementwise), the strided input gradient in channel groups and
GlobalAvgPool2D through the backend: the values of the textbook, the same bits at any thread count."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import built
from reference import conv2d_backward_reference

import minidl.backend.elementwise as ew
import minidl.backend.numpy as nb
from minidl import set_num_threads, threads
from minidl.backend import available_backends, get_backend, set_backend
from minidl.layers import BatchNorm2D, Conv2D, GlobalAvgPool2D, ReLU, Residual
from minidl.testing import MEMORY_LAYOUTS, stored_as


@pytest.fixture(params=available_backends())
def backend(request):
    set_backend(request.param)
    yield request.param
    set_backend(None)


@pytest.fixture
def thread_count():
    yield set_num_threads
    set_num_threads(None)


@pytest.mark.parametrize("layout", list(MEMORY_LAYOUTS.values()), ids=list(MEMORY_LAYOUTS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_split_add_is_numpys_add_bit_for_bit_at_any_thread_count_in_the_operands_layout(
        backend, monkeypatch, thread_count, layout, dtype):
    monkeypatch.setattr(ew, "ADD_BLOCK", 1000)
    monkeypatch.setattr(ew, "ADD_MIN_SIZE", 2000)
    rng = np.random.default_rng(0)
    shape = (4, 6, 9, 11)  # 2,376 elements: three blocks, the last one short
    a = stored_as(rng.standard_normal(shape).astype(dtype), layout)
    b = stored_as(rng.standard_normal(shape).astype(dtype), layout)
    for n in (1, 2, 3):
        thread_count(n)
        out = get_backend().add(a, b)
        assert np.array_equal(out, a + b), n
        assert out.strides == a.strides


def test_add_of_other_operands_is_numpys(backend, monkeypatch, thread_count):
    monkeypatch.setattr(ew, "ADD_BLOCK", 1000)
    monkeypatch.setattr(ew, "ADD_MIN_SIZE", 2000)
    thread_count(2)
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 3, 16, 32)).astype(np.float32)
    b = stored_as(rng.standard_normal(a.shape).astype(np.float32), MEMORY_LAYOUTS["batch-innermost (C, H, W, N)"])
    np.testing.assert_array_equal(get_backend().add(a, b), a + b)  # mixed layouts
    np.testing.assert_array_equal(get_backend().add(a, b[:1]), a + b[:1])  # broadcasting
    np.testing.assert_array_equal(get_backend().add(a[:, :, ::2], a[:, :, 1::2]), a[:, :, ::2] + a[:, :, 1::2])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_strided_input_gradient_in_channel_groups_is_the_reference_with_the_same_bits_at_any_thread_count(
        monkeypatch, thread_count, dtype):
    monkeypatch.setattr(nb, "PARALLEL_MIN_FLOPS", 0)  # channel groups however small
    rng = np.random.default_rng(2)
    c, f, n = 7, 5, 3  # 7 channels: groups of 2, the last of 1
    x = rng.standard_normal((n, c, 9, 8))
    weight = rng.standard_normal((f, c, 3, 3))
    pads = ((1, 1), (1, 1))
    grad = rng.standard_normal((n, f, 5, 4))
    ref = conv2d_backward_reference(x, weight, grad, (2, 2), pads)[0]
    results = []
    for count in (1, 2, 3):
        thread_count(count)
        with threads.blas_threads():
            dx = nb.conv_input_grad(grad.transpose(1, 2, 3, 0).astype(dtype), weight.astype(dtype), (2, 2), pads,
                                    (9, 8))
        results.append(dx.transpose(3, 0, 1, 2))
    np.testing.assert_allclose(results[0], ref, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-5)
    assert all(np.array_equal(results[0], r) for r in results[1:])


def test_global_average_pooling_hands_back_the_gradient_in_its_inputs_layout(backend):
    rng = np.random.default_rng(3)
    layer = built(GlobalAvgPool2D(), (4, 3, 5))
    g = rng.standard_normal((6, 4))
    for order in MEMORY_LAYOUTS.values():
        x = stored_as(rng.standard_normal((6, 4, 3, 5)), order)
        np.testing.assert_allclose(layer.forward(x), x.mean(axis=(2, 3)), rtol=1e-12)
        dx = layer.backward(g)
        assert dx.strides == x.strides
        np.testing.assert_array_equal(dx, np.broadcast_to(g[:, :, None, None] / 15, x.shape))


def test_a_residual_network_trains_to_the_same_bits_with_any_number_of_threads(backend, monkeypatch, thread_count):
    from minidl import Sequential
    from minidl.layers import Dense, SoftmaxCE
    from minidl.optim import SGD

    monkeypatch.setattr(nb, "PARALLEL_MIN_FLOPS", 0)
    monkeypatch.setattr(ew, "ADD_BLOCK", 1000)  # the adds split too
    monkeypatch.setattr(ew, "ADD_MIN_SIZE", 2000)

    def train(count: int) -> list[np.ndarray]:
        thread_count(count)
        body = [Conv2D(8, 3, stride=2, padding=1), BatchNorm2D(), ReLU(), Conv2D(8, 3, padding=1)]
        model = Sequential([Conv2D(8, 3, padding=1), ReLU(), Residual(body, shortcut=Conv2D(8, 1, stride=2)), ReLU(),
                            GlobalAvgPool2D(), Dense(3), SoftmaxCE()], input_shape=(2, 12, 12), seed=0)
        rng = np.random.default_rng(0)
        X, y = rng.random((24, 2, 12, 12), dtype=np.float32), rng.integers(0, 3, 24)
        model.fit(X, y, optimizer=SGD(model.parameters(), lr=0.05, momentum=0.9), epochs=2, batch_size=12, verbose=0)
        return [p.data.copy() for p in model.parameters()]

    one = train(1)
    for count in (2, 3):
        assert all(np.array_equal(a, b) for a, b in zip(one, train(count), strict=True)), count


@pytest.mark.parametrize("pads", [((0, 0), (0, 0)), ((1, 2), (2, 0))])
def test_padded_copies_in_channel_blocks_are_nps_pad_at_any_thread_count(monkeypatch, thread_count, pads):
    monkeypatch.setattr(nb, "COPY_BLOCK", 1)  # a channel a block
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 4, 6, 3)).transpose(1, 2, 3, 0)  # (C, H, W, N) stored NCHW: copied either way
    expected = np.pad(x, ((0, 0), *pads, (0, 0)))
    for count in (1, 2, 3):
        thread_count(count)
        out = nb.pad_batch_innermost(x, pads, {})
        assert out.flags.c_contiguous and np.array_equal(out, expected), count


@pytest.mark.parametrize("layout", list(MEMORY_LAYOUTS.values()), ids=list(MEMORY_LAYOUTS))
def test_tiled_max_pooling_in_channel_blocks_is_the_reference_at_any_thread_count(
        backend, monkeypatch, thread_count, layout):
    from reference import maxpool2d_backward_reference, maxpool2d_reference

    monkeypatch.setattr(nb, "COPY_BLOCK", 1)  # a channel a block
    rng = np.random.default_rng(5)
    x = stored_as(rng.integers(0, 4, (6, 5, 8, 10)).astype(np.float64), layout)  # ties: the first maximum wins
    g = rng.standard_normal((6, 5, 4, 5))
    results = []
    for count in (1, 2, 3):
        thread_count(count)
        y, ctx = get_backend().max_pool2d(x, (2, 2), (2, 2), (0, 0))
        results.append((y.copy(), get_backend().max_pool2d_backward(ctx, g)))
    np.testing.assert_array_equal(results[0][0], maxpool2d_reference(x, (2, 2), (2, 2), (0, 0)))
    np.testing.assert_array_equal(results[0][1], maxpool2d_backward_reference(x, g, (2, 2), (2, 2), (0, 0)))
    assert all(np.array_equal(a, b) for r in results[1:] for a, b in zip(results[0], r, strict=True))


@pytest.mark.parametrize("layout", list(MEMORY_LAYOUTS.values()), ids=list(MEMORY_LAYOUTS))
def test_split_relu_is_numpys_bit_for_bit_at_any_thread_count(monkeypatch, thread_count, layout):
    monkeypatch.setattr(ew, "ADD_BLOCK", 1000)
    monkeypatch.setattr(ew, "ADD_MIN_SIZE", 2000)
    rng = np.random.default_rng(6)
    x = stored_as(rng.standard_normal((4, 6, 9, 11)).astype(np.float32), layout)
    x[0, 0, 0, :3] = [np.nan, 0.0, -0.0]
    g = rng.standard_normal(x.shape).astype(np.float32)  # NCHW: another layout than x's but for NCHW
    for count in (1, 2, 3):
        thread_count(count)
        y = ew.relu(x)
        np.testing.assert_array_equal(y, np.maximum(x, np.float32(0)))
        assert y.strides == x.strides
        np.testing.assert_array_equal(ew.relu_backward(y, g), g * (y > 0))


def test_numpy_batch_norm_in_channel_blocks_gives_the_same_bits_at_any_thread_count(monkeypatch, thread_count):
    from minidl.backend.numpy import NumpyBackend

    monkeypatch.setattr(nb, "CHANNEL_BLOCK", 1)  # a channel a block
    rng = np.random.default_rng(7)
    x = stored_as(rng.standard_normal((5, 6, 4, 3)).astype(np.float32), MEMORY_LAYOUTS["batch-innermost (C, H, W, N)"])
    weight, bias = rng.standard_normal(6).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for count in (1, 2, 3):
        thread_count(count)
        y, mean, var, ctx = NumpyBackend().batch_norm2d(x, weight, bias, 1e-5)
        results.append((y, mean, var, *NumpyBackend().batch_norm2d_backward(ctx, g)))
    mu, sigma2 = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(results[0][1], mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[0][2], sigma2, rtol=1e-5)
    assert all(np.array_equal(a, b) for r in results[1:] for a, b in zip(results[0], r, strict=True))
