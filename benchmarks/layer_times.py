"""Where a training step goes: each layer's forward and backward, minidl beside PyTorch.

    python benchmarks/layer_times.py --workload resnet-cifar --threads 2

A network of ``benchmarks/run.py`` (``--workload``: ``vgg-cifar``, ``resnet-cifar`` or ``lenet-b64``; the same
layers in both frameworks; minidl under each of its backends, ``--backends``), one batch of 64 random images
in float32. Each framework runs the whole network forward once in training mode to give every layer its real
input (for minidl, in the memory layout the layer below hands over); then each layer's ``forward`` and its
``backward`` (PyTorch: ``torch.autograd.grad`` for the layer's input and parameters) are timed alone, the
frameworks alternating, ``--repeats`` times. A residual block shows each of its inner layers (``where``:
``3.1`` is the block's layer 1, ``3.s0`` its shortcut's layer 0) and then the sum of the two paths (``add``:
forward ``F(x) + S(x)``, backward the sum of the two input gradients); PyTorch's block has its ReLU inside,
shown on the row of minidl's ReLU after the block.

minidl runs inside its backend's ``execution()``, as in ``fit`` (BLAS one thread, minidl's own threads for
what it splits). The table shows each layer's best time in milliseconds (the first round, a warm-up, left out;
backward: the best forward-and-backward less the best forward), the sums, the best time of a whole training
step without the update (the network's forward, the loss, its backward) and minidl / PyTorch. With one
thread the clock is CPU time (``time.process_time``), else wall time. Each minidl backend gets a ``split``
column: the share of its forward-and-backward time spent in work that minidl splits over its threads
(:class:`SplitClock`: ``map_blocks`` calls of several blocks; the rest runs on one core at any thread
count), and with more than one thread a ``cores`` column: the CPU time of those calls over their wall time,
~1 for a layer that runs on one core (a loaded machine lowers it: read it beside ``uptime``). The first
layer's backward leaves out the input gradient in both, as training does. No result is asserted anywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from run import limit_threads, minidl_model, torch_model

BATCH = 64
#: The workloads of ``benchmarks/run.py`` this script profiles, and their per-image input shape.
WORKLOADS = {"vgg-cifar": (3, 32, 32), "resnet-cifar": (3, 32, 32), "lenet-b64": (1, 28, 28)}

#: Seconds of rest before each minidl backend's round: the threads of the framework timed before (PyTorch's
#: OpenMP, a BLAS) may still be spinning, and their CPU time would count as minidl's in ``cores``.
SETTLE = 0.3

#: (name, where, forward, forward then backward): one row of the table
Step = tuple[str, str, Callable[[], object], Callable[[], object]]


def minidl_steps(workload: str, x: np.ndarray, g_last: np.ndarray) -> list[Step]:
    """The rows of a minidl network (the loss is apart), each called with the input and gradient it gets in
    training, under the backend set when called."""
    from minidl.backend import get_backend
    from minidl.layers import Residual

    rows: list[list[Any]] = []

    def leaf(layer: Any, x: np.ndarray, where: str, first: bool) -> tuple[np.ndarray, Callable]:
        row = [type(layer).__name__, where, lambda: layer.forward(x, training=True), None]
        rows.append(row)
        y = layer.forward(x, training=True)

        def back(g: np.ndarray) -> np.ndarray | None:
            step = layer.backward_params if first else layer.backward
            row[3] = lambda: (layer.forward(x, training=True), step(g))
            return None if first else layer.backward(g)  # every layer's real gradient, in its real layout
        return y, back

    def residual(block: Any, x: np.ndarray, where: str) -> tuple[np.ndarray, Callable]:
        out, back_body = chain(block.layers.layers, x, where + ".", False)
        short, back_short = (x, lambda g: g) if block.shortcut is None else chain(
            block.shortcut.layers, x, where + ".s", False)
        row = ["add", where, lambda: get_backend().add(out, short), None]
        rows.append(row)

        def back(g: np.ndarray) -> np.ndarray:
            dx_body, dx_short = back_body(g), back_short(g)
            row[3] = lambda: (get_backend().add(out, short), get_backend().add(dx_body, dx_short))
            return get_backend().add(dx_body, dx_short)
        return get_backend().add(out, short), back

    def chain(layers: Sequence[Any], x: np.ndarray, prefix: str, first: bool) -> tuple[np.ndarray, Callable]:
        backs = []
        for i, layer in enumerate(layers):
            where = f"{prefix}{i}"
            x, back = residual(layer, x, where) if isinstance(layer, Residual) else leaf(layer, x, where,
                                                                                           first and i == 0)
            backs.append(back)

        def back_all(g: np.ndarray) -> np.ndarray:
            for back in reversed(backs):
                g = back(g)
            return g
        return x, back_all

    _, back = chain(minidl_model(workload).layers, x, "", True)
    back(g_last)
    return [(name, where, forward, both) for name, where, forward, both in rows]


def minidl_whole_step(workload: str, x: np.ndarray, labels: np.ndarray) -> Callable[[], object]:
    """One training step of the whole network without the update, as ``fit`` runs it: forward, the loss and
    its gradient, backward (no gradient of the data)."""
    model = minidl_model(workload)

    def step() -> None:
        _, grad = model.loss.loss_and_grad(model.forward(x, training=True), labels)
        model.backward_params(grad)
    return step


def torch_whole_step(workload: str, x: np.ndarray, labels: np.ndarray) -> Callable[[], object]:
    """The same in PyTorch: forward, cross-entropy, ``backward``."""
    import torch

    model = torch_model(workload).train()
    tx, ty = torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss_fn(model(tx), ty).backward()
    return step


def torch_steps(workload: str, x: np.ndarray, g_last: np.ndarray) -> list[Step]:
    """The same for PyTorch's layers (the gradient arriving at each is ones, but the last layer's); a block of
    ``run.py``'s ResNet gives its inner layers, the add and its ReLU."""
    import torch
    from torch import nn

    model = torch_model(workload).train()
    modules: list[nn.Module] = []
    for module in model:  # run.py's AdaptiveAvgPool2d + Flatten are minidl's one GlobalAvgPool2D
        if isinstance(module, nn.Flatten) and modules and isinstance(modules[-1], nn.AdaptiveAvgPool2d):
            modules[-1] = nn.Sequential(modules[-1], module)
        else:
            modules.append(module)
    rows: list[Step] = []
    last = len(modules) - 1

    def timed_pair(name: str, where: str, fn: Callable[..., Any], inputs: list, params: list, g: Any) -> Any:
        inputs = [t.detach().requires_grad_(True) for t in inputs]
        y = fn(*inputs)
        wrt = inputs + params
        rows.append((name, where, lambda: fn(*inputs),
                     lambda: torch.autograd.grad(fn(*inputs), wrt, g if g is not None else torch.ones_like(y))))
        return y.detach()

    def layer(module: nn.Module, out: Any, where: str, first: bool, g: Any = None) -> Any:
        xin = out.detach().requires_grad_(not first)
        y = module(xin)
        wrt = ([xin] if not first else []) + list(module.parameters())
        g = torch.ones_like(y) if g is None else g
        both = ((lambda: torch.autograd.grad(module(xin), wrt, g)) if wrt else (lambda: module(xin)))
        name = type(module[0] if isinstance(module, nn.Sequential) else module).__name__
        rows.append((name, where, lambda: module(xin), both))
        return y.detach()

    out = torch.from_numpy(x)
    for i, module in enumerate(modules):
        if hasattr(module, "body") and hasattr(module, "shortcut"):  # run.py's residual Block
            body = out
            for j, inner in enumerate(module.body):
                body = layer(inner, body, f"{i}.{j}", False)
            short = out
            for j, inner in enumerate(module.shortcut):
                short = layer(inner, short, f"{i}.s{j}", False)
            total = timed_pair("add", str(i), torch.add, [body, short], [], None)
            out = timed_pair("ReLU", str(i), torch.relu, [total], [], None)
        else:
            out = layer(module, out, str(i), i == 0, torch.from_numpy(g_last) if i == last else None)
    return rows


