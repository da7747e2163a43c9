"""Thread-level parallelism: a small pool of Python threads shared by every call.

:func:`run_split` hands contiguous ranges of independent jobs of a serial Numba kernel
(the depthwise loops) to the pool, :func:`run_splits` those of several kernels at
once; :func:`run_tasks` runs the im2col + GEMM engine's
per-thread shares. The kernels and BLAS release the GIL. A task already running on the
pool that asks for more parallel work runs it itself (waiting on the pool from inside it
could deadlock). Python threads are used rather than Numba's ``parallel=True``: an OpenMP or
workqueue team waiting for a core that BLAS threads still spin on after a GEMM stalled for
milliseconds (7.6 ms around a 0.04 ms im2col), and Numba's workqueue layer cannot be
entered from several Python threads at once.

The thread count is ``CONVCORE_NUM_THREADS`` (default: the CPUs this process may run on).
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

__all__ = ["even_ranges", "run_split", "run_splits", "run_tasks", "thread_count"]

# below this many written elements a kernel runs on the calling thread only
_MIN_PARALLEL_WORK = 1 << 16


def _default_threads() -> int:
    raw = os.environ.get("CONVCORE_NUM_THREADS")
    if raw is not None:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"CONVCORE_NUM_THREADS must be a positive integer, got {raw!r}")
        return int(raw)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_THREADS = _default_threads()
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _forget_pool() -> None:
    # a forked child inherits the pool object but none of its threads
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=_THREADS - 1, thread_name_prefix="convcore", initializer=_mark_pool_thread
            )
        return _pool


_local = threading.local()


def _mark_pool_thread() -> None:
    _local.in_pool = True


def _on_pool_thread() -> bool:
    return getattr(_local, "in_pool", False)


def even_ranges(n: int, parts: int) -> list[tuple[int, int]]:
    """``[0, n)`` cut into ``parts`` contiguous ranges whose lengths differ by at most one."""
    return [(n * t // parts, n * (t + 1) // parts) for t in range(parts)]


def run_split(kernel, args, n_jobs: int, work: int) -> None:
    """Run ``kernel(*args, lo, hi)`` over ``[0, n_jobs)``, split across threads when
    ``work`` (elements written) is large enough to pay for it."""
    run_splits([(kernel, args, n_jobs)], work)


def run_splits(splits, work: int) -> None:
    """:func:`run_split` for each ``(kernel, args, n_jobs)`` of ``splits``, one after the
    other on each thread: a thread runs its range of every split in one task, so the
    whole list costs one hand-off to the pool (~0.1 ms here: waking a pool thread, and
    the threads passing the GIL). A kernel is not called on an empty range (nor at all
    for ``n_jobs == 0``). The kernels must be independent: a thread may start the
    second before another has finished the first."""
    most = max((n for *_, n in splits), default=0)
    threads = max(1, min(_THREADS, most)) if work >= _MIN_PARALLEL_WORK else 1

    def share(t):
        for kernel, args, n_jobs in splits:
            lo, hi = even_ranges(n_jobs, threads)[t]
            if lo < hi:
                kernel(*args, lo, hi)

    run_tasks([functools.partial(share, t) for t in range(threads)])


def thread_count() -> int:
    """The number of threads convcore's kernels use (``CONVCORE_NUM_THREADS``)."""
    return _THREADS


def run_tasks(tasks) -> list:
    """Call each zero-argument function in ``tasks``, the first on the calling thread and
    the rest on the pool; return their results in order."""
    if len(tasks) == 1 or _on_pool_thread():
        return [task() for task in tasks]
    pool = _get_pool()
    futures = [pool.submit(task) for task in tasks[1:]]
    try:
        first = tasks[0]()
    finally:  # never return while a pool thread may still write to the caller's arrays
        wait(futures)
    return [first] + [f.result() for f in futures]
