"""Embedding and PositionalEmbedding: shapes, gradients, errors, masks, PyTorch's nn.Embedding."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from helpers import built
from minidl import Sequential
from minidl.layers import Dense, Embedding, MultiHeadAttention, PositionalEmbedding
from minidl.layers.embedding import _sinusoidal_table
from minidl.testing import check_layer, check_layer_gradients, layer_inputs, tie_free_input
from torch_twin import assert_close, minidl_pass, torch_pass


@st.composite
def token_batches(draw):
    """``(vocab_size, ids (N, T))``: small vocabularies, so ids repeat and their gradients add up."""
    vocab = draw(st.integers(1, 6))
    n, t = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    ids = np.array(draw(st.lists(st.integers(0, vocab - 1), min_size=n * t, max_size=n * t))).reshape(n, t)
    return vocab, ids


# -- Embedding ------------------------------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(token_batches(), st.integers(1, 4), st.booleans())
@example((1, np.array([[0]])), 1, False)  # batch 1, T = 1, a vocabulary of one
def test_embedding_passes_check_layer(case, dim, mask_zero):
    vocab, ids = case
    report = check_layer(Embedding(vocab, dim, mask_zero=mask_zero), ids.shape[1:], x=ids)
    assert report.output_shape == (ids.shape[1], dim)
    assert set(report.gradient_errors["training"]) == {"weight"}  # no gradient of integer ids


@settings(max_examples=15, deadline=None)
@given(token_batches(), st.integers(1, 4))
def test_embedding_gradient_sums_repeated_ids(case, dim):
    vocab, ids = case
    layer = built(Embedding(vocab, dim), ids.shape[1:])
    g = np.random.default_rng(0).standard_normal((*ids.shape, dim))
    out = layer.forward(ids)
    np.testing.assert_array_equal(out, layer.weight.data[ids])
    assert layer.backward(g) is None
    expected = np.stack([g[ids == v].sum(axis=0) for v in range(vocab)])  # token by token, the slow way
    np.testing.assert_allclose(layer.weight.grad, expected, rtol=1e-13, atol=1e-13)
    check_layer_gradients(layer, ids)  # the weight against finite differences


@settings(max_examples=10, deadline=None)
@given(token_batches(), st.integers(1, 4))
def test_embedding_equals_torch(case, dim):
    torch = pytest.importorskip("torch")
    vocab, ids = case
    layer = built(Embedding(vocab, dim), ids.shape[1:])
    twin = torch.nn.Embedding(vocab, dim, dtype=torch.float64)
    with torch.no_grad():
        twin.weight.copy_(torch.tensor(layer.weight.data))
    g = np.random.default_rng(1).standard_normal((*ids.shape, dim))
    out, dx, grads = minidl_pass(layer, ids, g)
    t_out, t_dx, t_grads = torch_pass(twin, ids, g)
    assert_close(out, t_out, "output")
    assert dx is None and t_dx is None
    assert_close(grads["weight"], t_grads["weight"], "weight gradient")


def test_embedding_refuses_bad_ids_naming_the_id_and_the_range():
    layer = built(Embedding(5, 2), (3,))
    with pytest.raises(ValueError, match=r"Embedding: token id 7 is out of range: ids must be in \[0, 5\) "
                                         r"\(vocab_size=5\)"):
        layer.forward(np.array([[1, 7, 2]]))
    with pytest.raises(ValueError, match=r"Embedding: token id -1 is out of range"):
        layer.forward(np.array([[1, -1, 9]]))
    with pytest.raises(ValueError, match=r"Embedding: token id 5 is out of range"):
        layer.forward(np.array([[5, 0, 0]], dtype=np.uint8))
    with pytest.raises(TypeError, match=r"Embedding: expects integer token ids, got an array of dtype float64 "
                                        r"\(convert with x.astype\('int64'\)\)"):
        layer.forward(np.array([[1.0, 2.0, 3.0]]))
    with pytest.raises(ValueError, match=r"Embedding: expected token ids of shape \(N, 3\), got \(1, 4\)"):
        layer.forward(np.array([[1, 2, 3, 4]]))
    with pytest.raises(TypeError, match=r"Embedding: input must be a numpy array of token ids, got list"):
        layer.forward([[1, 2, 3]])
    with pytest.raises(ValueError, match=r"Embedding is not built"):
        Embedding(5, 2).forward(np.array([[1]]))
    with pytest.raises(ValueError, match=r"Embedding: expects token ids \(N, T\), got per-sample shape \(3, 2\)"):
        built(Embedding(5, 2), (3, 2))
    with pytest.raises(ValueError, match=r"vocab_size must be >= 1, got 0"):
        Embedding(0, 2)
    with pytest.raises(TypeError, match=r"mask_zero must be a bool, got 1"):
        Embedding(3, 2, mask_zero=1)
    name = built(Embedding(5, 2, name="tokens"), (1,))
    with pytest.raises(ValueError, match=r"tokens: token id 5"):
        name.forward(np.array([[5]]))


def test_embedding_mask_zero_makes_the_mask():
    ids = np.array([[3, 1, 0, 0], [2, 0, 4, 0]])
    layer = built(Embedding(5, 2, mask_zero=True), (4,))
    np.testing.assert_array_equal(layer.compute_mask(ids, None), ids != 0)
    incoming = np.array([[True, False, True, True], [True, True, True, True]])
    np.testing.assert_array_equal(layer.compute_mask(ids, incoming), (ids != 0) & incoming)
    plain = built(Embedding(5, 2), (4,))
    assert plain.compute_mask(ids, None) is None
    assert plain.compute_mask(ids, incoming) is incoming


def test_embedding_weight_gradient_in_a_model_and_no_input_gradient():
    """In a model, the first layer's backward_params fills the weight; Sequential.backward hands back None."""
    model = Sequential([Embedding(7, 4), Dense(3)], input_shape=(5,), dtype="float64", seed=0)
    ids = np.random.default_rng(0).integers(0, 7, (2, 5))
    g = np.random.default_rng(1).standard_normal((2, 5, 3))
    model.forward(ids, training=True)
    model.backward_params(g)
    via_params = model[0].weight.grad.copy()
    assert model.backward(g) is None
    np.testing.assert_array_equal(model[0].weight.grad, via_params)
    assert np.count_nonzero(via_params.any(axis=1)) == len(np.unique(ids))  # only the rows of ids seen


