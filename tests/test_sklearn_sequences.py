"""minidl.sklearn on sequences: token ids (N, T) and real-valued sequences (N, T, D), with the sequence
presets (text_lstm, text_cnn, digits_gru) or layer lists as the network."""

import functools

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits as sk_load_digits
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from minidl import Sequential, presets
from minidl.layers import GRU, LSTM, Dense, Embedding, Flatten, ReLU, SoftmaxCE
from minidl.sklearn import SequentialClassifier, SequentialRegressor

VOCAB, T = 11, 8


def token_rows(n, seed=0):
    """Right-padded rows of 2..8 ids: class "low" draws ids 1..5, "high" 6..10; 0 pads."""
    rng = np.random.default_rng(seed)
    high = rng.integers(0, 2, n)
    lengths = rng.integers(2, T + 1, n)
    ids = rng.integers(1, 6, (n, T)) + 5 * high[:, None]
    return np.where(np.arange(T) < lengths[:, None], ids, 0), np.where(high == 1, "high", "low")


def lstm(seed=0):
    return presets.text_lstm(VOCAB, num_classes=2, max_length=T, dim=8, seed=seed)


def cnn(seed=0):
    return presets.text_cnn(VOCAB, num_classes=2, max_length=T, dim=8, filters=8, kernel_size=3, seed=seed)


# Flat rows (N, F) read as sequences of F steps of one value (input_shape=(-1, 1)): every check applies.
# float64, as float32 sums of a recurrent layer change in the last bit with the order of the batch's rows.
@parametrize_with_checks(
    [
        SequentialClassifier([GRU(8)], input_shape=(-1, 1), dtype="float64"),
        # the per-step states, flattened: the check's data has one informative feature, at a fixed step
        SequentialRegressor([GRU(8, return_sequences=True), Flatten()], input_shape=(-1, 1), dtype="float64"),
    ],
    expected_failed_checks=lambda estimator: {},
)
def test_scikit_learn_estimator_checks_on_sequences(estimator, check):
    check(estimator)


# -- token ids (N, T) -----------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lstm, cnn], ids=["text_lstm", "text_cnn"])
def test_a_text_preset_classifies_padded_token_ids(make):
    X, y = token_rows(300)
    clf = SequentialClassifier(make(), num_iter=5, random_state=0).fit(X[:200], y[:200])
    assert clf.model_.input_dtype == np.int64 and clf.input_shape_ == (T,) and clf.n_features_in_ == T
    assert list(clf.classes_) == ["high", "low"]
    proba = clf.predict_proba(X[200:])
    assert proba.shape == (100, 2) and np.allclose(proba.sum(axis=1), 1)
    pred = clf.predict(X[200:])
    assert pred.shape == (100,) and pred.dtype == y.dtype
    assert clf.score(X[200:], y[200:]) > 0.9  # chance is 0.5
    # whole-number floats are token ids too
    np.testing.assert_array_equal(clf.predict_proba(X[200:].astype(float)), proba)


def test_the_estimator_seeds_the_preset_and_takes_it_in_any_form():
    """A preset model, a function returning one and a layer list are the same network; the estimator's
    random_state, not the preset's seed, initialises it; the model given is never trained."""
    X, y = token_rows(200)
    given = lstm(seed=5)
    before = {k: v.copy() for k, v in given.state_dict().items()}
    fits = [
        SequentialClassifier(given, num_iter=2, random_state=0),
        SequentialClassifier(lstm(seed=9), num_iter=2, random_state=0),
        SequentialClassifier(functools.partial(lstm, seed=1), num_iter=2, random_state=0),
        SequentialClassifier([Embedding(VOCAB, 8, mask_zero=True), LSTM(8), Dense(2), SoftmaxCE()], num_iter=2,
                             random_state=0),
        SequentialClassifier([Embedding(VOCAB, 8, mask_zero=True), LSTM(8)], num_iter=2, random_state=0),  # + Dense
    ]
    expected = fits[0].fit(X, y).predict_proba(X[:20])
    for clf in fits[1:]:
        np.testing.assert_array_equal(clf.fit(X, y).predict_proba(X[:20]), expected)
        assert clf.model_.input_dtype == np.int64
    assert all(np.array_equal(before[k], v) for k, v in given.state_dict().items())
    other = SequentialClassifier(given, num_iter=2, random_state=1).fit(X, y)
    assert not np.array_equal(other.predict_proba(X[:20]), expected)


def test_clone_cross_val_score_and_grid_search_on_token_ids():
    X, y = token_rows(240)
    clf = SequentialClassifier(cnn(), num_iter=3, random_state=0)
    copy = clone(clf.fit(X[:60], y[:60]))
    assert copy.get_params().keys() == clf.get_params().keys() and not hasattr(copy, "model_")
    assert isinstance(copy.layers, Sequential) and copy.layers is not clf.layers  # deep-copied, as scikit-learn does
    with pytest.raises(NotFittedError):
        copy.predict(X[:2])
    scores = cross_val_score(SequentialClassifier(cnn(), num_iter=3, random_state=0), X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.8
    search = GridSearchCV(SequentialClassifier(cnn(), random_state=0), {"num_iter": [1, 3], "lr": [0.001, 0.05]},
                          cv=2).fit(X, y)
    assert search.best_params_["lr"] == 0.05  # 0.001 barely moves in 3 epochs
    assert search.best_estimator_.predict(X[:5]).shape == (5,)


def test_partial_fit_over_chunks_of_token_ids():
    X, y = token_rows(300)
    fitted = SequentialClassifier(lstm(), num_iter=3, random_state=0).fit(X[:100], y[:100])
    inc = SequentialClassifier(lstm(), random_state=0)
    for _ in range(3):
        inc.partial_fit(X[:100], y[:100], classes=["high", "low"])
    a, b = fitted.model_.state_dict(), inc.model_.state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a) and inc.loss_curve_ == fitted.loss_curve_
    chunks = SequentialClassifier(lstm(), random_state=0)
    for start in range(0, 300, 60):  # a stream of chunks, each one epoch
        chunks.partial_fit(X[start:start + 60], y[start:start + 60], classes=np.array(["high", "low"]))
    assert chunks.n_iter_ == 5 and chunks.predict_proba(X[:4]).shape == (4, 2)
    with pytest.raises(ValueError, match="X has 6 features, but SequentialClassifier is expecting 8 features"):
        chunks.partial_fit(X[:10, :6], y[:10])


