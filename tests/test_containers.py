"""Composition: nested Sequential, Residual, Parallel, and composite layers of users' own.

Property tests run check_layer (shapes, float64 finite-difference gradients of the input and of
every nested parameter, save/load of nested configs) over random shapes, batch 1 and 1x1 images
included; the rest are the regressions of issue 8.
"""

import json

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import minidl
from minidl import Sequential
from minidl.data import load_digits
from minidl.layers import (
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    Layer,
    Parallel,
    Parameter,
    ReLU,
    Residual,
    SoftmaxCE,
    Tanh,
)
from minidl.optim import SGD
from minidl.saving import HEADER_KEY
from minidl.testing import check_layer, check_model_gradients, image_shapes


# -- property tests ---------------------------------------------------------------------------
@given(image_shapes(channels=(1, 3), height=(1, 5)), st.integers(1, 3), st.integers(1, 3))
@example((1, 1, 1), 1, 1)
def test_nested_sequential(shape, batch, filters):
    inner = Sequential([Conv2D(filters, 1), Tanh(), Sequential([Conv2D(2, 1, use_bias=False)])])
    report = check_layer(Sequential([inner, Tanh(), Flatten(), Dense(3)]), shape, batch=batch)
    assert report.output_shape == (3,)
    assert {"0.0.weight", "0.2.0.weight", "3.weight"} <= set(report.gradient_errors["training"])


@given(image_shapes(channels=(1, 3), height=(1, 5)), st.integers(1, 3), st.booleans())
@example((1, 1, 1), 1, True)
def test_residual(shape, batch, projection):
    c = shape[0] + 1 if projection else shape[0]
    block = Residual([Conv2D(c, 3, padding="same"), Tanh(), Conv2D(c, 1)],
                     shortcut=Conv2D(c, 1) if projection else None)
    report = check_layer(block, shape, batch=batch)
    assert report.output_shape == (c, *shape[1:])
    assert ("shortcut.0.weight" in report.gradient_errors["training"]) == projection


@given(image_shapes(channels=(1, 3), height=(1, 5)), st.integers(1, 3), st.sampled_from(["concat", "add"]))
@example((1, 1, 1), 1, "concat")
def test_parallel(shape, batch, merge):
    branches = [Conv2D(2, 1), [Conv2D(2, 3, padding="same"), Tanh()], Tanh() if merge == "concat" else Conv2D(2, 1)]
    report = check_layer(Parallel(branches, merge=merge), shape, batch=batch)
    channels = 4 + shape[0] if merge == "concat" else 2
    assert report.output_shape == (channels, *shape[1:])
    assert "branches.1.0.weight" in report.gradient_errors["training"]


@given(image_shapes(channels=(1, 2), height=(1, 4)), st.integers(1, 2))
@example((1, 1, 1), 1)
def test_containers_nested_three_deep(shape, batch):
    deep = Residual([Parallel([[Sequential([Conv2D(2, 1), Tanh()])], Conv2D(2, 1)], merge="add"), Conv2D(shape[0], 1)])
    report = check_layer(Sequential([deep, Flatten(), Dense(2)]), shape, batch=batch)
    assert "0.layers.0.branches.0.0.0.weight" in report.gradient_errors["training"]  # three containers down


def test_model_gradients_through_nested_containers():
    model = Sequential([Residual([Conv2D(2, 3, padding="same"), Tanh()]), Parallel([Conv2D(1, 1), Conv2D(2, 1)]),
                        Flatten(), Dense(3), SoftmaxCE()], input_shape=(2, 3, 3), seed=0, dtype="float64")
    x = np.random.default_rng(0).standard_normal((2, 2, 3, 3))
    errors = check_model_gradients(model, x, np.array([0, 2]))
    assert {"1.branches.1.0.weight", "0.layers.0.bias"} <= set(errors)


