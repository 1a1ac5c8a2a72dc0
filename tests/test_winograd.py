"""minidl.backend.winograd through the fast backend: 3x3 stride-1 convolutions (forward, input gradient) equal the
numpy backend's (float64 to 1e-12, float32 to 1e-5 relative) for any batch, image size, padding and memory layout,
give the same bits at 1 and 2 threads and from two Python threads at once, and Conv2D's gradients check out."""

import threading

import numpy as np
import pytest

pytest.importorskip("numba")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import minidl  # noqa: E402
import minidl.backend.fast as fast  # noqa: E402
import minidl.backend.numpy as numpy_backend  # noqa: E402
import minidl.backend.winograd as winograd  # noqa: E402
from minidl.backend import set_backend  # noqa: E402
from minidl.backend.fast import FastBackend  # noqa: E402
from minidl.backend.numpy import NumpyBackend  # noqa: E402
from minidl.layers import Conv2D  # noqa: E402
from minidl.testing import MEMORY_LAYOUTS, check_layer_gradients, stored_as, tie_free_input  # noqa: E402

TOL = {"float32": dict(rtol=1e-5, atol=1e-5), "float64": dict(rtol=1e-12, atol=1e-12)}
ORDERS = list(MEMORY_LAYOUTS.values())
FAST, NUMPY = FastBackend(), NumpyBackend()


@pytest.fixture(autouse=True)
def winograd_for_small_shapes(monkeypatch):
    # Winograd (and the compiled kernels) for the tiny shapes of these tests; the real thresholds are about speed
    monkeypatch.setattr(fast, "PARALLEL_MIN_SIZE", 0)
    monkeypatch.setattr(fast, "WINOGRAD_MIN_CHANNELS", 1)
    yield
    minidl.set_num_threads(None)


def draw(shape, dtype, order, seed):
    x = (np.random.default_rng(seed).standard_normal(shape) * 3 + 1).astype(dtype)
    return stored_as(x, order) if len(shape) == 4 else x


def both_backends(x, weight, bias, pads, g):
    y, ctx = FAST.conv2d(x, weight, bias, (1, 1), pads)
    y_ref, ctx_ref = NUMPY.conv2d(x, weight, bias, (1, 1), pads)
    return (y, *FAST.conv2d_backward(ctx, g(y.shape))), (y_ref, *NUMPY.conv2d_backward(ctx_ref, g(y.shape))), ctx


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 5), f=st.integers(1, 4), h=st.integers(1, 7), w=st.integers(1, 7),
       pads=st.tuples(*[st.integers(0, 2)] * 4), bias=st.booleans(), dtype=st.sampled_from(["float32", "float64"]),
       order=st.sampled_from(ORDERS), g_order=st.sampled_from(ORDERS), seed=st.integers(0, 2**16))
def test_forward_and_gradients_equal_the_numpy_backend(n, c, f, h, w, pads, bias, dtype, order, g_order, seed):
    pt, pb, pl, pr = pads
    if h + pt + pb < 3 or w + pl + pr < 3:
        return  # no output pixel: Conv2D refuses such a shape before any backend sees it
    x = draw((n, c, h, w), dtype, order, seed)
    weight = draw((f, c, 3, 3), dtype, ORDERS[0], seed + 1)
    b = draw((f,), dtype, ORDERS[0], seed + 2) if bias else None
    ours, ref, ctx = both_backends(x, weight, b, ((pt, pb), (pl, pr)), lambda s: draw(s, dtype, g_order, seed + 3))
    assert isinstance(ctx, fast._WinogradConv)
    assert ours[0].strides == ref[0].strides  # batch-innermost out, as the numpy backend's
    for a, r in zip(ours, ref, strict=True):
        if r is None:
            assert a is None
            continue
        assert a.dtype == np.dtype(dtype) and a.shape == r.shape
        scale = np.abs(r).max() or 1.0  # relative to the array's size: single entries may cancel to ~0
        np.testing.assert_allclose(a / scale, r / scale, **TOL[dtype])


