"""Where a sequence row's training step goes: each layer's forward and backward, the loss, Adam, the backend's ops.

    python benchmarks/seq_layer_times.py --threads 1 2 [--workload char-gpt|lstm-rows|gru-text]

A sequence row of ``benchmarks/run.py`` (by default ``char-gpt``: the ``char_gpt`` preset, T = 128, batch 32,
vocabulary 103; ``lstm-rows``, ``gru-text``: see that module), Adam, float32, trained on that row's batches as it
does (``forward``, ``loss_and_grad``,
``backward_params``, ``Adam.step`` inside :func:`minidl.threads.blas_threads`). Every layer's ``forward``
and ``backward`` (containers: their own part, their children's left out), the loss, the optimizer, each
backend operation (inclusive) and the time inside parallel regions (minidl's ``map_blocks``, Numba's
``prange`` kernels, the fast backend's sequence operations; the rest runs on one core at any thread count)
are timed by the wall clock and by the process's CPU time (all its threads) over ``--steps`` steps after two
warm-up steps, for each thread count in ``--threads``.

The columns per thread count: wall ms per step and CPU ms per step (all threads). At 2 threads a part whose
CPU time is near its wall time runs on one core: that is what the second core cannot help (on a quiet
machine; under load, read the CPU times at 1 thread). PyTorch's per-module times are beside
minidl's (``--torch``; forward by module hooks, backward by the autograd hooks of the module's input),
wall time. No result is asserted anywhere.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from run import SEQ_STEPS, SEQUENCE_WORKLOADS, limit_threads, minidl_sequence_model, sequence_data


class Clock:
    """Accumulated (wall, cpu) seconds per key; nested timers each count their own inclusive time."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.order: list[str] = []

    def wrap(self, key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        if key not in self.order:
            self.order.append(key)

        def timed(*args: Any, **kwargs: Any) -> Any:
            w, c = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.wall[key] += time.perf_counter() - w
                self.cpu[key] += time.process_time() - c
        return timed

    def reset(self) -> None:
        self.wall.clear()
        self.cpu.clear()


def leaves(layer: Any, prefix: str) -> list[tuple[str, Any, list[Any]]]:
    """(name, layer, its children) for ``layer`` and everything inside it, depth first."""
    children = list(getattr(layer, "layers", []) or [])
    if hasattr(children, "layers"):  # a Residual's body is a Sequential
        children = [children]
    out = [(prefix, layer, children)]
    for i, child in enumerate(children):
        out += leaves(child, f"{prefix}.{i}:{type(child).__name__}")
    return out


def instrument(model: Any, opt: Any, clock: Clock) -> None:
    from minidl.backend import get_backend

    for name, layer, _ in leaves(model, "model")[1:]:
        for method in ("forward", "backward", "backward_params"):
            if hasattr(layer, method):
                setattr(layer, method, clock.wrap(f"{name} {method.replace('_params', '')}", getattr(layer, method)))
    model.loss.loss_and_grad = clock.wrap("loss", model.loss.loss_and_grad)
    opt.step = clock.wrap("optimizer step", opt.step)
    import minidl.threads
    from minidl.backend import fast

    depth = [0]

    def outermost(fn: Callable[..., Any]) -> Callable[..., Any]:
        timed = clock.wrap("parallel regions (map_blocks, prange)", fn)

        def call(*args: Any, **kwargs: Any) -> Any:
            depth[0] += 1
            try:
                return (timed if depth[0] == 1 else fn)(*args, **kwargs)
            finally:
                depth[0] -= 1
        return call

    minidl.threads.map_blocks = outermost(minidl.threads.map_blocks)
    fast._blocks = outermost(fast._blocks)
    for name in ("gelu", "layer_norm", "layer_norm_backward", "attention", "attention_backward"):
        setattr(fast.FastBackend, name, outermost(getattr(fast.FastBackend, name)))  # Numba prange or map_blocks
    backend = get_backend()
    for op in ("linear", "linear_backward", "linear_weight_grad", "gelu", "gelu_backward", "layer_norm",
               "layer_norm_backward", "attention", "attention_backward", "embedding_backward", "rnn_forward",
               "rnn_backward", "adam_update"):
        setattr(backend, op, clock.wrap(f"backend {op}", getattr(backend, op)))


def self_times(model: Any, clock: Clock, table: dict[str, float]) -> dict[str, float]:
    """``table`` with each container's children's time taken off its own."""
    out = dict(table)
    for name, _, children in leaves(model, "model")[1:]:
        for kind in ("forward", "backward"):
            for i, child in enumerate(children):
                child_key = f"{name}.{i}:{type(child).__name__} {kind}"
                if f"{name} {kind}" in out and child_key in table:
                    out[f"{name} {kind}"] -= table[child_key]
    return out


def minidl_profile(workload: str, threads: int, steps: int, tokens: list[np.ndarray], targets: list[np.ndarray]
                   ) -> tuple[list[str], dict, dict]:
    import minidl
    from minidl.optim import Adam
    from minidl.threads import blas_threads

    limit_threads(threads)
    model = minidl_sequence_model(workload)
    opt = Adam(model.parameters(), lr=1e-3)
    tokens = [x.astype(model.dtype) if x.dtype.kind == "f" else x for x in tokens]
    clock = Clock()
    instrument(model, opt, clock)

    def step(s: int) -> None:
        x, y = tokens[s % len(tokens)], targets[s % len(targets)]
        _, grad = model.loss.loss_and_grad(model.forward(x, training=True), y)
        model.backward_params(grad)
        opt.step()

    with blas_threads():
        for s in range(2):
            step(s)
        clock.reset()
        w, c = time.perf_counter(), time.process_time()
        for s in range(steps):
            step(s)
        clock.wall["whole step"] = time.perf_counter() - w
        clock.cpu["whole step"] = time.process_time() - c
    minidl.set_num_threads(None)
    return clock.order + ["whole step"], self_times(model, clock, clock.wall), self_times(model, clock, clock.cpu)


def torch_profile(workload: str, threads: int, steps: int, tokens: list[np.ndarray], targets: list[np.ndarray]
                  ) -> dict[str, float]:
    """Wall seconds per module (forward, and backward through its input's gradient hook), the loss, Adam."""
    import torch
    from run import torch_sequence_model

    torch.set_num_threads(threads)
    model = torch_sequence_model(workload)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    times: dict[str, float] = defaultdict(float)
    starts: dict[str, float] = {}
    for name, module in model.named_modules():
        if not name or list(module.children()):
            continue

        def pre(m: Any, args: Any, name: str = name) -> None:
            starts[name] = time.perf_counter()

        def post(m: Any, args: Any, out: Any, name: str = name) -> None:
            times[f"{name} forward"] += time.perf_counter() - starts[name]

        def bpre(m: Any, grad: Any, name: str = name) -> None:
            starts[name + "b"] = time.perf_counter()

        def bpost(m: Any, gin: Any, gout: Any, name: str = name) -> None:
            times[f"{name} backward"] += time.perf_counter() - starts[name + "b"]

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)
        module.register_full_backward_pre_hook(bpre)
        module.register_full_backward_hook(bpost)
    tx, ty = [torch.from_numpy(x) for x in tokens], [torch.from_numpy(y.astype(np.int64)) for y in targets]
    for s in range(steps + 2):
        if s == 2:
            times.clear()
            whole = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(tx[s % len(tx)])
        w = time.perf_counter()
        loss = loss_fn(out.reshape(-1, out.shape[-1]), ty[s % len(ty)].reshape(-1))
        loss.backward()
        times["loss + backward"] += time.perf_counter() - w
        w = time.perf_counter()
        opt.step()
        times["optimizer step"] += time.perf_counter() - w
    times["whole step"] = time.perf_counter() - whole
    return times


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to profile")
    parser.add_argument("--workload", choices=SEQUENCE_WORKLOADS, default="char-gpt", help="the row of run.py")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per thread count")
    parser.add_argument("--min-ms", type=float, default=0.3, help="leave out rows below this (wall ms per step)")
    parser.add_argument("--torch", action="store_true", help="also PyTorch's per-module wall times")
    args = parser.parse_args(argv)
    X, y = sequence_data(args.workload)
    tokens, targets = np.array_split(X, SEQ_STEPS), np.array_split(y, SEQ_STEPS)  # run.py's batches
    results = {t: minidl_profile(args.workload, t, args.steps, tokens, targets) for t in args.threads}
    order = results[args.threads[0]][0]
    print(f"{args.workload} training step (batch {len(tokens[0])}, float32), ms per step over {args.steps} steps; "
          "containers: their own part")
    print(f"{'part':58s}" + "".join(f" {f'{t} thr wall':>11s} {'cpu':>7s}" for t in args.threads))
    for key in sorted(order, key=lambda k: (k.startswith("backend"), k.startswith("parallel"), k == "whole step")):
        walls = [results[t][1].get(key, 0.0) * 1e3 / args.steps for t in args.threads]
        if max(walls) < args.min_ms and key != "whole step":
            continue
        cells = "".join(f" {w:11.2f} {results[t][2].get(key, 0.0) * 1e3 / args.steps:7.2f}"
                        for t, w in zip(args.threads, walls, strict=True))
        print(f"{key[:58]:58s}{cells}")
    if args.torch:
        for t in args.threads:
            times = torch_profile(args.workload, t, args.steps, tokens, targets)
            print(f"\nPyTorch, {t} threads, wall ms per step")
            for key, value in times.items():
                if value * 1e3 / args.steps >= args.min_ms or key == "whole step":
                    print(f"{key[:58]:58s} {value * 1e3 / args.steps:9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
