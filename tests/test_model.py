"""Sequential: the shape pass, fit / evaluate / predict, frozen parameters, end-to-end gradients."""

import numpy as np
import pytest

from minidl import Sequential
from minidl.layers import LSTM, Conv2D, Dense, Flatten, MaxPool2D, ReLU, SoftmaxCE
from minidl.optim import SGD
from minidl.testing import check_model_gradients, tie_free_input


def blog_layers():
    return [Conv2D(4, kernel_size=3), ReLU(), MaxPool2D(2), Flatten(), Dense(10), SoftmaxCE()]


def toy_data(n=24, classes=10, shape=(1, 8, 8), seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape)), rng.integers(0, classes, n)


def test_shape_pass_infers_every_input_size():
    model = Sequential(blog_layers(), input_shape=(1, 8, 8), seed=0)
    assert [layer.output_shape for layer in model.layers] == [(4, 6, 6), (4, 6, 6), (4, 3, 3), (36,), (10,)]
    assert model.loss.input_shape == (10,) and isinstance(model.loss, SoftmaxCE)
    assert model.layers[0].weight.shape == (4, 1, 3, 3)
    assert model.layers[4].weight.shape == (36, 10)
    assert model.layers[4].bias.shape == (10,)


def test_summary_lists_layers_shapes_and_parameter_counts():
    lines = []
    Sequential(blog_layers(), input_shape=(1, 8, 8), seed=0).summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "(None, 4, 6, 6)" in text and "(None, 36)" in text
    assert "Total params: 410" in text  # conv 4·9 + 4, dense 36·10 + 10
    assert "Trainable params: 410" in text


@pytest.mark.parametrize(
    "layers, input_shape, words",
    [
        ([Conv2D(4, 3), MaxPool2D(2), LSTM(10)], (1, 8, 8), ["layer 2", "LSTM", "(4, 3, 3)"]),
        ([Conv2D(4, 3), MaxPool2D(2), Dense(10), SoftmaxCE()], (1, 8, 8),
         ["layer 3", "SoftmaxCE", "(4, 3, 10)", "Flatten"]),  # Dense maps the last axis, as PyTorch's Linear
        ([Conv2D(4, 9)], (1, 8, 8), ["layer 0", "Conv2D", "(9, 9)", "(8, 8)"]),
        ([Flatten(), Conv2D(2, 3)], (1, 8, 8), ["layer 1", "Conv2D", "(64,)"]),
        ([MaxPool2D(4), MaxPool2D(4)], (1, 8, 8), ["layer 1", "MaxPool2D", "(1, 2, 2)"]),
    ],
)
def test_a_wrong_composition_fails_at_build_naming_layer_and_shapes(layers, input_shape, words):
    with pytest.raises(ValueError) as info:
        Sequential(layers, input_shape=input_shape)
    for word in words:
        assert word in str(info.value)


def test_softmax_ce_must_be_last():
    with pytest.raises(ValueError, match="SoftmaxCE must be the last layer"):
        Sequential([Flatten(), SoftmaxCE(), Dense(3)])


def test_model_builds_from_the_first_batch_when_no_input_shape_is_given():
    model = Sequential(blog_layers(), seed=0)
    assert not model.built
    X, y = toy_data()
    model.fit(X, y, epochs=1, verbose=0)
    assert model.input_shape == (1, 8, 8)


def test_fit_evaluate_predict_shapes_and_history():
    X, y = toy_data(n=30)
    model = Sequential(blog_layers(), input_shape=(1, 8, 8), seed=0)
    history = model.fit(X, y, epochs=3, batch_size=7, validation_data=(X[:10], y[:10]), verbose=0)
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert all(len(v) == 3 for v in history.values())
    assert history.history is history and history.epoch == [0, 1, 2]
    result = model.evaluate(X, y)
    assert set(result) == {"loss", "accuracy"} and 0.0 <= result["accuracy"] <= 1.0
    proba = model.predict_proba(X)
    assert proba.shape == (30, 10) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    labels = model.predict(X)
    assert labels.shape == (30,)
    np.testing.assert_array_equal(labels, proba.argmax(axis=1))
    # evaluate's loss is the mean cross-entropy of predict_proba's probabilities
    expected = -np.mean(np.log(proba[np.arange(30), y].astype(np.float64)))
    assert result["loss"] == pytest.approx(expected, rel=1e-4)


def test_fit_accepts_blog_shaped_images_without_a_channel_axis():
    X, y = toy_data()
    model = Sequential(blog_layers(), input_shape=(1, 8, 8), seed=0)
    model.fit(X[:, 0], y, epochs=1, verbose=0)
    np.testing.assert_array_equal(model.predict(X[:, 0]), model.predict(X))


def test_training_lowers_the_loss():
    X, y = toy_data(n=40, classes=3)
    model = Sequential([Flatten(), Dense(16), ReLU(), Dense(3), SoftmaxCE()], input_shape=(1, 8, 8), seed=0)
    before = model.evaluate(X, y)["loss"]
    model.fit(X, y, optimizer=SGD(model.parameters(), lr=0.1, momentum=0.9), epochs=30, batch_size=8, verbose=0)
    assert model.evaluate(X, y)["loss"] < 0.5 * before


