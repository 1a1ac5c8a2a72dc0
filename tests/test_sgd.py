"""SGD against updates worked out by hand from torch.optim.SGD's documented rule."""

import numpy as np
import pytest

from minidl.layers import Parameter
from minidl.optim import SGD


def two_steps(**kwargs):
    """θ = [1, -2] with a constant gradient [0.5, 1]; returns θ after each of two steps."""
    p = Parameter(np.array([1.0, -2.0]))
    opt = SGD([p], lr=0.1, **kwargs)
    seen = []
    for _ in range(2):
        p.grad[...] = [0.5, 1.0]
        opt.step()
        seen.append(p.data.copy())
    return seen


@pytest.mark.parametrize(
    "kwargs, after_one, after_two",
    [
        # θ ← θ - lr·g
        ({}, [0.95, -2.1], [0.9, -2.2]),
        # g' = g + 0.1θ = [0.6, 0.8] = b;  then g' = [0.594, 0.792], b = 0.9b + g' = [1.134, 1.512]
        ({"momentum": 0.9, "weight_decay": 0.1}, [0.94, -2.08], [0.8266, -2.2312]),
        # Nesterov steps by g' + 0.9b: [1.14, 1.52]; then [0.5886 + 0.9·1.1286, 0.7848 + 0.9·1.5048]
        ({"momentum": 0.9, "weight_decay": 0.1, "nesterov": True}, [0.886, -2.152], [0.725566, -2.365912]),
    ],
    ids=["plain", "momentum+decay", "nesterov"],
)
def test_sgd_follows_the_update_rule(kwargs, after_one, after_two):
    one, two = two_steps(**kwargs)
    np.testing.assert_allclose(one, after_one, rtol=0, atol=1e-12)
    np.testing.assert_allclose(two, after_two, rtol=0, atol=1e-12)


def test_sgd_skips_frozen_parameters_and_zero_grad_clears():
    frozen, free = Parameter(np.ones(3), trainable=False), Parameter(np.ones(3))
    opt = SGD([frozen, free], lr=0.5, momentum=0.5)
    frozen.grad[...] = free.grad[...] = 1.0
    opt.step()
    np.testing.assert_array_equal(frozen.data, 1.0)
    np.testing.assert_array_equal(free.data, 0.5)
    opt.zero_grad()
    assert not free.grad.any() and not frozen.grad.any()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr": 0.0}, "lr must be finite and in \\(0.0, inf\\), got 0.0"),
        ({"lr": float("nan")}, "lr"),
        ({"lr": 0.1, "momentum": 1.0}, "momentum must be finite and in \\[0.0, 1.0\\), got 1.0"),
        ({"lr": 0.1, "weight_decay": -1}, "weight_decay"),
        ({"lr": 0.1, "nesterov": True}, "nesterov=True needs momentum > 0"),
    ],
)
def test_sgd_rejects_bad_hyper_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGD([Parameter(np.zeros(2))], **kwargs)
