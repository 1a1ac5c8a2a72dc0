"""Training time per epoch of the presets for the downloaded data sets, on random data of the real shapes.

    OPENBLAS_NUM_THREADS=1 python benchmarks/epoch_time.py --images 2048

For LeNet (MNIST-shaped data) and cifar_vgg (CIFAR-10), trains one epoch of the recipe's batch size
on ``--images`` random images (after one warm-up batch), and scales the time to the data set's training set (60,000 or 50,000 images).
Random data: the time of a step does not depend on the values.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from minidl.presets import RECIPES, cifar_vgg, lenet

CASES = {"lenet": (lenet, (1, 28, 28), 60_000), "cifar_vgg": (cifar_vgg, (3, 32, 32), 50_000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for name, (build, shape, train_size) in CASES.items():
        recipe = RECIPES[name]
        X = rng.random((args.images, *shape), dtype=np.float32)
        y = rng.integers(0, 10, args.images)
        model = build(input_shape=shape, seed=0)
        optimizer = recipe.make_optimizer(model.parameters())
        model.fit(X[:recipe.batch_size], y[:recipe.batch_size], optimizer=optimizer, verbose=0)  # warm-up
        start = time.perf_counter()
        model.fit(X, y, optimizer=optimizer, batch_size=recipe.batch_size, verbose=0)
        seconds = time.perf_counter() - start
        per_epoch = seconds / args.images * train_size
        print(f"{name}: {seconds / args.images * 1000:.2f} s per 1,000 images at batch {recipe.batch_size}, "
              f"so {per_epoch / 60:.1f} min per epoch of {train_size:,} images, "
              f"{per_epoch * recipe.epochs / 3600:.1f} h for the recipe's {recipe.epochs} epochs", flush=True)


if __name__ == "__main__":
    main()