def test_frozen_layers_keep_their_parameters():
    X, y = toy_data()
    layers = blog_layers()
    layers[0] = Conv2D(4, kernel_size=3, trainable=False)
    model = Sequential(layers, input_shape=(1, 8, 8), seed=0)
    conv_before = model.layers[0].weight.data.copy()
    dense_before = model.layers[4].weight.data.copy()
    model.fit(X, y, epochs=2, batch_size=4, verbose=0)
    np.testing.assert_array_equal(model.layers[0].weight.data, conv_before)
    assert not np.array_equal(model.layers[4].weight.data, dense_before)
    lines = []
    model.summary(print_fn=lines.append)
    assert "Non-trainable params: 40" in "\n".join(lines)


def test_same_seed_same_weights_and_curve_different_seed_different_weights():
    X, y = toy_data()

    def run(seed):
        model = Sequential(blog_layers(), input_shape=(1, 8, 8), seed=seed)
        start = model.state_dict()
        history = model.fit(X, y, epochs=2, batch_size=5, verbose=0)
        return start, history, model.state_dict()

    a, b, c = run(3), run(3), run(4)
    for name in a[0]:
        np.testing.assert_array_equal(a[0][name], b[0][name])
        np.testing.assert_array_equal(a[2][name], b[2][name])
    assert a[1] == b[1]
    assert not np.array_equal(a[0]["0.weight"], c[0]["0.weight"])


def test_shuffle_false_trains_in_the_given_order():
    X, y = toy_data()
    one = Sequential(blog_layers(), input_shape=(1, 8, 8), seed=0)
    two = Sequential(blog_layers(), input_shape=(1, 8, 8), seed=0)
    two._shuffle_rng = np.random.default_rng(12345)  # a different shuffle stream must not matter
    for model in (one, two):
        model.fit(X, y, epochs=2, batch_size=5, shuffle=False, verbose=0)
    np.testing.assert_array_equal(one.layers[4].weight.data, two.layers[4].weight.data)


def test_forward_backward_overwrites_gradients():
    X, y = toy_data(n=6)
    model = Sequential(blog_layers(), input_shape=(1, 8, 8), seed=0, dtype="float64")
    model.forward_backward(X, y)
    first = [p.grad.copy() for p in model.parameters()]
    model.forward_backward(X, y)
    for g, p in zip(first, model.parameters()):
        np.testing.assert_array_equal(p.grad, g)


def test_a_hand_written_training_loop_matches_fit():
    X, y = toy_data(n=12)
    auto = Sequential(blog_layers(), input_shape=(1, 8, 8), seed=0)
    auto.fit(X, y, optimizer=SGD(auto.parameters(), lr=0.05), epochs=1, batch_size=4, shuffle=False, verbose=0)
    manual = Sequential(blog_layers(), input_shape=(1, 8, 8), seed=0)
    opt = SGD(manual.parameters(), lr=0.05)
    Xf = X.astype(np.float32)
    for start in range(0, 12, 4):
        opt.zero_grad()
        manual.forward_backward(Xf[start:start + 4], y[start:start + 4])
        opt.step()
    for name, value in auto.state_dict().items():
        np.testing.assert_array_equal(manual.state_dict()[name], value)


@pytest.mark.parametrize("padding, stride", [(0, 1), ("same", 1), (1, 2)])
def test_end_to_end_gradients_through_a_whole_model(padding, stride):
    model = Sequential(
        [Conv2D(3, 3, stride=stride, padding=padding), ReLU(), MaxPool2D(2), Flatten(), Dense(5), ReLU(), Dense(4),
         SoftmaxCE()],
        input_shape=(2, 6, 6), seed=1, dtype="float64",
    )
    x = tie_free_input((3, 2, 6, 6), np.random.default_rng(0))
    errors = check_model_gradients(model, x, np.array([0, 3, 1]))
    assert set(errors) == {"input", "0.weight", "0.bias", "4.weight", "4.bias", "6.weight", "6.bias"}


def test_float64_models_compute_in_float64():
    X, y = toy_data()
    model = Sequential(blog_layers(), input_shape=(1, 8, 8), seed=0, dtype="float64")
    model.fit(X, y, epochs=1, verbose=0)
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model.predict_proba(X).dtype == np.float64


def test_state_dict_round_trip_and_shape_mismatch():
    model = Sequential(blog_layers(), input_shape=(1, 8, 8), seed=0)
    other = Sequential(blog_layers(), input_shape=(1, 8, 8), seed=1)
    other.load_state_dict(model.state_dict())
    X, _ = toy_data()
    np.testing.assert_array_equal(other.predict_proba(X), model.predict_proba(X))
    wide = Sequential([Conv2D(5, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(10), SoftmaxCE()], input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match=r"'0.weight' has shape \(5, 1, 3, 3\).*\(4, 1, 3, 3\)"):
        wide.load_state_dict(model.state_dict())


def test_summary_counts_buffers_as_non_trainable_like_keras():
    from minidl.layers import BatchNorm2D

    lines = []
    model = Sequential([Conv2D(4, 3), BatchNorm2D(), Flatten(), Dense(10), SoftmaxCE()], input_shape=(1, 8, 8))
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    # conv 40, batch norm 4 + 4 trained and 4 + 4 running statistics, dense 144·10 + 10
    assert "Total params: 1,506" in text
    assert "Trainable params: 1,498" in text and "Non-trainable params: 8" in text
    assert " 16" in text.splitlines()[5]  # the BatchNorm2D row counts its buffers too
