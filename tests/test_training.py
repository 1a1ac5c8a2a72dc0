"""minidl.training: fit / evaluate / predict through any loss head, a user's included."""

import numpy as np
import pytest

from minidl import Sequential
from minidl.callbacks import Callback, EarlyStopping
from minidl.guard import NonFiniteLossError
from minidl.layers import MSE, Dense, Flatten, ReLU, SigmoidBCE, SoftmaxCE, Tanh
from minidl.optim import SGD, Adam
from minidl.training import Trainer

from test_losses import Huber


def regression_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.5
    return X, y


def binary_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, X[:, 0] + X[:, 1] > 0


class Recorder(Callback):
    def on_train_begin(self, logs=None):
        self.events = ["begin"]

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(dict(logs))

    def on_batch_end(self, batch, logs=None):
        self.events.append("batch")

    def on_train_end(self, logs=None):
        self.events.append("end")


@pytest.mark.parametrize("head, metric", [(MSE, "mae"), (Huber, None)])
def test_a_regression_model_trains_with_validation_and_callbacks(head, metric):
    X, y = regression_data()
    model = Sequential([Dense(8), Tanh(), Dense(1), head()], input_shape=(4,), seed=0, dtype="float64")
    recorder = Recorder()
    history = model.fit(X[:48], y[:48], optimizer=Adam(model.parameters(), lr=0.05), epochs=30, batch_size=8,
                        validation_data=(X[48:], y[48:]), callbacks=[recorder], verbose=0)
    expected = ["loss", *([metric] if metric else []), "val_loss", *([f"val_{metric}"] if metric else []), "lr"]
    assert list(history) == expected
    assert history["loss"][-1] < 0.2 * history["loss"][0]
    assert history["val_loss"][-1] == pytest.approx(model.evaluate(X[48:], y[48:])["loss"])
    assert recorder.events[0] == "begin" and recorder.events[-1] == "end"
    assert recorder.events.count("batch") == 30 * 6 and recorder.events[-2] == {k: v[-1] for k, v in history.items()}
    prediction = model.predict(X[48:])
    assert prediction.shape == (16, 1) and prediction.dtype == np.float64  # values, never an argmax
    if metric:
        assert history["val_mae"][-1] == pytest.approx(np.abs(prediction[:, 0] - y[48:]).mean())


def test_a_one_output_regression_predicts_values_not_zeros():
    """The issue's bug: predict on a one-output model returned argmax, all zeros."""
    X, y = regression_data()
    model = Sequential([Dense(1), MSE()], input_shape=(4,), seed=0)
    model.fit(X, y, optimizer=SGD(model.parameters(), lr=0.05), epochs=40, verbose=0)
    prediction = model.predict(X)
    assert prediction.shape == (64, 1) and np.abs(prediction).max() > 1
    assert np.abs(prediction[:, 0] - y).mean() < 0.1
    with pytest.raises(ValueError, match="predict_proba needs a classifier loss"):
        model.predict_proba(X)


