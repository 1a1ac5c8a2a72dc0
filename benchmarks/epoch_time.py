"""Training time per epoch of the presets for the downloaded data sets, on random data of the real shapes.

    python benchmarks/epoch_time.py --images 2048 --threads 1

For each preset of MNIST-shaped (``lenet``) and CIFAR-10-shaped data (``cifar_resnet``, ``cifar_vgg``),
trains one epoch of its recipe's optimizer and batch size on ``--images`` random images (after one
warm-up batch) and scales the time to the data set's training set (60,000 or 50,000 images). The time
of a step does not depend on the pixel values, so random data measures it; accuracy it cannot.
Prints the wall-clock time and the process's CPU time (``time.process_time``: on a machine other
jobs share, the CPU time is the steadier figure) and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from minidl import set_num_threads
from minidl.presets import MODELS, RECIPES

#: The preset, its input shape and the size of the training set it is meant for.
CASES = {"lenet": ((1, 28, 28), 60_000), "cifar_resnet": ((3, 32, 32), 50_000), "cifar_vgg": ((3, 32, 32), 50_000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048, help="random images to train one epoch on")
    parser.add_argument("--threads", type=int, help="BLAS threads (minidl.set_num_threads; default: minidl's)")
    parser.add_argument("--presets", nargs="+", choices=list(CASES), default=list(CASES), help="default: all")
    args = parser.parse_args()
    if args.threads is not None:
        set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    for name in args.presets:
        shape, train_size = CASES[name]
        recipe = RECIPES[name]
        X = rng.random((args.images, *shape), dtype=np.float32)
        y = rng.integers(0, 10, args.images)
        model = MODELS[name](seed=0)
        optimizer = recipe.make_optimizer(model.parameters())
        model.fit(X[:recipe.batch_size], y[:recipe.batch_size], optimizer=optimizer, verbose=0)  # warm-up
        wall, cpu = time.perf_counter(), time.process_time()
        model.fit(X, y, optimizer=optimizer, batch_size=recipe.batch_size, verbose=0)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        scale = train_size / args.images
        print(f"{name}: {wall / args.images * 1000:.2f} s wall, {cpu / args.images * 1000:.2f} s CPU per 1,000 "
              f"images at batch {recipe.batch_size}; so per epoch of {train_size:,} images {wall * scale / 60:.1f} "
              f"min wall, {cpu * scale / 60:.1f} min CPU; {cpu * scale * recipe.epochs / 60:.0f} min CPU for the "
              f"recipe's {recipe.epochs} epochs", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
