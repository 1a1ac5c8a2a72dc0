"""What one fused Adam step costs under each backend, on the sequence rows' parameters.

    python benchmarks/adam_times.py --threads 1 --rounds 5

For each model of ``benchmarks/run.py``'s sequence rows (``--workloads``), an ``Adam`` over its parameters
(``fused``, as ``fit`` makes it) with random gradients; then, backends alternating (``--backends``) for
``--rounds`` rounds, ``--steps`` calls of ``opt.step()`` (the whole update: moments, step and each
parameter's ``.data -= step``) and as many of the backend's ``adam_update`` alone on the flat vectors. Each
figure is the round's CPU time (``time.process_time``, every thread of the process) per call, in
microseconds; the table shows every round's figure so that a drift of the machine shows. No result is
asserted.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from run import SEQUENCE_WORKLOADS, limit_threads, minidl_sequence_model


def per_call(fn, steps: int) -> float:
    """CPU microseconds per call of ``fn`` over ``steps`` calls."""
    start = time.process_time()
    for _ in range(steps):
        fn()
    return (time.process_time() - start) / steps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", nargs="+", default=["lstm-rows", "gru-text"], choices=SEQUENCE_WORKLOADS)
    parser.add_argument("--backends", nargs="+", default=["numpy", "fast"])
    parser.add_argument("--threads", type=int, default=1, help="minidl's threads and BLAS's (default 1)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    limit_threads(args.threads)

    import minidl
    from minidl.backend import get_backend, set_backend
    from minidl.optim import Adam

    minidl.set_num_threads(args.threads)
    for name in args.workloads:
        model = minidl_sequence_model(name)
        params = model.parameters()
        opt = Adam(params)
        rng = np.random.default_rng(0)
        for p in params:
            p.grad[...] = rng.standard_normal(p.grad.shape) * 1e-2
        opt.step()  # lays out the moments
        flat, moments = opt._flat.groups[0][0], opt._flat._moments[0]
        out = np.empty_like(flat)
        m, v = moments["exp_avg"][0], moments["exp_avg_sq"][0]
        rows: dict[str, list[tuple[float, float]]] = {b: [] for b in args.backends}
        for round_ in range(args.rounds + 1):  # round 0: warm-up (compiles or loads the kernel)
            for backend in args.backends:
                set_backend(backend)
                update = get_backend().adam_update
                full = per_call(opt.step, args.steps)
                alone = per_call(lambda: update(flat, m, v, None, out, 1e-3, (0.9, 0.999), 1e-8, 3), args.steps)
                if round_:
                    rows[backend].append((full, alone))
        print(f"{name}: {flat.size:,} {flat.dtype} parameters in {len(params)} arrays, {args.threads} thread(s), "
              f"CPU µs per call, rounds in order")
        for backend, figures in rows.items():
            print(f"  {backend:6s} step()       " + " ".join(f"{f:7.1f}" for f, _ in figures))
            print(f"  {backend:6s} adam_update  " + " ".join(f"{a:7.1f}" for _, a in figures))
    set_backend(None)


if __name__ == "__main__":
    main()
