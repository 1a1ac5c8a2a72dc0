"""minidl.language and the text commands: minidl train pydoc, minidl generate (tiny settings)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minidl import presets
from minidl.cli import main
from minidl.language import held_out_loss, load_checkpoint, random_windows, tokenizer_path, train_language_model
from minidl.text import split_text

ROOT = Path(__file__).resolve().parents[1]


def test_random_windows_targets_are_the_inputs_shifted_on():
    tokens = np.arange(50)
    x, y = random_windows(tokens, 6, 4, np.random.default_rng(0))
    assert x.shape == y.shape == (4, 6)
    np.testing.assert_array_equal(y, x + 1)  # consecutive ids: the next token is id + 1
    with pytest.raises(ValueError, match="too few"):
        random_windows(np.arange(7), 6, 1, np.random.default_rng(0))


def test_window_batches_are_fits_epochs_and_the_same_windows_whatever_their_grouping():
    from minidl.language import HeldOutWindows, WindowBatches

    tokens = np.arange(100)
    batches = WindowBatches(tokens, 6, 3, steps=7, per_pass=3, seed=4)
    passes = [list(batches) for _ in range(batches.passes)]
    assert batches.passes == 3 and [len(p) for p in passes] == [3, 3, 1] and list(batches) == []
    rng = np.random.default_rng(4)
    for x, y in (pair for p in passes for pair in p):
        expected_x, _ = random_windows(tokens, 6, 3, rng)
        np.testing.assert_array_equal(x, expected_x)
        np.testing.assert_array_equal(y, x + 1)
    held = HeldOutWindows(np.arange(50), 8, windows=5, batch_size=2)
    first, again = list(held), list(held)
    assert [len(x) for x, _ in first] == [2, 2, 1] and all(np.array_equal(a[0], b[0]) for a, b in zip(first, again))
    with pytest.raises(ValueError, match="held-out text has 9 tokens, too few for windows of context 8 \\+ 1"):
        HeldOutWindows(np.arange(9), 8)
    with pytest.raises(ValueError, match="per_pass must be"):
        WindowBatches(tokens, 6, 3, steps=7, per_pass=0)


def test_training_lowers_the_held_out_loss_of_a_repetitive_text():
    data = split_text("abcdefg" * 60, validation_fraction=0.2)
    model = presets.char_lstm(data.tokenizer.vocab_size, context=10, dim=8, units=16)
    before = held_out_loss(model, data.validation, windows=8)
    assert abs(before - np.log(7)) < 0.3  # an untrained model is close to uniform
    seen = []
    curve = train_language_model(model, data, steps=40, batch_size=8, lr=1e-2, eval_every=20,
                                 report=lambda *args: seen.append(args))
    assert [step for step, _ in curve] == [20, 40] == [step for step, _, _ in seen]
    assert curve[-1][1] < 0.5 * before
    assert model.generate(data.tokenizer.encode("cd"), 5, temperature=0).tolist() == data.tokenizer.encode(
        "cdefgab").tolist()


def test_training_goes_through_fit_and_equals_the_step_loop_it_replaced():
    """Each step of train_language_model is forward, loss, backward and Adam on the windows the seed gives,
    as the hand-written loop before it: the same weights and held-out losses, to the bit."""
    from minidl.optim import Adam

    data = split_text("the quick brown fox jumps over the lazy dog. " * 20, validation_fraction=0.2)
    fitted = presets.char_gpt(data.tokenizer.vocab_size, seed=3, context=8, dim=16, heads=2, blocks=1)
    by_hand = presets.char_gpt(data.tokenizer.vocab_size, seed=3, context=8, dim=16, heads=2, blocks=1)
    curve = train_language_model(fitted, data, steps=7, batch_size=4, lr=1e-2, seed=5, eval_every=3)
    rng, optimizer, expected = np.random.default_rng(5), Adam(by_hand.parameters(), lr=1e-2), []
    for step in range(1, 8):
        x, y = random_windows(data.train, 8, 4, rng)
        _, grad = by_hand.loss.loss_and_grad(by_hand.forward(x, training=True), y)
        by_hand.backward(grad)
        optimizer.step()
        if step % 3 == 0 or step == 7:
            expected.append((step, held_out_loss(by_hand, data.validation)))
    assert curve == expected and [step for step, _ in curve] == [3, 6, 7]
    for name, value in by_hand.state_dict().items():
        np.testing.assert_array_equal(fitted.state_dict()[name], value, err_msg=name)
    history = fitted.history  # one epoch of fit per measurement
    assert history["val_loss"] == [nats for _, nats in curve] and len(history["loss"]) == 3
    assert not history.interrupted


def test_ctrl_c_keeps_what_was_trained_and_measures_it(monkeypatch, capsys):
    import minidl.language as language

    draws = {"n": 0}

    def interrupted_at_the_seventh(*args):
        draws["n"] += 1
        if draws["n"] == 7:
            raise KeyboardInterrupt
        return random_windows(*args)

    monkeypatch.setattr(language, "random_windows", interrupted_at_the_seventh)
    data = split_text("abcdefg" * 60, validation_fraction=0.2)
    model = presets.char_lstm(data.tokenizer.vocab_size, context=10, dim=8, units=16)
    seen = []
    curve = train_language_model(model, data, steps=10, batch_size=8, lr=1e-2, eval_every=4,
                                 report=lambda *args: seen.append(args))
    assert [step for step, _ in curve] == [4, 6] == [step for step, _, _ in seen]  # 6 steps were taken
    assert curve[-1][1] == held_out_loss(model, data.validation)  # the model as the interrupt left it
    assert model.history.interrupted and len(model.history["loss"]) == 1
    draws["n"] = 0
    assert main(["train", "pydoc", "--steps", "10", "--eval-every", "4", "--context", "16", "--batch-size", "4",
                 "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    assert "train: 6 steps in " in out and "s/step), interrupted\n" in out


def run_cli(*argv):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "minidl", *argv], capture_output=True, text=True, env=env, timeout=300)


def test_train_pydoc_saves_a_checkpoint_that_generate_continues(tmp_path, capsys):
    path = tmp_path / "gpt.minidl"
    assert main(["train", "pydoc", "--steps", "4", "--eval-every", "2", "--context", "16", "--batch-size", "4",
                 "--verbose", "0", "--save", str(path)]) == 0
    out = capsys.readouterr().out
    assert "held-out loss: " in out and "bits/char" in out and "sample (temperature 0.8" in out
    assert path.exists() and tokenizer_path(path).exists()
    model, tokenizer = load_checkpoint(path)
    assert model.input_shape == (16,) and tokenizer.vocab_size == model.output_shape[-1]
    first = run_cli("generate", str(path), "--prompt", "The ", "--tokens", "20", "--temperature", "0.8", "--seed", "0")
    again = run_cli("generate", str(path), "--prompt", "The ", "--tokens", "20", "--temperature", "0.8", "--seed", "0")
    other = run_cli("generate", str(path), "--prompt", "The ", "--tokens", "20", "--temperature", "0.8", "--seed", "1")
    assert first.returncode == 0, first.stderr
    assert first.stdout == again.stdout and first.stdout != other.stdout
    assert first.stdout.startswith("The ") and len(first.stdout.rstrip("\n")) == 24
    unknown = run_cli("generate", str(path), "--prompt", "\u2603")
    assert unknown.returncode == 1 and "--prompt: " in unknown.stderr and "not in the vocabulary" in unknown.stderr
    tokenizer_path(path).unlink()
    missing = run_cli("generate", str(path))
    assert missing.returncode == 1 and "tokenizer.json is missing" in missing.stderr


def test_text_command_usage_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "pydoc", "--preset", "lenet"])
    assert exit_info.value.code == 2 and "invalid choice: 'lenet'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "x.minidl", "--temperature", "-1"])
    assert "expected a number in [0.0, inf)" in capsys.readouterr().err


def test_train_shakespeare_without_the_file_and_without_the_network_is_an_error_not_a_traceback(tmp_path, capsys):
    assert main(["train", "shakespeare", "--no-download", "--data-dir", str(tmp_path), "--verbose", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("minidl: error: ") and "Traceback" not in err, err
    assert "tiny-shakespeare/input.txt is missing" in err and "--no-download" in err
