"""Exported sequence models (issue 19): symbolic lengths, token ids, and masks, in ONNX Runtime and PyTorch.

Every comparison is against minidl's own ``predict_proba`` (or ``forward`` and the loss's probabilities) at
1e-5; a model exported at one length is compared at another with minidl's twin built at that length.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minidl import Sequential, load, presets
from minidl.config import from_config, to_config
from minidl.export import register_onnx, register_torch, to_onnx, to_torch
from minidl.layers import (GELU, GRU, LSTM, Bidirectional, Conv1D, Dense, Dropout, Embedding, Flatten,
                           GlobalAvgPool1D, GlobalMaxPool1D, Layer, LayerNorm, MaxPool1D, MultiHeadAttention,
                           Parallel, PositionalEmbedding, ReLU, Residual, SimpleRNN, SoftmaxCE)
from minidl.layers.state import load_state_dict, state_dict

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

TOL = 1e-5
VOCAB = 9


def perturbed(model: Sequential) -> Sequential:
    """Parameters away from their initial values (non-zero biases), as training leaves them."""
    rng = np.random.default_rng(1)
    for p in model.parameters():
        p.data[...] += rng.normal(0, 0.2, p.shape).astype(p.dtype)
    return model


def at_length(model: Sequential, t: int) -> Sequential:
    """The same layers and weights built for sequences of ``t`` steps: minidl's models have one length."""
    if t == model.input_shape[0]:
        return model
    layers = [from_config(to_config(layer)) for layer in model.layers]
    loss = None if model.loss is None else from_config(to_config(model.loss))
    twin = Sequential(layers, input_shape=(t, *model.input_shape[1:]), dtype=model.dtype,
                      input_dtype=model.input_dtype, loss=loss)
    load_state_dict(twin, state_dict(model))
    return twin


def expected(model: Sequential, X: np.ndarray) -> np.ndarray:
    """``predict_proba``: the outputs and the loss's probabilities (the presets char_gpt and char_lstm have
    no integer ``input_dtype``, so their ``predict_proba`` cannot take ids)."""
    return model.loss.probabilities(model.forward(X))


def session(model: Sequential, opset: int = 13):
    proto = to_onnx(model, None, opset=opset)
    return proto, ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def run_torch(net, X: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(X)).numpy()


def padded_ids(rng: np.random.Generator, n: int, t: int, padding: str) -> np.ndarray:
    """Token ids 1.. with 0 as padding: on the right, on the left, or anywhere ("holes"); rows of every
    length 0..t, the first full and the second empty."""
    x = rng.integers(1, VOCAB, (n, t))
    lengths = rng.integers(0, t + 1, n)
    lengths[:2] = t, 0
    for row, length in zip(x, lengths, strict=True):
        if padding == "right":
            row[length:] = 0
        elif padding == "left":
            row[:t - length] = 0
        else:
            row[rng.permutation(t)[length:]] = 0
    return x


MASKED = {
    "lstm": lambda: [Embedding(VOCAB, 4, mask_zero=True), LSTM(5), Dense(3), SoftmaxCE()],
    "gru-sequences": lambda: [Embedding(VOCAB, 4, mask_zero=True), GRU(3, return_sequences=True), LayerNorm(),
                              Dense(VOCAB), SoftmaxCE()],
    "bigru-avg": lambda: [Embedding(VOCAB, 4, mask_zero=True), Bidirectional(GRU(3, return_sequences=True)),
                          GlobalAvgPool1D(), Dense(3), SoftmaxCE()],
    "birnn-sum": lambda: [Embedding(VOCAB, 4, mask_zero=True), Bidirectional(SimpleRNN(3), merge="sum"), Dense(3),
                          SoftmaxCE()],
    "bilstm-max": lambda: [Embedding(VOCAB, 4, mask_zero=True), Bidirectional(LSTM(3, return_sequences=True),
                                                                              merge="sum"),
                           LSTM(4, return_sequences=True), GlobalMaxPool1D(), Dense(3), SoftmaxCE()],
    "attention": lambda: [Embedding(VOCAB, 8, mask_zero=True), PositionalEmbedding(20), MultiHeadAttention(2),
                          GlobalAvgPool1D(), Dense(3), SoftmaxCE()],
    "causal-blocks": lambda: [Embedding(VOCAB, 8, mask_zero=True), PositionalEmbedding(20, kind="sinusoidal"),
                              Residual([LayerNorm(), MultiHeadAttention(2, causal=True)]),
                              Parallel([[Dense(4)], [Dense(4), GELU()]]), Dropout(0.2),
                              MultiHeadAttention(4, use_bias=False), Dense(VOCAB), SoftmaxCE()],
}


