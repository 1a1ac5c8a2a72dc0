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


@pytest.mark.skipif(os.name == "nt", reason="needs POSIX signals")
@pytest.mark.parametrize("module", ["datetime", "sklearn.utils"])
def test_ctrl_c_while_a_real_module_is_imported_is_one_line_and_status_130(tmp_path, module):
    """The real NumPy: a SIGINT inside the import of ``datetime`` that NumPy's C start-up makes is what printed
    "PyCapsule_Import could not import module 'datetime'" and exited 1."""
    (tmp_path / "sitecustomize.py").write_text(SIGINT_AT_IMPORT)
    proc = start_minidl(tmp_path, {"MINIDL_TEST_SIGINT_AT": module})
    out, err = proc.communicate(timeout=300)
    assert (proc.returncode, err, out) == (130, "minidl: interrupted\n", "")


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
