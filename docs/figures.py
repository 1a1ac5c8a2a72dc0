"""Re-measure the accuracy and time figures quoted in docs/ (the README quotes none): ``python docs/figures.py``.

Each figure in the docs is printed beside the command that makes it and the thread setting it
was made with; this script runs those commands, under each thread setting, and prints one
Markdown row per run to paste back. It takes several minutes (not run by the test suite).
``python docs/figures.py blog`` runs only the commands whose text contains ``blog``.

Training gives the same bits for a seed at any thread count (BLAS runs one thread inside
``fit``; see minidl/threads.py), so both settings should print the same accuracy; running both
checks it, and every figure still names the setting it was made with.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: (label, command line after ``python -m minidl``) of every figure the docs quote.
FIGURES = [
    *[(f"blog_cnn recipe, seed {s}", ["digits", "--seed", str(s)]) for s in range(5)],
    ("blog_cnn, the blog's batch size, epochs and lr", ["digits", "--batch-size", "1", "--epochs", "50", "--lr", "0.01"]),
    ("blog_cnn --faithful, the blog's recipe exactly",
     ["digits", "--faithful", "--batch-size", "1", "--epochs", "50", "--lr", "0.01", "--momentum", "0"]),
    *[(f"digits_cnn recipe, seed {s}", ["digits", "--preset", "digits_cnn", "--seed", str(s)]) for s in range(3)],
]
#: ``OPENBLAS_NUM_THREADS`` values: one thread, and NumPy's default (all cores).
THREADS = ["1", None]


def run(args: list[str], threads: str | None) -> tuple[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OPENBLAS_NUM_THREADS", None)
    if threads is not None:
        env["OPENBLAS_NUM_THREADS"] = threads
    out = subprocess.run([sys.executable, "-m", "minidl", *args, "--verbose", "0"], env=env, check=True,
                         capture_output=True, text=True).stdout.splitlines()
    train, test = out[-2], out[-1]  # "train: ... in 0.68 s (...)" and "test accuracy: 0.9750 (loss ...) ..."
    return test.split()[2], train.split(" in ")[1].split(" s ")[0] + " s"


def main() -> None:
    wanted = sys.argv[1] if len(sys.argv) > 1 else ""
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print("| figure | command | threads | test accuracy | training time |\n|---|---|---|---|---|")
    for label, args in FIGURES:
        command = " ".join(["python -m minidl", *args, "--verbose 0"])
        if wanted not in f"{label} {command}":
            continue
        for threads in THREADS:
            setting = "OPENBLAS_NUM_THREADS=1" if threads == "1" else f"default ({os.cpu_count()})"
            accuracy, seconds = run(args, threads)
            print(f"| {label} | `{command}` | {setting} | {accuracy} | {seconds} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
