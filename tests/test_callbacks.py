"""Callbacks: EarlyStopping (Keras semantics, best-weights restore) and LearningRateScheduler."""

import numpy as np
import pytest

from minidl import Sequential
from minidl.callbacks import Callback, EarlyStopping, LearningRateScheduler
from minidl.layers import Dense, SoftmaxCE
from minidl.optim import SGD


class Scripted(Callback):
    """Puts ``values[epoch]`` into the logs as ``score`` and remembers each epoch's weights."""

    def __init__(self, values):
        self.values, self.weights = values, []

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = self.values[epoch]
        self.weights.append(self.model.state_dict())


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)), rng.integers(0, 3, n)


def train(values, stopper, epochs=None):
    model = Sequential([Dense(6), Dense(3), SoftmaxCE()], input_shape=(4,), seed=0, dtype="float64")
    script = Scripted(values)
    history = model.fit(*data(), optimizer=SGD(model.parameters(), lr=0.1), epochs=epochs or len(values),
                        batch_size=8, verbose=0, callbacks=[script, stopper])
    return model, script, history


@pytest.mark.parametrize(
    "values, kwargs, stopped",
    [
        ([5, 4, 3, 3.5, 3.2, 2, 1, 0], {"patience": 2}, 4),  # two epochs without a new best
        ([5, 4, 3, 3.5, 3.2, 2, 1, 0], {"patience": 0}, 3),  # patience 0: the first miss stops
        ([1.0, 0.95, 0.92, 0.91, 0.9], {"patience": 1, "min_delta": 0.1}, 1),  # gains smaller than min_delta
        ([0.5, 0.4, 0.45, 0.3, 0.2], {"patience": 2, "baseline": 0.1}, 2),  # never beats the baseline
        ([0.5, 0.4, 0.45, 0.3, 0.2], {"patience": 2}, None),
        ([0.1, 0.2, 0.3, 0.25, 0.4], {"patience": 1, "mode": "max"}, 3),  # a drop ends a rising metric
        ([9, 8, 9, 9, 9, 9], {"patience": 1, "start_from_epoch": 3}, 4),  # epochs 0-2 ignored, best is 9 at 3
    ],
)
def test_early_stopping_stops_at_the_keras_epoch(values, kwargs, stopped):
    stopper = EarlyStopping(monitor="score", **{"mode": "min", **kwargs})
    _, _, history = train(values, stopper)
    ran = len(values) if stopped is None else stopped + 1
    assert len(history["loss"]) == ran
    assert stopper.stopped_epoch == (stopped or 0)


def test_restore_best_weights_after_an_early_stop():
    stopper = EarlyStopping(monitor="score", mode="min", patience=2, restore_best_weights=True)
    model, script, _ = train([5, 4, 3, 3.5, 3.2, 2], stopper)
    assert stopper.stopped_epoch == 4 and stopper.best_epoch == 2
    final = model.state_dict()
    for name, value in script.weights[2].items():
        np.testing.assert_array_equal(final[name], value)
    assert not np.array_equal(final["1.weight"], script.weights[4]["1.weight"])


def test_restore_best_weights_without_an_early_stop_as_keras_3():
    stopper = EarlyStopping(monitor="score", mode="min", patience=5, restore_best_weights=True)
    model, script, history = train([3, 1, 2], stopper)
    assert len(history["loss"]) == 3 and stopper.stopped_epoch == 0
    np.testing.assert_array_equal(model.state_dict()["1.weight"], script.weights[1]["1.weight"])


def test_without_restore_the_last_weights_stay():
    model, script, _ = train([5, 4, 3, 3.5, 3.2, 2], EarlyStopping(monitor="score", mode="min", patience=2))
    np.testing.assert_array_equal(model.state_dict()["1.weight"], script.weights[4]["1.weight"])


def test_real_val_loss_restores_the_best_epoch():
    X, y = data(60, seed=1)
    model = Sequential([Dense(16), Dense(3), SoftmaxCE()], input_shape=(4,), seed=0, dtype="float64")
    # Random labels and a large lr: the validation loss soon gets worse, so training stops early.
    stopper = EarlyStopping(patience=2, restore_best_weights=True)
    history = model.fit(X[:40], y[:40], optimizer=SGD(model.parameters(), lr=0.5, momentum=0.9), epochs=100,
                        batch_size=4, verbose=0, validation_data=(X[40:], y[40:]), callbacks=[stopper])
    assert len(history["val_loss"]) < 100
    assert stopper.best_epoch == int(np.argmin(history["val_loss"]))
    assert model.evaluate(X[40:], y[40:])["loss"] == pytest.approx(min(history["val_loss"]), rel=1e-12)


def test_missing_monitor_is_an_error_that_names_the_fix():
    model = Sequential([Dense(3), SoftmaxCE()], input_shape=(4,), seed=0)
    with pytest.raises(ValueError, match=r"'val_loss' is not in the epoch's logs .*pass validation_data"):
        model.fit(*data(), epochs=2, verbose=0, callbacks=[EarlyStopping()])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"patience": -1}, r"patience must be an int >= 0, got -1"),
        ({"patience": 1.5}, r"patience must be an int >= 0, got 1\.5"),
        ({"min_delta": -0.1}, r"min_delta must be a number >= 0, got -0\.1"),
        ({"mode": "bigger"}, r"mode must be .* got 'bigger'"),
        ({"verbose": 3}, r"verbose must be 0 or 1, got 3"),
    ],
)
def test_early_stopping_validates_its_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EarlyStopping(**kwargs)


def test_auto_mode_minimises_losses_and_maximises_accuracies():
    assert EarlyStopping(monitor="val_accuracy").mode == "max" and EarlyStopping(monitor="accuracy").mode == "max"
    assert EarlyStopping(monitor="val_loss").mode == "min" and EarlyStopping(monitor="loss").mode == "min"
    with pytest.raises(ValueError, match=r"cannot tell whether 'score' should go down or up; pass mode="):
        EarlyStopping(monitor="score")


def test_learning_rate_scheduler_sets_lr_before_each_epoch():
    model = Sequential([Dense(3), SoftmaxCE()], input_shape=(4,), seed=0)
    opt = SGD(model.parameters(), lr=0.1)
    history = model.fit(*data(), optimizer=opt, epochs=3, verbose=0,
                        callbacks=[LearningRateScheduler(lambda epoch, lr: lr if epoch == 0 else lr / 2)])
    assert history["lr"] == pytest.approx([0.1, 0.05, 0.025])


def test_learning_rate_scheduler_rejects_a_bad_rate():
    model = Sequential([Dense(3), SoftmaxCE()], input_shape=(4,), seed=0)
    with pytest.raises(ValueError, match=r"schedule\(0, 0\.01\) returned -1"):
        model.fit(*data(), epochs=1, verbose=0, callbacks=[LearningRateScheduler(lambda epoch, lr: -1)])
    with pytest.raises(TypeError, match="schedule must be callable, got 3"):
        LearningRateScheduler(3)
