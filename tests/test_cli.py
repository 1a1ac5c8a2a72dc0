"""The command line's start-up: quick ``--help`` (no scikit-learn), Ctrl-C at any moment of it, verbosity."""

import os
import subprocess
import sys
from pathlib import Path

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
