"""fit's progress bar (verbose=1): training metrics while an epoch runs, val_* too once it ends (as Keras shows)."""

import re

from minidl import presets
from minidl.data import load_digits


def epoch_bars(err: str, epochs: int) -> list[str]:
    """The last state tqdm drew of each epoch's bar (tqdm redraws a bar with carriage returns)."""
    lines = [line.strip() for line in re.split(r"[\r\n]", err) if line.strip()]
    return [[line for line in lines if line.startswith(f"Epoch {e}/{epochs}")][-1] for e in range(1, epochs + 1)]


def test_the_bar_ends_each_epoch_with_the_validation_metrics(capsys):
    X_train, X_test, y_train, y_test = load_digits()
    model = presets.blog_cnn(seed=0)
    history = model.fit(X_train[:96], y_train[:96], epochs=2, batch_size=16, verbose=1,
                        validation_data=(X_test[:40], y_test[:40]))
    bars = epoch_bars(capsys.readouterr().err, 2)
    for epoch, bar in enumerate(bars):
        assert "96/96" in bar
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert f"{key}={history[key][epoch]:.4f}" in bar, (key, bar)
        assert "lr=" not in bar


def test_without_validation_data_the_bar_shows_the_training_metrics(capsys):
    X_train, _, y_train, _ = load_digits()
    model = presets.blog_cnn(seed=0)
    history = model.fit(X_train[:64], y_train[:64], epochs=1, batch_size=16, verbose=1)
    (bar,) = epoch_bars(capsys.readouterr().err, 1)
    assert f"loss={history['loss'][0]:.4f}" in bar and f"accuracy={history['accuracy'][0]:.4f}" in bar
    assert "val_" not in bar
