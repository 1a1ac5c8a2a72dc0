"""MultiHeadAttention: shapes, gradients (with masks), PyTorch's nn.MultiheadAttention, the mask invariant."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from helpers import built
from minidl.layers import MultiHeadAttention
from minidl.testing import central_differences, check_layer, relative_error, tie_free_input
from torch_twin import assert_close, minidl_pass, torch_pass


@st.composite
def attention_cases(draw):
    heads = draw(st.integers(1, 3))
    return dict(batch=draw(st.integers(1, 3)), t=draw(st.integers(1, 4)), heads=heads,
                d=heads * draw(st.integers(1, 3)), causal=draw(st.booleans()), bias=draw(st.booleans()),
                seed=draw(st.integers(0, 2**16)))


def draw_mask(rng, n, t):
    """A key-padding mask, True at valid steps; step 0 is always valid, so no query is left without a key
    (PyTorch gives NaN there, minidl zeros)."""
    mask = rng.random((n, t)) < 0.6
    mask[:, 0] = True
    return mask


def layer_for(case, **kwargs):
    layer = MultiHeadAttention(case["heads"], causal=case["causal"], use_bias=case["bias"], **kwargs)
    built(layer, (case["t"], case["d"]), seed=case["seed"])
    if case["bias"]:  # not the zeros they start at, so that the bias gradients mean something
        rng = np.random.default_rng(case["seed"] + 1)
        layer.in_proj_bias.data[...] = rng.standard_normal(layer.in_proj_bias.shape)
        layer.out_proj_bias.data[...] = rng.standard_normal(layer.out_proj_bias.shape)
    return layer


# -- the layer contract, without and with a mask ------------------------------------------------------


@settings(max_examples=12, deadline=None)
@given(attention_cases(), st.sampled_from([0.0, 0.3]))
@example(dict(batch=1, t=1, heads=1, d=1, causal=True, bias=True, seed=0), 0.0)  # batch 1, T = 1
@example(dict(batch=1, t=1, heads=2, d=4, causal=False, bias=False, seed=0), 0.5)
def test_attention_passes_check_layer(case, dropout):
    layer = MultiHeadAttention(case["heads"], causal=case["causal"], dropout=dropout, use_bias=case["bias"])
    report = check_layer(layer, (case["t"], case["d"]), batch=case["batch"], seed=case["seed"])
    assert report.output_shape == (case["t"], case["d"])


def masked_gradient_errors(layer, x, mask, g):
    """Input and parameter gradients of ``Σ forward(x, mask) ⊙ g`` against central differences."""
    layer.forward(x, mask=mask)
    analytic = {"input": layer.backward(g)} | {k: p.grad.copy() for k, p in layer.named_parameters().items()}
    targets = {"input": x} | {k: p.data for k, p in layer.named_parameters().items()}
    errors = {}
    for name, array in targets.items():
        numeric, noise = central_differences(lambda: layer.forward(x, mask=mask), array, g)
        errors[name] = relative_error(analytic[name], numeric, noise)[0]
    return errors


@settings(max_examples=12, deadline=None)
@given(attention_cases(), st.booleans())
@example(dict(batch=1, t=1, heads=1, d=2, causal=False, bias=True, seed=0), False)
def test_attention_gradients_with_a_key_padding_mask(case, key_dim):
    layer = layer_for(case, key_dim=3 if key_dim else None)
    rng = np.random.default_rng(case["seed"])
    x = tie_free_input((case["batch"], case["t"], case["d"]), rng)
    mask = draw_mask(rng, case["batch"], case["t"])
    g = rng.standard_normal(x.shape)
    errors = masked_gradient_errors(layer, x, mask, g)
    assert max(errors.values()) <= 1e-6, errors


# -- equal to PyTorch ---------------------------------------------------------------------------------


def torch_twin(layer):
    torch = pytest.importorskip("torch")
    d, h = layer.input_shape[1], layer.num_heads
    twin = torch.nn.MultiheadAttention(d, h, bias=layer.use_bias, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        twin.in_proj_weight.copy_(torch.tensor(layer.in_proj_weight.data.T))
        twin.out_proj.weight.copy_(torch.tensor(layer.out_proj_weight.data.T))
        if layer.use_bias:
            twin.in_proj_bias.copy_(torch.tensor(layer.in_proj_bias.data))
            twin.out_proj.bias.copy_(torch.tensor(layer.out_proj_bias.data))
    return twin.eval()


@settings(max_examples=20, deadline=None)
@given(attention_cases(), st.booleans())
@example(dict(batch=1, t=1, heads=1, d=1, causal=True, bias=True, seed=0), True)
@example(dict(batch=2, t=4, heads=2, d=6, causal=True, bias=True, seed=3), True)
def test_attention_equals_torch_multihead_attention(case, padded):
    torch = pytest.importorskip("torch")
    layer = layer_for(case)
    twin = torch_twin(layer)
    rng = np.random.default_rng(case["seed"])
    n, t = case["batch"], case["t"]
    x = rng.standard_normal((n, t, case["d"]))
    mask = draw_mask(rng, n, t) if padded else None
    g = rng.standard_normal(x.shape)
    attn_mask = torch.ones(t, t, dtype=torch.bool).triu(1) if case["causal"] else None  # True: may not attend
    key_padding_mask = None if mask is None else torch.tensor(~mask)
    weights = {}

    def call(module, xt):
        out, weights["torch"] = module(xt, xt, xt, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
                                       need_weights=True, average_attn_weights=False)
        return out

    out, dx, grads = minidl_pass(layer, x, g, mask=mask)
    t_out, t_dx, t_grads = torch_pass(twin, x, g, call)
    assert_close(out, t_out, "output")
    assert_close(layer.last_attention, weights["torch"].detach().numpy(), "attention weights")
    assert_close(dx, t_dx, "input gradient")
    assert_close(grads["in_proj_weight"], t_grads["in_proj_weight"].T, "in_proj_weight gradient")
    assert_close(grads["out_proj_weight"], t_grads["out_proj.weight"].T, "out_proj_weight gradient")
    if case["bias"]:
        assert_close(grads["in_proj_bias"], t_grads["in_proj_bias"], "in_proj_bias gradient")
        assert_close(grads["out_proj_bias"], t_grads["out_proj.bias"], "out_proj_bias gradient")


# -- masks: nothing at a padded step reaches a valid one; nothing later reaches an earlier one ----------


@settings(max_examples=15, deadline=None)
@given(attention_cases())
@example(dict(batch=1, t=2, heads=1, d=1, causal=False, bias=True, seed=0))
def test_padded_steps_change_nothing_at_valid_ones(case):
    case["t"] = max(case["t"], 2)
    layer = layer_for(case, dropout=0.2)
    rng = np.random.default_rng(case["seed"])
    n, t, d = case["batch"], case["t"], case["d"]
    mask = draw_mask(rng, n, t)
    mask[0, -1] = False  # at least one padded step
    x = rng.standard_normal((n, t, d))
    other = np.where(mask[..., None], x, rng.standard_normal(x.shape) * 10)  # new values at padded steps
    g = rng.standard_normal(x.shape) * mask[..., None]  # a masked loss sends nothing back from padded steps
    state = layer._rng.bit_generator.state
    results = []
    for inputs in (x, other):
        layer._rng.bit_generator.state = state  # the same dropout mask both times
        out, dx, grads = minidl_pass(layer, inputs, g, training=True, mask=mask)
        results.append((out, dx, grads))
        assert np.all(layer.last_attention[np.broadcast_to(~mask[:, None, None, :], layer.last_attention.shape)]
                      == 0), "a padded key got attention weight"
    (out_a, dx_a, grads_a), (out_b, dx_b, grads_b) = results
    np.testing.assert_allclose(out_a[mask], out_b[mask], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx_a[mask], dx_b[mask], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(dx_a[~mask], 0)  # and the padded steps' inputs get no gradient at all
    np.testing.assert_array_equal(dx_b[~mask], 0)
    for k in grads_a:
        np.testing.assert_allclose(grads_a[k], grads_b[k], rtol=1e-12, atol=1e-12, err_msg=k)


@settings(max_examples=10, deadline=None)
@given(attention_cases())
def test_causal_attention_does_not_look_ahead(case):
    case["causal"] = True
    layer = layer_for(case)
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["batch"], case["t"], case["d"]))
    y = layer.forward(x)
    assert np.all(np.triu(layer.last_attention, 1) == 0)
    for s in range(case["t"]):
        later = x.copy()
        later[:, s + 1:] += 5.0
        np.testing.assert_allclose(layer.forward(later)[:, :s + 1], y[:, :s + 1], rtol=1e-12, atol=1e-12)


def test_a_query_without_keys_gets_zero_weights_and_the_bias():
    case = dict(batch=2, t=3, heads=2, d=4, causal=False, bias=True, seed=0)
    layer = layer_for(case)
    x = tie_free_input((2, 3, 4), np.random.default_rng(0))
    mask = np.array([[False, False, False], [True, True, False]])  # the first sequence is all padding
    y = layer.forward(x, mask=mask)
    np.testing.assert_array_equal(layer.last_attention[0], 0)
    np.testing.assert_allclose(y[0], np.broadcast_to(layer.out_proj_bias.data, (3, 4)), rtol=1e-15)
    dx = layer.backward(np.ones_like(y))
    assert np.isfinite(dx).all() and all(np.isfinite(p.grad).all() for p in layer.parameters())
    np.testing.assert_allclose(layer.last_attention[1].sum(axis=-1), 1, rtol=1e-12)


def test_attention_softmax_is_stable_for_large_scores():
    layer = built(MultiHeadAttention(1), (3, 2))
    y = layer.forward(np.array([[[1e4, -1e4], [2e4, 3e4], [-5e3, 1e4]]]))
    assert np.isfinite(y).all() and np.isfinite(layer.backward(np.ones_like(y))).all()


# -- dropout, arguments, errors -------------------------------------------------------------------------


def test_attention_dropout_only_in_training_and_reproducible():
    x = tie_free_input((2, 4, 4), np.random.default_rng(0))
    a, b = (built(MultiHeadAttention(2, dropout=0.5), (4, 4), seed=7) for _ in range(2))
    plain = built(MultiHeadAttention(2), (4, 4), seed=7)
    np.testing.assert_array_equal(a.forward(x), plain.forward(x))  # inference: no dropout
    train_a, train_b = a.forward(x, training=True), b.forward(x, training=True)
    np.testing.assert_array_equal(train_a, train_b)  # the same seed drops the same weights
    assert not np.allclose(train_a, plain.forward(x))
    assert not np.array_equal(a.forward(x, training=True), train_a)  # a fresh mask each step


def test_attention_arguments_and_errors():
    with pytest.raises(ValueError, match=r"model dimension D=6 is not a multiple of num_heads=4"):
        built(MultiHeadAttention(4), (3, 6))
    assert built(MultiHeadAttention(4, key_dim=5), (3, 6)).in_proj_weight.shape == (6, 60)
    with pytest.raises(ValueError, match=r"expects sequences \(N, T, D\), got per-sample shape \(6,\)"):
        built(MultiHeadAttention(2), (6,))
    with pytest.raises(ValueError, match=r"num_heads must be >= 1, got 0"):
        MultiHeadAttention(0)
    with pytest.raises(ValueError, match=r"dropout must be finite and in \[0.0, 1.0\), got 1.0"):
        MultiHeadAttention(1, dropout=1.0)
    with pytest.raises(TypeError, match=r"causal must be a bool, got 'yes'"):
        MultiHeadAttention(1, causal="yes")
    layer = built(MultiHeadAttention(2), (3, 4))
    x = np.zeros((2, 3, 4))
    with pytest.raises(TypeError, match=r"MultiHeadAttention: mask must be a bool numpy array \(True at valid steps\), "
                                        r"got an array of dtype int64"):
        layer.forward(x, mask=np.ones((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"MultiHeadAttention: mask must have shape \(N, T\) = \(2, 3\) for input "
                                         r"of shape \(2, 3, 4\), got \(2, 4\)"):
        layer.forward(x, mask=np.ones((2, 4), dtype=bool))
    assert MultiHeadAttention.supports_masking
    assert repr(MultiHeadAttention(2, causal=True)) == ("MultiHeadAttention(num_heads=2, key_dim=None, causal=True, "
                                                        "dropout=0.0, use_bias=True)")
