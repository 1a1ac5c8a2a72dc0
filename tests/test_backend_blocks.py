"""The SoftmaxCE loss and Dropout's masks in fixed blocks (minidl.backend.blocks): the values of one NumPy pass,
the same bits at any thread count."""

from __future__ import annotations

import numpy as np
import pytest

import minidl.backend.blocks as bl
from minidl import set_num_threads
from minidl.layers import Dropout, SoftmaxCE


@pytest.fixture
def thread_count():
    yield set_num_threads
    set_num_threads(None)


def softmax_ce_reference(z, labels, dropped):
    """The textbook: log-softmax, the mean of -log p_y over the scored rows, (p - onehot) / count."""
    logp = z - z.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    rows = np.arange(len(z))
    count = max(int((~dropped).sum()), 1)
    grad = np.exp(logp)
    grad[rows, np.where(dropped, 0, labels)] -= 1
    grad[dropped] = 0
    return -logp[rows, labels][~dropped].sum() / count, grad / count


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("drop_some", [False, True])
def test_blocked_softmax_ce_is_the_textbook_and_the_same_bits_at_any_thread_count(
        monkeypatch, thread_count, dtype, tol, drop_some):
    monkeypatch.setattr(bl, "CE_BLOCK_ROWS", 16)
    monkeypatch.setattr(bl, "CE_MIN_SIZE", 64)
    rng = np.random.default_rng(0)
    z = (3 * rng.standard_normal((45, 7))).astype(dtype)  # three blocks, the last one short
    labels = rng.integers(0, 7, 45)
    dropped = rng.random(45) < 0.3 if drop_some else np.zeros(45, bool)
    ref_loss, ref_grad = softmax_ce_reference(z.astype(np.float64), labels, dropped)
    results = []
    for n in (1, 2, 3):
        thread_count(n)
        results.append(bl.softmax_ce(z, labels, dropped))
        assert results[-1][1].dtype == z.dtype
        np.testing.assert_allclose(results[-1][0], ref_loss, rtol=tol, atol=tol)
        np.testing.assert_allclose(results[-1][1], ref_grad, rtol=tol, atol=tol)
    for loss, grad in results[1:]:
        assert loss == results[0][0] and np.array_equal(grad, results[0][1])


def test_softmax_ce_loss_through_the_layer_blocks_at_char_gpt_size(thread_count):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((4, 300, 120))  # 1,200 rows: two blocks of the default size
    y = rng.integers(0, 120, (4, 300))
    y[0, :5] = -100
    loss = SoftmaxCE()
    loss.build((300, 120), dtype="float64")
    out = []
    for n in (1, 2):
        thread_count(n)
        out.append(loss.loss_and_grad(logits, y))
    keep = y.reshape(-1) != -100
    ref_loss, ref_grad = softmax_ce_reference(logits.reshape(-1, 120), y.reshape(-1), ~keep)
    assert out[0][0] == out[1][0] and np.array_equal(out[0][1], out[1][1])
    np.testing.assert_allclose(out[0][0], ref_loss, rtol=1e-12)
    np.testing.assert_allclose(out[0][1].reshape(-1, 120), ref_grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(3, 2001), (4, 500), (7,)])
def test_blocked_dropout_mask_is_one_draw_bit_for_bit_and_leaves_the_generator_as_one_draw_does(
        monkeypatch, thread_count, dtype, shape):
    monkeypatch.setattr(bl, "DROPOUT_BLOCK", 256)  # 6,003 entries: 24 blocks, the last one short and odd
    for n in (1, 2, 3):
        thread_count(n)
        rng, ref = np.random.default_rng(7), np.random.default_rng(7)
        ref.random(3, dtype=np.float64)
        rng.random(3, dtype=np.float64)
        mask = bl.dropout_mask(rng, shape, np.dtype(dtype), 0.3)
        expected = (ref.random(shape, dtype=dtype) >= 0.3) * np.dtype(dtype).type(1 / 0.7)
        assert mask.dtype == dtype and np.array_equal(mask, expected), n
        assert rng.bit_generator.state == ref.bit_generator.state
        assert rng.random(5, dtype=dtype).tolist() == ref.random(5, dtype=dtype).tolist()


def test_dropout_mask_after_an_odd_float32_draw_is_still_one_draw(monkeypatch, thread_count):
    monkeypatch.setattr(bl, "DROPOUT_BLOCK", 64)
    thread_count(2)
    rng, ref = np.random.default_rng(3), np.random.default_rng(3)
    rng.random(1, dtype=np.float32)  # half a 64-bit output left over: the blocks cannot start at it
    ref.random(1, dtype=np.float32)
    mask = bl.dropout_mask(rng, (10, 40), np.dtype("float32"), 0.5)
    assert np.array_equal(mask, (ref.random((10, 40), dtype=np.float32) >= 0.5) * np.float32(2))


def test_dropout_layer_masks_the_same_at_any_thread_count(monkeypatch, thread_count):
    monkeypatch.setattr(bl, "DROPOUT_BLOCK", 128)
    x = np.random.default_rng(2).standard_normal((4, 30, 16)).astype(np.float32)
    g = np.random.default_rng(3).standard_normal(x.shape).astype(np.float32)
    outs = []
    for n in (1, 2):
        thread_count(n)
        drop = Dropout(0.25)
        drop.build((30, 16), rng=np.random.default_rng(0), dtype="float32")
        y = drop.forward(x, training=True)
        dx = drop.backward(g)
        scale = (y != 0) * np.float32(1 / 0.75)
        assert np.array_equal(y, x * scale) and np.array_equal(dx, g * scale)
        outs.append((y, dx))
    assert np.array_equal(outs[0][0], outs[1][0]) and np.array_equal(outs[0][1], outs[1][1])


@pytest.mark.parametrize("min_size", [0, 2**20])  # in blocks; one block in the caller
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("decoupled", [False, True])
def test_fused_adam_in_blocks_is_the_per_parameter_loop_bit_for_bit_at_any_thread_count_and_after_a_load(
        monkeypatch, thread_count, amsgrad, decoupled, min_size):
    from minidl.layers import Dense
    from minidl.model import Sequential
    from minidl.optim import Adam

    monkeypatch.setattr(bl, "ADAM_BLOCK", 64)  # 6 x 20 + 20 + 20 x 3 + 3 = 203 entries: 4 blocks
    monkeypatch.setattr(bl, "ADAM_MIN_SIZE", min_size)
    decay = 0.1 if decoupled else 0.0
    runs = []
    for fused, n in ((False, 1), (True, 1), (True, 2), (True, 3)):
        thread_count(n)
        model = Sequential([Dense(20), Dense(3)], input_shape=(6,), seed=0, dtype="float32")
        opt = Adam(model.parameters(), lr=0.01, amsgrad=amsgrad, weight_decay=decay, decoupled_weight_decay=True,
                   fused=fused)
        rng = np.random.default_rng(0)
        for k in range(4):
            for p in model.parameters():
                p.grad[...] = rng.standard_normal(p.grad.shape)
            opt.step()
            if k == 1:  # moments loaded from a state dict: copied into the flat vectors
                opt.load_state_dict(opt.state_dict())
        runs.append([p.data.copy() for p in model.parameters()])
        assert all(s["step"] == 4 for s in opt.state)
    for run in runs[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(runs[0], run, strict=True))
