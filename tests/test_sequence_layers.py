"""GELU, LayerNorm and Dense on sequences: shapes, gradients, PyTorch's values; the new layers saved and loaded."""

import doctest

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from helpers import built
import minidl
from minidl import Sequential
from minidl.layers import (GELU, Dense, Dropout, Embedding, Identity, Layer, LayerNorm, LeakyReLU, MultiHeadAttention,
                           PositionalEmbedding, ReLU, Sigmoid, Softmax, Tanh)
from minidl.testing import any_shapes, check_layer, layer_inputs, tie_free_input
from torch_twin import assert_close, minidl_pass, torch_pass

sequences = any_shapes(ndim=(2, 3), size=(1, 4))  # per-sample (T, D) or (T, H, D)


def matches_torch(layer, module, x, param_map):
    """``layer`` and ``module`` agree on output, input gradient and each parameter's gradient (float64)."""
    g = np.random.default_rng(1).standard_normal(layer.forward(x).shape)
    out, dx, grads = minidl_pass(layer, x, g)
    t_out, t_dx, t_grads = torch_pass(module, x, g)
    assert_close(out, t_out, "output")
    assert_close(dx, t_dx, "input gradient")
    for ours, (theirs, transform) in param_map.items():
        assert_close(grads[ours], transform(t_grads[theirs]), f"gradient of {ours}")


# -- GELU ----------------------------------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(layer_inputs(sequences), st.sampled_from(["none", "tanh"]))
@example(np.full((1, 1, 1), 0.3), "none")  # batch 1, T = 1
def test_gelu_shapes_and_gradients(x, approximate):
    report = check_layer(GELU(approximate), x.shape[1:], x=x)
    assert report.output_shape == x.shape[1:]


@settings(max_examples=10, deadline=None)
@given(layer_inputs(sequences, batch=(1, 3)), st.sampled_from(["none", "tanh"]))
def test_gelu_equals_torch(x, approximate):
    torch = pytest.importorskip("torch")
    x = x * 3  # reach the tails, where the tanh form and the exact one differ most
    matches_torch(built(GELU(approximate), x.shape[1:]), torch.nn.GELU(approximate=approximate), x, {})


def test_gelu_values_and_arguments():
    layer = built(GELU(), (3,))
    y = layer.forward(np.array([[-30.0, 0.0, 30.0]]))
    np.testing.assert_array_equal(y, [[-0.0, 0.0, 30.0]])  # no overflow in the tails
    tanh = built(GELU("tanh"), (1,))
    assert abs(tanh.forward(np.array([[1.0]]))[0, 0] - 0.8411919906) < 1e-9
    with pytest.raises(ValueError, match=r'GELU: approximate must be "none" or "tanh", got True'):
        GELU(approximate=True)
    assert repr(GELU("tanh")) == "GELU(approximate='tanh')"


# -- LayerNorm -----------------------------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(layer_inputs(any_shapes(ndim=(1, 3), size=(1, 4))), st.sampled_from([1e-5, 0.1]))
@example(np.array([[[0.5, -0.25]]]), 1e-5)  # batch 1, T = 1
def test_layernorm_shapes_and_gradients(x, eps):
    layer = LayerNorm(eps=eps)
    report = check_layer(layer, x.shape[1:], x=x)
    assert report.output_shape == x.shape[1:]


@settings(max_examples=10, deadline=None)
@given(layer_inputs(any_shapes(ndim=(1, 3), size=(1, 5)), batch=(1, 3)), st.sampled_from([1e-5, 1e-2]))
def test_layernorm_equals_torch(x, eps):
    torch = pytest.importorskip("torch")
    layer = built(LayerNorm(eps), x.shape[1:])
    rng = np.random.default_rng(2)
    layer.weight.data[...] = rng.standard_normal(layer.weight.shape)  # not the trivial γ = 1, β = 0
    layer.bias.data[...] = rng.standard_normal(layer.bias.shape)
    twin = torch.nn.LayerNorm(x.shape[-1], eps=eps, dtype=torch.float64)
    with torch.no_grad():
        twin.weight.copy_(torch.tensor(layer.weight.data))
        twin.bias.copy_(torch.tensor(layer.bias.data))
    same = lambda a: a  # noqa: E731
    matches_torch(layer, twin, x, {"weight": ("weight", same), "bias": ("bias", same)})


def test_layernorm_normalises_each_position():
    layer = built(LayerNorm(eps=1e-12), (3, 4))
    x = tie_free_input((2, 3, 4), np.random.default_rng(0)) * 5 + 7
    y = layer.forward(x)
    np.testing.assert_allclose(y.mean(axis=-1), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=-1), 1, rtol=1e-9)
    with pytest.raises(ValueError, match=r"LayerNorm: eps must be finite and in \(0.0, inf\), got 0"):
        LayerNorm(eps=0)


