"""A small ``GridSearchCV`` over minidl's ``CNNClassifier`` with ``n_jobs=1`` and with ``n_jobs=2``.

    python benchmarks/grid_jobs.py --repeats 3

Four candidates (``num_filters`` 8 or 16, ``lr`` 0.01 or 0.05) × 2 folds on scikit-learn's digits
(1,797 8×8 images), ``num_iter`` epochs each (default 30), ``random_state=0``. The two settings
alternate after one warm-up each (which also starts joblib's worker processes); the report shows
every run's wall-clock seconds, the medians, and whether both settings found the same scores: with
``n_jobs=2`` each worker runs one minidl thread, with ``n_jobs=1`` the search runs as many as the
machine has CPUs, and minidl's results do not depend on the thread count.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV

from minidl.sklearn import CNNClassifier

GRID = {"num_filters": [8, 16], "lr": [0.01, 0.05]}


def search(n_jobs: int, epochs: int, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Seconds for one search, and its mean test scores."""
    grid = GridSearchCV(CNNClassifier(num_iter=epochs, random_state=0), GRID, cv=2, n_jobs=n_jobs)
    start = time.perf_counter()
    grid.fit(X, y)
    return time.perf_counter() - start, grid.cv_results_["mean_test_score"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed searches per setting (default 3)")
    parser.add_argument("--epochs", type=int, default=30, help="num_iter of every fit (default 30)")
    args = parser.parse_args()
    digits = load_digits()
    X, y = digits.images, digits.target
    settings = (1, 2)
    scores = {n: search(n, args.epochs, X, y)[1] for n in settings}  # warm-up
    times: dict[int, list[float]] = {n: [] for n in settings}
    for _ in range(args.repeats):
        for n in settings:
            seconds, _ = search(n, args.epochs, X, y)
            times[n].append(seconds)
    for n in settings:
        print(f"n_jobs={n}: median {statistics.median(times[n]):.2f} s  (runs: "
              f"{', '.join(f'{t:.2f}' for t in times[n])})")
    print(f"n_jobs=2 / n_jobs=1: {statistics.median(times[2]) / statistics.median(times[1]):.2f}; "
          f"same mean test scores: {np.array_equal(scores[1], scores[2])} ({np.round(scores[1], 4).tolist()})")


if __name__ == "__main__":
    main()