@pytest.fixture(scope="module", params=sorted(MASKED))
def masked_model(request):
    model = perturbed(Sequential(MASKED[request.param](), input_shape=(16,), input_dtype="int64", seed=0))
    proto, sess = session(model)
    return model, proto, sess, to_torch(model)


@pytest.mark.parametrize("padding", ["right", "left", "holes"])
def test_padded_batches_match_predict_proba_at_two_lengths(masked_model, padding):
    """The mask made from the ids is honoured exactly, for any padding, at the exported length and another."""
    model, _, sess, net = masked_model
    rng = np.random.default_rng(2)
    for t in (16, 5):
        X = padded_ids(rng, 7, t, padding)
        want = at_length(model, t).predict_proba(X)
        np.testing.assert_allclose(sess.run(None, {"input": X})[0], want, rtol=0, atol=TOL)
        np.testing.assert_allclose(run_torch(net, X), want, rtol=0, atol=TOL)


def test_graph_takes_int64_ids_with_symbolic_batch_and_length(masked_model):
    model, proto, _, _ = masked_model
    (graph_input,), (graph_output,) = proto.graph.input, proto.graph.output
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim] == ["N", "T"]
    out_dims = [d.dim_param or d.dim_value for d in graph_output.type.tensor_type.shape.dim]
    assert out_dims == (["N", "T", VOCAB] if len(model.output_shape) == 2 else ["N", 3])
    assert any(node.op_type == "Gather" and node.input[0] == "0.weight" for node in proto.graph.node)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_mask_matches(masked_model, data):
    """Hypothesis: any pattern of padding (0s anywhere, whole rows of them) at any length from 1 to 12."""
    model, _, sess, net = masked_model
    n, t = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 12))
    X = np.array(data.draw(st.lists(st.lists(st.integers(0, VOCAB - 1), min_size=t, max_size=t),
                                    min_size=n, max_size=n)), dtype=np.int64)
    want = at_length(model, t).predict_proba(X)
    np.testing.assert_allclose(sess.run(None, {"input": X})[0], want, rtol=0, atol=TOL)
    np.testing.assert_allclose(run_torch(net, X), want, rtol=0, atol=TOL)


# -- lengths without masks -------------------------------------------------------------------------------------
UNMASKED = {
    "conv-same-strided": lambda: [Conv1D(4, 3, stride=2, padding="same", dilation=2), ReLU(),
                                  MaxPool1D(3, stride=2, padding="same"), Bidirectional(LSTM(3)), Dense(3),
                                  SoftmaxCE()],
    "conv-valid": lambda: [Conv1D(3, 2, padding=1), MaxPool1D(2), GRU(4, return_sequences=True), GlobalMaxPool1D(),
                           Dense(3), SoftmaxCE()],
    "attention": lambda: [PositionalEmbedding(20, kind="sinusoidal"), LayerNorm(), MultiHeadAttention(2, causal=True),
                          Parallel([[Dense(3)], [Dense(2), GELU("tanh")]]), Dense(3), SoftmaxCE()],
}


@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("name", sorted(UNMASKED))
def test_float_sequences_run_at_any_length(name, opset):
    model = perturbed(Sequential(UNMASKED[name](), input_shape=(16, 4), seed=0))
    proto, sess = session(model, opset)
    assert [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim] == ["N", "T", ""]
    net = to_torch(model)
    for t in (16, 5, 9):
        X = np.random.default_rng(t).standard_normal((3, t, 4)).astype(np.float32)
        want = at_length(model, t).predict_proba(X)
        np.testing.assert_allclose(sess.run(None, {"input": X})[0], want, rtol=0, atol=TOL)
        np.testing.assert_allclose(run_torch(net, X), want, rtol=0, atol=TOL)


