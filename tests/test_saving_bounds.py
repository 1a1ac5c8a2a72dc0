"""Issue 21, items 14 and 15: a state whose values overflow the model's dtype is refused naming the key
(never stored as inf), and ``save`` never writes a file that ``load`` refuses."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import minidl
from minidl import Sequential
from minidl.layers import BatchNorm2D, Conv2D, Dense, Flatten, ReLU, SoftmaxCE
from minidl.layers.branches import Residual


def small_model(dtype: str) -> Sequential:
    return Sequential([Conv2D(2, 3), BatchNorm2D(), ReLU(), Flatten(), Dense(3), SoftmaxCE()],
                      input_shape=(1, 5, 5), seed=0, dtype=dtype)


@pytest.mark.parametrize("key", ["0.weight", "1.running_var"])
@pytest.mark.parametrize("how", ["load_weights", "load_state_dict"])
def test_a_float64_value_that_overflows_a_float32_model_is_refused_naming_the_key(tmp_path, key, how):
    source = small_model("float64")
    state = source.state_dict()
    state[key] = state[key].copy()
    state[key].flat[0] = 1e300
    source.load_state_dict(state)  # fine in float64
    source.save(tmp_path / "big.npz")
    target = small_model("float32")
    before = {k: v.copy() for k, v in target.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning "overflow encountered in cast" either
        with pytest.raises(ValueError) as info:
            if how == "load_weights":
                target.load_weights(tmp_path / "big.npz")
            else:
                target.load_state_dict(state)
    message = str(info.value)
    assert f"{key!r} holds 1 value(s) too large for the model's float32" in message and "1e+300" in message
    assert 'float64 model (dtype="float64")' in message
    assert all(np.array_equal(v, before[k]) for k, v in target.state_dict().items())  # nothing written


def nested(depth: int) -> Sequential:
    inner = ReLU()
    for _ in range(depth):
        inner = Residual([inner])
    return Sequential([Flatten(), inner, Dense(3), SoftmaxCE()], input_shape=(4,), seed=0)


def test_save_refuses_a_model_nested_deeper_than_load_reads(tmp_path):
    path = tmp_path / "deep.npz"
    with pytest.raises(ValueError, match=r"save: the model's containers nest so deeply that its header would nest "
                                         r"\d+ levels of JSON, more than the 64 load reads"):
        nested(22).save(path)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_every_nesting_save_writes_load_reads(tmp_path):
    """At every depth up to past the bound, ``save`` either refuses or writes a file ``load`` reads."""
    written = 0
    for depth in range(0, 24):
        model, path = nested(depth), tmp_path / f"d{depth}.npz"
        try:
            model.save(path)
        except ValueError as err:
            assert "load reads" in str(err)
            continue
        written += 1
        x = np.ones((2, 4))
        np.testing.assert_array_equal(minidl.load(path).predict_proba(x), model.predict_proba(x))
    assert written >= 10
