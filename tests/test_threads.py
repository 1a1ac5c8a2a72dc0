"""minidl.threads: how many threads (set_num_threads, the environment, the CPUs), BLAS pinned to one
inside fit/evaluate/predict, the block pool, and the same bits at every thread count."""

import multiprocessing
import os
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import minidl
import minidl.backend.numpy as nb
from minidl import threads
from minidl.layers import BatchNorm2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU, SoftmaxCE
from minidl.optim import SGD


def blas_threads_now() -> int:
    return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


def cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


@pytest.fixture(autouse=True)
def default_setting(monkeypatch):
    # Other tests in the same process (joblib, dask) may leave a BLAS variable set; the default reads them.
    for var in threads.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    minidl.set_num_threads(None)
    yield
    minidl.set_num_threads(None)


# -- how many threads ------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_set_num_threads_rejects_what_is_not_a_positive_int(bad):
    with pytest.raises(ValueError, match="set_num_threads: n must be a positive int or None"):
        minidl.set_num_threads(bad)


def test_default_is_the_cpus_this_process_may_use_and_set_num_threads_wins():
    assert minidl.get_num_threads() == cpus()
    minidl.set_num_threads(3)
    assert minidl.get_num_threads() == 3
    minidl.set_num_threads(None)
    assert minidl.get_num_threads() == cpus()


@pytest.mark.parametrize("var", threads.ENV_VARS)
def test_the_environments_thread_budget_is_respected(monkeypatch, var):
    monkeypatch.setenv(var, "5")
    assert minidl.get_num_threads() == 5
    minidl.set_num_threads(2)
    assert minidl.get_num_threads() == 2  # an explicit call still wins


def test_environment_values_that_are_not_a_positive_count_are_passed_over(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "lots")
    monkeypatch.setenv("MKL_NUM_THREADS", "0")
    monkeypatch.setenv("OMP_NUM_THREADS", "3,2")  # OpenMP's per-level list: the outer level counts
    assert minidl.get_num_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert minidl.get_num_threads() == cpus()


def test_digits_command_line_takes_a_thread_count(capsys):
    from minidl import cli

    assert cli.main(["digits", "--threads", "1", "--epochs", "1", "--verbose", "0"]) == 0
    assert minidl.get_num_threads() == 1
    assert "test accuracy" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["digits", "--threads", "0"])
    assert exit_info.value.code == 2


# -- BLAS pinned to one thread -------------------------------------------------------------------------
def test_blas_runs_one_thread_inside_the_block_and_is_put_back_even_nested():
    with threadpool_limits(2):
        with threads.blas_threads():
            assert blas_threads_now() == 1
            with threads.blas_threads():
                assert blas_threads_now() == 1
            assert blas_threads_now() == 1  # the inner block does not put BLAS back early
        assert blas_threads_now() == 2


class FakeBLAS:
    """A BLAS library's threadpoolctl controller, recording what it is told; ``obeys=False``: like
    OpenBLAS asked from a thread other than the main one, it keeps its count."""

    def __init__(self, n: int, obeys: bool = True) -> None:
        self.n, self.obeys, self.calls = n, obeys, []

    def get_num_threads(self) -> int:
        return self.n

    def set_num_threads(self, n: int) -> None:
        self.calls.append(n)
        self.n = n if self.obeys else self.n


def test_blocks_open_in_several_threads_put_blas_back_when_the_last_closes(monkeypatch):
    blas = FakeBLAS(2)
    monkeypatch.setattr(threads, "_controllers", lambda: [blas])
    opened, release = threading.Event(), threading.Event()

    def other() -> None:
        with threads.blas_threads():
            opened.set()
            release.wait(timeout=60)

    worker = threading.Thread(target=other)
    worker.start()
    try:
        opened.wait(timeout=60)
        with threads.blas_threads():
            assert blas.n == 1
        assert blas.n == 1  # the other thread's block is still open
    finally:
        release.set()
        worker.join()
    assert blas.n == 2 and blas.calls == [1, 2]


def test_a_blas_that_keeps_its_threads_is_reported_once(monkeypatch):
    monkeypatch.setattr(threads, "_controllers", lambda: [FakeBLAS(2, obeys=False)])
    monkeypatch.setattr(threads, "_warned", False)
    with pytest.warns(RuntimeWarning, match="BLAS kept 2 threads instead of 1"):
        with threads.blas_threads():
            pass
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with threads.blas_threads():
            pass


def test_fit_evaluate_and_predict_run_one_blas_thread_and_put_blas_back():
    seen = []

    class Spy(ReLU):
        def forward(self, x, training=False):
            seen.append(blas_threads_now())
            return super().forward(x, training)

    with threadpool_limits(2):
        model = minidl.Sequential([Dense(4), Spy(), Dense(3), SoftmaxCE()], input_shape=(5,), seed=0)
        X, y = np.random.default_rng(0).random((8, 5)), np.arange(8) % 3
        model.fit(X, y, epochs=1, batch_size=4, verbose=0)
        model.evaluate(X, y)
        model.predict(X)
        assert len(seen) == 4 and set(seen) == {1}
        assert blas_threads_now() == 2


