"""The sequence examples run quickly and do what they say."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"{name}_example", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_image_rows_example_is_the_preset_and_learns(capsys):
    from minidl import presets

    example = load_example("image_rows")
    by_hand, preset = example.make_model(seed=2), presets.digits_gru(seed=2)
    assert repr(by_hand) == repr(preset)
    for name, value in by_hand.state_dict().items():
        np.testing.assert_array_equal(value, preset.state_dict()[name], err_msg=name)
    scores = example.main(["--epochs", "2"])
    assert "GRU" in capsys.readouterr().out
    assert scores["accuracy"] > 0.6  # chance is 0.1


def test_tiny_gpt_example_trains_generates_and_draws(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    result = load_example("tiny_gpt").main(["--steps", "8", "--context", "16", "--batch-size", "4",
                                            "--attention", str(tmp_path / "attention.png")])
    assert result["held_out"] < np.log(103)  # below a uniform guess over the vocabulary after 8 steps
    assert result["text"].startswith('The "for" statement') and len(result["text"]) == 219
    assert (tmp_path / "attention.png").stat().st_size > 1000
    assert "bits/char" in capsys.readouterr().out


def test_text_classifier_example_learns(capsys):
    scores = load_example("text_classifier").main(["--preset", "text_cnn", "--epochs", "2",
                                                   "--train-per-class", "100"])
    assert "Conv1D" in capsys.readouterr().out
    assert scores["accuracy"] > 0.3  # chance is 0.25
