"""Peak memory of training LeNet on a 60,000-image MNIST-shaped file: in memory versus memory-mapped.

    python benchmarks/memmap.py --threads 1            # writes the .npy files once, then alternates the modes

Each run is a fresh process that builds LeNet, opens the images file either whole in memory
(``np.load(path)``) or memory-mapped (``np.load(path, mmap_mode="r")``) and trains one shuffled
epoch at batch 64. Reported per mode (medians over ``--repeats``): the epoch's time; the peak
resident memory (``VmHWM``, which also counts the file's pages the kernel keeps mapped: they are
page cache, shared and reclaimable); and the peak *anonymous* resident memory (``RssAnon``,
sampled every 10 ms: the process's own allocations, i.e. what a copy of the data would add).
The images are random (their content does not change the memory); the labels are random too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

N, SHAPE = 60_000, (1, 28, 28)


def status(field: str) -> int:
    """A ``/proc/self/status`` field in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def write_data(folder: Path) -> tuple[Path, Path]:
    images, labels = folder / "images.npy", folder / "labels.npy"
    if not images.exists():
        rng = np.random.default_rng(0)
        X = np.lib.format.open_memmap(images, mode="w+", dtype=np.float32, shape=(N, *SHAPE))
        for start in range(0, N, 5000):  # written in pieces: this script never holds the whole set itself
            X[start:start + 5000] = rng.random((min(5000, N - start), *SHAPE), dtype=np.float32)
        X.flush()
        del X
        np.save(labels, rng.integers(0, 10, N))
    return images, labels


def child(mode: str, images: str, labels: str) -> dict:
    from minidl.presets import lenet

    peak_anon = [status("RssAnon")]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak_anon[0] = max(peak_anon[0], status("RssAnon"))

    model = lenet(seed=0)
    y = np.load(labels)
    baseline = status("RssAnon")
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    X = np.load(images, mmap_mode="r" if mode == "memmap" else None)
    start = time.perf_counter()
    model.fit(X, y, epochs=1, batch_size=64, verbose=0)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    peak_anon[0] = max(peak_anon[0], status("RssAnon"))
    return {"mode": mode, "seconds": seconds, "vmhwm": status("VmHWM"), "peak_anon": peak_anon[0],
            "baseline_anon": baseline, "data_bytes": N * int(np.prod(SHAPE)) * 4}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="OPENBLAS/OMP threads of the runs (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode, alternating (default 3)")
    parser.add_argument("--dir", type=Path, help="where to keep images.npy and labels.npy (default: a temp dir)")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "IMAGES", "LABELS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    folder = args.dir or Path(tempfile.mkdtemp(prefix="minidl-memmap-"))
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = write_data(folder)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    runs: dict[str, list[dict]] = {"memory": [], "memmap": []}
    for _ in range(args.repeats):
        for mode in runs:
            out = subprocess.run([sys.executable, __file__, "--child", mode, str(images), str(labels)],
                                 env=env, capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            runs[mode].append(result)
            print(f"{mode:>6}: {result['seconds']:.1f} s, VmHWM {result['vmhwm'] / 2**20:.1f} MiB, "
                  f"peak RssAnon {result['peak_anon'] / 2**20:.1f} MiB", flush=True)
    mib = lambda key, rows: np.median([r[key] for r in rows]) / 2**20  # noqa: E731
    print(f"\nLeNet, one shuffled epoch of {N:,} images {SHAPE} float32 "
          f"({runs['memory'][0]['data_bytes'] / 2**20:.0f} MiB), batch 64, {args.threads} thread(s); "
          f"medians of {args.repeats}\n")
    print("| data | epoch time | peak RSS (VmHWM) | peak anonymous RSS (RssAnon) | RssAnon before fit |")
    print("|---|---|---|---|---|")
    for mode, rows in runs.items():
        label = "np.load(path) (in memory)" if mode == "memory" else 'np.load(path, mmap_mode="r")'
        print(f"| {label} | {np.median([r['seconds'] for r in rows]):.1f} s | {mib('vmhwm', rows):.1f} MiB | "
              f"{mib('peak_anon', rows):.1f} MiB | {mib('baseline_anon', rows):.1f} MiB |")


if __name__ == "__main__":
    main()