@pytest.mark.parametrize("make", [
    lambda: Sequential([Conv2D(2, 3), Sequential([ReLU(), Conv2D(2, 1)])]),
    lambda: Residual([Conv2D(2, 3, padding="same"), ReLU()], shortcut=Conv2D(2, 1)),
    lambda: Parallel([Conv2D(2, 3, padding="same"), [ReLU(), Conv2D(1, 1)]]),
])
def test_backward_params_writes_the_parameter_gradients_of_backward(make):
    layer = make()
    layer.build((2, 4, 4), rng=np.random.default_rng(0), dtype="float64")
    x = np.random.default_rng(1).standard_normal((3, 2, 4, 4))
    g = np.random.default_rng(2).standard_normal((3, *layer.output_shape))
    layer.forward(x, training=True)
    layer.backward(g)
    expected = {k: p.grad.copy() for k, p in layer.named_parameters().items()}
    for p in layer.parameters():
        p.grad[...] = 0
    assert layer.backward_params(g) is None
    for k, p in layer.named_parameters().items():
        np.testing.assert_array_equal(p.grad, expected[k], err_msg=k)


# -- the tree ----------------------------------------------------------------------------------
def test_names_are_dotted_paths_in_pre_order():
    model = Sequential([Conv2D(2, 3, padding="same"), Residual([Conv2D(2, 3, padding="same"), BatchNorm2D()]),
                        Parallel([Conv2D(1, 1), Conv2D(1, 1)]), Flatten(), Dense(3)], input_shape=(1, 4, 4))
    assert list(model.named_children()) == ["0", "1", "2", "3", "4"]
    assert list(model.named_layers()) == ["0", "1", "1.layers", "1.layers.0", "1.layers.1", "2", "2.branches.0",
                                          "2.branches.0.0", "2.branches.1", "2.branches.1.0", "3", "4"]
    assert list(model.named_parameters()) == [
        "0.weight", "0.bias", "1.layers.0.weight", "1.layers.0.bias", "1.layers.1.weight", "1.layers.1.bias",
        "2.branches.0.0.weight", "2.branches.0.0.bias", "2.branches.1.0.weight", "2.branches.1.0.bias",
        "4.weight", "4.bias"]
    assert list(model.named_buffers()) == ["1.layers.1.running_mean", "1.layers.1.running_var"]
    assert model.named_parameters()["1.layers.0.weight"] is model[1].layers[0].weight


def test_layers_in_lists_tuples_and_dicts_of_attributes_are_found():
    class Holder(Layer):
        def __init__(self):
            super().__init__()
            self.blocks = [Dense(2), (Dense(2), {"last": Dense(2)})]

    assert list(Holder().named_layers()) == ["blocks.0", "blocks.1.0", "blocks.1.1.last"]


def test_freezing_a_container_freezes_its_subtree():
    model = Sequential([Residual([Dense(3), ReLU(), Dense(3)], trainable=False), Dense(2)], input_shape=(3,))
    assert [p.trainable for p in model.parameters()] == [False] * 4 + [True] * 2
    model[0].trainable = True
    assert all(p.trainable for p in model.parameters())
    model.trainable = False
    assert not any(p.trainable for p in model.parameters()) and not model[0].layers[2].trainable
    assert model[0].layers[2].to_config()["config"]["trainable"] is False


def test_a_frozen_leaf_stays_frozen_inside_a_trainable_container():
    block = Residual([Dense(3, trainable=False), ReLU(), Dense(3)])
    Sequential([block], input_shape=(3,))
    assert [p.trainable for p in block.parameters()] == [False, False, True, True]


# -- a user's composite layer (docs/extending.md) -------------------------------------------------
class SkipMLP(Layer):
    """y = x + Dense(relu(Dense(x))): children made in create_parameters, nothing registered."""

    def __init__(self, hidden, *, trainable=True, name=None):
        super().__init__(trainable=trainable, name=name)
        self.hidden = hidden
        self.inner = None

    def get_config(self):
        return {"hidden": self.hidden}

    def create_parameters(self, input_shape, rng, dtype):
        self.inner = [Dense(self.hidden), ReLU(), Dense(input_shape[0])]
        shape = input_shape
        for layer in self.inner:
            shape = layer.build(shape, rng, dtype)

    def forward(self, x, training=False):
        self.check_input(x)
        y = x
        for layer in self.inner:
            y = layer.forward(y, training)
        return x + y

    def backward(self, grad_out):
        g = grad_out
        for layer in reversed(self.inner):
            g = layer.backward(g)
        return grad_out + g


def test_composite_user_layer_passes_check_layer():
    report = check_layer(SkipMLP(4), (3,))
    assert set(report.gradient_errors["training"]) == {
        "input", "inner.0.weight", "inner.0.bias", "inner.2.weight", "inner.2.bias"}


