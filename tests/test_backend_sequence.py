"""The sequence operations of the backends (GELU, LayerNorm, attention, Embedding's gradient, the RNN loops):
the fast backend equals the numpy one (float64 to 1e-12, float32 to 1e-5 relative), the bits do not depend on
the thread count, and nothing at a padded step reaches a valid one."""

import numpy as np
import pytest

pytest.importorskip("numba")

import minidl  # noqa: E402
import minidl.backend.fast as fast  # noqa: E402
import minidl.backend.fast_sequence as fast_sequence  # noqa: E402
from minidl.backend import set_backend  # noqa: E402
from minidl.backend.fast import FastBackend  # noqa: E402
from minidl.backend.numpy import NumpyBackend  # noqa: E402
from minidl.backend.sequence import RNN_BLOCK, batch_blocks  # noqa: E402
from minidl.layers import GRU, LSTM, MultiHeadAttention  # noqa: E402

TOL = {"float32": dict(rtol=1e-5, atol=1e-5), "float64": dict(rtol=1e-12, atol=1e-12)}
DTYPES = ["float32", "float64"]
FAST, NUMPY = FastBackend(), NumpyBackend()
CELLS = {"lstm": 4, "gru": 3, "tanh": 1, "relu": 1}


@pytest.fixture(autouse=True)
def compiled_even_for_tiny_inputs(monkeypatch):
    monkeypatch.setattr(fast, "PARALLEL_MIN_SIZE", 0)
    # several blocks on tiny inputs: the blocks' results and sums are checked too
    monkeypatch.setattr(fast_sequence, "LN_BLOCK", 5)
    monkeypatch.setattr(fast_sequence, "GELU_BLOCK", 16)
    monkeypatch.setattr(fast_sequence, "ATTENTION_BLOCK", 1)
    yield
    minidl.set_num_threads(None)
    set_backend(None)