def test_bad_token_ids_are_value_errors_naming_x():
    X, y = token_rows(40)
    clf = SequentialClassifier(lstm(), num_iter=1, random_state=0)
    with pytest.raises(ValueError, match=r"SequentialClassifier: X must hold integer token ids \(its network starts "
                                         r"with an Embedding\), got float64 values such as 0\.5"):
        clf.fit(np.where(X > 0, X, 0.5), y)
    with pytest.raises(ValueError, match=r"X must hold token ids >= 0 \(0 pads\), got -1"):
        clf.fit(X - 1, y)
    with pytest.raises(ValueError, match=r"X must be \(N, T\) token ids \(its network starts with an Embedding\), "
                                         r"got shape \(40, 8, 1\)"):
        clf.fit(X[:, :, None], y)
    with pytest.raises(ValueError, match=r"token id 11 is out of range: ids must be in \[0, 11\)"):
        clf.fit(np.where(X == 10, 11, X), y)
    assert not hasattr(clf, "model_")
    clf.fit(X, y)
    with pytest.raises(ValueError, match="X must hold integer token ids"):
        clf.predict(X + 0.5)
    with pytest.raises(ValueError, match=r"could not convert string to float|dtype='numeric' is not compatible"):
        clf.predict(np.full((2, T), "a"))


# -- real-valued sequences (N, T, D) -----------------------------------------------------------------
def test_digits_gru_reads_images_as_rows_in_every_layout():
    d = sk_load_digits()
    images, flat, y = d.images / 16, d.data / 16, d.target
    clf = SequentialClassifier(presets.digits_gru(units=16), num_iter=10, lr=0.1, random_state=0)
    clf.fit(images[:500], y[:500])
    assert clf.input_shape_ == (8, 8) and clf.n_features_in_ == 64  # 8 steps of 8 pixels, no channel axis
    assert clf.predict_proba(images[500:800]).shape == (300, 10) and clf.score(images[500:800], y[500:800]) > 0.6
    # flat rows take the preset's own input shape, (8, 8)
    np.testing.assert_array_equal(clf.predict_proba(flat[500:520]), clf.predict_proba(images[500:520]))
    rows = SequentialClassifier(presets.digits_gru(units=16), num_iter=10, lr=0.1, random_state=0)
    rows.fit(flat[:500], y[:500])
    assert rows.input_shape_ == (8, 8)
    np.testing.assert_array_equal(rows.predict_proba(images[500:520]), clf.predict_proba(images[500:520]))
    with pytest.raises(ValueError, match=r"X holds samples of shape \(4, 16\), but SequentialClassifier was "
                                         r"fitted on \(8, 8\)"):
        clf.predict(images[:5].reshape(5, 4, 16))


def test_a_layer_list_reads_three_axes_as_sequences_and_images_as_images():
    d = sk_load_digits()
    images, y = d.images[:200] / 16, d.target[:200]
    gru = SequentialClassifier([GRU(8)], num_iter=1, random_state=0).fit(images, y)
    assert gru.input_shape_ == (8, 8)  # (N, T, D): a GRU takes it as it is
    from minidl.layers import Conv2D, MaxPool2D

    conv = SequentialClassifier([Conv2D(4, 3), ReLU(), MaxPool2D(2), Flatten()], num_iter=1, random_state=0)
    assert conv.fit(images, y).input_shape_ == (1, 8, 8)  # a Conv2D refuses (8, 8): one channel is added
    assert conv.predict(images[:3]).shape == gru.predict(images[:3]).shape == (3,)


def test_sequence_regressor_and_input_shape_with_minus_one():
    rng = np.random.default_rng(0)
    S = rng.standard_normal((300, 6, 2))
    target = S[:, :, 0].sum(axis=1) - S[:, -1, 1]
    reg = SequentialRegressor([GRU(16)], num_iter=20, random_state=0).fit(S[:200], target[:200])
    assert reg.input_shape_ == (6, 2) and reg.predict(S[200:]).shape == (100,)
    assert reg.score(S[200:], target[200:]) > 0.8
    flat = SequentialRegressor([GRU(16)], input_shape=(-1, 2), num_iter=20, random_state=0)
    flat.fit(S[:200].reshape(200, 12), target[:200])  # flat rows, cut into steps of 2 values
    assert flat.input_shape_ == (6, 2)
    np.testing.assert_array_equal(flat.predict(S[200:].reshape(100, 12)), reg.predict(S[200:]))
    with pytest.raises(ValueError, match=r"input_shape=\(-1, 5\) takes a multiple of 5 values per sample, but X has 12 "
                                         r"features"):
        SequentialRegressor([GRU(4)], input_shape=(-1, 5)).fit(S[:20].reshape(20, 12), target[:20])
