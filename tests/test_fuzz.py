"""Fuzz the public API: random layer stacks, optimizers, hyper-parameters, input shapes and dtypes.

Every example either works (predictions finite and normalised, one epoch of training with a
finite loss that changes the parameters) or fails with a clear, minidl-made error:
``ValueError``/``TypeError`` with a message, or a ``FloatingPointError`` (NaN stop, non-finite
outputs) that leaves finite weights. Never an ``IndexError``, a NumPy broadcasting error, a silent
NaN or a hang: every size is small and bounded, so an example is a few milliseconds.

The number of examples follows the Hypothesis profile: 5x its ``max_examples`` (100 in the
default "ci" profile, 2500 with ``--hypothesis-profile deep``).
"""

from __future__ import annotations

import re

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

from minidl import Sequential
from minidl.guard import NonFiniteLossError
from minidl.layers import (AvgPool2D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D, Identity,
                           LeakyReLU, MaxPool2D, ReLU, Sigmoid, Softmax, SoftmaxCE, Tanh)
from minidl.optim import SGD, Adam, AdamW

FUZZ = settings(max_examples=5 * settings.default.max_examples)

# Words our own messages use; NumPy's internal errors ("operands could not be broadcast", "index 5 is
# out of bounds", "cannot reshape") use none of them in that form.
CLEAR = re.compile(r"got|must|expect|needs|is empty|contains|holds|could not be made|bigger|appears|"
                   r"one loss,|not built|non-finite|NaN or infinite|not a minidl Layer|cannot tell")
NUMPY_ERRORS = re.compile(r"broadcast|out of bounds|cannot reshape|not aligned|core dimension|"
                          r"object is not|has no attribute|unsupported operand")

pair = st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4)))
padding = st.one_of(st.integers(0, 2), st.sampled_from(["same", "valid"]),
                    st.tuples(st.integers(0, 1), st.integers(0, 1)))
layer = st.one_of(
    st.builds(lambda f, k, s, p, b: (Conv2D, dict(filters=f, kernel_size=k, stride=s, padding=p, use_bias=b)),
              st.integers(1, 4), pair, st.integers(1, 2), padding, st.booleans()),
    st.builds(lambda cls, k, s, p: (cls, dict(pool_size=k, stride=s, padding=p)),
              st.sampled_from([MaxPool2D, AvgPool2D]), pair, st.one_of(st.none(), st.integers(1, 3)),
              st.integers(0, 1)),
    st.builds(lambda u, b: (Dense, dict(units=u, use_bias=b)), st.integers(1, 5), st.booleans()),
    st.builds(lambda m: (BatchNorm2D, dict(momentum=m)), st.sampled_from([0.0, 0.1, 0.9])),
    st.builds(lambda r: (Dropout, dict(rate=r)), st.sampled_from([0.0, 0.5, 0.9])),
    st.builds(lambda a: (LeakyReLU, dict(negative_slope=a)), st.sampled_from([0.0, 0.01, 0.3])),
    st.sampled_from([(ReLU, {}), (Flatten, {}), (SoftmaxCE, {}), (GlobalAvgPool2D, {}), (Tanh, {}), (Sigmoid, {}),
                     (Identity, {}), (Softmax, {})]),
)

#: One thing made wrong per corrupted scenario: (where, key, bad value).
BAD_LAYER_ARGS = {
    Conv2D: [("filters", 0), ("filters", -2), ("filters", 2.5), ("kernel_size", 0), ("kernel_size", (3, -1)),
             ("kernel_size", "3"), ("stride", 0), ("padding", -1), ("padding", "full"), ("use_bias", "no")],
    MaxPool2D: [("pool_size", 0), ("pool_size", 1.5), ("stride", 0), ("stride", -1), ("padding", -1), ("padding", 3)],
    AvgPool2D: [("pool_size", 0), ("stride", 0), ("padding", -1)],
    Dense: [("units", 0), ("units", -1), ("units", 2.5), ("use_bias", None)],
    BatchNorm2D: [("momentum", 1.0), ("momentum", -0.1), ("eps", 0.0), ("eps", float("nan"))],
    Dropout: [("rate", 1.0), ("rate", -0.5), ("rate", "0.5")],
    LeakyReLU: [("negative_slope", -1.0), ("negative_slope", float("inf"))],
}
BAD_SETTINGS = [("dtype", "str"), ("dtype", "complex64"), ("nan", True), ("zero_dim", True),
                ("model_dtype", "float16"), ("seed", -1), ("seed", 1.5), ("labels", "out-of-range"),
                ("labels", "float"), ("labels", "short"), ("labels", "negative"), ("lr", 0.0), ("lr", -0.1),
                ("lr", float("nan")), ("lr", float("inf")), ("lr", 1e30), ("momentum", 1.0), ("momentum", -0.1),
                ("weight_decay", -1.0), ("batch_size", 0), ("batch_size", -1), ("batch_size", 2.0),
                ("epochs", -1), ("epochs", 0)]


