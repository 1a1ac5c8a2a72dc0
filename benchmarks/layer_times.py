"""Where a vgg-cifar training step goes: each layer's forward and backward, minidl beside PyTorch.

    python benchmarks/layer_times.py --threads 1

The network of ``benchmarks/run.py``'s ``vgg-cifar`` (the same layers in both frameworks; minidl under each
of its backends, ``--backends``), one
batch of 64 random 3x32x32 images in float32. Each framework runs the whole network forward once
in training mode to give every layer its real input (for minidl, in the memory layout the layer
below hands over); then each layer's ``forward`` and its ``backward`` (PyTorch:
``torch.autograd.grad`` for the layer's input and parameters) are timed alone,
the two frameworks alternating, ``--repeats`` times. The table shows each layer's best time in
milliseconds (the first round, a warm-up, left out; backward: the best forward-and-backward
less the best forward), the sums, and minidl / PyTorch. With one thread the clock is CPU time
(``time.process_time``), else wall time. The first layer's backward leaves out the input gradient
in both, as training does. No result is asserted anywhere.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import numpy as np

from run import limit_threads, minidl_model, torch_model

BATCH = 64


def minidl_steps(x: np.ndarray, g_last: np.ndarray) -> list[tuple[str, Callable[[], object], Callable[[], object]]]:
    """(name, forward, forward then backward) per minidl layer (the loss is apart), each called with the
    input and gradient it gets in training, under the backend set when called."""
    model = minidl_model("vgg-cifar")
    body = model.layers  # the loss is not among them
    inputs, out = [], x
    for layer in body:
        inputs.append(out)
        out = layer.forward(out, training=True)
    grads, g = [None] * len(body), g_last
    for i in range(len(body) - 1, -1, -1):  # every layer's real gradient, in its real layout
        grads[i] = g
        g = body[i].backward(g) if i else None
    steps = []
    for i, layer in enumerate(body):
        back = layer.backward_params if i == 0 else layer.backward
        steps.append((type(layer).__name__,
                      lambda layer=layer, x=inputs[i]: layer.forward(x, training=True),
                      lambda layer=layer, back=back, x=inputs[i], g=grads[i]: (layer.forward(x, training=True), back(g))))
    return steps


def torch_steps(x: np.ndarray, g_last: np.ndarray) -> list[tuple[str, Callable[[], object], Callable[[], object]]]:
    """The same for PyTorch's layers (the gradient arriving at each is ones, but the last layer's)."""
    import torch

    model = torch_model("vgg-cifar").train()
    steps, out = [], torch.from_numpy(x)
    for i, layer in enumerate(model):
        xin = out.detach().requires_grad_(i > 0)
        y = layer(xin)
        wrt = ([xin] if i > 0 else []) + [p for p in layer.parameters()]
        g = torch.from_numpy(g_last) if i == len(model) - 1 else torch.ones_like(y)
        if wrt:
            both = (lambda layer=layer, xin=xin, wrt=wrt, g=g: torch.autograd.grad(layer(xin), wrt, g))
        else:
            both = (lambda layer=layer, xin=xin: layer(xin))
        steps.append((type(layer).__name__, lambda layer=layer, xin=xin: layer(xin), both))
        out = y
    return steps


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="threads for both frameworks (default: theirs)")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per layer and direction")
    parser.add_argument("--backends", nargs="+", default=None,
                        help="minidl backends to time, one column pair each (default: every one available)")
    args = parser.parse_args(argv)
    from minidl.backend import available_backends, set_backend

    if args.threads is not None:
        limit_threads(args.threads)
    clock = time.process_time if args.threads == 1 else time.perf_counter
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 3, 32, 32), dtype=np.float32)
    g_last = rng.standard_normal((BATCH, 10), dtype=np.float32) / BATCH
    frameworks = {}
    for backend in args.backends or available_backends():
        set_backend(backend)
        frameworks[backend] = minidl_steps(x, g_last)
    try:
        frameworks["PyTorch"] = torch_steps(x, g_last)
    except ImportError:
        print("(PyTorch is not installed: minidl's columns only)")

    def timed(fn: Callable[[], object]) -> float:
        start = clock()
        fn()
        return clock() - start

    times: dict[str, list[list[list[float]]]] = {k: [[[], []] for _ in v] for k, v in frameworks.items()}
    for _ in range(args.repeats + 1):  # the first round warms up and is dropped below
        for name, steps in frameworks.items():
            if name != "PyTorch":
                set_backend(name)
            for i, (_, forward, both) in enumerate(steps):
                times[name][i][0].append(timed(forward))
                times[name][i][1].append(timed(both))  # backward needs its forward's cache (or graph)
    # backward: the best forward-and-backward less the best forward
    best = {k: [[min(f[1:]) * 1e3, (min(b[1:]) - min(f[1:])) * 1e3] for f, b in v] for k, v in times.items()}
    columns = list(best)
    names = [n for n, _, _ in frameworks[columns[0]]]
    print(f"vgg-cifar, batch {BATCH}, float32, {args.threads or 'default'} threads; "
          f"best ms of {args.repeats} ({'CPU' if clock is time.process_time else 'wall'} time)")
    print(f"{'layer':16s}" + "".join(f" {c + ' fwd':>12s} {'bwd':>7s}" for c in columns))
    totals = np.zeros(2 * len(columns))
    for i, name in enumerate(names):
        row = [t for c in columns for t in best[c][i]]
        totals += row
        print(f"{i:2d} {name:13s}" + "".join(f" {row[2 * k]:12.2f} {row[2 * k + 1]:7.2f}" for k in range(len(columns))))
    print(f"{'sum':16s}" + "".join(f" {totals[2 * k]:12.2f} {totals[2 * k + 1]:7.2f}" for k in range(len(columns))))
    if "PyTorch" in best:
        t = 2 * columns.index("PyTorch")
        for k, c in enumerate(columns[:-1]):
            print(f"minidl {c} / PyTorch: forward {totals[2 * k] / totals[t]:.2f}, backward "
                  f"{totals[2 * k + 1] / totals[t + 1]:.2f}, both {totals[2 * k:2 * k + 2].sum() / totals[t:t + 2].sum():.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