# -- the pool --------------------------------------------------------------------------------------------
def test_map_blocks_returns_in_block_order_and_never_runs_one_slot_twice_at_once():
    minidl.set_num_threads(3)
    busy, clashes = set(), []
    guard = threading.Lock()

    def fn(i: int, slot: int) -> int:
        with guard:
            if slot in busy:
                clashes.append(slot)
            busy.add(slot)
        time.sleep(0.001)  # give the other threads a chance to take blocks
        with guard:
            busy.discard(slot)
        return i * i

    assert threads.map_blocks(fn, 50) == [i * i for i in range(50)]
    assert clashes == []


def test_map_blocks_uses_several_threads_and_the_caller_alone_for_one_block_or_thread():
    minidl.set_num_threads(2)
    caller = threading.get_ident()
    seen: set = set()
    barrier = threading.Barrier(2, timeout=60)

    def fn(i: int, slot: int) -> None:
        seen.add((threading.get_ident(), slot))
        if i < 2:
            barrier.wait()  # the first two blocks meet: they run in two threads at once

    threads.map_blocks(fn, 4)
    assert {ident for ident, _ in seen} - {caller} and {slot for _, slot in seen} == {0, 1}
    for n, count in [(2, 1), (1, 5)]:
        minidl.set_num_threads(n)
        seen.clear()
        threads.map_blocks(lambda i, slot: seen.add((threading.get_ident(), slot)), count)
        assert seen == {(caller, 0)}


def test_map_blocks_raises_a_blocks_error_after_the_others_have_stopped():
    minidl.set_num_threads(2)
    running = []

    def fn(i: int, slot: int) -> None:
        running.append(i)
        time.sleep(0.002)
        if i == 3:
            raise ArithmeticError("block 3")
        running.remove(i)

    with pytest.raises(ArithmeticError, match="block 3"):
        threads.map_blocks(fn, 40)
    assert running == [3]  # nothing still running when the error arrives
    assert len(threads._executor()._threads) >= 1  # and the pool still serves the next call
    assert threads.map_blocks(lambda i, slot: i, 3) == [0, 1, 2]


def test_idle_pool_threads_sleep():
    minidl.set_num_threads(2)
    threads.map_blocks(lambda i, slot: np.ones((256, 256)) @ np.ones((256, 256)), 8)
    assert any(t.name.startswith("minidl") for t in threading.enumerate())
    time.sleep(0.2)  # BLAS's own threads, if an earlier test woke them, stop spinning by then
    start_cpu, start = time.process_time(), time.monotonic()
    time.sleep(0.5)
    spent = time.process_time() - start_cpu
    assert spent < 0.1 * (time.monotonic() - start)  # a spinning thread would burn the whole interval


def _forward_in_child(weight: np.ndarray) -> np.ndarray:
    minidl.set_num_threads(2)
    x_pad = np.random.default_rng(0).random((3, 10, 10, 4)).astype(np.float32)
    return nb.conv_forward(x_pad, weight, (3, 3), (1, 1), (8, 8))


def test_a_forked_child_gets_its_own_pool(monkeypatch):
    monkeypatch.setattr(nb, "CONV_BLOCK", 1)  # one output row per block: 8 blocks
    monkeypatch.setattr(nb, "PARALLEL_MIN_FLOPS", 0)
    weight = np.random.default_rng(1).random((4, 27)).astype(np.float32)
    expected = _forward_in_child(weight)  # the parent's pool exists (and is idle) before the fork
    with multiprocessing.get_context("fork").Pool(1) as pool:
        result = pool.apply_async(_forward_in_child, (weight,)).get(timeout=300)  # a stuck child fails here
    np.testing.assert_array_equal(result, expected)


def _thread_settings_seen_by_fit(seed: int) -> tuple[int, set]:
    """Fit a tiny model in a joblib worker: minidl's thread count there, and BLAS's during fit."""
    seen = set()

    class Spy(ReLU):
        def forward(self, x, training=False):
            seen.add(blas_threads_now())
            return super().forward(x, training)

    model = minidl.Sequential([Dense(4), Spy(), Dense(3), SoftmaxCE()], input_shape=(5,), seed=seed)
    X, y = np.random.default_rng(seed).random((8, 5)), np.arange(8) % 3
    model.fit(X, y, epochs=1, batch_size=4, verbose=0)
    return minidl.get_num_threads(), seen