# -- PositionalEmbedding ---------------------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(layer_inputs(st.tuples(st.integers(1, 4), st.integers(1, 4))), st.integers(0, 2),
       st.sampled_from(["learned", "sinusoidal"]))
@example(np.array([[[0.5, -0.5]]]), 0, "learned")  # batch 1, T = 1 = max_length
def test_positional_embedding_passes_check_layer(x, extra, kind):
    t = x.shape[1]
    layer = PositionalEmbedding(t + extra, kind=kind)
    report = check_layer(layer, x.shape[1:], x=x)
    assert report.output_shape == x.shape[1:]
    if kind == "learned":
        assert set(report.gradient_errors["training"]) == {"input", "weight"}


def test_learned_positions_train_only_the_rows_used():
    layer = built(PositionalEmbedding(6), (4, 3))
    x = tie_free_input((2, 4, 3), np.random.default_rng(0))
    y = layer.forward(x)
    np.testing.assert_allclose(y, x + layer.weight.data[:4], rtol=1e-15)
    g = np.random.default_rng(1).standard_normal(y.shape)
    layer.weight.grad[...] = 1.0  # junk: backward overwrites every row
    np.testing.assert_array_equal(layer.backward(g), g)
    np.testing.assert_allclose(layer.weight.grad[:4], g.sum(axis=0), rtol=1e-15)
    np.testing.assert_array_equal(layer.weight.grad[4:], 0)
    assert layer.weight.shape == (6, 3)


def test_sinusoidal_table_is_vaswani_et_al():
    layer = built(PositionalEmbedding(10, kind="sinusoidal"), (7, 5))
    assert layer.parameters() == [] and layer.buffers() == []  # nothing trained, nothing saved
    table = layer.forward(np.zeros((1, 7, 5)))[0]
    for pos in range(7):
        for i in range(5):
            angle = pos / 10000 ** (2 * (i // 2) / 5)
            assert table[pos, i] == pytest.approx(np.sin(angle) if i % 2 == 0 else np.cos(angle), abs=1e-15)
    np.testing.assert_array_equal(_sinusoidal_table(3, 4), _sinusoidal_table(9, 4)[:3])  # T never changes row t


def test_positional_embedding_errors_and_mask():
    with pytest.raises(ValueError, match=r"PositionalEmbedding: sequences of length T=9 are longer than max_length=8"):
        built(PositionalEmbedding(8), (9, 4))
    with pytest.raises(ValueError, match=r'kind must be "learned" or "sinusoidal", got \'sine\''):
        PositionalEmbedding(8, kind="sine")
    with pytest.raises(ValueError, match=r"expects sequences \(N, T, D\), got per-sample shape \(4,\)"):
        built(PositionalEmbedding(8), (4,))
    layer = built(PositionalEmbedding(8), (3, 2))
    assert PositionalEmbedding.supports_masking
    x = np.ones((1, 3, 2))
    np.testing.assert_array_equal(layer.forward(x, mask=np.array([[True, True, False]])), layer.forward(x))


def test_token_model_end_to_end():
    """Embedding, positions and attention compose; a padded sequence's valid outputs ignore the padding."""
    model = Sequential([Embedding(9, 4, mask_zero=True), PositionalEmbedding(5), MultiHeadAttention(2)],
                       input_shape=(5,), dtype="float64", seed=0)
    ids = np.array([[4, 2, 7, 0, 0]])
    other = np.array([[4, 2, 7, 5, 8]])  # the same tokens, other values at the padded steps
    mask = model[0].compute_mask(ids, None)
    outputs = []
    for tokens in (ids, other):
        z = model[1].forward(model[0].forward(tokens))
        outputs.append(model[2].forward(z, mask=mask))
    np.testing.assert_allclose(outputs[0][mask], outputs[1][mask], rtol=1e-13)
