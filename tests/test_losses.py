"""minidl.layers.losses: the Loss contract, SoftmaxCE, SigmoidBCE, MSE and check_loss."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minidl.layers import MSE, Loss, SigmoidBCE, SoftmaxCE
from minidl.testing import any_shapes, check_loss, feature_shapes, layer_inputs


def built(loss, shape, dtype="float64"):
    loss.build(shape, dtype=dtype)
    return loss


def value(loss, outputs, targets, mask=None):
    return loss.loss_and_grad(outputs, targets, mask)[0]


def grad(loss, outputs, targets, mask=None):
    return loss.loss_and_grad(outputs, targets, mask)[1]


class Huber(Loss):
    """The custom loss of docs/extending.md: quadratic within ``delta`` of the target, linear beyond."""

    def __init__(self, delta=1.0, **kwargs):
        super().__init__(**kwargs)
        self.delta = delta

    def get_config(self):
        return {"delta": self.delta}

    def loss_and_grad(self, outputs, targets, mask=None):
        r = outputs - targets
        a = np.abs(r)
        value = float(np.mean(np.where(a <= self.delta, 0.5 * a**2, self.delta * (a - 0.5 * self.delta))))
        return value, np.clip(r, -self.delta, self.delta) / r.size


# -- gradients: float64 finite differences of the loss w.r.t. its inputs -------------------------
@given(layer_inputs(feature_shapes((1, 6)), batch=(1, 4)))
def test_softmax_ce_gradient_matches_finite_differences(x):
    assert check_loss(SoftmaxCE(), x.shape[1:], outputs=x) <= 1e-6


@given(layer_inputs(any_shapes((1, 3), (1, 4)), batch=(1, 4)))
def test_sigmoid_bce_gradient_matches_finite_differences(x):
    # the mean over up to 192 elements makes each gradient entry small against the loss's rounding:
    # a step of 1e-4 (truncation error ~1e-12) keeps that rounding below the tolerance
    assert check_loss(SigmoidBCE(), x.shape[1:], outputs=x * 3, eps=1e-4) <= 1e-6


@given(layer_inputs(any_shapes((1, 3), (1, 4)), batch=(1, 4)), st.integers(0, 2**32 - 1))
def test_mse_gradient_matches_finite_differences(x, seed):
    targets = np.random.default_rng(seed).normal(size=x.shape) * 3
    # MSE is quadratic, so a central difference is exact at any step: a large one keeps rounding out
    assert check_loss(MSE(), x.shape[1:], outputs=x, targets=targets, eps=1e-2) <= 1e-6


@given(layer_inputs(any_shapes((1, 2), (1, 4)), batch=(1, 4)), st.floats(0.1, 3))
def test_a_custom_huber_loss_passes_check_loss(x, delta):
    assert check_loss(Huber(delta), x.shape[1:], outputs=x * 2) <= 1e-6


def test_check_loss_catches_a_wrong_gradient():
    class Wrong(Huber):
        def loss_and_grad(self, outputs, targets, mask=None):
            value, g = super().loss_and_grad(outputs, targets)
            return value, 2 * g

    with pytest.raises(AssertionError, match="gradient: max relative error"):
        check_loss(Wrong(), (3,))


def test_check_loss_catches_a_loss_that_is_not_a_float_and_metrics_that_are_not_per_sample():
    class Bad(Huber):
        def loss_and_grad(self, outputs, targets, mask=None):
            value, g = super().loss_and_grad(outputs, targets)
            return np.array([value]), g

        def metrics(self, outputs, targets):
            return {"mae": np.abs(outputs - targets).mean()}

    with pytest.raises(AssertionError) as info:
        check_loss(Bad(), (2,))
    assert "not a finite Python float" in str(info.value) and "metrics()['mae']" in str(info.value)


# -- values against the definitions and PyTorch ----------------------------------------------------
@given(st.integers(1, 5), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_losses_agree_with_torch(n, k, seed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 5
    t01 = rng.integers(0, 2, (n, k)).astype(np.float64)
    t = rng.normal(size=(n, k))
    labels = rng.integers(0, k, n)
    tz = torch.tensor(z)
    cases = [
        (SoftmaxCE(), labels, torch.nn.functional.cross_entropy(tz, torch.tensor(labels))),
        (SigmoidBCE(), t01, torch.nn.functional.binary_cross_entropy_with_logits(tz, torch.tensor(t01))),
        (MSE(), t, torch.nn.functional.mse_loss(tz, torch.tensor(t))),
    ]
    for loss, targets, expected in cases:
        built(loss, (k,))
        assert value(loss, z, loss.prepare_targets(targets, n)) == pytest.approx(float(expected), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_logits_of_1e4_give_exact_finite_losses_and_gradients(dtype):
    z = np.array([[1e4, -1e4], [-1e4, 1e4]], dtype=dtype)
    ce = built(SoftmaxCE(), (2,), dtype)
    assert value(ce, z, np.array([0, 0])) == pytest.approx(1e4)  # one right at 0, one wrong by 2e4, mean 1e4
    np.testing.assert_allclose(grad(ce, z, np.array([0, 0])), [[0, 0], [-0.5, 0.5]])
    np.testing.assert_array_equal(ce.probabilities(z), [[1, 0], [0, 1]])
    bce = built(SigmoidBCE(), (2,), dtype)
    targets = np.array([[1, 0], [0, 0]], dtype=dtype)
    loss, g = bce.loss_and_grad(z, targets)
    assert loss == pytest.approx(1e4 / 4)  # only z=1e4 with t=0 costs (1e4); mean of 4
    assert np.isfinite(g).all() and g.dtype == np.dtype(dtype)
    np.testing.assert_allclose(g, [[0, 0], [0, 0.25]])
    np.testing.assert_array_equal(bce.probabilities(z), [[1, 0], [0, 1]])


def test_sigmoid_bce_keeps_precision_where_the_naive_formula_loses_it():
    bce = built(SigmoidBCE(), (1,))
    # -log σ(30) = log(1 + e^-30) ≈ 9.36e-14; 1 - σ(30) rounds to 0 in float64
    assert value(bce, np.array([[30.0]]), np.array([[1.0]])) == pytest.approx(np.log1p(np.exp(-30.0)), rel=1e-12)


def test_losses_are_means_over_the_batch():
    rng = np.random.default_rng(0)
    z, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    mse = built(MSE(), (3,))
    assert value(mse, z, t) == pytest.approx(np.mean((z - t) ** 2))
    np.testing.assert_allclose(grad(mse, z, t), 2 * (z - t) / z.size)
    # a batch twice as long holding the same samples twice has the same (mean) loss
    assert value(mse, np.concatenate([z, z]), np.concatenate([t, t])) == pytest.approx(value(mse, z, t))


# -- targets, metrics, predictions ---------------------------------------------------------------
def test_targets_are_converted_for_each_loss():
    np.testing.assert_array_equal(built(SoftmaxCE(), (3,)).prepare_targets([0.0, 2.0], 2), [0, 2])
    bce = built(SigmoidBCE(), (1,))
    y = bce.prepare_targets(np.array([True, False]), 2)
    assert y.shape == (2, 1) and y.dtype == np.float64 and y.tolist() == [[1.0], [0.0]]
    multi = built(SigmoidBCE(), (2,), "float32").prepare_targets([[0, 1], [1, 1]], 2)
    assert multi.dtype == np.float32 and multi.shape == (2, 2)
    reg = built(MSE(), (1,), "float32").prepare_targets([1, 2.5, -3], 3)
    assert reg.shape == (3, 1) and reg.dtype == np.float32


@pytest.mark.parametrize(
    "loss, shape, y, error, words",
    [
        (SigmoidBCE, (1,), [0, 0.5, 1], ValueError, ["y must hold 0/1 targets", "0.5"]),
        (SigmoidBCE, (3,), [0, 1, 1], ValueError, ["one target per sample", "(N, 3)", "SoftmaxCE"]),
        (SigmoidBCE, (2,), np.zeros((3, 3)), ValueError, ["y must have shape (3, 2)"]),
        (MSE, (2,), np.zeros(3), ValueError, ["y must have shape (3, 2)", "(N, 2)"]),
        (MSE, (1,), ["a", "b", "c"], TypeError, ["y must hold numbers", "<U1"]),
        (MSE, (1,), [1.0, np.nan, 2.0], ValueError, ["y contains 1 NaN", "(1, 0)"]),
        (MSE, (1,), [1.0, 1e39, 2.0], ValueError, ["after conversion to float32"]),
        (SoftmaxCE, (3,), [0, 3, 1], ValueError, ["holds labels in [0, 3]", "3 classes"]),
    ],
)
def test_bad_targets_get_a_clear_message_naming_the_argument(loss, shape, y, error, words):
    head = built(loss(), shape, "float32")
    with pytest.raises(error) as info:
        head.prepare_targets(y, 3)
    for word in words:
        assert word in str(info.value)


def test_metrics_are_per_sample_means():
    z = np.array([[2.0, -1.0], [-3.0, -1.0], [0.5, 0.5]])
    assert built(SoftmaxCE(), (2,)).metrics(z, np.array([0, 0, 1])).keys() == {"accuracy"}
    np.testing.assert_array_equal(built(SoftmaxCE(), (2,)).metrics(z, np.array([0, 0, 1]))["accuracy"],
                                  [True, False, False])  # a tie goes to the first class, as argmax does
    t = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    np.testing.assert_array_equal(built(SigmoidBCE(), (2,)).metrics(z, t)["accuracy"], [1.0, 0.5, 1.0])
    np.testing.assert_allclose(built(MSE(), (2,)).metrics(z, t)["mae"], [1.0, 2.5, 0.5])
    assert Huber().metrics(z, t) == {}


def test_predictions_follow_the_loss():
    z = np.array([[2.0, -1.0], [-3.0, 4.0]])
    np.testing.assert_array_equal(built(SoftmaxCE(), (2,)).predict(z), [0, 1])
    np.testing.assert_array_equal(built(SigmoidBCE(), (2,)).predict(z), [[1, 0], [0, 1]])
    single = built(SigmoidBCE(), (1,))
    np.testing.assert_array_equal(single.predict(z[:, :1]), [1, 0])
    np.testing.assert_allclose(single.probabilities(z[:, :1]), 1 / (1 + np.exp(-z[:, :1])))
    np.testing.assert_array_equal(built(MSE(), (2,)).predict(z), z)  # values, never an argmax
    with pytest.raises(ValueError, match="predict_proba needs a classifier loss .* loss is MSE; use predict"):
        built(MSE(), (2,)).probabilities(z)


def test_only_a_loss_with_one_output_per_class_refuses_other_shapes():
    with pytest.raises(ValueError, match="expects class scores"):
        SoftmaxCE().build((2, 3, 4))
    SoftmaxCE().build((5, 3))  # sequences of class scores
    SigmoidBCE().build((2, 3, 3))
    assert MSE().build((1, 4, 4)) is None


def test_a_loss_is_not_a_layer_and_the_abstract_one_is_registered_nowhere():
    from minidl.layers import Layer
    from minidl.layers.base import LAYERS
    from minidl.layers.losses import LOSSES

    assert not isinstance(SoftmaxCE(), Layer)
    assert "Loss" not in LOSSES and {"SoftmaxCE", "SigmoidBCE", "MSE"} <= set(LOSSES)
    assert not {"Loss", "SoftmaxCE", "SigmoidBCE", "MSE"} & set(LAYERS)
    with pytest.raises(NotImplementedError, match="must implement loss_and_grad"):
        built(Loss(), (2,)).loss_and_grad(np.zeros((1, 2)), np.zeros((1, 2)))


def test_a_loss_round_trips_through_its_config():
    loss = SoftmaxCE(ignore_index=3, name="ce")
    again = Loss.from_config(loss.to_config())
    assert type(again) is SoftmaxCE and again.ignore_index == 3 and again.name == "ce"


# -- sequences: (N, T, ...) outputs, ignore_index and masks -------------------------------------
@st.composite
def sequence_case(draw):
    n, t, k = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    labels = rng.integers(0, k, (n, t))
    labels[rng.random((n, t)) < 0.3] = -100
    mask = rng.random((n, t)) < 0.7 if draw(st.booleans()) else None
    return rng.normal(size=(n, t, k)) * 2, labels, mask


@settings(max_examples=30, deadline=None)
@given(sequence_case())
def test_softmax_ce_over_sequences_matches_finite_differences(case):
    z, labels, mask = case
    assert check_loss(SoftmaxCE(), z.shape[1:], outputs=z, targets=labels, mask=mask) <= 1e-6


@settings(max_examples=30, deadline=None)
@given(sequence_case())
def test_softmax_ce_over_sequences_equals_torch_with_ignore_index(case):
    torch = pytest.importorskip("torch")
    z, labels, mask = case
    ce = built(SoftmaxCE(), z.shape[1:])
    ignored = labels if mask is None else np.where(mask, labels, -100)  # a padded step is an ignored one
    if (ignored == -100).all():
        assert ce.loss_and_grad(z, labels, mask)[0] == 0.0  # nothing scored: torch's mean would be NaN
        return
    tz = torch.tensor(z, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(tz.permute(0, 2, 1), torch.tensor(ignored), ignore_index=-100)
    expected.backward()
    loss, g = ce.loss_and_grad(z, labels, mask)
    assert abs(loss - expected.item()) <= 1e-9
    np.testing.assert_allclose(g, tz.grad.numpy(), rtol=0, atol=1e-9)


def test_softmax_ce_over_sequences_scores_and_predicts_per_step():
    z = np.array([[[2.0, 0.0], [0.0, 2.0], [0.0, 2.0]]])  # predicts 0, 1, 1
    ce = built(SoftmaxCE(), (3, 2))
    y = ce.prepare_targets([[0, 0, -100]], 1)
    accuracy = ce.metrics(z, y, np.array([[True, True, True]]))["accuracy"]
    np.testing.assert_array_equal(accuracy, [[1.0, 0.0, np.nan]])  # the ignored step is not scored
    np.testing.assert_array_equal(ce.metrics(z, y, np.array([[True, False, True]]))["accuracy"], [[1, np.nan, np.nan]])
    np.testing.assert_array_equal(ce.predict(z), [[0, 1, 1]])
    assert ce.probabilities(z).shape == (1, 3, 2)
    with pytest.raises(ValueError, match=r"y must have shape \(1, 3\)"):
        ce.prepare_targets([0], 1)
    with pytest.raises(ValueError, match=r"holds labels in \[0, 2\]"):
        ce.prepare_targets([[0, 2, -100]], 1)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_masked_mse_and_sigmoid_bce_weigh_padded_steps_zero(n, t, k, seed):
    rng = np.random.default_rng(seed)
    z, mask = rng.normal(size=(n, t, k)), rng.random((n, t)) < 0.6
    mask[0, 0] = True
    targets = {MSE: rng.normal(size=(n, t, k)), SigmoidBCE: rng.integers(0, 2, (n, t, k)).astype(float)}
    for make, y in targets.items():
        assert check_loss(make(), (t, k), outputs=z, targets=y, mask=mask, eps=1e-4) <= 1e-6
        loss = built(make(), (t, k))
        unmasked = built(make(), (k,))  # the valid steps alone, as a batch of vectors
        expected = value(unmasked, z[mask], y[mask])
        assert value(loss, z, y, mask) == pytest.approx(expected, rel=1e-12)
        assert (grad(loss, z, y, mask)[~mask] == 0).all()


def test_a_mask_of_the_wrong_shape_is_refused():
    ce = built(SoftmaxCE(), (3, 2))
    with pytest.raises(ValueError, match=r"mask must have shape \(N, T\) = \(1, 3\)"):
        ce.loss_and_grad(np.zeros((1, 3, 2)), np.zeros((1, 3), int), np.ones((1, 2), bool))
