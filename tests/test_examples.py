"""The examples run, with few epochs, and do what they say."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from minidl import Sequential, presets
from minidl.layers import Conv2D, Dense, Flatten, ReLU, SoftmaxCE

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"{name}_example", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def resnet():
    return load_example("resnet_digits")


@pytest.mark.slow
def test_resnet_by_hand_is_the_preset(resnet):
    by_hand, preset = resnet.make_model(seed=3), presets.digits_resnet(seed=3)
    assert repr(by_hand) == repr(preset)  # the same layers with the same settings, in the same tree
    mine, theirs = by_hand.state_dict(), preset.state_dict()
    assert mine.keys() == theirs.keys()
    for name, value in mine.items():
        np.testing.assert_array_equal(value, theirs[name], err_msg=name)


@pytest.mark.slow
def test_resnet_example_learns(resnet, capsys):
    scores = resnet.main(["--epochs", "2"])
    assert "Residual" in capsys.readouterr().out  # the summary shows the blocks
    assert scores["accuracy"] > 0.5  # chance is 0.1; two epochs of the 50 (the preset's tests train longer)


@pytest.mark.slow
def test_autoencoder_reconstructs_better_than_the_mean_image(capsys):
    result = load_example("autoencoder").main(["--epochs", "3"])
    assert result["code_size"] == 32
    assert result["mse"] < 0.8 * result["baseline"]  # 0.034 against 0.073 after 3 epochs


def test_transfer_keeps_the_trained_features_and_the_source(capsys):
    # The example asserts it itself (trained weights kept at build, the source unchanged after
    # training the new model and after fine-tuning a copy); this runs it quickly.
    result = load_example("transfer").main(["--epochs", "3", "--few-epochs", "3"])
    assert "unchanged after the transfer" in capsys.readouterr().out
    assert result["source"] > 0.6


def test_a_layer_in_two_models_shares_its_weights():
    dense = Dense(4)
    first = Sequential([Flatten(), dense, ReLU(), Dense(3), SoftmaxCE()], input_shape=(1, 2, 2), seed=0)
    before = dense.weight.data.copy()
    second = Sequential([Flatten(), dense, Dense(2), SoftmaxCE()], input_shape=(1, 2, 2), seed=1)
    np.testing.assert_array_equal(dense.weight.data, before)        # building the second kept them
    second.layers[1].weight.data[...] += 1.0
    np.testing.assert_array_equal(first.layers[1].weight.data, before + 1.0)  # one object, one set of weights


def test_a_built_layer_given_another_input_shape_is_refused():
    conv = Conv2D(2, 3)
    Sequential([conv, Flatten(), Dense(2), SoftmaxCE()], input_shape=(1, 5, 5), seed=0)
    with pytest.raises(ValueError, match=r"\(1, 5, 5\)"):
        Sequential([conv, Flatten(), Dense(2), SoftmaxCE()], input_shape=(3, 5, 5), seed=0)
