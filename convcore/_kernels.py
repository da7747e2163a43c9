"""Numba kernels: window extraction (im2col) and its adjoint, the scatter-add col2im.

Every kernel here is private and receives clean arrays: C-contiguous, one float dtype,
with the geometry already validated. Numba's flags are set in :func:`_jit` only.

Column layout: ``cols[r, n * P + oh * OW + ow]`` with ``r = (c * KH + kh) * KW + kw`` and
``P = OH * OW``: a ``(C*KH*KW, N*P)`` matrix, so one GEMM per group covers a whole batch.

Each kernel processes a range ``[lo, hi)`` of independent jobs whose writes never overlap;
:func:`run_split` spreads the jobs over a small pool of Python threads (the kernels release
the GIL). Python threads are used rather than Numba's ``parallel=True`` because an OpenMP
or workqueue team waiting for cores that BLAS threads are still spinning on stalls for
milliseconds between a kernel and a GEMM, and because Numba's parallel layers cannot all
be entered from several Python threads at once.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numba

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


def _jit(func):
    """The one place Numba options are chosen: compiled once per dtype, cached on disk,
    releasing the GIL. Where no cache directory can be written (a read-only install
    without NUMBA_CACHE_DIR), the kernel is compiled in memory instead."""
    try:
        return numba.njit(cache=True, nogil=True)(func)
    except RuntimeError as err:  # no cache locator for this file
        warnings.warn(f"convcore: Numba cache unavailable ({err}); compiling in memory", stacklevel=2)
        return numba.njit(cache=False, nogil=True)(func)


@_jit
def _valid_range(offset, stride, size, count):
    """Outputs ``o`` in ``[lo, hi)`` with ``0 <= o * stride + offset < size``, clipped to count."""
    lo = min(max(-((offset) // stride), 0), count)
    hi = min(max(-((offset - size) // stride), lo), count)
    return lo, hi


@_jit
def _im2col(x, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW, cols, lo, hi):
    """Gather windows of ``x (N, C, H, W)`` into ``cols (C*KH*KW, N*OH*OW)``.

    Job ``j = r * N + n`` writes row ``r`` of image ``n`` only.
    """
    N, C, H, W = x.shape
    P = OH * OW
    for job in range(lo, hi):
        r = job // N
        n = job - r * N
        c = r // (KH * KW)
        kh = (r // KW) % KH
        kw = r % KW
        off = kw * dw - pl
        w_lo, w_hi = _valid_range(off, sw, W, OW)
        h_lo, h_hi = _valid_range(kh * dh - pt, sh, H, OH)
        base = n * P
        for i in range(base, base + h_lo * OW):
            cols[r, i] = 0
        for i in range(base + h_hi * OW, base + P):
            cols[r, i] = 0
        for oh in range(h_lo, h_hi):
            ih = oh * sh + kh * dh - pt
            row = base + oh * OW
            for ow in range(w_lo):
                cols[r, row + ow] = 0
            if sw == 1:
                for ow in range(w_lo, w_hi):
                    cols[r, row + ow] = x[n, c, ih, ow + off]
            else:
                for ow in range(w_lo, w_hi):
                    cols[r, row + ow] = x[n, c, ih, ow * sw + off]
            for ow in range(w_hi, OW):
                cols[r, row + ow] = 0


@_jit
def _col2im(cols, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW, x, lo, hi):
    """Sum ``cols (C*KH*KW, N*OH*OW)`` into ``x (N, C, H, W)``, overwriting ``x``.

    Job ``j = n * C + c`` owns the image plane ``x[n, c]``: no two jobs write one element.
    """
    N, C, H, W = x.shape
    P = OH * OW
    for job in range(lo, hi):
        n = job // C
        c = job - n * C
        x[n, c, :, :] = 0
        for kh in range(KH):
            h_lo, h_hi = _valid_range(kh * dh - pt, sh, H, OH)
            for kw in range(KW):
                off = kw * dw - pl
                w_lo, w_hi = _valid_range(off, sw, W, OW)
                r = (c * KH + kh) * KW + kw
                for oh in range(h_lo, h_hi):
                    ih = oh * sh + kh * dh - pt
                    row = n * P + oh * OW
                    if sw == 1:
                        for ow in range(w_lo, w_hi):
                            x[n, c, ih, ow + off] += cols[r, row + ow]
                    else:
                        for ow in range(w_lo, w_hi):
                            x[n, c, ih, ow * sw + off] += cols[r, row + ow]


def run_split(kernel, args, n_jobs: int, work: int) -> None:
    """Run ``kernel(*args, lo, hi)`` over ``[0, n_jobs)``, split across threads when
    ``work`` (elements written) is large enough to pay for it."""
    global _pool
    threads = min(_THREADS, n_jobs)
    if threads <= 1 or work < _MIN_PARALLEL_WORK:
        kernel(*args, 0, n_jobs)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_THREADS - 1, thread_name_prefix="convcore")
    bounds = [n_jobs * i // threads for i in range(threads + 1)]
    futures = [_pool.submit(kernel, *args, bounds[i], bounds[i + 1]) for i in range(1, threads)]
    kernel(*args, bounds[0], bounds[1])
    for f in futures:
        f.result()


def im2col_into(x, geo_args, cols) -> None:
    """Fill ``cols (C*KH*KW, n*OH*OW)`` from ``x (n, C, H, W)``; both C-contiguous, one dtype."""
    run_split(_im2col, (x, *geo_args, cols), cols.shape[0] * x.shape[0], cols.size)


def col2im_into(cols, geo_args, x) -> None:
    """Overwrite ``x (n, C, H, W)`` with the column sums of ``cols``."""
    run_split(_col2im, (cols, *geo_args, x), x.shape[0] * x.shape[1], cols.size)