def data(shape, dtype, seed=0, scale=2.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def assert_close(a, b, dtype):
    assert a.dtype == np.dtype(dtype) and a.shape == b.shape
    np.testing.assert_allclose(a, b, **TOL[dtype])


def padding_mask(n, t, seed=0):
    mask = np.arange(t) < np.random.default_rng(seed).integers(0, t + 1, n)[:, None]  # right-padded, some empty
    mask[0] = True
    return mask


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_equals_the_numpy_backend(dtype):
    x = data((3, 5, 7), dtype, scale=4.0)
    x[0, 0, :5] = [0.0, -30.0, 30.0, 1e-20, -9.0]  # far tails and zero
    g = data(x.shape, dtype, seed=1)
    (y, ctx), (y_ref, ctx_ref) = FAST.gelu(x), NUMPY.gelu(x)
    assert_close(y, y_ref, dtype)
    assert_close(FAST.gelu_backward(ctx, g), NUMPY.gelu_backward(ctx_ref, g), dtype)


def test_gelu_keeps_nan():
    x = np.array([[np.nan, 1.0]], np.float32)
    y, _ = FAST.gelu(x)
    assert np.isnan(y[0, 0]) and y[0, 1] == pytest.approx(0.8413447, rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_equals_the_numpy_backend(dtype):
    x = data((4, 3, 6), dtype) + 3
    rng = np.random.default_rng(2)
    weight, bias = rng.uniform(0.5, 2, 6).astype(dtype), rng.standard_normal(6).astype(dtype)
    g = data(x.shape, dtype, seed=1)
    (y, ctx), (y_ref, ctx_ref) = FAST.layer_norm(x, weight, bias, 1e-5), NUMPY.layer_norm(x, weight, bias, 1e-5)
    assert_close(y, y_ref, dtype)
    for got, want in zip(FAST.layer_norm_backward(ctx, g), NUMPY.layer_norm_backward(ctx_ref, g), strict=True):
        assert_close(got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("dropout", [True, False])
def test_attention_equals_the_numpy_backend(dtype, causal, masked, dropout):
    n, h, t, dk = 3, 2, 5, 4
    q, k, v = (data((n, h, t, dk), dtype, seed=s) for s in range(3))
    mask = padding_mask(n, t) if masked else None
    drop = (np.random.default_rng(4).random((n, h, t, t)) > 0.3).astype(dtype) * 2 if dropout else None
    got, want = FAST.attention(q, k, v, mask, causal, drop), NUMPY.attention(q, k, v, mask, causal, drop)
    for a, b in zip(got[:2], want[:2], strict=True):
        assert_close(a, b, dtype)
    if masked:  # a padded key gets exactly zero weight, a query without keys all zeros
        assert np.all(got[1][np.broadcast_to(~mask[:, None, None, :], got[1].shape)] == 0)
    d_heads = data(got[0].shape, dtype, seed=5)
    grads = FAST.attention_backward(got[2], d_heads)
    for a, b in zip(grads, NUMPY.attention_backward(want[2], d_heads), strict=True):
        assert_close(a, b, dtype)
    for backend, ctx in ((FAST, got[2]), (NUMPY, want[2])):  # into a strided view of a packed array: the same
        packed = np.full((n, t, 3, h, dk), np.nan, dtype)
        backend.attention_backward(ctx, d_heads, out=packed.transpose(2, 0, 3, 1, 4))
        for i, grad in enumerate(grads):
            assert_close(packed[:, :, i].transpose(0, 2, 1, 3), grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_gradient_equals_the_numpy_backend(dtype):
    ids = np.random.default_rng(0).integers(0, 7, (4, 5))
    g = data((4, 5, 3), dtype)
    got, want = np.full((9, 3), np.nan, dtype), np.full((9, 3), np.nan, dtype)  # ids 7, 8 never occur: zeros
    FAST.embedding_backward(ids, g, got)
    NUMPY.embedding_backward(ids, g, want)
    assert_close(got, want, dtype)
    assert np.all(got[7:] == 0)


def rnn_case(cell, dtype, n, t=4, u=3, d=2, masked=False):
    g = CELLS[cell]
    xh = data((t + 1, n, d + u), dtype)  # the states' part is the backend's to overwrite
    weights = data((g * u, d), dtype, seed=1, scale=0.5), data((g * u, u), dtype, seed=5, scale=0.5)
    biases = data((g * u,), dtype, seed=2), data((g * u,), dtype, seed=6)
    dy, d_last = data((t, n, u), dtype, seed=3), data((n, u), dtype, seed=4)
    return xh, (*weights, *biases), (padding_mask(n, t) if masked else None), dy, d_last


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("masked", [True, False])
def test_rnn_loops_equal_the_numpy_backend(dtype, cell, masked):
    xh, params, mask, dy, d_last = rnn_case(cell, dtype, n=RNN_BLOCK + 3, masked=masked)  # two blocks
    rows = {name: xh.copy() for name in ("fast", "numpy")}  # each its own: rnn_forward writes the states into it
    (h, ctx), (h_ref, ctx_ref) = (b.rnn_forward(cell, rows[name], *params, mask)
                                  for name, b in (("fast", FAST), ("numpy", NUMPY)))
    assert_close(h, h_ref, dtype)
    d = params[0].shape[1]
    for name, states in (("fast", h), ("numpy", h_ref)):  # the layer's weight gradients read [x_t | h_t] from xh
        assert np.shares_memory(states, rows[name]) and np.array_equal(rows[name][:, :, d:], states)
        np.testing.assert_array_equal(rows[name][:-1, :, :d], xh[:-1, :, :d])  # the inputs untouched
        assert np.all(states[0] == 0)
    for a, b in zip(FAST.rnn_backward(ctx, dy, d_last), NUMPY.rnn_backward(ctx_ref, dy, d_last), strict=True):
        assert_close(a, b, dtype)


def test_batch_blocks_depend_on_the_batch_only():
    assert batch_blocks(RNN_BLOCK) == [slice(0, RNN_BLOCK)]
    blocks = batch_blocks(2 * RNN_BLOCK + 1)
    assert len(blocks) == 3 and blocks[0].start == 0 and blocks[-1].stop == 2 * RNN_BLOCK + 1
    assert all(a.stop == b.start for a, b in zip(blocks, blocks[1:]))


def run_all(backend, dtype):
    """Every sequence op once, forward and backward, on shapes where the RNN has several blocks."""
    out = []
    x = data((4, 6, 8), dtype)
    y, ctx = backend.gelu(x)
    out += [y, backend.gelu_backward(ctx, x)]
    y, ctx = backend.layer_norm(x, np.ones(8, dtype), np.zeros(8, dtype), 1e-5)
    out += [y, *backend.layer_norm_backward(ctx, x)]
    q = x.reshape(4, 2, 6, 4)
    heads, weights, ctx = backend.attention(q, q * 2, q - 1, padding_mask(4, 6), True)
    out += [heads, weights, *backend.attention_backward(ctx, heads)]
    for cell in CELLS:
        xh, params, mask, dy, d_last = rnn_case(cell, dtype, n=2 * RNN_BLOCK + 5, masked=True)
        h, ctx = backend.rnn_forward(cell, xh, *params, mask)
        out += [h, *backend.rnn_backward(ctx, dy, d_last)]
    return out


@pytest.mark.parametrize("backend", [FAST, NUMPY], ids=["fast", "numpy"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_same_bits_with_one_and_two_threads(backend, dtype):
    minidl.set_num_threads(1)
    one = run_all(backend, dtype)
    minidl.set_num_threads(2)
    two = run_all(backend, dtype)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", ["fast", "numpy"])
@pytest.mark.parametrize("layer", [lambda: LSTM(5, return_sequences=True), lambda: GRU(5, return_sequences=True),
                                   lambda: MultiHeadAttention(2, causal=False)], ids=["lstm", "gru", "attention"])
def test_padded_steps_change_nothing_at_valid_ones(backend, layer):
    set_backend(backend)
    model = layer()
    model.build((6, 4), rng=np.random.default_rng(0), dtype="float64")
    mask = padding_mask(RNN_BLOCK + 2, 6)
    x = data((RNN_BLOCK + 2, 6, 4), "float64")
    other = np.where(mask[:, :, None], x, data(x.shape, "float64", seed=9))
    g = data((len(x), 6, 4 if isinstance(model, MultiHeadAttention) else 5), "float64", seed=3)
    results = []
    for inputs in (x, other):
        y = model.forward(inputs, training=True, mask=mask)
        dx = model.backward(np.where(mask[:, :, None], g, 0))
        results.append((y, dx, [p.grad.copy() for p in model.parameters()]))
    (y1, dx1, grads1), (y2, dx2, grads2) = results
    valid = mask[:, :, None]
    np.testing.assert_array_equal(np.where(valid, y1, 0), np.where(valid, y2, 0))
    np.testing.assert_array_equal(np.where(valid, dx1, 0), np.where(valid, dx2, 0))
    for a, b in zip(grads1, grads2, strict=True):
        np.testing.assert_array_equal(a, b)