def test_composite_user_layer_is_trained_counted_saved_and_reloaded_bit_for_bit(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 4)), rng.integers(0, 3, 64)
    model = Sequential([SkipMLP(8), Dense(3), SoftmaxCE()], input_shape=(4,), seed=0)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    model.fit(X, y, optimizer=SGD(model.parameters(), lr=0.1), epochs=2, batch_size=8, verbose=0)
    after = model.state_dict()
    assert {"0.inner.0.weight", "0.inner.2.bias"} <= set(after)
    assert all(not np.array_equal(before[k], after[k]) for k in after)  # every parameter trained, nested ones too
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Total params: 91" in text  # 4·8 + 8 + 8·4 + 4 nested, 4·3 + 3 outside
    assert "  inner.0: Dense" in text
    model.save(tmp_path / "m.npz")
    same = minidl.load(tmp_path / "m.npz")
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(same.state_dict()[k], v)
    assert np.array_equal(same.predict_proba(X), model.predict_proba(X))


def test_freezing_a_composite_user_layer_freezes_its_children():
    model = Sequential([SkipMLP(8, trainable=False), Dense(3), SoftmaxCE()], input_shape=(4,), seed=0)
    frozen = {k: v.copy() for k, v in model.state_dict().items() if k.startswith("0.")}
    X, y = np.random.default_rng(0).standard_normal((16, 4)), np.arange(16) % 3
    model.fit(X, y, epochs=2, batch_size=4, verbose=0)
    assert len(frozen) == 4
    for k, v in frozen.items():
        np.testing.assert_array_equal(model.state_dict()[k], v)


# -- reusing built layers -----------------------------------------------------------------------
def test_a_trained_models_layers_in_a_new_model_keep_their_weights_and_the_source_is_unchanged():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 1, 6, 6)).astype("float32"), rng.integers(0, 4, 40)
    source = Sequential([Conv2D(3, 3), ReLU(), Flatten(), Dense(4), SoftmaxCE()], input_shape=(1, 6, 6), seed=0)
    source.fit(X, y, epochs=2, batch_size=8, verbose=0)
    proba, trained = source.predict_proba(X), source[0].weight.data.copy()
    features = source.layers[:3]
    new = Sequential([*features, Dense(2), SoftmaxCE()], input_shape=(1, 6, 6), seed=1)
    np.testing.assert_array_equal(new[0].weight.data, trained)
    assert new[0].weight is source[0].weight  # one layer object: shared weights, as in Keras and PyTorch
    np.testing.assert_array_equal(source.predict_proba(X), proba)
    nested = Sequential([Sequential(features), Dense(2)], input_shape=(1, 6, 6))
    np.testing.assert_array_equal(nested[0][0].weight.data, trained)


def test_a_built_layer_refuses_another_input_shape_or_dtype():
    dense = Dense(3)
    Sequential([dense], input_shape=(4,))
    with pytest.raises(ValueError, match=r"layer 0 \(Dense\) got input shape \(5,\): Dense is already built for "
                                         r"input shape \(4,\) and dtype float32.*use a new layer"):
        Sequential([dense], input_shape=(5,))
    with pytest.raises(ValueError, match="dtype float32, so it cannot take input shape \\(4,\\) and dtype float64"):
        Sequential([dense], input_shape=(4,), dtype="float64")
    assert dense.input_shape == (4,)


def test_a_failed_build_leaves_no_trace():
    def layers(last):
        return [Conv2D(2, 3), Sequential([Conv2D(2, 1), Flatten()]), last]

    model = Sequential(layers(Conv2D(2, 1)), seed=4)  # the last layer cannot take (18,)
    with pytest.raises(ValueError, match=r"layer 2 \(Conv2D\) got input shape \(18,\)"):
        model.build((1, 5, 5))
    assert not any(layer.built for layer in [model, *model.named_layers().values()])
    assert model[0].weight is None and model[1][0].weight is None
    model.layers[2] = Dense(2)
    model.build((1, 5, 5))
    first = Sequential(layers(Dense(2)), input_shape=(1, 5, 5), seed=4)  # what a first build draws
    assert model.state_dict().keys() == first.state_dict().keys()
    for k, v in first.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k], v)


