"""minidl.backend.linear: Dense's products in row blocks give the same bits at 1 and 2 threads, and equal the
plain products within float tolerance; small products stay the plain product."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minidl.backend.linear as lin
from minidl import set_num_threads, threads
from minidl.backend import get_backend, set_backend
from minidl.layers import LSTM, Dense

TOL = {"float32": dict(rtol=1e-5, atol=1e-5), "float64": dict(rtol=1e-12, atol=1e-12)}


@pytest.fixture(autouse=True)
def numpy_backend():
    set_backend("numpy")
    yield
    set_backend(None)
    set_num_threads(None)


def _products(x, w, b, g, n_threads):
    """(y, dx, dw, db, dw alone) with ``n_threads`` threads and BLAS pinned to one, as inside ``fit``."""
    set_num_threads(n_threads)
    with threads.blas_threads():
        dw, db = np.full(w.shape, np.nan, w.dtype), np.full(b.shape, np.nan, b.dtype)
        dw_alone = np.full(w.shape, np.nan, w.dtype)
        y = get_backend().linear(x, w, b)
        dx = get_backend().linear_backward(x, w, g, dw, db)
        get_backend().linear_weight_grad(x, g, dw_alone)
    return y, dx, dw, db, dw_alone


@settings(max_examples=15, deadline=None)
@given(lead=st.lists(st.integers(1, 9), min_size=1, max_size=2), d=st.integers(1, 12), u=st.integers(1, 12),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**16))
def test_blocks_same_bits_at_1_and_2_threads_and_equal_plain_products(lead, d, u, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*lead, d)).astype(dtype)
    w = rng.standard_normal((d, u)).astype(dtype)
    g = rng.standard_normal((*lead, u)).astype(dtype)
    bias = rng.standard_normal(u).astype(dtype)
    old = lin.LINEAR_MIN_FLOPS
    lin.LINEAR_MIN_FLOPS = 0  # tiny shapes take the blocked path
    try:
        one = _products(x, w, bias, g, 1)
        two = _products(x, w, bias, g, 2)
    finally:
        lin.LINEAR_MIN_FLOPS = old
    for a, b in zip(one, two):
        assert a.dtype == np.dtype(dtype) and a.tobytes() == b.tobytes()
    y, dx, dw, db, dw_alone = one
    assert dw_alone.tobytes() == dw.tobytes()  # the same blocks, summed in the same order
    np.testing.assert_allclose(y, x @ w + bias, **TOL[dtype])
    np.testing.assert_allclose(dx, g @ w.T, **TOL[dtype])
    np.testing.assert_allclose(dw, x.reshape(-1, d).T @ g.reshape(-1, u), **TOL[dtype])
    np.testing.assert_allclose(db, g.reshape(-1, u).sum(axis=0), **TOL[dtype])


def test_big_product_splits_into_fixed_blocks_and_small_one_does_not():
    m, d, u = 4096, 128, 512  # char-gpt's MLP: 537 MFLOP
    blocks = lin._row_blocks(m, 2 * m * d * u)
    assert blocks is not None and len(blocks) == lin.LINEAR_BLOCKS
    assert blocks[0].start == 0 and blocks[-1].stop == m and all(b.stop - b.start == 1024 for b in blocks)
    assert lin._row_blocks(64, 2 * 64 * 16 * 10) is None  # digits' head: below LINEAR_MIN_FLOPS


def test_small_product_is_the_plain_product():
    rng = np.random.default_rng(0)
    x, w, g = rng.standard_normal((5, 3)), rng.standard_normal((3, 4)), rng.standard_normal((5, 4))
    dw, db, b = np.empty((3, 4)), np.empty(4), rng.standard_normal(4)
    assert get_backend().linear(x, w).tobytes() == (x @ w).tobytes()
    assert get_backend().linear(x, w, b).tobytes() == (x @ w + b).tobytes()
    assert get_backend().linear_backward(x, w, g, dw, db).tobytes() == (g @ w.T).tobytes()
    assert dw.tobytes() == (x.T @ g).tobytes() and db.tobytes() == np.add.reduce(g, axis=0).tobytes()
    get_backend().linear_weight_grad(x, g, dw)
    assert dw.tobytes() == (x.T @ g).tobytes()


def test_no_weight_grad_leaves_it_alone_on_both_paths(monkeypatch):
    rng = np.random.default_rng(1)
    x, w, g = rng.standard_normal((2, 40, 6)), rng.standard_normal((6, 7)), rng.standard_normal((2, 40, 7))
    for threshold in (lin.LINEAR_MIN_FLOPS, 0):
        monkeypatch.setattr(lin, "LINEAR_MIN_FLOPS", threshold)
        np.testing.assert_allclose(get_backend().linear_backward(x, w, g, None), g @ w.T, rtol=1e-12)


def test_dense_with_blocks_has_the_textbook_gradients_and_frozen_weight(monkeypatch):
    monkeypatch.setattr(lin, "LINEAR_MIN_FLOPS", 0)
    rng = np.random.default_rng(2)
    layer = Dense(5)
    layer.build((16, 4), dtype="float64")
    x, g = rng.standard_normal((3, 16, 4)), rng.standard_normal((3, 16, 5))
    np.testing.assert_allclose(layer.forward(x), x @ layer.weight.data + layer.bias.data, rtol=1e-12)
    np.testing.assert_allclose(layer.backward(g), g @ layer.weight.data.T, rtol=1e-12)
    np.testing.assert_allclose(layer.weight.grad, x.reshape(-1, 4).T @ g.reshape(-1, 5), rtol=1e-12)
    np.testing.assert_allclose(layer.bias.grad, g.sum(axis=(0, 1)), rtol=1e-12)
    layer.weight.trainable = False
    before = layer.weight.grad.copy()
    layer.forward(x)
    layer.backward(2 * g)
    assert np.array_equal(layer.weight.grad, before)


@pytest.mark.parametrize("backend", ["numpy", "fast"])
def test_recurrent_layer_in_blocks_same_bits_at_1_and_2_threads_and_equal_unblocked(backend, monkeypatch):
    """LSTM's input projection, input gradient and weight gradients go through these products."""
    if backend == "fast":
        pytest.importorskip("numba")
    set_backend(backend)
    rng = np.random.default_rng(3)
    x, g = rng.standard_normal((5, 7, 3)).astype(np.float32), rng.standard_normal((5, 4)).astype(np.float32)

    def run(n_threads):
        set_num_threads(n_threads)
        layer = LSTM(4)
        layer.build((7, 3), rng=np.random.default_rng(0))
        with threads.blas_threads():
            y, dx = layer.forward(x, training=True), layer.backward(g)
        return [y, dx, *(p.grad for p in (layer.weight_ih, layer.weight_hh, layer.bias_ih, layer.bias_hh))]

    plain = run(1)
    monkeypatch.setattr(lin, "LINEAR_MIN_FLOPS", 0)
    one, two = run(1), run(2)
    for a, b, c in zip(one, two, plain):
        assert a.tobytes() == b.tobytes()
        np.testing.assert_allclose(a, c, **TOL["float32"])
