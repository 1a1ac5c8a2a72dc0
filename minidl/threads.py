"""How many BLAS threads minidl uses: ``set_num_threads(n)``, and a default that is safe on a shared machine.

minidl's heavy work is NumPy's BLAS (OpenBLAS or MKL) multiplying matrices. BLAS starts one thread
per core and its threads busy-wait for each other; when another process keeps a core busy, every
product waits for the thread that shares a core, and two threads run *slower* than one
(``minidl digits --preset digits_cnn``: 8.2 s with one thread, 19.9 s with two, one core busy).

The policy, applied while ``fit``, ``evaluate`` and ``predict`` run (:func:`blas_threads`), and put
back as it was when they return:

1. ``set_num_threads(n)`` was called: ``n`` threads.
2. Otherwise, if the user chose a BLAS thread count — ``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``
   or ``MKL_NUM_THREADS`` in the environment (scikit-learn's joblib workers set these to share the
   cores), or a ``threadpoolctl.threadpool_limits`` around the call — minidl leaves BLAS alone.
3. Otherwise one thread per core that other processes leave idle, measured from ``/proc/stat``
   (all CPUs' busy time minus this process's own) since the previous measurement, at most every
   :data:`RECHECK_SECONDS`, also while training; the first time from the 1-minute load average.
   At least one. On an idle 2-core machine that is two threads, with one core busy elsewhere one.
   Without ``/proc/stat`` the load average alone decides; without either, BLAS keeps its default.

Example::

    import minidl
    minidl.set_num_threads(1)      # always one thread
    minidl.set_num_threads(None)   # back to the default policy
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

__all__ = ["set_num_threads", "get_num_threads", "blas_threads", "recheck", "idle_cores", "RECHECK_SECONDS"]

#: While a ``blas_threads`` block runs, the idle-core count is measured again after this many seconds.
RECHECK_SECONDS = 1.0
#: The environment variables through which users (and joblib's workers) choose BLAS threads.
ENV_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

_requested: int | None = None  # set_num_threads
_blas = None  # threadpoolctl's controllers of the loaded BLAS libraries, found on first use
_startup_threads: int | None = None  # what BLAS used before minidl touched it
_active = 0  # nesting depth of blas_threads blocks
_following = False  # the outermost block applies the default policy (and rechecks it)
_last_check = 0.0
_cpu_sample: tuple[float, float, float] | None = None  # (monotonic time, busy seconds of all CPUs, own CPU seconds)
_decision: int | None = None  # the default policy's last answer, and when it was taken
_decided_at = -float("inf")


def set_num_threads(n: int | None) -> None:
    """Use ``n`` BLAS threads in ``fit``, ``evaluate`` and ``predict`` (``None``: the default policy).

    Args:
        n: a positive int, or ``None`` to let minidl choose (one thread per idle core).
    """
    global _requested
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"set_num_threads: n must be a positive int or None, got {n!r}")
    _requested = n


def get_num_threads() -> int | None:
    """The thread count set by :func:`set_num_threads`, or ``None`` when the default policy applies."""
    return _requested


def _controllers():
    global _blas, _startup_threads
    if _blas is None:
        from threadpoolctl import ThreadpoolController  # a scikit-learn dependency

        _blas = ThreadpoolController().select(user_api="blas").lib_controllers
        _startup_threads = max((c.num_threads for c in _blas), default=None)
    return _blas


def _current() -> int | None:
    return max((c.get_num_threads() for c in _controllers()), default=None)


def _set(n: int) -> None:
    for c in _controllers():
        if c.get_num_threads() != n:
            c.set_num_threads(n)


def idle_cores() -> float | None:
    """Cores that processes other than this one left idle since the previous call (``None``: unknown,
    or the first call). From ``/proc/stat`` and this process's own CPU time."""
    global _cpu_sample
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    busy = (sum(map(int, fields[:8])) - int(fields[3]) - int(fields[4])) / ticks  # all but idle and iowait
    t = os.times()
    sample = (time.monotonic(), busy, t.user + t.system)
    previous = _cpu_sample
    if previous is not None and sample[0] - previous[0] < 0.05:
        return None  # too short a window to tell (jiffies are 10 ms): keep the older sample
    _cpu_sample = sample
    if previous is None:
        return None
    elapsed = sample[0] - previous[0]
    others = max(0.0, (sample[1] - previous[1]) - (sample[2] - previous[2])) / elapsed
    return max(0.0, (os.cpu_count() or 1) - others)


def _policy() -> int | None:
    """Threads for now under the default policy, or ``None`` to leave BLAS alone. Measured at most
    every :data:`RECHECK_SECONDS`: short calls in a loop (``predict`` per sample) reuse the answer."""
    global _decision, _decided_at
    if _requested is not None:
        return _requested
    if any(os.environ.get(v) for v in ENV_VARS):
        return None
    now = time.monotonic()
    if _decision is not None and now - _decided_at < RECHECK_SECONDS:
        return _decision
    idle = idle_cores()
    if idle is None:  # first call: the 1-minute load average, this process's share being ~0 so far
        try:
            idle = (os.cpu_count() or 1) - os.getloadavg()[0]
        except (OSError, AttributeError):  # no load average (Windows)
            return None
    # A core counts as idle when others use less than a quarter of it.
    _decision, _decided_at = max(1, min(os.cpu_count() or 1, int(idle + 0.75))), now
    return _decision


@contextlib.contextmanager
def blas_threads() -> Iterator[None]:
    """Apply the thread policy for the duration of the block (nested blocks do nothing more)."""
    global _active, _last_check, _following
    if _active:
        _active += 1
        try:
            yield
        finally:
            _active -= 1
        return
    if not _controllers():
        yield
        return
    before = _current()
    user_limited = before != _startup_threads  # a threadpool_limits around the call: theirs to decide
    n = _requested if _requested is not None or user_limited else _policy()
    if n is not None:
        _set(n)
    _active, _last_check, _following = 1, time.monotonic(), n is not None and _requested is None
    try:
        yield
    finally:
        _active, _following = 0, False
        if before is not None:
            _set(before)


def recheck() -> None:
    """Inside a :func:`blas_threads` block under the default policy: every :data:`RECHECK_SECONDS`,
    measure the idle cores again and follow. Costs one clock read otherwise."""
    global _last_check
    if not _following:
        return
    now = time.monotonic()
    if now - _last_check < RECHECK_SECONDS:
        return
    _last_check = now
    n = _policy()
    if n is not None:
        _set(n)