def test_flatten_keeps_the_exported_length():
    model = perturbed(Sequential([Embedding(VOCAB, 3), Flatten(), Dense(2), SoftmaxCE()], input_shape=(6,),
                                 input_dtype="int64", seed=0))
    proto, sess = session(model)
    assert [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == ["N", 6]
    X = np.random.default_rng(0).integers(0, VOCAB, (4, 6))
    np.testing.assert_allclose(sess.run(None, {"input": X})[0], model.predict_proba(X), rtol=0, atol=TOL)


def test_ids_out_of_range_give_nan_in_onnx_and_an_error_in_torch():
    model = perturbed(Sequential([Embedding(VOCAB, 3), GRU(2), Dense(2), SoftmaxCE()], input_shape=(4,),
                                 input_dtype="int64", seed=0))
    _, sess = session(model)
    X = np.array([[1, 2, 3, 4], [1, -1, 2, 3], [VOCAB, 1, 1, 1]])
    out = sess.run(None, {"input": X})[0]
    np.testing.assert_allclose(out[0], model.predict_proba(X[:1])[0], rtol=0, atol=TOL)
    assert np.isnan(out[1:]).all()
    with pytest.raises(IndexError):
        run_torch(to_torch(model), X[2:])


# -- refusals ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer, why", [
    (Conv1D(2, 3), "a convolution mixes neighbouring steps"),
    (MaxPool1D(2), "pooling changes the time axis"),
    (Flatten(), "a mask \\(padded steps\\) cannot follow this layer"),
])
@pytest.mark.parametrize("export", [lambda m: to_onnx(m, None), to_torch], ids=["onnx", "torch"])
def test_layers_that_cannot_take_a_mask_are_refused(layer, why, export):
    model = Sequential([Embedding(VOCAB, 4, mask_zero=True), layer, Dense(2)], input_shape=(6,), input_dtype="int64")
    what = "to_onnx" if export is not to_torch else "to_torch"
    with pytest.raises(ValueError, match=rf"^{what}: {layer.name}.*{why}"):
        export(model)
    with pytest.raises(ValueError, match=why):  # minidl refuses the same model when it runs
        model.predict(np.ones((1, 6), dtype=np.int64))


class Smear(Layer):
    """A user's layer that takes the mask (and a torch exporter that forgets it)."""

    supports_masking = True

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, training=False, mask=None):
        return x


class OwnMask(Smear):
    """A user's layer that makes a mask of its own."""

    def compute_mask(self, x, mask):
        return None if mask is None else mask[:, ::-1].copy()


@pytest.fixture
def user_exporters():
    import minidl.export.torch_modules  # noqa: F401  # its built-in exporters registered before the copy is taken
    from minidl.export.registry import ONNX_EXPORTERS, TORCH_EXPORTERS

    saved = {r: dict(r._exporters) for r in (ONNX_EXPORTERS, TORCH_EXPORTERS)}
    register_onnx(Smear)(lambda layer, g, x: x)
    register_torch(Smear)(lambda layer, ctx: ctx.nn.Identity())
    yield
    for registry, exporters in saved.items():
        registry._exporters.clear()
        registry._exporters.update(exporters)


