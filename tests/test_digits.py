"""The digits preset and the command line, end to end on scikit-learn's 8×8 digits."""

import numpy as np
import pytest

from minidl import presets
from minidl.cli import main
from minidl.data import load_digits
from minidl.optim import SGD


def test_load_digits_reproduces_the_blog_split():
    X_train, X_test, y_train, y_test = load_digits()
    assert X_train.shape == (1437, 1, 8, 8) and X_test.shape == (360, 1, 8, 8)
    assert X_train.dtype == np.float32 and 0.0 <= X_train.min() and X_train.max() <= 1.0
    # the blog's train_test_split(..., test_size=0.2, random_state=42) puts these labels first
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    digits = datasets.load_digits()
    _, _, _, blog_y_test = train_test_split(digits.images, digits.target, test_size=0.2, random_state=42)
    np.testing.assert_array_equal(y_test, blog_y_test)


@pytest.mark.slow
def test_blog_preset_trains_every_parameter_to_high_accuracy():
    X_train, X_test, y_train, y_test = load_digits()
    model = presets.blog_cnn(seed=0)
    model.fit(X_train, y_train, optimizer=SGD(model.parameters(), lr=0.02, momentum=0.5), epochs=15,
              batch_size=4, verbose=0)
    assert model.evaluate(X_test, y_test)["accuracy"] >= 0.93


def test_faithful_preset_freezes_bias_free_filters():
    model = presets.blog_cnn(seed=0, faithful=True)
    conv, dense = model.layers[0], model.layers[4]
    assert conv.bias is None and not conv.weight.trainable and dense.weight.trainable
    assert 0.05 < conv.weight.data.std() < 0.2  # N(0, 0.1²) like the blog, not He-scaled
    before = conv.weight.data.copy()
    X_train, _, y_train, _ = load_digits()
    model.fit(X_train[:64], y_train[:64], epochs=1, verbose=0)
    np.testing.assert_array_equal(conv.weight.data, before)


def test_digits_command_prints_progress_and_test_accuracy(capsys):
    assert main(["digits", "--epochs", "2", "--batch-size", "16", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    accuracy = float(out.split("test accuracy: ")[1].split()[0])
    assert 0.5 < accuracy <= 1.0


@pytest.mark.parametrize("argv", [["digits", "--epochs", "0"], ["digits", "--lr", "-1"], ["digits", "--momentum", "1"],
                                  ["digits", "--bogus"], ["nothing"]])
def test_digits_command_rejects_bad_options_with_exit_status_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.slow
def test_the_blog_example_script_runs(capsys):
    import runpy
    from pathlib import Path

    runpy.run_path(str(Path(__file__).parent.parent / "examples" / "digits_blog.py"), run_name="__main__")
    out = capsys.readouterr().out
    accuracy = float(out.split("test: {'loss': ")[1].split("'accuracy': ")[1].rstrip("}\n").split("}")[0])
    assert accuracy >= 0.95