# -- refusals -------------------------------------------------------------------------------------
def test_one_layer_object_in_two_places_is_refused():
    dense = Dense(3)
    with pytest.raises(ValueError, match=r"the same layer object appears twice \(Dense at '0' and '1'\)"):
        Sequential([dense, dense])
    with pytest.raises(ValueError, match=r"appears twice \(Dense at '0' and '1.layers.0'\).*new one for each place"):
        Sequential([dense, Residual([dense])])


def test_residual_shape_mismatch_names_both_shapes_and_suggests_a_projection():
    with pytest.raises(ValueError, match=r"layer 1 \(Residual\) got input shape \(4, 8, 8\): Residual: F\(x\) has "
                                         r"shape \(8, 4, 4\) but the identity shortcut gives x shape \(4, 8, 8\).*"
                                         r"shortcut=Conv2D\(8, 1, stride=2\)"):
        Sequential([Conv2D(4, 3, padding="same"), Residual(Conv2D(8, 3, stride=2, padding="same"))],
                   input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match=r"the shortcut S\(x\) has shape \(2,\).*shortcut=Dense\(3\)"):
        Residual(Dense(3), shortcut=Dense(2)).build((5,))


def test_parallel_shape_mismatch_names_the_branch():
    with pytest.raises(ValueError, match=r"branch 1 outputs shape \(2, 2, 2\) but branch 0 outputs \(2, 4, 4\); "
                                         r'merge="concat"'):
        Parallel([Conv2D(2, 1), Conv2D(2, 1, stride=2)]).build((1, 4, 4))
    with pytest.raises(ValueError, match=r"branch 2 outputs shape \(3,\) but branch 0 outputs \(2,\); merge=\"add\""):
        Parallel([Dense(2), Dense(2), Dense(3)], merge="add").build((4,))


@pytest.mark.parametrize("make, error, message", [
    (lambda: Residual(5), TypeError, "Residual: layers must be a layer or a non-empty list of layers, got 5"),
    (lambda: Residual([]), TypeError, r"got \[\]"),
    (lambda: Residual(Dense(2), shortcut="identity"), TypeError, "shortcut must be a layer .* got 'identity'"),
    (lambda: Parallel(Dense(2)), TypeError, "branches must be a non-empty list"),
    (lambda: Parallel([Dense(2), [Dense(2), "relu"]]), TypeError, r"branches\[1\] must be .* got \[Dense"),
    (lambda: Parallel([Dense(2)], merge="max"), ValueError, "merge must be \"concat\" or \"add\", got 'max'"),
    (lambda: Residual([Dense(2), SoftmaxCE()]), ValueError,
     "Residual: layers holds the loss SoftmaxCE; only the outermost model has a loss"),
    (lambda: Parallel([Dense(2), SoftmaxCE()]), ValueError, r"Parallel: branches\[1\] holds the loss SoftmaxCE"),
    (lambda: Sequential([Sequential([Dense(2), SoftmaxCE()]), Dense(2)]), ValueError,
     "the Sequential at 0 has the loss SoftmaxCE; only the outermost model has a loss"),
])
def test_bad_container_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


# -- saving -------------------------------------------------------------------------------------
def nested_model():
    return Sequential([Sequential([Conv2D(3, 3, padding="same"), BatchNorm2D(), ReLU()]),
                       Residual([Conv2D(3, 3, padding="same"), Dropout(0.2)], name="block"),
                       Parallel([Conv2D(2, 1), [Conv2D(2, 3, padding="same", trainable=False)]], merge="add"),
                       GlobalAvgPool2D(), Dense(3), SoftmaxCE()], input_shape=(1, 6, 6), seed=2)


def test_nested_model_round_trips_exactly(tmp_path):
    model = nested_model()
    X = np.random.default_rng(0).standard_normal((10, 1, 6, 6)).astype("float32")
    model.fit(X, np.arange(10) % 3, epochs=1, batch_size=5, verbose=0)
    model.save(tmp_path / "nested.npz")
    same = minidl.load(tmp_path / "nested.npz")
    assert [layer.to_config() for layer in same.layers] == [layer.to_config() for layer in model.layers]
    assert same[1].name == "block" and not same[2].branches[1][0].trainable
    assert same.state_dict().keys() == model.state_dict().keys()
    np.testing.assert_array_equal(same.predict_proba(X), model.predict_proba(X))
    with np.load(tmp_path / "nested.npz") as z:
        header = json.loads(z[HEADER_KEY].tobytes())
    assert header["format_version"] == 3
    assert header["layers"][1]["config"]["layers"]["class"] == "Sequential"
    assert header["loss"]["class"] == "SoftmaxCE" and len(header["layers"]) == len(model.layers)


