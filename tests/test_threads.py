"""minidl.threads: set_num_threads, the default policy (idle cores, the user's own choice) and its scope."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import minidl
from minidl import threads


def blas_threads_now() -> int:
    return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


@pytest.fixture(autouse=True)
def default_policy(monkeypatch):
    # Other tests in the same process (joblib, dask) may leave a BLAS variable set; the policy reads them.
    for var in threads.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(threads, "_decision", None)
    yield
    minidl.set_num_threads(None)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_set_num_threads_rejects_what_is_not_a_positive_int(bad):
    with pytest.raises(ValueError, match="set_num_threads: n must be a positive int or None"):
        minidl.set_num_threads(bad)


def test_set_num_threads_applies_inside_the_block_and_is_put_back():
    before = blas_threads_now()
    minidl.set_num_threads(1)
    assert minidl.get_num_threads() == 1
    with threads.blas_threads():
        assert blas_threads_now() == 1
        with threads.blas_threads():  # nested: the outer block decides
            assert blas_threads_now() == 1
        assert blas_threads_now() == 1
    assert blas_threads_now() == before


def test_a_users_threadpool_limits_is_left_alone():
    with threadpool_limits(1):
        with threads.blas_threads():
            assert blas_threads_now() == 1


def test_default_policy_counts_only_cores_other_processes_leave_idle(monkeypatch):
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(threads, "RECHECK_SECONDS", 0.0)  # measure at every call
    for idle, expected in [(4.0, 4), (3.3, 4), (3.1, 3), (1.0, 1), (0.2, 1), (0.0, 1)]:
        monkeypatch.setattr(threads, "idle_cores", lambda idle=idle: idle)
        assert threads._policy() == expected


@pytest.mark.parametrize("var", threads.ENV_VARS)
def test_default_policy_respects_the_environment(monkeypatch, var):
    monkeypatch.setattr(threads, "idle_cores", lambda: 2.0)
    monkeypatch.setenv(var, "1")
    assert threads._policy() is None  # BLAS keeps what the variable chose
    minidl.set_num_threads(2)
    assert threads._policy() == 2  # an explicit call still wins


def test_idle_cores_sees_a_busy_process():
    code = "import time\nend = time.time() + 3\nwhile time.time() < end: pass"
    busy = subprocess.Popen([sys.executable, "-c", code])
    try:
        threads.idle_cores()
        time.sleep(0.5)
        idle = threads.idle_cores()
    finally:
        busy.kill()
        busy.wait()
    assert idle is not None and idle <= os.cpu_count() - 0.5  # one core taken (at least half of it)


def test_fit_evaluate_and_predict_run_under_the_setting_and_put_blas_back():
    from minidl.layers import Dense, ReLU, SoftmaxCE

    seen = []

    class Spy(ReLU):
        def forward(self, x, training=False):
            seen.append(blas_threads_now())
            return super().forward(x, training)

    before = blas_threads_now()
    wanted = 2 if before == 1 else 1  # something BLAS is not doing already
    minidl.set_num_threads(wanted)
    model = minidl.Sequential([Dense(4), Spy(), Dense(3), SoftmaxCE()], input_shape=(5,), seed=0)
    X, y = np.random.default_rng(0).random((8, 5)), np.arange(8) % 3
    model.fit(X, y, epochs=1, batch_size=4, verbose=0)
    model.evaluate(X, y)
    model.predict(X)
    assert len(seen) == 4 and set(seen) == {wanted}
    assert blas_threads_now() == before


def test_benchmark_contended_mode_reports_both_settings_and_stops_its_busy_loop(capsys):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[1] / "benchmarks" / "run.py"
    spec = importlib.util.spec_from_file_location("minidl_benchmarks_contended", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    started = []
    real = bench.busy_core
    bench.busy_core = lambda seconds: started.append(real(seconds)) or started[-1]
    assert bench.main(["--contended", "--quick", "--scale", "0.01", "--workloads", "digits-b32"]) == 0
    out = capsys.readouterr().out
    assert "one core kept busy" in out and "digits-b32" in out
    assert len(started) == 1 and started[0].poll() is not None  # the busy loop is gone


def test_digits_command_line_takes_a_thread_count(capsys):
    from minidl import cli

    assert cli.main(["digits", "--threads", "1", "--epochs", "1", "--verbose", "0"]) == 0
    assert minidl.get_num_threads() == 1
    assert "test accuracy" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["digits", "--threads", "0"])
    assert exit_info.value.code == 2


def _blas_threads_seen_by_fit(seed: int) -> set:
    """Fit a tiny model and report the BLAS thread counts its layers ran under (in a joblib worker)."""
    from minidl.layers import Dense, ReLU, SoftmaxCE

    seen = set()

    class Spy(ReLU):
        def forward(self, x, training=False):
            seen.add(blas_threads_now())
            return super().forward(x, training)

    model = minidl.Sequential([Dense(4), Spy(), Dense(3), SoftmaxCE()], input_shape=(5,), seed=seed)
    X, y = np.random.default_rng(seed).random((8, 5)), np.arange(8) % 3
    model.fit(X, y, epochs=1, batch_size=4, verbose=0)
    return seen


def test_joblib_workers_keep_one_blas_thread_each():
    # loky sets OPENBLAS_NUM_THREADS etc. to cores // n_jobs in its workers; minidl must not undo that
    from joblib import Parallel, delayed

    results = Parallel(n_jobs=2)(delayed(_blas_threads_seen_by_fit)(seed) for seed in range(2))
    assert [sorted(r) for r in results] == [[max(1, (os.cpu_count() or 1) // 2)]] * 2


def test_default_policy_reuses_its_answer_within_the_recheck_interval(monkeypatch):
    calls = []
    monkeypatch.setattr(threads, "idle_cores", lambda: calls.append(1) or 2.0)
    monkeypatch.setattr(threads, "_decision", None)
    first = threads._policy()
    assert [threads._policy() for _ in range(5)] == [first] * 5
    assert len(calls) == 1  # a predict per sample in a loop does not read /proc/stat each time
