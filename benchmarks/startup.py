"""What the ``fast`` backend adds to a run's start: compiling its Numba kernels (cold cache) or loading them (warm).

    python benchmarks/startup.py                 # the command table
    python benchmarks/startup.py --layers        # each layer's first call, in one process

The command table runs each command of :data:`COMMANDS` in a fresh process under ``MINIDL_BACKEND=numpy`` and
``fast``: first with a cold cache (every ``*.nbi``/``*.nbc`` file of Numba's cache next to ``minidl/backend``
deleted just before: the first run after installing), then ``--repeats`` times warm (the cache those runs
wrote). Each cell is the process's wall time and CPU time (user + system, from ``getrusage`` of the child),
the warm ones as medians, and the ``fast`` rows also as the difference to ``numpy``'s (``+fast``).

``--layers`` times, in one process per cache state, ``import numba``, Numba's set-up on its first compiled
call (a one-line function) and each compiled layer's first forward-and-backward (which compiles or loads its
kernels) against its second, under the ``fast`` backend, at one thread (``--threads``). CPU time, ms. No
result is asserted anywhere.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE_DIR = ROOT / "minidl" / "backend" / "__pycache__"

#: A vgg-cifar training step (64 random images) as a script: every compiled kernel of the conv nets runs in it.
VGG_STEP = ("import sys, numpy as np, minidl; from minidl.presets import cifar_vgg; "
            "minidl.set_num_threads(int(sys.argv[1])); "
            "x = np.random.default_rng(0).random((64, 3, 32, 32), np.float32); "
            "cifar_vgg().fit(x, np.arange(64) % 10, epochs=1, batch_size=64, verbose=0)")

#: The commands timed (the arguments after ``python``), by label, each given ``threads`` threads: conv nets whose
#: kernels are compiled (BatchNorm2D, ReLU, pooling, Winograd), a GRU (the sequence kernels) and the blog CNN
#: (which stays below every kernel's size threshold). The digits commands train one epoch: ``--epochs 1`` keeps them
#: short, and the difference between the backends is then mostly start-up.
COMMANDS = {
    "vgg-cifar step": lambda threads: ["-c", VGG_STEP, str(threads)],
    "digits --preset digits_resnet": lambda threads: DIGITS + ["--preset", "digits_resnet", "--threads", str(threads)],
    "digits --preset digits_cnn": lambda threads: DIGITS + ["--preset", "digits_cnn", "--threads", str(threads)],
    "digits --preset digits_gru": lambda threads: DIGITS + ["--preset", "digits_gru", "--threads", str(threads)],
    "digits (blog_cnn)": lambda threads: DIGITS + ["--threads", str(threads)],
}
DIGITS = ["-m", "minidl", "digits", "--epochs", "1", "--verbose", "0"]


def clear_cache() -> int:
    """Delete Numba's cache files of minidl's backend; how many."""
    files = [*CACHE_DIR.glob("*.nbi"), *CACHE_DIR.glob("*.nbc")] if CACHE_DIR.is_dir() else []
    for f in files:
        f.unlink()
    return len(files)


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of ``argv`` in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def command_table(labels: list[str], repeats: int, threads: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    print(f"load before: {os.getloadavg()[0]:.2f}; threads {threads}; warm = median of {repeats}")
    print(f"{'command':34} {'backend':7} {'cold wall':>9} {'cold CPU':>9} {'warm wall':>9} {'warm CPU':>9}")
    for label in labels:
        argv = [sys.executable, *COMMANDS[label](threads)]
        cells: dict[str, list[float]] = {}
        for backend in ("numpy", "fast"):
            run_env = {**env, "MINIDL_BACKEND": backend}
            clear_cache()
            cold = run(argv, run_env)
            warm = [run(argv, run_env) for _ in range(repeats)]
            cells[backend] = [*cold, statistics.median(w for w, _ in warm), statistics.median(c for _, c in warm)]
            print(f"{label:34} {backend:7} " + " ".join(f"{v:9.2f}" for v in cells[backend]))
        extra = [f - n for f, n in zip(cells["fast"], cells["numpy"], strict=True)]
        print(f"{label:34} {'+fast':7} " + " ".join(f"{v:+9.2f}" for v in extra))
    print(f"load after: {os.getloadavg()[0]:.2f}")


def layer_cases() -> list[tuple[str, object, object]]:
    """(name, layer, input) for each layer the ``fast`` backend compiles, each input above the size thresholds."""
    import numpy as np

    from minidl.layers import GELU, GRU, LSTM, BatchNorm2D, Conv2D, LayerNorm, MaxPool2D, MultiHeadAttention, ReLU

    rng = np.random.default_rng(0)
    image = rng.standard_normal((16, 32, 16, 16)).astype(np.float32)
    seq = rng.standard_normal((16, 32, 64)).astype(np.float32)
    return [("Conv2D 3x3 (Winograd)", Conv2D(32, 3, padding="same"), image),
            ("BatchNorm2D", BatchNorm2D(), image),
            ("ReLU", ReLU(), np.concatenate([image] * 4)),
            ("MaxPool2D", MaxPool2D(2), image),
            ("GELU", GELU(), seq),
            ("LayerNorm", LayerNorm(), seq),
            ("MultiHeadAttention", MultiHeadAttention(4, causal=True), seq),
            ("LSTM", LSTM(64, return_sequences=True), seq),
            ("GRU", GRU(64, return_sequences=True), seq)]


def layer_table(threads: int) -> None:
    """Run in a child per cache state: CPU ms of ``import numba`` and of each layer's first and second call."""
    import numpy as np

    import minidl

    minidl.set_num_threads(threads)
    from minidl.backend import set_backend

    set_backend("fast")
    start = time.process_time()
    import numba

    print(f"  {'import numba':24} {1e3 * (time.process_time() - start):8.0f}")
    start = time.process_time()
    numba.njit(lambda v: v + 1)(1)  # Numba's set-up on its first compiled call, paid once per process, cached or not
    print(f"  {'first call (x + 1)':24} {1e3 * (time.process_time() - start):8.0f}")
    rng = np.random.default_rng(1)
    for name, layer, x in layer_cases():
        layer.build(x.shape[1:], rng, x.dtype)  # type: ignore[attr-defined]
        times = []
        for _ in range(2):
            start = time.process_time()
            y = layer.forward(x, training=True)  # type: ignore[attr-defined]
            layer.backward(np.ones_like(y))  # type: ignore[attr-defined]
            times.append(1e3 * (time.process_time() - start))
        print(f"  {name:24} {times[0]:8.0f} {times[1]:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", action="store_true", help="each layer's first call instead of the commands")
    parser.add_argument("--commands", nargs="*", choices=list(COMMANDS), default=list(COMMANDS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", choices=["layers"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        layer_table(args.threads)
    elif args.layers:
        # BLAS at the same thread count: OpenBLAS's idle threads spin, and that CPU time would count here
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": str(args.threads)}
        argv = [sys.executable, __file__, "--child", "layers", "--threads", str(args.threads)]
        print(f"load {os.getloadavg()[0]:.2f}; CPU ms, {args.threads} thread(s); first call, second call")
        for state in ("cold", "warm"):
            if state == "cold":
                clear_cache()
            print(f"{state} cache:", flush=True)
            subprocess.run(argv, env=env, check=True, cwd=ROOT)
    else:
        command_table(args.commands, args.repeats, args.threads)


if __name__ == "__main__":
    main()
