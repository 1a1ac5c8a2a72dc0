"""Scaling out the search (docs/scaling.md): joblib's Dask backend and dask-ml's Hyperband over partial_fit.

One LocalCluster for the module: 2 worker processes of 1 thread each, on 127.0.0.1 only, closed at the end.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from minidl.sklearn import CNNClassifier

pytestmark = pytest.mark.slow  # a cluster of worker processes: seconds to start

distributed = pytest.importorskip("distributed")
joblib = pytest.importorskip("joblib")


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return d.data[:360], d.target[:360]  # raw 0..16 rows: CNNClassifier standardizes them


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_workers_run_one_blas_thread_each(client):
    threads = client.run(_blas_threads)
    assert len(threads) == 2
    assert all(counts and set(counts) == {1} for counts in threads.values()), threads


def test_grid_search_on_dask_matches_the_local_run(client, digits):
    X, y = digits
    search = GridSearchCV(CNNClassifier(num_iter=5, random_state=0), {"lr": [0.003, 0.05]}, cv=2)
    local = clone(search).fit(X, y)  # in this process, one fit after the other
    with joblib.parallel_backend("dask"), distributed.get_task_stream(client) as tasks:
        remote = clone(search).set_params(n_jobs=-1).fit(X, y)  # the 4 fits on the 2 workers
    assert remote.best_params_ == local.best_params_
    np.testing.assert_array_equal(remote.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"])
    assert remote.best_score_ > 0.5  # 5 epochs on 180 images each: learning, far above chance (0.1)
    assert len({task["worker"] for task in tasks.data}) == 2  # both workers took fits


def test_hyperband_search_drives_partial_fit(client, digits):
    dask_ml = pytest.importorskip("dask_ml.model_selection")
    import dask.array as da

    X, y = digits
    Xd, yd = da.from_array(X, chunks=(90, 64)), da.from_array(y, chunks=90)
    search = dask_ml.HyperbandSearchCV(CNNClassifier(random_state=0), {"lr": [0.003, 0.03, 0.1]}, max_iter=3,
                                      random_state=0, test_size=0.25)
    search.fit(Xd, yd, classes=np.arange(10))
    assert search.best_params_["lr"] in (0.003, 0.03, 0.1)
    best_id = search.cv_results_["model_id"][search.best_index_]
    calls = max(record["partial_fit_calls"] for record in search.history_ if record["model_id"] == best_id)
    assert search.best_estimator_.n_iter_ == calls >= 1  # one epoch per partial_fit call
    assert search.best_score_ > 0.2  # at most 3 epochs over 90-image blocks: above chance (0.1), not trained out