@pytest.mark.parametrize("pads", [((3, 3), (1, 1)), ((0, 0), (0, 4))])
def test_pads_beyond_two_take_the_numpy_input_gradient(pads):
    x = draw((2, 3, 4, 5), "float64", ORDERS[1], 0)
    weight = draw((2, 3, 3, 3), "float64", ORDERS[0], 1)
    ours, ref, ctx = both_backends(x, weight, None, pads, lambda s: draw(s, "float64", ORDERS[1], 2))
    assert isinstance(ctx, fast._WinogradConv)
    for a, r in zip(ours, ref, strict=True):
        if r is not None:
            np.testing.assert_allclose(a, r, **TOL["float64"])


def test_a_numpy_forward_may_get_a_winograd_input_gradient(monkeypatch):
    monkeypatch.setattr(fast, "WINOGRAD_MIN_CHANNELS", 3)  # forward's depth 2 below it, the input gradient's 4 not
    x = draw((2, 2, 5, 6), "float64", ORDERS[1], 0)
    weight = draw((4, 2, 3, 3), "float64", ORDERS[0], 1)
    ours, ref, ctx = both_backends(x, weight, None, ((1, 1), (1, 1)), lambda s: draw(s, "float64", ORDERS[1], 2))
    assert not isinstance(ctx, fast._WinogradConv)
    for a, r in zip(ours, ref, strict=True):
        if r is not None:
            np.testing.assert_allclose(a, r, **TOL["float64"])


def run(threads, shape=(3, 4, 9, 11), seed=0):
    minidl.set_num_threads(threads)
    x = draw(shape, "float32", ORDERS[1], seed)
    weight = draw((5, shape[1], 3, 3), "float32", ORDERS[0], seed + 1)
    y, ctx = FAST.conv2d(x, weight, weight[:, 0, 0, 0], (1, 1), ((1, 1), (1, 1)))
    assert isinstance(ctx, fast._WinogradConv)
    return (y.copy(), *FAST.conv2d_backward(ctx, draw(y.shape, "float32", ORDERS[1], seed + 2)))


def many_blocks_on_both_threads(monkeypatch):
    monkeypatch.setattr(winograd, "BLOCK_COLUMNS", 8)
    monkeypatch.setattr(numpy_backend, "PARALLEL_MIN_FLOPS", 0)  # the pool even for these tiny products
    monkeypatch.setattr(numpy_backend, "COPY_BLOCK", 1)  # and the split copies one channel a block
    calls = []
    real = winograd.threads.map_blocks
    monkeypatch.setattr(winograd.threads, "map_blocks", lambda fn, count, cap=None: calls.append((count, cap))
                        or real(fn, count, cap))
    return calls


def test_the_same_bits_at_one_and_two_threads(monkeypatch):
    calls = many_blocks_on_both_threads(monkeypatch)
    for a, b in zip(run(1), run(2), strict=True):
        np.testing.assert_array_equal(a, b)
    assert calls and all(count > 2 and cap is None for count, cap in calls)


@pytest.mark.filterwarnings("ignore:minidl. BLAS kept")  # map_blocks outside the main thread cannot pin OpenBLAS
def test_two_python_threads_may_convolve_at_once(monkeypatch):
    many_blocks_on_both_threads(monkeypatch)
    expected = {seed: run(2, seed=seed) for seed in (0, 1)}
    results: dict = {}

    def work(seed):
        for _ in range(20):
            results[seed] = run(2, seed=seed)

    workers = [threading.Thread(target=work, args=(seed,)) for seed in (0, 1)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=300)
    assert sorted(results) == [0, 1]
    for seed in (0, 1):
        for a, b in zip(results[seed], expected[seed], strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("padding, size", [(1, (5, 6)), (0, (4, 3)), (2, (1, 1))])
def test_conv2d_gradients_check_under_the_fast_backend(padding, size):
    set_backend("fast")
    try:
        layer = Conv2D(3, 3, padding=padding)
        layer.build((2, *size), rng=np.random.default_rng(0), dtype="float64")
        rng = np.random.default_rng(1)
        x = tie_free_input((2, 2, *size), rng)
        layer.forward(x, training=True)
        assert isinstance(layer._ctx, fast._WinogradConv)
        errors = check_layer_gradients(layer, x, rng=rng)
    finally:
        set_backend(None)
    assert set(errors) == {"input", "weight", "bias"}
