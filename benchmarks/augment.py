"""What augmentation buys on the 8x8 digits: digits_cnn with and without augmentation layers, several seeds.

    OPENBLAS_NUM_THREADS=1 python benchmarks/augment.py --seeds 0 1 2

Each variant is ``digits_cnn`` trained by its recipe (``RECIPES["digits_cnn"]``, optionally with
``--epochs``) on the blog's split, with the named augmentation layers put in front; prints the test
accuracy per seed, the mean, and the training time.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from minidl import Sequential
from minidl.datasets import load_digits
from minidl.layers import RandomRotation, RandomShift
from minidl.presets import RECIPES, digits_cnn

VARIANTS = {
    "none": lambda: [],
    "shift1": lambda: [RandomShift(1)],
    "rotate10": lambda: [RandomRotation(10)],
    "shift1+rotate10": lambda: [RandomShift(1), RandomRotation(10)],
}


def run(variant: str, seed: int, epochs: int | None) -> tuple[float, float]:
    (X_train, y_train), (X_test, y_test) = load_digits()
    model = Sequential([*VARIANTS[variant](), *digits_cnn(seed=seed).layers], input_shape=(1, 8, 8), seed=seed)
    recipe = RECIPES["digits_cnn"] if epochs is None else dataclasses.replace(RECIPES["digits_cnn"], epochs=epochs)
    start = time.perf_counter()
    recipe.fit(model, X_train, y_train, verbose=0)
    return model.evaluate(X_test, y_test)["accuracy"], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--epochs", type=int, help="default: the recipe's (30)")
    args = parser.parse_args()
    results = {v: [] for v in args.variants}
    for seed in args.seeds:  # variants alternate within each seed, so load drifts hit them alike
        for variant in args.variants:
            accuracy, seconds = run(variant, seed, args.epochs)
            results[variant].append((accuracy, seconds))
            print(f"{variant:>16} seed {seed}: test accuracy {accuracy:.4f}, {seconds:.1f} s", flush=True)
    print(f"\n| augmentation | test accuracy (seeds {', '.join(map(str, args.seeds))}) | mean | median time |")
    print("|---|---|---|---|")
    for variant, rows in results.items():
        accs, times = zip(*rows)
        print(f"| {variant} | {', '.join(f'{a:.4f}' for a in accs)} | {np.mean(accs):.4f} | {np.median(times):.1f} s |")


if __name__ == "__main__":
    main()