class SplitClock:
    """Time spent in work minidl splits over its threads: :func:`minidl.threads.map_blocks` calls of more than
    one block that are not capped at one thread (both backends' kernels look it up at each call, so patching
    the module's function sees them all). The rest of a layer's time runs on one core whatever the thread
    count; nested calls count once."""

    def __init__(self, clock: Callable[[], float]) -> None:
        import minidl.threads

        self.clock, self.seconds, self.depth = clock, 0.0, 0
        original = minidl.threads.map_blocks

        def wrapper(fn: Any, count: int, max_threads: int | None = None) -> Any:
            if self.depth or count < 2 or max_threads == 1:
                return original(fn, count, max_threads)
            self.depth += 1
            start = self.clock()
            try:
                return original(fn, count, max_threads)
            finally:
                self.seconds += self.clock() - start
                self.depth -= 1
        minidl.threads.map_blocks = wrapper  # type: ignore[assignment]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=list(WORKLOADS), default="vgg-cifar", help="the network")
    parser.add_argument("--threads", type=int, default=None, help="threads for both frameworks (default: theirs)")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per layer and direction")
    parser.add_argument("--backends", nargs="+", default=None,
                        help="minidl backends to time, one column pair each (default: every one available)")
    args = parser.parse_args(argv)
    from minidl.backend import available_backends, get_backend, set_backend

    if args.threads is not None:
        limit_threads(args.threads)
    one_core = args.threads == 1
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, *WORKLOADS[args.workload]), dtype=np.float32)
    g_last = rng.standard_normal((BATCH, 10), dtype=np.float32) / BATCH
    labels = rng.integers(0, 10, BATCH)
    whole: dict[str, Callable[[], object]] = {}
    frameworks: dict[str, list[Step]] = {}
    for backend in args.backends or available_backends():
        set_backend(backend)
        with get_backend().execution():
            frameworks[backend] = minidl_steps(args.workload, x, g_last)
        whole[backend] = minidl_whole_step(args.workload, x, labels)
    try:
        frameworks["PyTorch"] = torch_steps(args.workload, x, g_last)
        whole["PyTorch"] = torch_whole_step(args.workload, x, labels)
    except ImportError:
        print("(PyTorch is not installed: minidl's columns only)")
    counts = {k: len(v) for k, v in frameworks.items()}
    if len(set(counts.values())) != 1:
        raise SystemExit(f"the frameworks' rows do not line up: {counts}")

    # per framework, row, direction: the clock's seconds of each call; and CPU, wall seconds of the calls
    times = {k: [[[], []] for _ in v] for k, v in frameworks.items()}
    usage = {k: np.zeros((len(v), 3)) for k, v in frameworks.items()}  # CPU, wall, split seconds of fwd+bwd
    split = SplitClock(time.process_time if one_core else time.perf_counter)
    whole_times: dict[str, list[float]] = {k: [] for k in whole}

    def timed(fn: Callable[[], object], name: str, i: int, direction: int, first_round: bool) -> None:
        cpu, wall, parallel = time.process_time(), time.perf_counter(), split.seconds
        fn()
        cpu, wall, parallel = time.process_time() - cpu, time.perf_counter() - wall, split.seconds - parallel
        times[name][i][direction].append(cpu if one_core else wall)
        if direction and not first_round:
            usage[name][i] += (cpu, wall, parallel)

    for r in range(args.repeats + 1):  # the first round warms up and is dropped below
        for name, steps in frameworks.items():
            if name != "PyTorch":
                set_backend(name)
                time.sleep(SETTLE)
            with get_backend().execution() if name != "PyTorch" else contextlib.nullcontext():
                for i, (_, _, forward, both) in enumerate(steps):
                    timed(forward, name, i, 0, r == 0)
                    timed(both, name, i, 1, r == 0)  # backward needs its forward's cache (or graph)
                start = time.process_time() if one_core else time.perf_counter()
                whole[name]()
                whole_times[name].append((time.process_time() if one_core else time.perf_counter()) - start)
    # backward: the best forward-and-backward less the best forward
    best = {k: [[min(f[1:]) * 1e3, (min(b[1:]) - min(f[1:])) * 1e3] for f, b in v] for k, v in times.items()}
    columns = list(best)
    minidl_columns = [c for c in columns if c != "PyTorch"]
    cores = [] if one_core else minidl_columns
    print(f"{args.workload}, batch {BATCH}, float32, {args.threads or 'default'} threads; best ms of {args.repeats} "
          f"({'CPU' if one_core else 'wall'} time){'; cores: CPU / wall time of fwd+bwd' if cores else ''}")
    print(f"{'layer':18s} {'where':6s}" + "".join(f" {c + ' fwd':>12s} {'bwd':>7s}" for c in columns)
          + "".join(f" {c[:5] + ' split':>11s}" for c in minidl_columns)
          + "".join(f" {c[:5] + ' cores':>11s}" for c in cores))
    totals = np.zeros(2 * len(columns))
    for i, (name, where, _, _) in enumerate(frameworks[columns[0]]):
        row = [t for c in columns for t in best[c][i]]
        totals += row
        print(f"{i:2d} {name:15s} {where:6s}" + "".join(f" {row[2 * k]:12.2f} {row[2 * k + 1]:7.2f}"
                                                   for k in range(len(columns)))
              + "".join(f" {usage[c][i][2] / usage[c][i][int(not one_core)]:11.0%}" for c in minidl_columns)
              + "".join(f" {usage[c][i][0] / usage[c][i][1]:11.2f}" for c in cores))
    print(f"{'sum':25s}" + "".join(f" {totals[2 * k]:12.2f} {totals[2 * k + 1]:7.2f}" for k in range(len(columns)))
          + "".join(f" {usage[c][:, 2].sum() / usage[c][:, int(not one_core)].sum():11.0%}" for c in minidl_columns)
          + "".join(f" {usage[c][:, 0].sum() / usage[c][:, 1].sum():11.2f}" for c in cores))
    steps = {k: min(v[1:]) * 1e3 for k, v in whole_times.items()}
    print(f"{'whole step':25s}" + "".join(f" {steps[c]:20.2f}" for c in columns)
          + "   (forward, loss, backward of the whole network, as in training; no update)")
    if "PyTorch" in best:
        t = 2 * columns.index("PyTorch")
        for k, c in enumerate(columns[:-1]):
            both = totals[2 * k:2 * k + 2].sum() / totals[t:t + 2].sum()
            print(f"minidl {c} / PyTorch: forward {totals[2 * k] / totals[t]:.2f}, backward "
                  f"{totals[2 * k + 1] / totals[t + 1]:.2f}, both {both:.2f}; whole step "
                  f"{steps[c] / steps['PyTorch']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
