"""What a new user's first custom layer trips on: check_layer reports it, errors say what to do."""

import numpy as np
import pytest

from minidl import Sequential
from minidl.guard import NonFiniteLossError
from minidl.layers import MSE, Dense, Flatten, Layer, Parameter, SoftmaxCE
from minidl.optim import SGD
from minidl.testing import (ROUND_TRIP, LayerCheckError, central_differences, check_layer, check_layer_gradients,
                            relative_error)


class RepeatForgetful(Layer):
    """Repeats its features ``times`` times, but ``get_config`` forgets ``times`` (the output shape changes)."""

    def __init__(self, times: int = 2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.times = times

    def compute_output_shape(self, input_shape):
        return (input_shape[0] * self.times,)

    def forward(self, x, training=False):
        self.check_input(x)
        return np.tile(x, (1, self.times))

    def backward(self, grad_out):
        return grad_out.reshape(len(grad_out), self.times, -1).sum(axis=1)


def failures(report) -> dict[str, str]:
    return {check.name: check.detail for check in report.failures}


def test_a_config_missing_a_shape_changing_argument_is_a_report_line_not_a_crash():
    report = check_layer(RepeatForgetful(3), (4,), raise_on_failure=False)
    assert list(failures(report)) == [ROUND_TRIP]
    assert "inference output has shape (2, 8) after the round trip, (2, 12) before: does get_config return every" \
        in failures(report)[ROUND_TRIP]
    with pytest.raises(LayerCheckError, match="get_config"):
        check_layer(RepeatForgetful(3), (4,))


class ListOutput(Layer):
    """Returns a list instead of an array: the checks cannot even read its shape."""

    def forward(self, x, training=False):
        return x.tolist()

    def backward(self, grad_out):
        return grad_out


def test_any_error_inside_a_check_becomes_a_failed_line_naming_that_check():
    report = check_layer(ListOutput(), (3,), raise_on_failure=False)
    names = failures(report)
    assert "forward/backward [float64, training]" in names and "gradients vs finite differences [float64, training]" \
        in names
    assert all(detail for detail in names.values())  # every failed line says what went wrong


class NoSuperInit(Layer):
    def __init__(self, k: int = 2) -> None:  # forgets super().__init__()
        self.k = k

    def forward(self, x, training=False):
        return x

    def backward(self, grad_out):
        return grad_out


def test_a_missing_super_init_is_named_with_the_fix():
    with pytest.raises(AttributeError, match=r"NoSuperInit has no attribute '(name|built)': its __init__ must call "
                                             r"super\(\).__init__\(\)"):
        Sequential([Flatten(), NoSuperInit(), Dense(2)], input_shape=(4,))
    report = check_layer(NoSuperInit(), (4,), raise_on_failure=False)
    assert "must call super().__init__()" in failures(report)["build [float64]"]
    with pytest.raises(AttributeError, match="'NoSuperInit' object has no attribute 'other'"):
        NoSuperInit().other  # noqa: B018 - any other missing attribute keeps Python's own message


class AccumulatingScale(Layer):
    """``y = x * w`` per feature, with the classic bug: backward adds to ``.grad`` instead of overwriting it."""

    def create_parameters(self, input_shape, rng, dtype):
        self.w = Parameter(np.ones(input_shape, dtype=dtype))

    def forward(self, x, training=False):
        self.check_input(x)
        self._x = x
        return x * self.w.data

    def backward(self, grad_out):
        self.w.grad += (grad_out * self._x).sum(axis=0)
        return grad_out * self.w.data


def test_divergence_with_a_custom_layer_suggests_check_layer():
    rng = np.random.default_rng(0)
    X, y = rng.random((64, 4)).astype(np.float32) * 10, np.arange(64) % 3
    model = Sequential([AccumulatingScale(), Dense(3), SoftmaxCE()], input_shape=(4,), seed=0)
    with pytest.raises(NonFiniteLossError) as info, np.errstate(all="ignore"):
        model.fit(X, y, optimizer=SGD(model.parameters(), lr=0.5), epochs=50, batch_size=4, verbose=0)
    message = str(info.value)
    assert "lower learning rate" in message
    assert "not built in (AccumulatingScale)" in message and "minidl.testing.check_layer(layer, input_shape)" in message
    report = check_layer(AccumulatingScale(), (4,), raise_on_failure=False)
    assert any(name.startswith("backward overwrites") for name in failures(report))


class ScaledMSE(MSE):
    """A loss of one's own whose gradient is 1000x too large: it diverges what it trains."""

    def loss_and_grad(self, outputs, targets, mask=None):
        value, grad = super().loss_and_grad(outputs, targets, mask)
        return value, grad * 1000


def test_divergence_with_a_custom_loss_suggests_check_loss():
    rng = np.random.default_rng(0)
    X, y = rng.random((64, 4)).astype(np.float32), rng.random((64, 1)).astype(np.float32)
    model = Sequential([Dense(1), ScaledMSE()], input_shape=(4,), seed=0)
    with pytest.raises(NonFiniteLossError) as info, np.errstate(all="ignore"):
        model.fit(X, y, optimizer=SGD(model.parameters(), lr=0.1), epochs=50, batch_size=4, verbose=0)
    message = str(info.value)
    assert "not built in (ScaledMSE)" in message
    assert "check the loss with minidl.testing.check_loss(loss, input_shape)" in message
    assert "check_layer" not in message  # every other layer is built in


def test_divergence_with_built_in_layers_only_does_not_blame_custom_code():
    X, y = np.ones((8, 4), np.float32), np.arange(8) % 2
    model = Sequential([Dense(2), SoftmaxCE()], input_shape=(4,), seed=0)
    with pytest.raises(NonFiniteLossError) as info, np.errstate(all="ignore"):
        model.fit(X, y, optimizer=SGD(model.parameters(), lr=1e38), epochs=5, verbose=0)
    assert "check_layer" not in str(info.value)


class Offset(Layer):
    """``y = 1 + s·x``: outputs of order 1 whose gradient ``s`` is tiny; ``wrong`` scales what backward returns."""

    def __init__(self, s: float = 4.3e-6, wrong: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.s, self.wrong = s, wrong

    def forward(self, x, training=False):
        self.check_input(x)
        return 1.0 + self.s * x

    def backward(self, grad_out):
        return grad_out * (self.s * self.wrong)


@pytest.mark.parametrize("wrong", [2.0, 1.01, 1.0001])
def test_a_wrong_gradient_as_small_as_round_off_matters_is_still_reported(wrong):
    """Round-off of the finite differences is ~1e-11 here (outputs of order 1, ε = 1e-5); a gradient of 4.3e-6 that
    is off by 100%, 1% or 0.01% (4.3e-10) is far outside it and fails the check."""
    x = np.random.default_rng(0).uniform(-2, 2, (3, 4))
    right, off = Offset(), Offset(wrong=wrong)
    for layer in (right, off):
        layer.build((4,), dtype="float64")
    assert check_layer_gradients(right, x)["input"] <= 1e-6
    with pytest.raises(AssertionError, match=r"Offset: gradients disagree with finite differences\n  input: max "
                                             r"relative error"):
        check_layer_gradients(off, x)


def test_the_round_off_allowance_is_what_the_outputs_that_moved_carry():
    outputs = np.array([1.0, -3.0, 5.0])
    weights = np.array([2.0, 1.0, 0.5])
    x = np.zeros(2)

    def f():  # x[0] moves the first two outputs, x[1] none
        return outputs + np.array([x[0], 2 * x[0], 0.0])

    grad, noise = central_differences(f, x, weights, eps=1e-5)
    np.testing.assert_allclose(grad, [2.0 + 2.0, 0.0], rtol=1e-9)
    u = np.finfo(np.float64).eps
    expected = u * (2.0 * (abs(1 + 1e-5) + abs(1 - 1e-5)) + 1.0 * (abs(-3 + 2e-5) + abs(-3 - 2e-5))) / 2e-5
    np.testing.assert_allclose(noise, [expected, 0.0], rtol=1e-12)
    # a difference within the allowance is not counted; beyond it, only the excess is
    assert relative_error(np.array([1e-6]), np.array([1e-6 + 1e-12]), np.array([2e-12])) == (0.0, (0,))
    error, _ = relative_error(np.array([1e-6]), np.array([1.1e-6]), np.array([2e-12]))
    assert error == pytest.approx((1e-7 - 2e-12) / 1.1e-6)
