"""minidl.sklearn: scikit-learn's estimator checks, model selection, pipelines, labels and input shapes."""

import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits as sk_load_digits
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

import minidl
from minidl.data import load_digits
from minidl.layers import MSE, Conv2D, Dense, Flatten, MaxPool2D, ReLU, SoftmaxCE
from minidl.sklearn import CNNClassifier, SequentialClassifier, SequentialRegressor


def small_cnn():
    return [Conv2D(4, 3), ReLU(), MaxPool2D(2), Flatten()]


# Every check applies and passes: flat (N, F) rows of any width are one-row images, and the
# windows shrink to fit them. The pandas checks skip themselves when pandas is not installed.
@parametrize_with_checks(
    [
        CNNClassifier(),
        CNNClassifier(num_filters=2, filter_size=2, pool_size=1, dtype="float64"),
        SequentialClassifier([Dense(8), ReLU()]),
        SequentialRegressor([Dense(8), ReLU()]),
    ],
    expected_failed_checks=lambda estimator: {},
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.slow
def test_array_api_check_with_dispatch_enabled():
    """``check_array_api_input`` skips itself unless SCIPY_ARRAY_API=1 is set before SciPy is imported."""
    script = (
        "from sklearn.utils.estimator_checks import check_array_api_input\n"
        "from minidl.layers import Dense, ReLU\n"
        "from minidl.sklearn import CNNClassifier, SequentialClassifier, SequentialRegressor\n"
        "for est in [CNNClassifier(), SequentialClassifier([Dense(8), ReLU()]), SequentialRegressor([Dense(8)])]:\n"
        "    check_array_api_input(type(est).__name__, est, array_namespace='numpy', expect_only_array_outputs=False)\n"
        "print('passed')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], env={**os.environ, "SCIPY_ARRAY_API": "1"},
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "passed", proc.stderr[-2000:]


@pytest.fixture(scope="module")
def digits():
    d = sk_load_digits()
    return d.images / 16.0, d.data / 16.0, d.target


# -- model selection and pipelines --------------------------------------------------------------
@pytest.mark.slow
def test_cross_val_score(digits):
    images, _, y = digits
    scores = cross_val_score(CNNClassifier(num_iter=30, random_state=0), images[:450], y[:450], cv=3)
    assert scores.shape == (3,) and scores.min() > 0.8


@pytest.mark.slow
def test_grid_search(digits):
    images, _, y = digits
    grid = {"num_filters": [2, 4], "lr": [0.002, 0.05]}
    search = GridSearchCV(CNNClassifier(num_iter=10, random_state=0), grid, cv=2).fit(images[:400], y[:400])
    assert search.best_params_ == {"num_filters": 4, "lr": 0.05}  # more filters and a bigger step win at 10 epochs
    assert search.best_estimator_.model_.layers[1].filters == 4
    assert search.score(images[400:600], y[400:600]) > 0.7  # 400 images, 10 epochs: learning, not the best score


def test_pipeline_on_flat_rows(digits):
    _, _, y = digits
    flat = sk_load_digits().data  # (N, 64) in 0..16: the pipeline scales, the classifier sees 8×8 images
    pipe = make_pipeline(FunctionTransformer(lambda X: X / 16.0), CNNClassifier(num_iter=20, random_state=0))
    pipe.fit(flat[:500], y[:500])
    assert pipe[-1].input_shape_ == (1, 8, 8) and pipe[-1].n_features_in_ == 64
    assert pipe.score(flat[500:800], y[500:800]) > 0.75


@pytest.mark.slow
def test_cnn_on_the_blogs_split_beats_the_blog():
    X_train, X_test, y_train, y_test = load_digits()
    clf = CNNClassifier(random_state=0).fit(X_train[:, 0], y_train)  # (N, 8, 8), the blog's shape
    assert clf.n_iter_ == clf.num_iter == len(clf.loss_curve_) and clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.score(X_test[:, 0], y_test) >= 0.95  # the blog: 0.81-0.91


# -- estimator rules ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "relabel",
    [lambda y: np.array([f"digit {d}" for d in y]), lambda y: 10 * y - 40, lambda y: y.astype(float) * 2],
    ids=["strings", "negative-ints", "floats"],
)
def test_labels_of_any_type(digits, relabel):
    """Relabelling by an order-preserving map gives the same model, predicting the new labels."""
    images, _, y = digits
    labels = relabel(y)
    clf = CNNClassifier(num_iter=5, random_state=0).fit(images[:300], labels[:300])
    by_index = CNNClassifier(num_iter=5, random_state=0).fit(images[:300], y[:300])
    assert np.array_equal(clf.classes_, relabel(np.arange(10)))
    assert np.array_equal(clf.predict_proba(images[300:400]), by_index.predict_proba(images[300:400]))
    pred = clf.predict(images[300:400])
    assert pred.dtype == labels.dtype and np.array_equal(pred, relabel(by_index.predict(images[300:400])))
    assert clf.score(images[300:400], labels[300:400]) == by_index.score(images[300:400], y[300:400])


def test_num_classes_fixes_the_output_layer(digits):
    images, _, y = digits
    no_nines = y[:300] != 9
    clf = CNNClassifier(num_classes=10, num_iter=2, random_state=0).fit(images[:300][no_nines], y[:300][no_nines])
    assert np.array_equal(clf.classes_, np.arange(10))
    assert clf.predict_proba(images[:5]).shape == (5, 10)
    assert CNNClassifier(num_iter=2, random_state=0).fit(images[:300][no_nines], y[:300][no_nines]).classes_.size == 9
    with pytest.raises(ValueError, match=r"with num_classes=5 the labels must be the integers 0..4, got \[0, 1, .*9\]"):
        CNNClassifier(num_classes=5).fit(images[:50], y[:50])
    with pytest.raises(ValueError, match="with num_classes=2 the labels must be"):
        CNNClassifier(num_classes=2).fit(images[:4], ["a", "b", "a", "b"])
    with pytest.raises(ValueError, match="num_classes must be None or a positive int, got 0"):
        CNNClassifier(num_classes=0).fit(images[:4], [0, 1, 0, 1])


def test_every_input_layout_trains_the_same_model(digits):
    images, flat, y = digits
    fits = {
        "(N, H, W)": CNNClassifier(num_iter=3, random_state=1).fit(images[:200], y[:200]),
        "(N, C, H, W)": CNNClassifier(num_iter=3, random_state=1).fit(images[:200, None], y[:200]),
        "(N, 64) square": CNNClassifier(num_iter=3, random_state=1).fit(flat[:200], y[:200]),
        "(N, 64) image_shape": CNNClassifier(num_iter=3, random_state=1, image_shape=(1, 8, 8)).fit(flat[:200], y[:200]),
    }
    expected = fits["(N, H, W)"].predict_proba(images[200:260])
    for name, clf in fits.items():
        assert clf.input_shape_ == (1, 8, 8) and clf.n_features_in_ == 64, name
        assert np.array_equal(clf.predict_proba(images[200:260]), expected), name
        assert np.array_equal(clf.predict_proba(flat[200:260]), expected), name  # any layout at predict time


def test_flat_rows_that_are_not_square_become_one_row_images(digits):
    _, flat, y = digits
    clf = CNNClassifier(num_iter=3, random_state=0).fit(flat[:100, :10], y[:100])
    assert clf.input_shape_ == (1, 1, 10)
    assert clf.model_.layers[1].kernel_size == (1, 3) and clf.model_.layers[3].pool_size == (1, 2)
    wide = CNNClassifier(num_iter=3, random_state=0, image_shape=(4, 16)).fit(flat[:100], y[:100])
    assert wide.input_shape_ == (1, 4, 16)
    with pytest.raises(ValueError, match=r"image_shape=\(7, 7\) must be \(H, W\) or \(C, H, W\) with H·W \(·C\) = 64"):
        CNNClassifier(image_shape=(7, 7)).fit(flat[:10], y[:10])


def test_predict_checks_the_input_against_the_fitted_shape(digits):
    images, flat, y = digits
    clf = CNNClassifier(num_iter=1, random_state=0).fit(images[:50], y[:50])
    with pytest.raises(ValueError, match=r"X holds images of shape \(1, 4, 16\) .* fitted on \(1, 8, 8\)"):
        clf.predict(images[:5].reshape(5, 4, 16))
    with pytest.raises(ValueError, match="X has 63 features, but CNNClassifier is expecting 64 features"):
        clf.predict(flat[:5, :63])
    with pytest.raises(ValueError, match=r"X must be \(N, H, W\) or \(N, C, H, W\) images or \(N, F\) rows, got shape \(5, 1, 1, 8, 8\)"):
        clf.predict(images[:5, None, None])


def test_empty_image_batches_get_scikit_learns_message(digits):
    images, _, y = digits
    with pytest.raises(ValueError, match=r"Found array with 0 sample\(s\)"):
        CNNClassifier().fit(images[:0], y[:0])
    clf = CNNClassifier(num_iter=1, random_state=0).fit(images[:20], y[:20])
    with pytest.raises(ValueError, match=r"Found array with 0 sample\(s\)"):
        clf.predict(images[:0])


def test_a_failed_first_fit_leaves_the_estimator_unfitted(digits):
    images, _, y = digits
    clf = CNNClassifier(num_classes=3)
    with pytest.raises(ValueError, match="num_classes=3"):
        clf.fit(images[:20], y[:20])
    with pytest.raises(NotFittedError):
        clf.predict(images[:2])


def test_bad_hyper_parameters_fail_in_fit_not_init(digits):
    images, _, y = digits
    for params, message in [
        ({"num_iter": -1}, "CNNClassifier: num_iter must be >= 0, got -1"),
        ({"batch_size": 0}, "CNNClassifier: batch_size must be >= 1, got 0"),
        ({"filter_size": 0}, "CNNClassifier: filter_size must be >= 1, got 0"),
        ({"pool_size": 1.5}, "CNNClassifier: pool_size must be an int, got 1.5"),
        ({"lr": -1.0}, "lr"),
    ]:
        clf = CNNClassifier(**params)  # storing is all __init__ does
        with pytest.raises(ValueError, match=message):
            clf.fit(images[:10], y[:10])


def test_random_state_makes_fits_reproducible(digits):
    images, _, y = digits
    a = CNNClassifier(num_iter=3, random_state=7).fit(images[:200], y[:200])
    b = CNNClassifier(num_iter=3, random_state=7).fit(images[:200], y[:200])
    c = CNNClassifier(num_iter=3, random_state=8).fit(images[:200], y[:200])
    sa, sb, sc = a.model_.state_dict(), b.model_.state_dict(), c.model_.state_dict()
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert not np.array_equal(sa["1.weight"], sc["1.weight"])
    assert a.loss_curve_ == b.loss_curve_


def test_clone_is_unfitted_with_equal_parameters(digits):
    images, _, y = digits
    clf = CNNClassifier(num_filters=3, lr=0.05, random_state=2).fit(images[:60], y[:60])
    copy = clone(clf)
    assert copy.get_params() == clf.get_params()
    assert not hasattr(copy, "model_") and not hasattr(copy, "classes_")
    with pytest.raises(NotFittedError):
        copy.predict(images[:2])


def test_the_fitted_model_saves_and_reloads(tmp_path, digits):
    images, _, y = digits
    clf = CNNClassifier(num_iter=3, random_state=0).fit(images[:200], y[:200])
    clf.model_.save(tmp_path / "cnn.npz")
    reloaded = minidl.load(tmp_path / "cnn.npz")
    assert np.array_equal(reloaded.predict_proba(images[200:260, None]), clf.predict_proba(images[200:260]))


# -- SequentialClassifier -----------------------------------------------------------------------
def test_sequential_classifier_never_touches_the_layers_it_was_given(digits):
    images, _, y = digits
    layers = small_cnn()
    clf = SequentialClassifier(layers, num_iter=3, random_state=0).fit(images[:200], y[:200])
    assert all(not layer.built for layer in layers) and clf.layers is layers
    assert all(a is not b for a, b in zip(layers, clf.model_.layers))
    assert [type(layer).__name__ for layer in clf.model_.layers] == [
        "Conv2D", "ReLU", "MaxPool2D", "Flatten", "Dense"
    ] and isinstance(clf.model_.loss, SoftmaxCE)  # the last Dense is sized from y
    assert clf.model_.layers[4].units == 10


def test_sequential_classifier_accepts_layers_configs_and_factories(digits):
    images, flat, y = digits
    fits = [
        SequentialClassifier(small_cnn(), num_iter=3, random_state=0).fit(images[:200], y[:200]),
        SequentialClassifier([layer.to_config() for layer in small_cnn()], num_iter=3, random_state=0).fit(
            images[:200], y[:200]
        ),
        SequentialClassifier(small_cnn, num_iter=3, random_state=0).fit(images[:200], y[:200]),
        SequentialClassifier(small_cnn, input_shape=(1, 8, 8), num_iter=3, random_state=0).fit(flat[:200], y[:200]),
    ]
    expected = fits[0].predict_proba(images[200:260])
    for clf in fits:
        assert np.array_equal(clf.predict_proba(images[200:260]), expected)
    assert clone(fits[2]).layers is small_cnn


def test_sequential_classifier_with_its_own_loss_and_tabular_data(digits):
    _, flat, y = digits
    mlp = SequentialClassifier([Dense(32), ReLU(), Dense(10), SoftmaxCE()], num_iter=10, random_state=0)
    assert mlp.fit(flat[:500], y[:500]).score(flat[500:800], y[500:800]) > 0.7
    assert mlp.input_shape_ == (64,) and len(mlp.model_.layers) == 3 and isinstance(mlp.model_.loss, SoftmaxCE)
    with pytest.raises(ValueError, match=r"outputs shape \(10,\), but y has 3 classes \[0, 1, 2\]: make the layer before SoftmaxCE a Dense\(3\)"):
        mlp.fit(flat[:30], y[:30] % 3)


def test_sequential_classifier_bad_layers(digits):
    _, flat, y = digits
    with pytest.raises(ValueError, match=r"pass layers=\[...\]"):
        SequentialClassifier().fit(flat[:10], y[:10])
    with pytest.raises(TypeError, match="must be a non-empty list of layers"):
        SequentialClassifier([]).fit(flat[:10], y[:10])
    built = Dense(4)
    built.build((64,))
    with pytest.raises(TypeError, match="new, unbuilt minidl layers"):
        SequentialClassifier(lambda: [built]).fit(flat[:10], y[:10])
    with pytest.raises(ValueError, match=r"input_shape=\(1, 7, 7\) holds 49 values per sample, but X has 64 features"):
        SequentialClassifier(small_cnn(), input_shape=(1, 7, 7)).fit(flat[:10], y[:10])


# -- partial_fit ---------------------------------------------------------------------------------
def test_partial_fit_epochs_are_fit_epochs(digits):
    """n calls of partial_fit on the same data train exactly what fit(num_iter=n) trains: one epoch per
    call, with the momentum buffers and the shuffling stream carried over."""
    images, _, y = digits
    fitted = CNNClassifier(num_iter=3, random_state=0).fit(images[:200], y[:200])
    inc = CNNClassifier(random_state=0)
    for _ in range(3):
        assert inc.partial_fit(images[:200], y[:200], classes=np.arange(10)) is inc
    a, b = fitted.model_.state_dict(), inc.model_.state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert inc.loss_curve_ == fitted.loss_curve_ and inc.n_iter_ == 3
    assert inc.optimizer_.params == inc.model_.parameters()


def test_partial_fit_classes_rules(digits):
    images, _, y = digits
    clf = CNNClassifier(random_state=0)
    with pytest.raises(ValueError, match="CNNClassifier: classes must be passed on the first call to partial_fit"):
        clf.partial_fit(images[:20], y[:20])
    assert not hasattr(clf, "model_")
    clf.partial_fit(images[:20][y[:20] < 5], y[:20][y[:20] < 5], classes=np.arange(10))  # chunk lacks 5..9
    assert np.array_equal(clf.classes_, np.arange(10)) and clf.predict_proba(images[:3]).shape == (3, 10)
    clf.partial_fit(images[20:40], y[20:40])  # later calls may leave classes out
    with pytest.raises(ValueError, match=r"classes=\[0, 1, 2\] differs from the first call's \[0, 1, 2, 3, 4, 5, 6"):
        clf.partial_fit(images[:20], y[:20] % 3, classes=[0, 1, 2])
    with pytest.raises(ValueError, match=r"y holds labels \[10\] that are not in classes \[0, 1"):
        clf.partial_fit(images[:2], [0, 10])
    with pytest.raises(ValueError, match="X has 63 features, but CNNClassifier is expecting 64"):
        clf.partial_fit(images[:5].reshape(5, 64)[:, :63], y[:5])
    assert clf.n_iter_ == 2
    clf.fit(images[:30], y[:30])  # fit starts afresh ...
    assert clf.n_iter_ == clf.num_iter and np.array_equal(clf.classes_, np.unique(y[:30]))
    clf.partial_fit(images[:30], y[:30])  # ... and partial_fit continues from it
    assert clf.n_iter_ == clf.num_iter + 1 and len(clf.loss_curve_) == clf.num_iter + 1


def test_partial_fit_with_string_labels_and_sequential_classifier(digits):
    _, flat, y = digits
    names = np.array([f"d{d}" for d in y])
    clf = SequentialClassifier([Dense(16), ReLU()], lr=0.1, random_state=0)
    for start in range(0, 600, 200):
        clf.partial_fit(flat[start:start + 200], names[start:start + 200], classes=np.unique(names))
    assert clf.n_iter_ == 3 and clf.predict(flat[:4]).dtype == names.dtype
    assert clf.score(flat[600:900], names[600:900]) > 0.4  # three epochs of 200 images: well above chance (0.1)


# -- raw pixels (issue 12: CNNClassifier() on load_digits().data must not train to chance) -------------
@pytest.mark.slow
def test_raw_pixel_rows_train_with_the_defaults():
    d = sk_load_digits()
    X, y = d.data, d.target  # (N, 64) in 0..16, as the README's example passes them
    clf = CNNClassifier(random_state=0).fit(X[:1200], y[:1200])
    assert clf.score(X[1200:], y[1200:]) > 0.9  # chance: 0.1; the last 597 digits are the hardest
    scale = clf.model_.layers[0]
    assert scale.name == "standardize" and not scale.trainable
    # the frozen layer holds the training data's statistics, unmoved by training
    np.testing.assert_allclose(scale.running_mean.data, [X[:1200].mean()], rtol=1e-6)
    np.testing.assert_allclose(scale.running_var.data, [X[:1200].var()], rtol=1e-6)
    with pytest.warns(ConvergenceWarning, match=r"training loss is 2\.\d+, still at chance level \(ln 10 = 2\.3026\)"):
        unscaled = CNNClassifier(standardize=False, num_filters=4, lr=0.01, num_iter=50,  # issue 12's case
                                 random_state=0).fit(X[:1200], y[:1200])
    assert type(unscaled.model_.layers[0]).__name__ == "Conv2D"
    # scaled by hand, the same data trains the same network as the default on raw data
    assert CNNClassifier(random_state=0).fit(X[:1200] / 16, y[:1200]).score(X[1200:] / 16, y[1200:]) > 0.9
    with pytest.raises(ValueError, match="CNNClassifier: standardize must be True or False, got 'yes'"):
        CNNClassifier(standardize="yes").fit(X[:10], y[:10])


# -- SequentialRegressor ----------------------------------------------------------------------
@pytest.mark.slow
def test_sequential_regressor_one_and_several_targets(digits):
    from sklearn.datasets import make_regression
    from sklearn.model_selection import cross_val_score

    X, y = make_regression(n_samples=300, n_features=6, n_informative=4, noise=5.0, random_state=0)
    y = (y - y.mean()) / y.std()
    reg = SequentialRegressor([Dense(16), ReLU()], random_state=0).fit(X[:200], y[:200])
    assert reg.n_outputs_ == 1 and reg.predict(X[200:]).shape == (100,)
    assert reg.score(X[200:], y[200:]) > 0.9
    assert [type(layer).__name__ for layer in reg.model_.layers] == ["Dense", "ReLU", "Dense"]
    assert isinstance(reg.model_.loss, MSE)
    assert "mae" in reg.history_ and reg.loss_curve_[-1] < reg.loss_curve_[0]
    two = np.stack([y, -2 * y], axis=1)
    multi = SequentialRegressor([Dense(16), ReLU()], random_state=0).fit(X[:200], two[:200])
    assert multi.n_outputs_ == 2 and multi.predict(X[200:]).shape == (100, 2)
    assert cross_val_score(SequentialRegressor([Dense(16), ReLU()], random_state=0), X, y, cv=3).min() > 0.8
    with pytest.raises(ValueError, match=r"y has 2 target\(s\) per sample, but the model was fitted on 1"):
        reg.partial_fit(X[:10], two[:10])
    with pytest.raises(ValueError, match=r"outputs shape \(3,\), but y has 2 target\(s\) per sample: make the "
                                         r"layer before MSE a Dense\(2\)"):
        SequentialRegressor([Dense(3), MSE()]).fit(X[:20], two[:20])


def test_sequential_regressor_partial_fit_equals_fit():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 5))
    y = X @ rng.standard_normal(5)
    fitted = SequentialRegressor([Dense(8), ReLU()], num_iter=4, random_state=0).fit(X, y)
    inc = SequentialRegressor([Dense(8), ReLU()], random_state=0)
    for _ in range(4):
        inc.partial_fit(X, y)
    np.testing.assert_array_equal(inc.predict(X), fitted.predict(X))
    assert inc.n_iter_ == 4 and inc.loss_curve_ == fitted.loss_curve_