def test_sigmoid_bce_trains_a_binary_classifier_and_predicts_labels():
    X, y = binary_data()
    model = Sequential([Dense(1), SigmoidBCE()], input_shape=(4,), seed=0)
    history = model.fit(X[:48], y[:48], optimizer=SGD(model.parameters(), lr=0.5), epochs=20, batch_size=8,
                        validation_data=(X[48:], y[48:]), verbose=0)
    assert list(history) == ["loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    assert history["accuracy"][-1] >= 0.9 and history["val_accuracy"][-1] >= 0.8
    labels, proba = model.predict(X), model.predict_proba(X)
    assert labels.shape == (64,) and set(np.unique(labels)) <= {0, 1}
    assert proba.shape == (64, 1) and ((proba > 0) & (proba < 1)).all()
    np.testing.assert_array_equal(labels, (proba[:, 0] > 0.5).astype(int))
    assert model.evaluate(X, y)["accuracy"] == pytest.approx(np.mean(labels == y))


def test_sigmoid_bce_trains_multi_label_targets():
    X, y = binary_data()
    targets = np.stack([y, X[:, 2] > 0], axis=1)
    model = Sequential([Dense(2), SigmoidBCE()], input_shape=(4,), seed=0)
    history = model.fit(X, targets, optimizer=SGD(model.parameters(), lr=0.5), epochs=20, verbose=0)
    assert history["accuracy"][-1] >= 0.9
    assert model.predict(X).shape == (64, 2) and model.predict_proba(X).shape == (64, 2)


def test_history_metrics_are_exact_means_over_the_epoch():
    """Metrics are buffered and computed when read; the epoch's figure is still the exact share."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(37, 5)), rng.integers(0, 3, 37)
    model = Sequential([Dense(3), SoftmaxCE()], input_shape=(5,), seed=0, dtype="float64")
    model.layers[0].trainable = False  # weights stay put: the epoch's figures are evaluate's
    history = model.fit(X, y, epochs=1, batch_size=4, verbose=0)
    correct = np.count_nonzero(model.predict(X) == y)
    assert history["accuracy"][0] == correct / 37
    assert history["loss"][0] == pytest.approx(model.evaluate(X, y)["loss"], rel=1e-12)


def test_early_stopping_minimises_val_mae_in_auto_mode():
    X, y = regression_data()
    model = Sequential([Dense(1), MSE()], input_shape=(4,), seed=0)
    stopper = EarlyStopping(monitor="val_mae", patience=0, restore_best_weights=True)
    assert stopper.mode == "min"
    model.fit(X[:48], y[:48], optimizer=SGD(model.parameters(), lr=0.5), epochs=50,
              validation_data=(X[48:], y[48:]), callbacks=[stopper], verbose=0)
    assert stopper.stopped_epoch > 0  # lr 0.5 on an MSE this steep overshoots, so val_mae soon rises


@pytest.mark.filterwarnings("ignore:overflow")
@pytest.mark.parametrize("head", [MSE, SigmoidBCE, Huber])
def test_the_nan_guard_stops_any_loss_before_the_update(head):
    X, y = binary_data()
    model = Sequential([Dense(4), ReLU(), Dense(1), head()], input_shape=(4,), seed=0)
    state = []

    class Keep(Callback):
        def on_batch_end(self, batch, logs=None):
            state.append(model.state_dict())

    X = X.copy()
    X[40:] *= 1e30  # finite in float32, but the outputs overflow to inf in the second epoch's steps
    with pytest.raises(NonFiniteLossError) as info:
        model.fit(X, y, optimizer=SGD(model.parameters(), lr=0.01), epochs=2, batch_size=8, shuffle=False,
                  callbacks=[Keep()], verbose=0)
    assert info.value.epoch == 0 and info.value.step == 5
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, state[-1][name])


def test_fit_and_evaluate_on_a_model_without_a_loss_name_the_losses_to_add():
    X, y = regression_data()
    model = Sequential([Dense(1)], input_shape=(4,))
    for call in (lambda: model.fit(X, y, verbose=0), lambda: model.evaluate(X, y),
                 lambda: model.forward_backward(X, y)):
        with pytest.raises(ValueError) as info:
            call()
        for word in ("needs a loss:", "SoftmaxCE()", "SigmoidBCE()", "MSE()"):
            assert word in str(info.value)
    prediction = model.predict(X)  # a model without a loss can still predict its outputs
    np.testing.assert_array_equal(prediction, model.forward(X.astype(np.float32)))
    with pytest.raises(ValueError, match="predict_proba needs a classifier loss .* has no loss"):
        model.predict_proba(X)


def test_a_loss_must_be_the_last_layer_whatever_its_kind():
    with pytest.raises(ValueError, match="MSE must be the last layer"):
        Sequential([Flatten(), MSE(), Dense(3)])
    with pytest.raises(ValueError, match="a model has one loss, found one at each of positions \[1, 2\]"):
        Sequential([Dense(3), SigmoidBCE(), MSE()])


def test_bad_targets_through_fit_name_the_argument():
    X, y = regression_data()
    model = Sequential([Dense(1), SigmoidBCE()], input_shape=(4,))
    with pytest.raises(ValueError, match=r"validation_data\[1\] must hold 0/1 targets"):
        model.fit(X, y > 0, validation_data=(X, y), verbose=0)
    with pytest.raises(ValueError, match=r"y must have shape \(64, 2\) to match X"):
        Sequential([Dense(2), MSE()], input_shape=(4,)).fit(X, y, verbose=0)


def test_verbose_2_prints_the_loss_heads_metrics(capsys):
    X, y = regression_data()
    model = Sequential([Dense(1), MSE()], input_shape=(4,), seed=0)
    model.fit(X, y, epochs=1, verbose=2)
    line = capsys.readouterr().out
    assert "Epoch 1/1: loss=" in line and "mae=" in line and "accuracy" not in line


def test_trainer_is_usable_on_its_own_and_sets_the_models_state():
    X, y = binary_data()
    model = Sequential([Dense(1), SigmoidBCE()], input_shape=(4,), seed=0)
    optimizer = SGD(model.parameters(), lr=0.1)
    history = Trainer(model, optimizer, verbose=0).fit(X, y, epochs=2)
    assert len(history["loss"]) == 2 and model.optimizer is optimizer and model.history is history