def test_user_layers_and_masks(user_exporters):
    masked = Sequential([Embedding(VOCAB, 4, mask_zero=True), Smear(), Dense(2)], input_shape=(5,), input_dtype="int64")
    with pytest.raises(ValueError, match=r"to_torch: Smear takes the sequence mask, and the module its exporter made "
                                         r"\(Identity\) does not: give it supports_masking = True"):
        to_torch(masked)
    proto = to_onnx(masked, None)  # an ONNX exporter reads graph.mask; this one runs, at the model's length
    assert [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == ["N", 5]
    own = Sequential([Embedding(VOCAB, 4, mask_zero=True), OwnMask(), Dense(2)], input_shape=(5,), input_dtype="int64")
    for export in (lambda m: to_onnx(m, None), to_torch):
        with pytest.raises(ValueError, match=r"OwnMask \(OwnMask\) computes a mask of its own, which the export "
                                             r"cannot follow"):
            export(own)
    unmasked = Sequential([Embedding(VOCAB, 4), Smear(), Dense(2)], input_shape=(5,), input_dtype="int64")
    X = np.arange(10).reshape(2, 5) % VOCAB
    np.testing.assert_allclose(run_torch(to_torch(unmasked), X), unmasked.forward(X), rtol=0, atol=TOL)


# -- the three models of issue 19: to_torch, to_onnx, save/load -------------------------------------------------
def text_classifier() -> Sequential:
    return presets.text_lstm(vocab_size=VOCAB, num_classes=3, max_length=12, dim=6)


def gru_rows() -> Sequential:
    return presets.digits_gru(units=8)


def tiny_gpt() -> Sequential:
    return presets.char_gpt(vocab_size=VOCAB, context=12, dim=8, heads=2, blocks=2)


def text_cnn() -> Sequential:
    return presets.text_cnn(vocab_size=VOCAB, num_classes=3, max_length=12, dim=6, filters=5, kernel_size=3)


def char_lstm() -> Sequential:
    return presets.char_lstm(vocab_size=VOCAB, context=12, dim=6, units=5)


@pytest.mark.parametrize("make", [text_classifier, gru_rows, tiny_gpt, text_cnn, char_lstm],
                         ids=["text-lstm", "gru-rows", "char-gpt", "text-cnn", "char-lstm"])
def test_issue19_models_round_trip(make, tmp_path):
    model = perturbed(make())
    rng = np.random.default_rng(3)
    t = model.input_shape[0]
    if model.input_shape == (t,):
        X = padded_ids(rng, 6, t, "right") if model.layers[0].mask_zero else rng.integers(0, VOCAB, (6, t))
        X = X.astype(np.int64)
    else:
        X = rng.random((6, *model.input_shape)).astype(model.dtype)
    want = expected(model, X)
    model.save(tmp_path / "model.npz")
    loaded = load(tmp_path / "model.npz")
    np.testing.assert_array_equal(expected(loaded, X), want)  # bit-exact
    assert all(np.array_equal(a, state_dict(loaded)[k]) for k, a in state_dict(model).items())
    for exported in (model, loaded):
        _, sess = session(exported)
        np.testing.assert_allclose(sess.run(None, {"input": X})[0], want, rtol=0, atol=TOL)
        np.testing.assert_allclose(run_torch(to_torch(exported), X), want, rtol=0, atol=TOL)
    if model.input_shape == (t,):  # token models: a shorter sequence too
        short = X[:, :5]
        want = expected(at_length(model, 5), short)
        np.testing.assert_allclose(session(model)[1].run(None, {"input": short})[0], want, rtol=0, atol=TOL)
        np.testing.assert_allclose(run_torch(to_torch(model), short), want, rtol=0, atol=TOL)


@pytest.mark.parametrize("name", ["causal-blocks", "bilstm-max", "attention"])
def test_masked_models_at_opset_18(name):
    """From opset 18 the reductions take their axes as an input: the masked paths use them too."""
    model = perturbed(Sequential(MASKED[name](), input_shape=(10,), input_dtype="int64", seed=0))
    _, sess = session(model, opset=18)
    X = padded_ids(np.random.default_rng(4), 5, 10, "holes")
    np.testing.assert_allclose(sess.run(None, {"input": X})[0], model.predict_proba(X), rtol=0, atol=TOL)


def test_builtin_exporters_survive_a_cleared_user_registry():
    """minidl's PyTorch exporters register when to_torch first imports them: a user's registry cleared after
    that first export (as test fixtures do) must not take them along."""
    import subprocess
    import sys

    code = """
from minidl import Sequential
from minidl.export import to_torch
from minidl.export.registry import TORCH_EXPORTERS
from minidl.layers import Dense
model = Sequential([Dense(2)], input_shape=(3,), seed=0)
saved = dict(TORCH_EXPORTERS._exporters)
to_torch(model)  # the first: imports torch_modules, which registers the built-in exporters
TORCH_EXPORTERS._exporters.clear()
TORCH_EXPORTERS._exporters.update(saved)
print(type(to_torch(model)).__name__)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "TorchSequential"
