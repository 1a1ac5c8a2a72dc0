"""A grid search over CNNClassifier, run locally and then on a Dask cluster; prints both timings.

The cluster here is a LocalCluster on this machine (2 worker processes, 1 thread each, on
127.0.0.1). For a real cluster, give ``Client`` the scheduler's address instead
(``Client("tcp://scheduler:8786")``); nothing else changes. docs/scaling.md explains.

Run: python examples/dask_search.py            (needs: pip install "minidl[dask]")
"""

from __future__ import annotations

import time

import joblib
import numpy as np
from distributed import Client, LocalCluster
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV

from minidl.sklearn import CNNClassifier


def main() -> None:
    digits = load_digits()
    X, y = digits.data, digits.target             # raw 0..16 pixel rows: CNNClassifier standardizes them
    search = GridSearchCV(CNNClassifier(num_iter=20, random_state=0),
                          {"num_filters": [4, 8], "lr": [0.01, 0.05], "batch_size": [16, 64]}, cv=3)

    start = time.perf_counter()
    local = clone(search).fit(X, y)                # one process, fits one after the other
    local_s = time.perf_counter() - start

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.run(lambda: None)                   # workers up before the clock starts
        start = time.perf_counter()
        with joblib.parallel_backend("dask"):
            remote = clone(search).set_params(n_jobs=-1).fit(X, y)
        dask_s = time.perf_counter() - start

        fits = len(local.cv_results_["params"]) * local.n_splits_ + 1
        print(f"{fits} fits (24 + the refit), 1797 images, 20 epochs each")
        print(f"local (1 process):            {local_s:6.1f} s   best {local.best_params_} "
              f"score {local.best_score_:.4f}")
        print(f"dask (2 workers x 1 thread):  {dask_s:6.1f} s   best {remote.best_params_} "
              f"score {remote.best_score_:.4f}")
        same = local.best_params_ == remote.best_params_ and np.array_equal(
            local.cv_results_["mean_test_score"], remote.cv_results_["mean_test_score"])
        print("same best_params_ and scores:", same, flush=True)

if __name__ == "__main__":
    main()
