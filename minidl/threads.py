"""How many threads minidl uses, and why its results do not depend on that number.

minidl's heavy work is matrix products. Left to itself, NumPy's BLAS (OpenBLAS or MKL) splits
each product over one thread per core, and that has two costs:

- **Results depend on the thread count.** OpenBLAS returns different last bits for the same
  operands with 1 and 2 threads, which training amplifies (issue 9: ``minidl digits --preset
  digits_resnet --seed 0`` ended at 0.9944 test accuracy with 2 threads, 0.9972 with one).
- **Its threads busy-wait for each other.** When another process keeps a core busy, every
  product waits for the thread that shares a core (issue 9: 2 threads took 2.4x one's time).

So while ``fit``, ``evaluate`` and ``predict`` run (:func:`blas_threads`), BLAS gets **one
thread**, put back as it was when they return, and minidl spreads the work itself where it is
big: the Conv2D kernels (:mod:`minidl.backend.numpy`) cut their products into blocks of output rows
whose boundaries depend only on the shapes, never on the thread count, and :func:`map_blocks`
runs those blocks on a small pool of threads. Every block computes what it would compute alone
and sums across blocks run in block order, so **training gives the same bits with any number of
threads**, the same as with ``OPENBLAS_NUM_THREADS=1``. The pool's threads sleep on a queue
between blocks (nothing spins while another process needs the core), and a block that one
thread cannot start is taken by the next free one. Measured in ``docs/benchmarks.md``: the same
SHA-256 of the weights with 1, 2 and 3 threads as before this pool with ``OPENBLAS_NUM_THREADS=1``;
with one core kept busy elsewhere, 0.52-1.08x the one-thread time (``benchmarks/run.py --contended``).

How many threads (:func:`get_num_threads`):

1. ``set_num_threads(n)`` was called (or ``minidl digits --threads n``): ``n``.
2. Otherwise ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` or ``OMP_NUM_THREADS``, the first one
   set to a positive number: the user's thread budget (scikit-learn's joblib workers set these
   to share the cores, so ``GridSearchCV(n_jobs=2)`` on 2 cores runs one thread per worker).
3. Otherwise the CPUs this process may run on (``os.sched_getaffinity``, else ``os.cpu_count``).

Example::

    import minidl
    minidl.set_num_threads(1)      # everything in the calling thread
    minidl.set_num_threads(None)   # back to the default
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["set_num_threads", "get_num_threads", "blas_threads", "map_blocks", "map_ranges", "ENV_VARS"]

#: The environment variables through which users (and joblib's workers) set a thread budget, in
#: the order BLAS libraries read them.
ENV_VARS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")
#: The pool never holds more threads than this, whatever is asked (threads beyond the cores only sleep).
MAX_POOL = 64

T = TypeVar("T")

_requested: int | None = None  # set_num_threads
# (len(sys.modules) when found, threadpoolctl's controllers of the loaded BLAS libraries)
_blas: tuple[int, list] = (-1, [])
_lock = threading.Lock()  # guards the BLAS pin's count and the pool's creation
_pinned = 0  # blas_threads blocks open in this process (nested or in other threads)
_saved: list = []  # (controller, thread count) of each BLAS library before the outermost block
_pool: ThreadPoolExecutor | None = None


def set_num_threads(n: int | None) -> None:
    """Use ``n`` threads in ``fit``, ``evaluate`` and ``predict`` (``None``: the default, see the module).

    Args:
        n: a positive int, or ``None``.

    Example::

        >>> import minidl
        >>> minidl.set_num_threads(1)
        >>> minidl.get_num_threads()
        1
        >>> minidl.set_num_threads(None)   # back to the default
    """
    global _requested
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"set_num_threads: n must be a positive int or None, got {n!r}")
    _requested = n


def get_num_threads() -> int:
    """The number of threads minidl's kernels use now: the :func:`set_num_threads` value, else the
    environment's thread budget, else the CPUs this process may run on.

    Example::

        >>> import minidl
        >>> minidl.get_num_threads() >= 1
        True
    """
    if _requested is not None:
        return _requested
    for var in ENV_VARS:
        try:
            n = int(os.environ.get(var, "").split(",")[0])  # OMP's "4,2" (per nesting level): the outer level
        except ValueError:
            continue
        if n >= 1:
            return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _controllers() -> list:
    # Found again whenever modules were imported since: an import may load another BLAS (SciPy's own
    # OpenBLAS arrives with scipy.linalg), which would otherwise keep its threads. A scan costs ~1 ms.
    global _blas
    if _blas[0] != len(sys.modules):
        from threadpoolctl import ThreadpoolController  # a scikit-learn dependency

        _blas = (len(sys.modules), ThreadpoolController().select(user_api="blas").lib_controllers)
    return _blas[1]


@contextlib.contextmanager
def blas_threads() -> Iterator[None]:
    """One BLAS thread for the duration of the block, then each library's count as it was.

    Blocks may nest and may run in several threads at once: the first to open pins BLAS, the
    last to close puts it back (BLAS's thread count is one setting for the whole process).
    """
    global _pinned, _saved
    with _lock:
        if _pinned == 0:
            _saved = [(c, c.get_num_threads()) for c in _controllers()]  # the ones pinned are the ones put back
            for c, n in _saved:
                if n != 1:
                    c.set_num_threads(1)
                    if c.get_num_threads() != 1:
                        _warn_unpinned(c.get_num_threads())
        _pinned += 1
    try:
        yield
    finally:
        with _lock:
            _pinned -= 1
            if _pinned == 0:
                for c, n in _saved:
                    if n != 1:
                        c.set_num_threads(n)


_warned = False


def _warn_unpinned(n: int) -> None:
    # Measured with OpenBLAS 0.3.31 (pthreads): once its threads have run, a thread count set from any
    # thread but the main one is ignored.
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(f"minidl: BLAS kept {n} threads instead of 1 (OpenBLAS ignores a thread count set outside "
                      "the main thread once its own threads have run); results can differ in the last bits from "
                      "a run in the main thread. OPENBLAS_NUM_THREADS=1 gives the same bits everywhere.",
                      RuntimeWarning, stacklevel=4)


def _executor() -> ThreadPoolExecutor:
    """The process's pool, made on first use. Its threads start when work needs them and then wait on
    the pool's queue; a smaller :func:`get_num_threads` later just leaves some of them asleep."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(MAX_POOL, thread_name_prefix="minidl")
        return _pool


def _forget_pool_after_fork() -> None:
    # A forked child (multiprocessing, loky's fallback) has only the forking thread: the parent's pool
    # threads are gone and its locks may be held by them. Start afresh.
    global _pool, _lock, _pinned
    _pool, _lock, _pinned = None, threading.Lock(), 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def map_ranges(fn: Callable[[int, int, int], object], items: int, per: int) -> None:
    """``fn(lo, hi, slot)`` for the ranges ``[lo, hi)`` of ``per`` consecutive items (the last one shorter) that
    cover ``items``, spread over minidl's threads as :func:`map_blocks` spreads blocks.

    The ranges depend on ``items`` and ``per`` only, so work cut this way gives the same bits at any thread
    count. A single range is one plain call in the caller: batch-1 steps pay for no pool machinery.

    Args:
        fn: called once per range with its first item, one past its last, and the thread's slot.
        items: how many items (channels, rows, elements) to cover.
        per: items per range (at least 1).

    Shape:
        - no arrays: ranges of integers.

    Example::

        >>> seen = []
        >>> map_ranges(lambda lo, hi, slot: seen.append((lo, hi)), 5, 2)
        >>> sorted(seen)
        [(0, 2), (2, 4), (4, 5)]
    """
    if per >= items:
        fn(0, items, 0)
        return
    map_blocks(lambda b, slot: fn(b * per, min(items, (b + 1) * per), slot), -(-items // per))


def map_blocks(fn: Callable[[int, int], T], count: int, max_threads: int | None = None) -> list[T]:
    """``[fn(0, slot), fn(1, slot), ..., fn(count - 1, slot)]``, the calls spread over :func:`get_num_threads` threads.

    ``slot`` (0 to threads - 1) names the thread running the call, for per-thread scratch arrays:
    calls with the same slot never run at the same time. The calling thread takes blocks too; each
    thread takes the next block not yet taken, so a thread the machine delays holds up one block
    at most. Which thread computes a block changes from run to run; the results do not, as long as
    ``fn(i, slot)``'s value does not depend on ``slot``. With one thread or one block, a plain loop
    in the caller. BLAS runs one thread while the pool works (within ``fit`` it already does).
    An exception in any call is raised here after every started call has returned. ``max_threads``
    caps the thread count for work too small to gain from more.
    """
    threads = min(get_num_threads(), count, MAX_POOL, max_threads or MAX_POOL)
    if threads <= 1:
        return [fn(i, 0) for i in range(count)]
    results: list = [None] * count
    errors: list[BaseException] = []
    state = {"next": 0, "running": 0, "closed": False}  # the next block nobody has taken; blocks being computed
    changed = threading.Condition()

    def drain(slot: int) -> None:
        while True:
            with changed:
                if state["closed"] or state["next"] >= count:
                    return
                i = state["next"]
                state["next"] += 1
                state["running"] += 1
            try:
                results[i] = fn(i, slot)
            except BaseException as error:
                with changed:
                    errors.append(error)
                    state["closed"] = True  # nobody takes another block
            finally:
                with changed:
                    state["running"] -= 1
                    changed.notify_all()

    with blas_threads():
        for slot in range(1, threads):
            _executor().submit(drain, slot)
        drain(0)
        # Wait for the blocks being computed, not for the helpers: one that wakes after the caller has
        # taken every block finds none left and does nothing (a wake-up costs ~100 µs in a VM).
        with changed:
            state["closed"] = True
            changed.wait_for(lambda: state["running"] == 0)
    if errors:
        raise errors[0]
    return results