@pytest.mark.slow
def test_joblib_workers_share_the_cores():
    # loky sets OPENBLAS_NUM_THREADS etc. to cores // n_jobs in its workers: minidl's budget there
    from joblib import Parallel, delayed

    results = Parallel(n_jobs=2)(delayed(_thread_settings_seen_by_fit)(seed) for seed in range(2))
    assert results == [(max(1, (os.cpu_count() or 1) // 2), {1})] * 2


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


# -- the same bits at every thread count ---------------------------------------------------------------
def conv_net() -> minidl.Sequential:
    """Every kind of Conv2D work: a first layer (weight gradient only), stride-1 convolutions with
    >= 16 channels (input gradient as a convolution), and a strided one (input gradient by col2im)."""
    return minidl.Sequential([Conv2D(16, 3, padding=1), ReLU(), Conv2D(16, 3, padding=1), BatchNorm2D(), ReLU(),
                              MaxPool2D(2), Conv2D(8, 3, stride=2), ReLU(), Flatten(), Dense(10), SoftmaxCE()],
                             input_shape=(3, 32, 32), seed=0)


def train_conv_net(n: int | None) -> list[np.ndarray]:
    minidl.set_num_threads(n)
    rng = np.random.default_rng(0)
    X, y = rng.random((48, 3, 32, 32), dtype=np.float32), rng.integers(0, 10, 48)
    model = conv_net()
    model.fit(X, y, optimizer=SGD(model.parameters(), lr=0.05, momentum=0.9), epochs=2, batch_size=16, verbose=0)
    return [p.data.copy() for p in model.parameters()] + [model.predict_proba(X[:20])]


def test_conv_layers_work_in_several_blocks_here():
    # what the bit-identity test below relies on: conv1's and conv2's products (forward, weight and
    # input gradient, K = 27 or 144 deep, 32 output rows of 32 * 16 columns) split into blocks
    for k in (27, 144):
        assert nb.block_rows(k, 32 * 16, 32) < 32


@pytest.mark.slow
def test_training_gives_the_same_bits_with_any_number_of_threads(monkeypatch):
    monkeypatch.setattr(nb, "PARALLEL_MIN_FLOPS", 0)  # every product of several blocks on the pool
    one = train_conv_net(1)
    for n in (2, 3):
        assert all(np.array_equal(a, b) for a, b in zip(one, train_conv_net(n))), n
    with threadpool_limits(2):  # BLAS's own setting outside fit changes nothing either
        assert all(np.array_equal(a, b) for a, b in zip(one, train_conv_net(None)))


@pytest.mark.slow
def test_a_blas_loaded_after_the_first_pin_is_pinned_too():
    # SciPy's own OpenBLAS arrives with scipy.linalg: a library imported after minidl first pinned
    # BLAS must be pinned as well, and put back.
    code = (
        "import minidl.threads as t\n"
        "from threadpoolctl import threadpool_info, threadpool_limits\n"
        "with t.blas_threads(): before = len(threadpool_info())\n"
        "import scipy.linalg\n"
        "assert len(threadpool_info()) > before, 'scipy.linalg brought no BLAS of its own'\n"
        "with threadpool_limits(2):\n"
        "    with t.blas_threads():\n"
        "        inside = [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']\n"
        "    after = [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']\n"
        "print(len(inside), max(inside), min(after))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) >= 1 and out[1:] == ["1", "2"]


def test_small_products_stay_in_the_calling_thread(monkeypatch):
    # Below nb.PARALLEL_MIN_FLOPS the blocks run where the call was made: OpenBLAS's tiny calls
    # do not run side by side, and waking a thread costs more than it saves.
    minidl.set_num_threads(2)
    monkeypatch.setattr(nb, "CONV_BLOCK", 1)  # 8 blocks
    seen = set()
    original = nb.im2col

    def spy(*args, **kwargs):
        seen.add(threading.get_ident())
        time.sleep(0.002)  # long enough blocks for the pool's thread to wake and take some
        return original(*args, **kwargs)

    monkeypatch.setattr(nb, "im2col", spy)
    x_pad = np.random.default_rng(0).random((3, 10, 10, 4)).astype(np.float32)
    weight = np.random.default_rng(1).random((4, 27)).astype(np.float32)
    nb.conv_forward(x_pad, weight, (3, 3), (1, 1), (8, 8))
    assert seen == {threading.get_ident()}
    monkeypatch.setattr(nb, "PARALLEL_MIN_FLOPS", 0)
    nb.conv_forward(x_pad, weight, (3, 3), (1, 1), (8, 8))
    assert len(seen) > 1


@pytest.mark.parametrize("items, per", [(1, 4), (5, 2), (8, 8), (9, 4), (7, 1)])
def test_map_ranges_covers_every_item_once_in_fixed_ranges_at_any_thread_count(items, per):
    seen = {}
    for n in (1, 2, 3):
        threads.set_num_threads(n)
        try:
            calls = []
            threads.map_ranges(lambda lo, hi, slot: calls.append((lo, hi, threading.get_ident())), items, per)
        finally:
            threads.set_num_threads(None)
        seen[n] = sorted((lo, hi) for lo, hi, _ in calls)
        if per >= items:  # one range: a plain call in the caller
            assert [ident for *_, ident in calls] == [threading.get_ident()]
    expected = [(lo, min(items, lo + per)) for lo in range(0, items, per)]
    assert seen[1] == seen[2] == seen[3] == expected
