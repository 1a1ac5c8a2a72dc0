"""The command line's start-up: quick ``--help`` (no scikit-learn), Ctrl-C at any moment of it, verbosity."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minidl.cli import main

ROOT = Path(__file__).resolve().parent.parent


def run_minidl(args: list[str], extra_path: Path | None = None, code: str | None = None) -> subprocess.CompletedProcess:
    """``python -m minidl ARGS`` (or ``python -c CODE``) with this checkout first on the path."""
    path = [str(extra_path)] if extra_path else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, str(ROOT), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-c", code] if code else [sys.executable, "-m", "minidl", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


def test_help_imports_neither_scikit_learn_nor_scipy():
    code = (
        "import runpy, sys\n"
        "sys.argv = ['minidl', 'digits', '--help']\n"
        "try:\n    runpy.run_module('minidl', run_name='__main__')\n"
        "except SystemExit as exit_:\n    assert exit_.code == 0, exit_.code\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'pandas'}))\n"
    )
    done = run_minidl([], code=code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "--epochs" in done.stdout


def test_import_minidl_imports_no_heavy_module():
    done = run_minidl([], code="import sys, minidl; print(sorted({m.split('.')[0] for m in sys.modules} & "
                               "{'numpy', 'sklearn', 'tqdm'}))")
    assert done.stdout.strip() == "[]", done.stderr


@pytest.mark.skipif(os.name == "nt", reason="needs POSIX signals")
@pytest.mark.parametrize("module", ["sklearn", "numpy"])
def test_ctrl_c_while_start_up_imports_run_exits_130_with_one_line(tmp_path, module):
    """A real SIGINT arrives while ``module`` is being imported (a stand-in that signals its own process)."""
    stand_in = tmp_path / module
    stand_in.mkdir()
    (stand_in / "__init__.py").write_text("import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(5)\n")
    done = run_minidl(["digits", "--epochs", "1"], extra_path=tmp_path)
    assert done.returncode == 130, done.stderr
    assert done.stderr == "minidl: interrupted\n"
    assert done.stdout == ""


def test_verbose_0_prints_only_the_two_result_lines(capsys):
    assert main(["digits", "--epochs", "1", "--batch-size", "64", "--verbose", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("train: 1437 images, 1 epochs in ") and lines[1].startswith("test accuracy: ")


def test_training_options_have_help_text(capsys):
    with pytest.raises(SystemExit):
        main(["digits", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for option in ("--epochs EPOCHS passes over the training images", "--batch-size BATCH_SIZE images per optimizer",
                   "--lr LR learning rate (default: the recipe's)"):
        assert option in out


def fake_mnist(n_train: int = 40, n_test: int = 20):
    def load_mnist(data_dir=None, *, download=True, verbose=True, **kwargs):
        rng = np.random.default_rng(0)
        return ((rng.random((n_train, 1, 28, 28), dtype=np.float32), np.arange(n_train) % 10),
                (rng.random((n_test, 1, 28, 28), dtype=np.float32), np.arange(n_test) % 10))
    return load_mnist


def test_mnist_command_trains_lenet_with_its_recipe(monkeypatch, capsys):
    from minidl import datasets

    monkeypatch.setattr(datasets, "load_mnist", fake_mnist())
    assert main(["mnist", "--epochs", "1", "--verbose", "1"]) == 0
    out = capsys.readouterr().out
    assert "recipe: --optimizer sgd --lr 0.05 --momentum 0.9 --epochs 1 --batch-size 64" in out
    assert "train: 40 images, 1 epochs in " in out and "on 20 images" in out.splitlines()[-1]


def test_mnist_command_reports_a_failed_download_in_one_line(monkeypatch, capsys):
    from minidl import datasets
    from minidl.download import DownloadError

    def offline(*args, **kwargs):
        raise DownloadError("mnist: train-images-idx3-ubyte.gz is not in /nowhere/mnist and downloads are off")

    monkeypatch.setattr(datasets, "load_mnist", offline)
    assert main(["mnist", "--no-download", "--data-dir", "/nowhere"]) == 1
    assert capsys.readouterr().err == ("minidl: error: mnist: train-images-idx3-ubyte.gz is not in /nowhere/mnist and "
                                       "downloads are off\n")


def test_mnist_help_lists_lenet_and_its_recipe(capsys):
    with pytest.raises(SystemExit):
        main(["mnist", "--help"])
    out = capsys.readouterr().out
    assert "--preset {lenet}" in out and "lenet: --optimizer sgd --lr 0.05 --momentum 0.9 --epochs 8" in out