def test_a_format_version_1_file_still_loads(tmp_path):
    model = Sequential([Conv2D(2, 3), ReLU(), Flatten(), Dense(3), SoftmaxCE()], input_shape=(1, 5, 5), seed=0)
    state = model.state_dict()
    header = {  # what minidl wrote before containers: a flat list of layer specs
        "format": "minidl.Sequential", "format_version": 1, "minidl_version": "0.1.0",
        "input_shape": [1, 5, 5], "seed": 0, "dtype": "float32",
        "layers": [{"class": "Conv2D", "config": {"filters": 2, "kernel_size": [3, 3], "stride": [1, 1],
                                                  "padding": [0, 0], "use_bias": True, "name": "Conv2D"}},
                   {"class": "ReLU", "config": {"name": "ReLU"}}, {"class": "Flatten", "config": {"name": "Flatten"}},
                   {"class": "Dense", "config": {"units": 3, "use_bias": True, "name": "Dense"}},
                   {"class": "SoftmaxCE", "config": {"name": "SoftmaxCE"}}],
        "state": {k: {"shape": list(a.shape), "dtype": a.dtype.name} for k, a in state.items()},
    }
    with open(tmp_path / "v1.npz", "wb") as f:
        np.savez(f, **{HEADER_KEY: np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}, **state)
    loaded = minidl.load(tmp_path / "v1.npz")
    X = np.random.default_rng(0).standard_normal((4, 1, 5, 5)).astype("float32")
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_a_format_version_2_file_with_the_loss_as_its_last_layer_still_loads(tmp_path):
    model = Sequential([Conv2D(2, 3), Residual([ReLU()]), Flatten(), Dense(3)], input_shape=(1, 5, 5), seed=0,
                       loss=SoftmaxCE())
    state = model.state_dict()
    header = {  # what minidl wrote before the loss left the layer list: nested specs, the loss last
        "format": "minidl.Sequential", "format_version": 2, "minidl_version": "0.1.0",
        "input_shape": [1, 5, 5], "seed": 0, "dtype": "float32",
        "layers": [*[layer.to_config() for layer in model.layers],
                   {"class": "SoftmaxCE", "config": {"name": "loss"}}],
        "state": {k: {"shape": list(a.shape), "dtype": a.dtype.name} for k, a in state.items()},
    }
    with open(tmp_path / "v2.npz", "wb") as f:
        np.savez(f, **{HEADER_KEY: np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}, **state)
    loaded = minidl.load(tmp_path / "v2.npz")
    assert isinstance(loaded.loss, SoftmaxCE) and loaded.loss.name == "loss" and len(loaded.layers) == 4
    X = np.random.default_rng(0).standard_normal((4, 1, 5, 5)).astype("float32")
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    loaded.save(tmp_path / "v3.npz")  # and it saves in the new form
    with np.load(tmp_path / "v3.npz") as z:
        assert json.loads(z[HEADER_KEY].tobytes())["loss"]["config"]["name"] == "loss"


def test_a_loaded_model_draws_its_random_state_from_its_seed(tmp_path):
    def make():
        return Sequential([Flatten(), Dense(4), Dropout(0.5), Dense(2), SoftmaxCE()], input_shape=(3,), seed=7)

    make().save(tmp_path / "d.npz")
    loaded, fresh = minidl.load(tmp_path / "d.npz"), make()
    x = np.ones((50, 4), dtype="float32")  # the dropout masks: drawn from the seed, as in a fresh model
    np.testing.assert_array_equal(loaded[2].forward(x, training=True), fresh[2].forward(x, training=True))


# -- masks, integer inputs and forward hooks --------------------------------------------------------
class MaskedMean(Layer):
    """A stand-in sequence layer: the mean over the valid steps, (N, T, D) -> (N, D); it drops the mask."""

    supports_masking = True

    def compute_output_shape(self, input_shape):
        return input_shape[1:]

    def forward(self, x, training=False, mask=None):
        self.check_input(x)
        self._w = np.ones(x.shape[:2], x.dtype) if mask is None else mask.astype(x.dtype)
        self._count = self._w.sum(axis=1, keepdims=True)
        return np.einsum("nt,ntd->nd", self._w, x) / self._count

    def compute_mask(self, x, mask):
        return None

    def backward(self, grad_out):
        return self._w[:, :, None] * (grad_out / self._count)[:, None, :]


