"""The layer contract: every built-in layer passes check_layer, and check_layer catches broken layers."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minidl import Sequential
from minidl.layers import (
    GELU, AvgPool2D, BatchNorm2D, Buffer, Conv2D, Dense, Dropout, Embedding, Flatten, GlobalAvgPool2D, Identity,
    Layer, LayerNorm, LeakyReLU, MaxPool2D, MultiHeadAttention, Parallel, Parameter, PositionalEmbedding, RandomCrop,
    RandomFlip, RandomRotation, RandomShift, ReLU, Residual, Sigmoid, Softmax, SoftmaxCE, Tanh, Upsample2D,
)
from minidl.layers import GRU, LSTM, Bidirectional, Conv1D, GlobalAvgPool1D, GlobalMaxPool1D, MaxPool1D, SimpleRNN
from minidl.layers.base import LAYERS
from minidl.optim import SGD
from minidl.testing import (
    LayerCheckError, any_shapes, check_layer, feature_shapes, image_shapes, layer_inputs, rewinder,
)

#: One or more (layer factory, per-sample input shape[, input batch]) per built-in layer class. A built-in
#: layer without an entry fails test_every_builtin_layer_has_an_example: add it here when you add a layer.
#: The batch is given where the default (floats) does not fit: token ids for an Embedding.
EXAMPLES = {
    "Conv2D": [(lambda: Conv2D(3, 2, stride=2, padding=1), (2, 5, 5)),
               (lambda: Conv2D(2, (3, 1), padding="same", use_bias=False), (1, 4, 3))],
    "MaxPool2D": [(lambda: MaxPool2D(3, stride=2, padding=1), (2, 6, 5))],
    "AvgPool2D": [(lambda: AvgPool2D(3, stride=2, padding=1), (2, 6, 5)), (lambda: AvgPool2D(2), (1, 4, 4))],
    "GlobalAvgPool2D": [(lambda: GlobalAvgPool2D(), (3, 3, 2))],
    "RandomFlip": [(lambda: RandomFlip(), (2, 3, 4)), (lambda: RandomFlip(vertical=True), (1, 4, 3))],
    "RandomShift": [(lambda: RandomShift(2), (2, 5, 4)), (lambda: RandomShift((0, 1)), (1, 3, 3))],
    "RandomCrop": [(lambda: RandomCrop(4, padding=1), (2, 5, 5)), (lambda: RandomCrop((2, 3)), (1, 3, 4))],
    "RandomRotation": [(lambda: RandomRotation(30), (2, 5, 6))],
    "Upsample2D": [(lambda: Upsample2D(2), (2, 3, 2)), (lambda: Upsample2D((1, 3)), (1, 2, 2))],
    "BatchNorm2D": [(lambda: BatchNorm2D(), (3, 2, 3)), (lambda: BatchNorm2D(momentum=0.5, eps=1e-3), (2, 1, 1))],
    "Dropout": [(lambda: Dropout(0.3), (2, 3, 3)), (lambda: Dropout(0.5), (7,))],
    "Dense": [(lambda: Dense(4), (7,)), (lambda: Dense(2, use_bias=False), (3,)), (lambda: Dense(3), (4, 2))],
    "Flatten": [(lambda: Flatten(), (2, 3, 2))],
    "ReLU": [(lambda: ReLU(), (2, 3, 3))],
    "LeakyReLU": [(lambda: LeakyReLU(0.2), (2, 3, 3))],
    "Tanh": [(lambda: Tanh(), (2, 3))],
    "Sigmoid": [(lambda: Sigmoid(), (2, 3))],
    "Softmax": [(lambda: Softmax(), (5,)), (lambda: Softmax(axis=1), (3, 2, 2))],
    "Identity": [(lambda: Identity(), (2, 2, 2))],
    "GELU": [(lambda: GELU(), (3, 4)), (lambda: GELU(approximate="tanh"), (2, 3))],
    "LayerNorm": [(lambda: LayerNorm(), (3, 4)), (lambda: LayerNorm(eps=1e-3), (5,))],
    "Embedding": [(lambda: Embedding(5, 3), (4,), np.array([[0, 4, 2, 4], [1, 3, 3, 0]])),
                  (lambda: Embedding(3, 2, mask_zero=True), (1,), np.array([[2]]))],
    "PositionalEmbedding": [(lambda: PositionalEmbedding(5), (3, 2)),
                            (lambda: PositionalEmbedding(3, kind="sinusoidal"), (3, 5))],
    "MultiHeadAttention": [(lambda: MultiHeadAttention(2), (3, 4)),
                           (lambda: MultiHeadAttention(1, key_dim=3, causal=True, dropout=0.3, use_bias=False),
                            (4, 2))],
    # Containers: nested parameters, buffers and random generators are checked like a leaf's.
    "Sequential": [(lambda: Sequential([Conv2D(2, 2), Tanh(), Sequential([Flatten(), Dense(3)])]), (1, 3, 3))],
    "Residual": [(lambda: Residual([Conv2D(2, 3, padding="same", use_bias=False), BatchNorm2D(), Tanh()]), (2, 3, 3)),
                 (lambda: Residual([Dense(3), Dropout(0.4)], shortcut=Dense(3)), (4,))],
    "Parallel": [(lambda: Parallel([Conv2D(2, 1), [Conv2D(1, 3, padding="same"), Tanh()]]), (2, 3, 2)),
                 (lambda: Parallel([Dense(2), Residual(Dense(2))], merge="add"), (2,))],
    # Sequences (N, T, C):
    "Conv1D": [(lambda: Conv1D(3, 3, stride=2, padding="same", dilation=2), (7, 2)), (lambda: Conv1D(2, 1), (1, 3))],
    "MaxPool1D": [(lambda: MaxPool1D(3, stride=2, padding=1), (6, 2))],
    "GlobalAvgPool1D": [(lambda: GlobalAvgPool1D(), (4, 3))],
    "GlobalMaxPool1D": [(lambda: GlobalMaxPool1D(), (4, 3))],
    "SimpleRNN": [(lambda: SimpleRNN(3), (4, 2)), (lambda: SimpleRNN(2, "relu", return_sequences=True), (3, 2))],
    "LSTM": [(lambda: LSTM(3), (4, 2)), (lambda: LSTM(2, return_sequences=True), (1, 3))],
    "GRU": [(lambda: GRU(3), (4, 2)), (lambda: GRU(2, return_sequences=True), (1, 3))],
    "Bidirectional": [(lambda: Bidirectional(LSTM(2, return_sequences=True)), (3, 2)),
                      (lambda: Bidirectional(GRU(2), merge="sum"), (3, 2))],
}

BUILTINS = sorted(name for name, cls in LAYERS.items() if cls.__module__.startswith("minidl."))


def test_every_builtin_layer_has_an_example():
    missing = [name for name in BUILTINS if name not in EXAMPLES]
    assert not missing, f"built-in layers without an entry in EXAMPLES (add one): {missing}"
    assert len(BUILTINS) >= 15


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_layer_passes_check_layer(name):
    assert name in EXAMPLES, f"{name} has no entry in EXAMPLES; add a (factory, input_shape) for it"
    for make, shape, *x in EXAMPLES[name]:
        report = check_layer(make(), shape, x=x[0] if x else None)
        assert report.ok and len(report.checks) >= 14, str(report)
        assert max(report.gradient_errors["training"].values()) <= 1e-6


# -- check_layer catches broken layers ----------------------------------------------------------


class Scale(Layer):
    """y = x * w per feature: a correct little layer that the broken variants below start from."""

    def create_parameters(self, input_shape, rng, dtype):
        self.weight = Parameter(rng.standard_normal(input_shape).astype(dtype))

    def forward(self, x, training=False):
        self.check_input(x)
        self._x = x
        return x * self.weight.data

    def backward(self, grad_out):
        self.weight.grad[...] = (grad_out * self._x).sum(axis=0)
        return grad_out * self.weight.data


class WrongInputGradient(Scale):
    def backward(self, grad_out):
        return super().backward(grad_out) * 1.001


class WrongWeightGradient(Scale):
    def backward(self, grad_out):
        dx = super().backward(grad_out)
        self.weight.grad[1] *= 2
        return dx


class Accumulates(Scale):
    def backward(self, grad_out):
        self.weight.grad += (grad_out * self._x).sum(axis=0)
        return grad_out * self.weight.data


class LiesAboutShape(Scale):
    def compute_output_shape(self, input_shape):
        return (input_shape[0] + 1,)


class PlainArrayWeight(Layer):
    """Keeps its weight in a bare ndarray: the model cannot find, train or save it."""

    def create_parameters(self, input_shape, rng, dtype):
        self.w = rng.standard_normal(input_shape).astype(dtype)

    def forward(self, x, training=False):
        self.check_input(x)
        return x * self.w

    def backward(self, grad_out):
        return grad_out * self.w


class ForgetsConfig(Scale):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def forward(self, x, training=False):
        return super().forward(x) * self.factor

    def backward(self, grad_out):
        return super().backward(grad_out * self.factor)


class NoInputCheck(Scale):
    def forward(self, x, training=False):
        self._x = x
        return x * self.weight.data[..., :1]


class Upcasts(Scale):
    def forward(self, x, training=False):
        return super().forward(x).astype(np.float64)


class NoisyScale(Scale):
    """Adds seeded noise in training: differentiable only if the checker fixes the noise."""

    def create_parameters(self, input_shape, rng, dtype):
        super().create_parameters(input_shape, rng, dtype)
        self.rng = np.random.default_rng(rng.integers(2**63))

    def forward(self, x, training=False):
        y = super().forward(x)
        return y + self.rng.standard_normal(y.shape).astype(y.dtype) if training else y


def failed(layer, shape=(4,)):
    with pytest.raises(LayerCheckError) as info:
        check_layer(layer, shape)
    return info.value.report, str(info.value)


def test_correct_user_layers_pass():
    assert check_layer(Scale(), (4,)).ok
    assert check_layer(NoisyScale(), (3, 2)).ok  # the noise is rewound for every finite difference


@pytest.mark.parametrize("layer, check, words", [
    (WrongInputGradient(), "gradients vs finite differences [float64, training]", ["input:", "at index", "backward"]),
    (WrongWeightGradient(), "gradients vs finite differences [float64, inference]", ["weight:", "at index (1,)"]),
    (Accumulates(), "backward overwrites, twice gives the same [float64, training]", ["weight: backward called again", "not add to it"]),
    (LiesAboutShape(), "forward/backward [float64, training]", ["expected (2, 5)"]),
    (PlainArrayWeight(), "save/load round trip (to_config, from_config, state)", ["outside Parameter/Buffer"]),
    (ForgetsConfig(factor=3.0), "save/load round trip (to_config, from_config, state)", ["differs"]),
    (NoInputCheck(), "rejects input of the wrong shape", ["check_input"]),
    (Upcasts(), "forward/backward [float32, training]", ["dtype float64, expected float32"]),
], ids=lambda v: type(v).__name__ if isinstance(v, Layer) else None)
def test_check_layer_names_the_failed_check_and_where(layer, check, words):
    report, message = failed(layer)
    assert check in [c.name for c in report.failures], message
    detail = next(c.detail for c in report.failures if c.name == check)
    for word in words:
        assert word in detail, message
    assert "checks failed" in message and check in message


def test_gradient_failure_quotes_the_size_of_the_error():
    report, _ = failed(WrongInputGradient())
    assert 5e-4 < report.gradient_errors["training"]["input"] < 2e-3  # a 0.1 % error, reported as such
    assert report.gradient_errors["training"]["weight"] <= 1e-6


def test_stochastic_layer_without_rewinding_would_fail():
    layer = NoisyScale()
    layer.build((3,), rng=np.random.default_rng(0), dtype="float64")
    x = np.linspace(-1, 1, 6).reshape(2, 3)
    first = layer.forward(x, training=True)
    assert not np.array_equal(first, layer.forward(x, training=True))
    rewind = rewinder(layer)
    a = layer.forward(x, training=True)
    rewind()
    np.testing.assert_array_equal(a, layer.forward(x, training=True))


def test_user_layer_may_not_shadow_a_builtin_name():
    shadow = type("ReLU", (Scale,), {"__module__": "my_package.layers"})
    assert LAYERS["ReLU"] is ReLU
    report, message = failed(shadow())
    assert "rename your layer" in message


def test_check_layer_leaves_the_layer_alone_and_reports_without_raising():
    layer = Conv2D(2, 3)
    report = check_layer(layer, (1, 4, 4), raise_on_failure=False)
    assert not layer.built and layer.weight is None
    assert report.ok and report.output_shape == (2, 2, 2)
    assert set(report.gradient_errors) == {"training", "inference"}
    assert set(report.gradient_errors["training"]) == {"input", "weight", "bias"}
    text = str(report)
    assert text.startswith("check_layer(Conv2D(") and "FAIL" not in text
    bad = check_layer(WrongInputGradient(), (4,), raise_on_failure=False)
    assert not bad.ok and "FAIL gradients" in str(bad)


def test_check_layer_options():
    report = check_layer(Tanh(), (3,), training=False, dtypes=("float64",), batch=1)
    names = [c.name for c in report.checks]
    assert not any("training" in n or "float32" in n for n in names)
    x = np.array([[0.3, -0.2, 0.9]])
    assert check_layer(Tanh(), (3,), x=x).ok
    with pytest.raises(ValueError, match="x has shape"):
        check_layer(Tanh(), (4,), x=x)


def test_frozen_layer_is_checked_without_its_frozen_parameters():
    report = check_layer(Dense(3, trainable=False), (4,))
    assert set(report.gradient_errors["training"]) == {"input"}


# -- the strategies users property-test their own layers with --------------------------------------


@given(image_shapes(channels=2, height=(3, 6)), st.integers(1, 3))
def test_image_shapes_strategy_with_check_layer(shape, batch):
    assert shape[0] == 2 and 3 <= shape[1] <= 6 and 3 <= shape[2] <= 6
    check_layer(AvgPool2D(3, stride=1), shape, batch=batch, dtypes=("float64",))


@given(layer_inputs(feature_shapes((2, 5)), batch=(1, 4)))
def test_layer_inputs_strategy_is_tie_free(x):
    assert x.dtype == np.float64 and 1 <= len(x) <= 4 and 2 <= x.shape[1] <= 5
    values = np.sort(np.abs(x.ravel()))
    assert values[0] > 0 and (x.size < 2 or np.diff(values).min() > 0)
    check_layer(Scale(), x.shape[1:], x=x, dtypes=("float64",))


@given(any_shapes(ndim=(2, 3), size=(1, 2)))
def test_any_shapes_strategy(shape):
    assert 2 <= len(shape) <= 3 and all(1 <= d <= 2 for d in shape)


def test_strategies_reject_bad_ranges():
    with pytest.raises(ValueError, match="height"):
        image_shapes(height=(5, 2))


# -- buffers: saved, never trained -----------------------------------------------------------------


def bn_model(seed=0, **bn):
    return Sequential([Conv2D(2, 3), BatchNorm2D(**bn), ReLU(), Flatten(), Dense(3), SoftmaxCE()],
                      input_shape=(1, 5, 5), seed=seed, dtype="float64")


def test_buffers_are_in_the_state_dict_but_not_in_the_parameters():
    model = bn_model()
    assert set(model.named_buffers()) == {"1.running_mean", "1.running_var"}
    assert set(model.state_dict()) == {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                       "1.running_var", "4.weight", "4.bias"}
    assert not any(isinstance(p, Buffer) for p in model.parameters())
    assert repr(model[1].running_var) == "Buffer(shape=(2,), dtype=float64)"


def test_optimizer_never_touches_buffers_and_state_dict_round_trips_them():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((16, 1, 5, 5)), rng.integers(0, 3, 16)
    model = bn_model()
    opt = SGD(model.parameters(), lr=0.1)
    model.forward_backward(X, y)
    stats = {k: b.data.copy() for k, b in model.named_buffers().items()}
    opt.step()  # running statistics move in forward only
    for k, b in model.named_buffers().items():
        np.testing.assert_array_equal(b.data, stats[k])
    assert not np.allclose(stats["1.running_mean"], 0)
    other = bn_model(seed=1)
    other.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(other.predict_proba(X), model.predict_proba(X))
    with pytest.raises(ValueError, match=r"missing key\(s\) \['1.running_var'\], unexpected key\(s\) \[\]"):
        other.load_state_dict({k: v for k, v in model.state_dict().items() if k != "1.running_var"})


def test_freezing_batchnorm_freezes_parameters_and_statistics():
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((8, 1, 5, 5)), rng.integers(0, 3, 8)
    model = bn_model()
    bn = model[1]
    bn.trainable = False
    before = {k: v.copy() for k, v in model.state_dict().items() if k.startswith("1.")}
    model.fit(X, y, optimizer=SGD(model.parameters(), lr=0.1), epochs=2, batch_size=4, verbose=0)
    after = model.state_dict()
    for k, v in before.items():
        np.testing.assert_array_equal(after[k], v)
    assert not np.array_equal(after["0.weight"], bn_model().state_dict()["0.weight"])  # the rest trains
    bn.trainable = True
    assert all(p.trainable for p in bn.parameters())


def test_layer_config_is_json_for_every_builtin():
    for name in BUILTINS:
        for make, *_ in EXAMPLES[name]:
            spec = make().to_config()
            assert json.loads(json.dumps(spec))["class"] == name


def test_running_statistics_survive_model_save_and_load(tmp_path):
    import minidl

    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((32, 1, 5, 5)), rng.integers(0, 3, 32)
    model = Sequential([Conv2D(2, 3), BatchNorm2D(), Dropout(0.3), Flatten(), Dense(3), SoftmaxCE()],
                       input_shape=(1, 5, 5), seed=0, dtype="float64")
    model.fit(X, y, epochs=2, batch_size=8, verbose=0)
    assert not np.allclose(model[1].running_var.data, 1)
    model.save(tmp_path / "bn.npz")
    same = minidl.load(tmp_path / "bn.npz")
    np.testing.assert_array_equal(same[1].running_mean.data, model[1].running_mean.data)
    np.testing.assert_array_equal(same[1].running_var.data, model[1].running_var.data)
    np.testing.assert_array_equal(same.predict_proba(X), model.predict_proba(X))