@st.composite
def scenarios(draw):
    """A valid-looking scenario (layers that may still not compose), corrupted in one place half the time."""
    body = draw(st.lists(layer, min_size=0, max_size=4))
    if draw(st.integers(0, 4)):  # usually a classifier: ... → Flatten → Dense(K) → SoftmaxCE
        body += [(Flatten, {}), (Dense, dict(units=draw(st.integers(1, 4)), use_bias=True)), (SoftmaxCE, {})]
    ndim = draw(st.sampled_from([3, 3, 3, 2, 1, 4]))
    s = dict(
        layers=[(cls, dict(kwargs)) for cls, kwargs in body],
        shape=(draw(st.integers(1, 5)), *draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim))),
        dtype=draw(st.sampled_from(["float32", "float32", "float64", "int64", "uint8", "bool"])),
        scale=draw(st.sampled_from([1.0, 100.0])), nan=False, zero_dim=False,
        build=draw(st.booleans()), model_dtype=draw(st.sampled_from(["float32", "float64"])),
        seed=draw(st.integers(0, 2**32)), labels="valid",
        lr=draw(st.floats(1e-4, 1.0)), momentum=draw(st.sampled_from([0.0, 0.5, 0.9])),
        weight_decay=draw(st.sampled_from([0.0, 1e-3])), batch_size=draw(st.integers(1, 6)), epochs=1,
        optimizer=draw(st.sampled_from(["sgd", "sgd", "adam", "adamw"])),
        data_seed=draw(st.integers(0, 1000)),
    )
    corrupt = draw(st.sampled_from(["none", "layer", "setting", "overflow"]))
    if corrupt == "layer":
        spots = [i for i, (cls, _) in enumerate(s["layers"]) if cls in BAD_LAYER_ARGS]
        if spots:
            i = draw(st.sampled_from(spots))
            key, value = draw(st.sampled_from(BAD_LAYER_ARGS[s["layers"][i][0]]))
            s["layers"][i][1][key] = value
    elif corrupt == "setting":
        key, value = draw(st.sampled_from(BAD_SETTINGS))
        s[key] = value
    elif corrupt == "overflow":  # valid but numerically hostile: huge inputs or learning rates in float32
        s.update(dtype="float32", model_dtype="float32", scale=draw(st.sampled_from([1.0, 1e30, 1e37])),
                 lr=draw(st.sampled_from([1e20, 1e30, 1.0])))
    return s


def make_inputs(s):
    rng = np.random.default_rng(s["data_seed"])
    X = rng.standard_normal(s["shape"]) * s["scale"]
    if s["zero_dim"]:
        X = X[..., :0]
    if s["nan"] and X.size:
        X.flat[rng.integers(X.size)] = np.nan
    if s["dtype"] == "str":
        return X.astype(str)
    if s["dtype"] in ("int64", "uint8"):
        return np.abs(X).clip(0, 255).astype(s["dtype"])
    if s["dtype"] == "bool":
        return X > 0
    return X.astype(s["dtype"])


def make_labels(s, n, classes):
    rng = np.random.default_rng(s["data_seed"] + 1)
    y = rng.integers(0, classes, n)
    return {"valid": y, "out-of-range": y + classes, "float": y + 0.5, "short": y[:-1], "negative": y - classes}[
        s["labels"]]


def assert_clear(err: BaseException) -> None:
    message = str(err)
    assert message and CLEAR.search(message), f"unclear {type(err).__name__}: {message!r}"
    assert not NUMPY_ERRORS.search(message), f"NumPy error leaked: {type(err).__name__}: {message!r}"


def run(s) -> str:
    """Drive the public API through one scenario; return how it ended (for the statistics)."""
    layers = [cls(**kwargs) for cls, kwargs in s["layers"]]
    X = make_inputs(s)
    input_shape = X.shape[1:] if s["build"] else None
    model = Sequential(layers, input_shape=input_shape, seed=s["seed"], dtype=s["model_dtype"])
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), *model.output_shape) and np.isfinite(proba).all()
    head = model.loss
    if head is not None:
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-3)
    classes = model.output_shape[0]
    y = make_labels(s, len(X), classes)
    if head is None:
        try:
            model.fit(X, y, verbose=0)
        except ValueError as err:
            assert "needs a loss:" in str(err)
            return "no loss head"
        raise AssertionError("fit without a loss layer did not raise")
    loss, logits = model.forward_backward(X, y)
    assert np.isfinite(loss) and logits.shape == (len(X), classes)
    if s["optimizer"] == "sgd":
        opt = SGD(model.parameters(), lr=s["lr"], momentum=s["momentum"], weight_decay=s["weight_decay"])
    else:
        opt = (Adam if s["optimizer"] == "adam" else AdamW)(model.parameters(), lr=s["lr"],
                                                            weight_decay=s["weight_decay"])
    trainable = [p for p in model.parameters() if p.trainable]
    before = [p.data.copy() for p in trainable]
    try:
        history = model.fit(X, y, optimizer=opt, epochs=s["epochs"], batch_size=s["batch_size"], verbose=0)
    except NonFiniteLossError as err:
        assert "Try a lower learning rate" in str(err)
        if "keeps the weights of the last finite step" in str(err):
            assert all(np.isfinite(p.data).all() for p in trainable)
        return "NaN stop"
    assert len(history.get("loss", [])) == s["epochs"]
    if s["epochs"] == 0:
        return "0 epochs"
    assert np.isfinite(history["loss"]).all()
    assert all(np.isfinite(p.data).all() for p in trainable)
    changed = any(not np.array_equal(b, p.data) for b, p in zip(before, trainable))
    # A step too small for the weights' float resolution (saturated softmax, tiny lr) may change nothing.
    step = s["lr"] * max(float(np.abs(p.grad).max()) for p in trainable)
    weights = max(1.0, *(float(np.abs(p.data).max()) for p in trainable))
    assert changed or classes == 1 or step < 1e-5 * weights, "fit changed no parameter"
    result = model.evaluate(X, y)
    assert np.isfinite(result["loss"]) and 0 <= result["accuracy"] <= 1
    assert model.predict(X).shape == (len(X),)
    return "trained"


@FUZZ
@given(scenarios())
def test_public_api_trains_or_raises_a_clear_error(s):
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            outcome = run(s)
        except (ValueError, TypeError) as err:
            assert_clear(err)
            outcome = type(err).__name__
        except FloatingPointError as err:  # non-finite outputs from too-large inputs: said, not silent
            assert "NaN or infinite" in str(err)
            outcome = "non-finite outputs"
    event(outcome)