class ZeroMask(Layer):
    """A stand-in Embedding: takes integer ids (N, T), gives floats (N, T, 1), masks the id 0."""

    def compute_output_shape(self, input_shape):
        return (*input_shape, 1)

    def check_input(self, x):
        if not (isinstance(x, np.ndarray) and x.dtype.kind in "iu" and x.shape[1:] == self.input_shape):
            raise TypeError(f"{self.name}: expects integer ids (N, {self.input_shape[0]}), got {x!r}")

    def forward(self, x, training=False):
        self.check_input(x)
        return x[..., None].astype(self.dtype)

    def compute_mask(self, x, mask):
        return x != 0

    def backward(self, grad_out):
        return np.zeros(grad_out.shape[:2])


class StepLinear(Layer):
    """A stand-in per-step dense layer: (N, T, D) -> (N, T, units)."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def get_config(self):
        return {"units": self.units}

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def create_parameters(self, input_shape, rng, dtype):
        self.weight = Parameter(rng.standard_normal((input_shape[1], self.units)).astype(dtype))

    def forward(self, x, training=False):
        self.check_input(x)
        self._x = x
        return x @ self.weight.data

    def backward(self, grad_out):
        self.weight.grad[...] = np.einsum("ntd,ntu->du", self._x, grad_out)
        return grad_out @ self.weight.data.T


class Recorder(Layer):
    """Passes x through and records the mask it was given."""

    supports_masking = True

    def forward(self, x, training=False, mask=None):
        self.seen = mask
        return x

    def backward(self, grad_out):
        return grad_out


def test_a_mask_made_by_one_layer_reaches_the_layers_that_support_masking_and_the_loss():
    recorder = Recorder()
    model = Sequential([ZeroMask(), recorder, Residual([Recorder()]), Parallel([Recorder(), Tanh()])],
                       input_shape=(4,), input_dtype="int64", seed=0, loss=SoftmaxCE())
    ids = np.array([[3, 1, 0, 0], [2, 2, 2, 0]])
    outputs = model.forward(ids)
    expected = ids != 0
    np.testing.assert_array_equal(recorder.seen, expected)
    np.testing.assert_array_equal(model[2].layers[0].seen, expected)  # through Residual
    np.testing.assert_array_equal(model[3].branches[0][0].seen, expected)  # through Parallel
    np.testing.assert_array_equal(model.output_mask, expected)
    assert outputs.shape == (2, 4, 2) and model.output_shape == (4, 2)  # Parallel concatenated D on the last axis
    y = np.array([[1, 0, 1, 1], [0, 1, 1, 1]])  # the padded steps' labels must not count
    loss, _ = model.forward_backward(ids, y)
    expected_loss = model.loss.loss_and_grad(outputs, y, expected)[0]
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    assert loss != pytest.approx(model.loss.loss_and_grad(outputs, y)[0], rel=1e-6)


def test_a_masked_sequence_model_trains_with_fit_and_counts_accuracy_on_valid_steps():
    model = Sequential([ZeroMask(), StepLinear(4), Tanh(), MaskedMean(), Dense(2)], input_shape=(5,), input_dtype="int64",
                       seed=0, dtype="float64", loss=SoftmaxCE())
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 4, (32, 5))
    ids[:, 3:] = 0  # padding: the mean is over the first three steps only
    y = (ids[:, :3].mean(axis=1) > 2).astype(int)
    history = model.fit(ids, y, epochs=3, batch_size=8, verbose=0)
    assert np.isfinite(history["loss"]).all() and model.output_mask is None  # MaskedMean dropped the time axis
    model.predict(ids)
    np.testing.assert_array_equal(model[3]._count[:, 0], 3)  # the mean was over the three valid steps
    with pytest.raises(TypeError, match="whole numbers"):
        model.predict(ids + 0.5)


def test_masked_models_match_finite_differences():
    model = Sequential([StepLinear(3), Residual([StepLinear(3), Tanh()]), MaskedMean(), Dense(2)], input_shape=(4, 2),
                       seed=0, dtype="float64", loss=SoftmaxCE())
    x = np.random.default_rng(1).normal(size=(3, 4, 2))
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], bool)
    y = np.array([0, 1, 1])

    def loss():
        return model.loss.loss_and_grad(model.forward(x, training=True, mask=mask), y)[0]

    loss()
    model.backward(model.loss.loss_and_grad(model.forward(x, training=True, mask=mask), y)[1])
    analytic = model.layers[0].weight.grad.copy()
    w, eps = model.layers[0].weight.data, 1e-6
    numeric = np.zeros_like(w)
    for i in np.ndindex(w.shape):
        w[i] += eps
        up = loss()
        w[i] -= 2 * eps
        numeric[i] = (up - loss()) / (2 * eps)
        w[i] += eps
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def test_a_mask_cannot_follow_a_layer_that_changes_the_time_axis():
    model = Sequential([Flatten(), Dense(2)], input_shape=(3, 2), seed=0)
    with pytest.raises(ValueError, match="Flatten: a mask .* cannot follow this layer"):
        model.forward(np.zeros((1, 3, 2), np.float32), mask=np.ones((1, 3), bool))


def test_parallel_concatenates_sequences_on_the_last_axis_and_images_on_channels():
    seq = Sequential([Parallel([StepLinear(2), StepLinear(3)])], input_shape=(4, 5), seed=0)
    assert seq.output_shape == (4, 5)
    x = np.random.default_rng(0).normal(size=(2, 4, 5)).astype(np.float32)
    out = seq.forward(x)
    np.testing.assert_array_equal(out[..., :2], seq[0].branches[0].forward(x))
    report = check_layer(Parallel([StepLinear(2), [StepLinear(3), Tanh()]]), (4, 5))
    assert report.ok, str(report)
    assert Sequential([Parallel([Conv2D(2, 1), Conv2D(3, 1)])], input_shape=(1, 4, 4)).output_shape == (5, 4, 4)


def test_forward_hooks_see_every_layer_in_a_model_and_go_away_when_removed():
    model = Sequential([Dense(3), Residual([Dense(3), Tanh()]), Dense(2)], input_shape=(4,), seed=0, loss=SoftmaxCE())
    seen = []
    inner = model[1].layers[1]
    handles = [layer.register_forward_hook(lambda layer, x, y: seen.append((layer.name, x.shape, y.copy())))
               for layer in (model[0], inner)]
    X = np.ones((2, 4), np.float32)
    logits = model.forward(X)
    assert [name for name, _, _ in seen] == ["Dense", "Tanh"]
    np.testing.assert_array_equal(seen[0][2], model[0].forward(X))
    assert seen[1][1] == (2, 3)
    model.predict(X)  # predict, evaluate and fit run the same forward
    assert len(seen) == 4
    for handle in handles:
        handle.remove()
    np.testing.assert_array_equal(model.forward(X), logits)
    assert len(seen) == 4 and not model[0]._forward_hooks
    with pytest.raises(TypeError, match="takes a function"):
        model[0].register_forward_hook("print")


def test_a_hook_on_a_layer_does_not_change_what_saving_writes(tmp_path):
    model = Sequential([Dense(3), Dense(2)], input_shape=(4,), seed=0, loss=SoftmaxCE())
    model[0].register_forward_hook(lambda layer, x, y: None)
    model.save(tmp_path / "m.npz")
    assert minidl.load(tmp_path / "m.npz").state_dict().keys() == model.state_dict().keys()


def test_integer_inputs_are_saved_with_the_model(tmp_path):
    model = Sequential([ZeroMask(), StepLinear(2)], input_shape=(3,), input_dtype="int32", seed=0, loss=SoftmaxCE())
    model.save(tmp_path / "ids.npz")
    same = minidl.load(tmp_path / "ids.npz")
    assert same.input_dtype == np.int32 and same.dtype == np.float32
    ids = np.array([[1, 2, 0]])
    np.testing.assert_array_equal(same.predict_proba(ids), model.predict_proba(ids))
    with pytest.raises(TypeError, match="input_dtype must be None or an integer or float type"):
        Sequential([Dense(2)], input_dtype="bool")


def test_a_nested_model_saves_and_loads_as_a_plain_chain(tmp_path):
    inner = Sequential([Dense(3), Tanh()])  # minidl.Sequential, the model class
    model = Sequential([inner, Dense(2)], input_shape=(4,), seed=0, loss=SoftmaxCE())
    model.save(tmp_path / "n.npz")
    same = minidl.load(tmp_path / "n.npz")
    assert type(same[0]) is minidl.layers.Sequential and type(same) is Sequential
    X = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(same.predict_proba(X), model.predict_proba(X))


# -- the code at the top of issue 8 ("What users must be able to write") runs as written -----------

# Verbatim from the issue; only X, y, y_float come from outside (a slice of the digits, so that
# its 20 epochs stay quick).
SNIPPET = '''
from minidl import Sequential
from minidl.layers import (Conv2D, BatchNorm2D, ReLU, MaxPool2D, GlobalAvgPool2D, Flatten, Dense,
                           Residual, Parallel, Upsample2D, SoftmaxCE, SigmoidBCE, MSE)

block = lambda c: Residual([Conv2D(c, 3, padding="same"), BatchNorm2D(), ReLU(),
                            Conv2D(c, 3, padding="same"), BatchNorm2D()])
down = Residual([Conv2D(32, 3, stride=2, padding="same"), BatchNorm2D(), ReLU(),
                 Conv2D(32, 3, padding="same"), BatchNorm2D()],
                shortcut=Conv2D(32, 1, stride=2))                 # projection shortcut
stem = Sequential([Conv2D(16, 3, padding="same"), BatchNorm2D(), ReLU()])   # a Sequential is a layer
model = Sequential([stem, block(16), ReLU(), down, ReLU(),
                    Parallel([[Conv2D(16, 1)], [Conv2D(16, 3, padding="same")]], merge="concat"),
                    GlobalAvgPool2D(), Dense(10), SoftmaxCE()], input_shape=(1, 8, 8), seed=0)
model.summary()          # a tree: every container and leaf, output shape, parameters, totals
model.fit(X, y, epochs=20, batch_size=32)

reg = Sequential([Flatten(), Dense(32), ReLU(), Dense(1), MSE()], input_shape=(1, 8, 8))
reg.fit(X, y_float)      # history has loss and mae; predict returns the values, shape (N, 1)
binary = Sequential([Flatten(), Dense(1), SigmoidBCE()], input_shape=(1, 8, 8))
binary.fit(X, y == 3)    # accuracy at threshold 0.5; predict returns 0/1 labels; predict_proba the sigmoid
'''


@pytest.fixture(scope="module")
def ran():
    X_train, _, y_train, _ = load_digits()
    X, y = X_train[:256], y_train[:256]
    namespace = {"X": X, "y": y, "y_float": y.astype("float32")}
    exec(compile(SNIPPET, "issue-8-snippet", "exec"), namespace)
    return namespace


@pytest.mark.slow  # the snippet trains for 20 epochs
def test_the_snippet_trains_its_classifier(ran, capsys):
    X, y, model = ran["X"], ran["y"], ran["model"]
    assert model.output_shape == (10,)
    assert model.evaluate(X, y)["accuracy"] > 0.8          # 20 epochs on the images it trained on
    model.summary()
    tree = capsys.readouterr().out
    for name in ("Sequential", "Residual", "Parallel", "BatchNorm2D", "GlobalAvgPool2D", "Total params"):
        assert name in tree


@pytest.mark.slow  # the snippet trains for 20 epochs
def test_the_snippet_regressor_predicts_values(ran):
    X, reg = ran["X"], ran["reg"]
    assert {"loss", "mae"} <= set(reg.history.history)
    values = reg.predict(X)
    assert values.shape == (len(X), 1) and values.dtype.kind == "f"
    assert len(np.unique(values)) > 10                     # values, not argmax labels


@pytest.mark.slow  # the snippet trains for 20 epochs
def test_the_snippet_binary_classifier_predicts_labels_and_probabilities(ran):
    X, y, binary = ran["X"], ran["y"], ran["binary"]
    assert "accuracy" in binary.history.history
    labels, proba = binary.predict(X), binary.predict_proba(X)
    assert set(np.unique(labels)) <= {0, 1}
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_array_equal(labels.ravel(), (proba.ravel() > 0.5).astype(labels.dtype))
