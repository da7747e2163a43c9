"""Numba kernels: window extraction (im2col) and its adjoint, the scatter-add col2im.

Every kernel here is private and receives clean arrays: C-contiguous, one float dtype,
with the geometry already validated. Numba's flags are set in :func:`_jit` only.

Column layout: ``cols[r, n * P + oh * OW + ow]`` with ``r = (c * KH + kh) * KW + kw`` and
``P = OH * OW``: a ``(C*KH*KW, N*P)`` matrix, so one GEMM per group covers a whole batch.
"""

from __future__ import annotations

import threading
import warnings

import numba
from numba import prange

# Numba's default threading layer cannot run two parallel regions at once; callers from
# several Python threads take turns on the parallel kernels.
_PARALLEL_LOCK = threading.Lock()


def _jit(parallel: bool):
    """The one place Numba options are chosen: compiled once per dtype, cached on disk.

    Where no cache directory can be written (a read-only install without
    NUMBA_CACHE_DIR), the kernel is compiled in memory instead.
    """

    def decorate(func):
        try:
            return numba.njit(cache=True, nogil=True, parallel=parallel)(func)
        except RuntimeError as err:  # no cache locator for this file
            warnings.warn(f"convcore: Numba cache unavailable ({err}); compiling in memory", stacklevel=2)
            return numba.njit(cache=False, nogil=True, parallel=parallel)(func)

    return decorate


@_jit(parallel=True)
def _im2col(x, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW, cols):
    """Gather the windows of ``x (N, C, H, W)`` into ``cols (C*KH*KW, N*OH*OW)``."""
    N, C, H, W = x.shape
    P = OH * OW
    for job in prange(C * KH * KW * N):
        r = job // N
        n = job - r * N
        c = r // (KH * KW)
        kh = (r // KW) % KH
        kw = r % KW
        base = n * P
        for oh in range(OH):
            ih = oh * sh + kh * dh - pt
            row = base + oh * OW
            if ih < 0 or ih >= H:
                for ow in range(OW):
                    cols[r, row + ow] = 0
                continue
            for ow in range(OW):
                iw = ow * sw + kw * dw - pl
                if 0 <= iw < W:
                    cols[r, row + ow] = x[n, c, ih, iw]
                else:
                    cols[r, row + ow] = 0


@_jit(parallel=True)
def _col2im(cols, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW, x):
    """Sum ``cols (C*KH*KW, N*OH*OW)`` back into ``x (N, C, H, W)``, overwriting ``x``.

    Each parallel job owns one ``(n, c)`` image plane, so no two jobs write one element.
    """
    N, C, H, W = x.shape
    P = OH * OW
    for job in prange(N * C):
        n = job // C
        c = job - n * C
        x[n, c, :, :] = 0
        base = n * P
        for kh in range(KH):
            for kw in range(KW):
                r = (c * KH + kh) * KW + kw
                for oh in range(OH):
                    ih = oh * sh + kh * dh - pt
                    if ih < 0 or ih >= H:
                        continue
                    row = base + oh * OW
                    for ow in range(OW):
                        iw = ow * sw + kw * dw - pl
                        if 0 <= iw < W:
                            x[n, c, ih, iw] += cols[r, row + ow]


def im2col_into(x, geo_args, cols):
    """Run the gather kernel; ``x`` and ``cols`` must be C-contiguous and of one dtype."""
    with _PARALLEL_LOCK:
        _im2col(x, *geo_args, cols)


def col2im_into(cols, geo_args, x):
    """Run the scatter kernel into ``x`` (overwritten)."""
    with _PARALLEL_LOCK:
        _col2im(cols, *geo_args, x)
