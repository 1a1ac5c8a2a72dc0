"""The code at the top of issue 8 ("What users must be able to write") runs as written."""

import numpy as np
import pytest

from minidl.data import load_digits

pytestmark = pytest.mark.slow  # the snippet trains for 20 epochs

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


def test_the_snippet_trains_its_classifier(ran, capsys):
    X, y, model = ran["X"], ran["y"], ran["model"]
    assert model.output_shape == (10,)
    assert model.evaluate(X, y)["accuracy"] > 0.8          # 20 epochs on the images it trained on
    model.summary()
    tree = capsys.readouterr().out
    for name in ("Sequential", "Residual", "Parallel", "BatchNorm2D", "GlobalAvgPool2D", "Total params"):
        assert name in tree


def test_the_snippet_regressor_predicts_values(ran):
    X, reg = ran["X"], ran["reg"]
    assert {"loss", "mae"} <= set(reg.history.history)
    values = reg.predict(X)
    assert values.shape == (len(X), 1) and values.dtype.kind == "f"
    assert len(np.unique(values)) > 10                     # values, not argmax labels


def test_the_snippet_binary_classifier_predicts_labels_and_probabilities(ran):
    X, y, binary = ran["X"], ran["y"], ran["binary"]
    assert "accuracy" in binary.history.history
    labels, proba = binary.predict(X), binary.predict_proba(X)
    assert set(np.unique(labels)) <= {0, 1}
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_array_equal(labels.ravel(), (proba.ravel() > 0.5).astype(labels.dtype))
