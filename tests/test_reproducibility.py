"""Same seed, data and arguments → bit-identical runs, in one process and across processes;
minidl never touches NumPy's global random state."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minidl import Sequential
from minidl.data import load_digits
from minidl.layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, SoftmaxCE
from minidl.optim import SGD
from minidl.presets import blog_cnn

TESTS = Path(__file__).resolve().parent


def train(seed: int = 0, n: int = 200) -> tuple[dict[str, np.ndarray], dict[str, list[float]], np.ndarray]:
    """A short shuffled run of the blog CNN with momentum and validation: (weights, history, probabilities)."""
    X_train, X_test, y_train, y_test = load_digits()
    model = blog_cnn(seed=seed)
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    history = model.fit(X_train[:n], y_train[:n], optimizer=opt, epochs=2, batch_size=8,
                        validation_data=(X_test[:50], y_test[:50]), verbose=0)
    return model.state_dict(), dict(history), model.predict_proba(X_test)


def fingerprint(seed: int = 0) -> str:
    """SHA-256 of the exact bytes of a run's weights, history and predictions."""
    weights, history, proba = train(seed)
    h = hashlib.sha256()
    for name in sorted(weights):
        h.update(name.encode() + weights[name].tobytes())
    for key in sorted(history):
        h.update(key.encode() + np.asarray(history[key], dtype=np.float64).tobytes())
    h.update(proba.tobytes())
    return h.hexdigest()


def test_same_seed_gives_bit_identical_weights_history_and_predictions():
    w1, h1, p1 = train(seed=3)
    w2, h2, p2 = train(seed=3)
    assert w1.keys() == w2.keys()
    for name in w1:
        assert w1[name].tobytes() == w2[name].tobytes(), name
    assert h1 == h2
    assert p1.tobytes() == p2.tobytes()


@pytest.mark.slow
def test_same_seed_is_bit_identical_across_processes():
    code = f"import sys; sys.path.insert(0, {str(TESTS)!r}); from test_reproducibility import fingerprint; " \
           "print(fingerprint())"
    outputs = []
    for hash_seed in ("1", "2"):  # different string hashing per process must not matter
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        outputs.append(done.stdout.strip())
    assert outputs[0] == outputs[1] == fingerprint()


def stochastic_model(seed):
    """Dropout draws masks and BatchNorm2D keeps running statistics: both must follow the seed."""
    return Sequential([Conv2D(4, 3, padding="same"), BatchNorm2D(), ReLU(), Dropout(0.3), Flatten(), Dense(10),
                       SoftmaxCE()], input_shape=(1, 8, 8), seed=seed)


def test_dropout_and_batchnorm_runs_are_bit_identical_for_a_seed_and_differ_across_seeds():
    X, X_test, y, _ = load_digits()
    runs = []
    for seed in (4, 4, 5):
        model = stochastic_model(seed)
        history = model.fit(X[:120], y[:120], epochs=2, batch_size=8, verbose=0)
        runs.append((model.state_dict(), history["loss"], model.predict_proba(X_test[:20]).tobytes()))
    (w1, h1, p1), (w2, h2, p2), (w3, _, _) = runs
    assert h1 == h2 and p1 == p2
    for name in w1:  # parameters and buffers (running statistics) alike
        assert w1[name].tobytes() == w2[name].tobytes(), name
    assert any(w1[name].tobytes() != w3[name].tobytes() for name in w1)


def test_different_seeds_give_different_initial_weights_and_runs():
    a, b = blog_cnn(seed=0), blog_cnn(seed=1)
    for name, value in a.state_dict().items():
        if value.any():  # biases start at zero under every seed
            assert not np.array_equal(value, b.state_dict()[name]), name
    assert fingerprint(0) != fingerprint(1)


def test_shuffle_order_depends_only_on_the_seed_not_on_earlier_builds():
    """Building, predicting or failing a build does not shift the training stream."""
    X, _, y, _ = load_digits()
    plain = blog_cnn(seed=5)
    plain.fit(X[:40], y[:40], epochs=2, batch_size=4, verbose=0)
    busy = blog_cnn(seed=5)
    busy.predict(X[:10])
    busy.evaluate(X[:10], y[:10])
    busy.fit(X[:40], y[:40], epochs=2, batch_size=4, verbose=0)
    for name, value in plain.state_dict().items():
        assert value.tobytes() == busy.state_dict()[name].tobytes(), name


#: Every function of NumPy's legacy global RandomState (rand, randn, random, shuffle, ...) and np.random.seed.
GLOBAL_RANDOM = sorted({"seed"} | {name for name in dir(np.random)
                                   if getattr(getattr(np.random, name), "__self__", None) is np.random.mtrand._rand})


def test_global_random_functions_list_covers_the_usual_suspects():
    assert {"seed", "rand", "randn", "random", "shuffle", "permutation", "randint", "choice", "normal",
            "uniform", "standard_normal", "get_state", "set_state"} <= set(GLOBAL_RANDOM)


def test_minidl_never_uses_numpy_global_random_state(monkeypatch):
    X_train, X_test, y_train, y_test = load_digits()  # scikit-learn's split is outside minidl

    def forbidden(*args, **kwargs):
        raise AssertionError("minidl used NumPy's global random state")

    for name in GLOBAL_RANDOM:
        monkeypatch.setattr(np.random, name, forbidden)
    with pytest.raises(AssertionError):
        np.random.rand()  # the patch is live
    models = [
        blog_cnn(seed=0),
        blog_cnn(seed=None, faithful=True),
        Sequential([Conv2D(3, 3, padding="same"), ReLU(), MaxPool2D(2), Flatten(), Dense(10), SoftmaxCE()]),
        stochastic_model(seed=1),
    ]
    for model in models:
        model.fit(X_train[:64], y_train[:64], epochs=2, batch_size=8, shuffle=True,
                  validation_data=(X_test[:16], y_test[:16]), verbose=0)
        assert model.predict(X_test[:16]).shape == (16,)
    Dense(4).build((3,))  # a layer built on its own, without an rng