# -- Dense on any rank; Dropout and the activations on any shape -------------------------------


@settings(max_examples=15, deadline=None)
@given(layer_inputs(any_shapes(ndim=(2, 3), size=(1, 4))), st.integers(1, 4), st.booleans())
@example(np.array([[[0.5, -0.25]]]), 1, True)  # batch 1, T = 1
def test_dense_on_sequences_shapes_and_gradients(x, units, bias):
    report = check_layer(Dense(units, use_bias=bias), x.shape[1:], x=x)
    assert report.output_shape == (*x.shape[1:-1], units)
    assert max(report.gradient_errors["training"].values()) <= 1e-6


@settings(max_examples=10, deadline=None)
@given(layer_inputs(any_shapes(ndim=(2, 3), size=(1, 4)), batch=(1, 3)), st.integers(1, 4))
def test_dense_on_sequences_equals_torch_linear(x, units):
    torch = pytest.importorskip("torch")
    layer = built(Dense(units), x.shape[1:])
    layer.bias.data[...] = np.random.default_rng(3).standard_normal(units)
    twin = torch.nn.Linear(x.shape[-1], units, dtype=torch.float64)
    with torch.no_grad():
        twin.weight.copy_(torch.tensor(layer.weight.data.T))
        twin.bias.copy_(torch.tensor(layer.bias.data))
    matches_torch(layer, twin, x, {"weight": ("weight", np.transpose), "bias": ("bias", lambda a: a)})


def test_dense_on_a_sequence_is_dense_on_each_position():
    layer = built(Dense(3), (4, 5))
    x = tie_free_input((2, 4, 5), np.random.default_rng(0))
    per_position = np.stack([x[:, t] @ layer.weight.data + layer.bias.data for t in range(4)], axis=1)
    np.testing.assert_allclose(layer.forward(x), per_position, rtol=1e-13)


@pytest.mark.parametrize("make", [ReLU, Tanh, Sigmoid, GELU, Identity,
                                  lambda: LeakyReLU(0.1), lambda: Softmax(), lambda: Dropout(0.3)],
                         ids=["ReLU", "Tanh", "Sigmoid", "GELU", "Identity", "LeakyReLU", "Softmax", "Dropout"])
def test_element_wise_layers_take_sequences(make):
    report = check_layer(make(), (3, 4))  # (T, D): every check, gradients included
    assert report.output_shape == (3, 4)


# -- the docstrings' examples run, and say what they print --------------------------------------


@pytest.mark.parametrize("cls", [GELU, LayerNorm, Dense, Embedding, PositionalEmbedding, MultiHeadAttention],
                         ids=lambda c: c.__name__)
def test_docstring_example_runs(cls):
    tests = doctest.DocTestFinder().find(cls, globs={"np": np, cls.__name__: cls})
    examples = sum(len(t.examples) for t in tests)
    assert examples >= 3, f"{cls.__name__}'s docstring has no Example:: to run"
    runner = doctest.DocTestRunner()
    for test in tests:
        runner.run(test)
    assert runner.failures == 0


# -- save and load ---------------------------------------------------------------------------------


def tiny_gpt(seed=0):
    return Sequential([Embedding(11, 8, mask_zero=True), PositionalEmbedding(6), LayerNorm(),
                       MultiHeadAttention(2, causal=True, dropout=0.1), Dense(16), GELU("tanh"), Dense(11)],
                      input_shape=(6,), dtype="float64", seed=seed)


def test_sequence_layers_round_trip_through_state_and_config():
    model = tiny_gpt()
    for p in model.parameters():  # not the initial values, which a fresh build would give again
        p.data += np.random.default_rng(4).standard_normal(p.shape)
    clone = Layer.from_config(model.to_config())
    clone.build((6,), rng=np.random.default_rng(9), dtype="float64")
    clone.load_state_dict(model.state_dict())
    assert [type(a) for a in clone.layers] == [type(b) for b in model.layers]
    assert clone.to_config() == model.to_config()
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(clone.state_dict()[k], v)
    ids = np.random.default_rng(5).integers(0, 11, (3, 6))
    np.testing.assert_array_equal(clone.forward(ids), model.forward(ids))


def test_sequence_model_saves_and_loads_bit_exactly(tmp_path):
    model = tiny_gpt()
    for p in model.parameters():
        p.data += np.random.default_rng(4).standard_normal(p.shape)
    model.save(tmp_path / "gpt.npz")
    loaded = minidl.load(tmp_path / "gpt.npz")
    assert loaded.to_config() == model.to_config()
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], v)
    ids = np.random.default_rng(5).integers(0, 11, (3, 6))
    np.testing.assert_array_equal(loaded.forward(ids), model.forward(ids))
