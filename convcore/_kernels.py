"""Window kernels: extraction (im2col) and its adjoint, the scatter-add col2im.

Column layout: ``cols[r, n * P + oh * OW + ow]`` with ``r = (c * KH + kh) * KW + kw`` and
``P = OH * OW``: a ``(C*KH*KW, N*P)`` matrix, so one GEMM per group covers a whole batch.

Each kernel processes a range ``[lo, hi)`` of independent jobs whose writes never overlap;
:func:`convcore._threads.run_split` spreads the jobs over a few Python threads (the
kernels release the GIL).
"""

from __future__ import annotations

from convcore._numba import _add_row, _copy_row, _jit, _valid_range, _zero, check_contiguous
from convcore._threads import run_split


@_jit
def _im2col(x, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW, cols, lo, hi):
    """Gather windows of ``x (N, C, H, W)`` into ``cols (C*KH*KW, N*OH*OW)``.

    Job ``j = r * N + n`` writes row ``r`` of image ``n`` only.
    """
    N, C, H, W = x.shape
    P = OH * OW
    xf, cf = x.ravel(), cols.ravel()
    for job in range(lo, hi):
        r = job // N
        n = job - r * N
        c = r // (KH * KW)
        kh = (r // KW) % KH
        kw = r % KW
        off = kw * dw - pl
        w_lo, w_hi = _valid_range(off, sw, W, OW)
        h_lo, h_hi = _valid_range(kh * dh - pt, sh, H, OH)
        base = r * cols.shape[1] + n * P
        _zero(cf, base, base + h_lo * OW)
        _zero(cf, base + h_hi * OW, base + P)
        plane = (n * C + c) * H * W
        for oh in range(h_lo, h_hi):
            src = plane + (oh * sh + kh * dh - pt) * W + off
            dst = base + oh * OW
            _zero(cf, dst, dst + w_lo)
            _copy_row(cf, dst + w_lo, xf, src + w_lo * sw, w_hi - w_lo, sw)
            _zero(cf, dst + w_hi, dst + OW)


@_jit
def _col2im(cols, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW, x, lo, hi):
    """Sum ``cols (C*KH*KW, N*OH*OW)`` into ``x (N, C, H, W)``, overwriting ``x``.

    Job ``j = n * C + c`` owns the image plane ``x[n, c]``: no two jobs write one element.
    """
    N, C, H, W = x.shape
    P = OH * OW
    xf, cf = x.ravel(), cols.ravel()
    for job in range(lo, hi):
        n = job // C
        c = job - n * C
        plane = job * H * W
        _zero(xf, plane, plane + H * W)
        for kh in range(KH):
            h_lo, h_hi = _valid_range(kh * dh - pt, sh, H, OH)
            for kw in range(KW):
                off = kw * dw - pl
                w_lo, w_hi = _valid_range(off, sw, W, OW)
                base = ((c * KH + kh) * KW + kw) * cols.shape[1] + n * P
                for oh in range(h_lo, h_hi):
                    dst = plane + (oh * sh + kh * dh - pt) * W + off
                    _add_row(xf, dst + w_lo * sw, cf, base + oh * OW + w_lo, w_hi - w_lo, sw)


def im2col_into(x, geo_args, cols) -> None:
    """Fill ``cols (C*KH*KW, n*OH*OW)`` from ``x (n, C, H, W)``; both C-contiguous, one dtype."""
    check_contiguous(x, cols)
    run_split(_im2col, (x, *geo_args, cols), cols.shape[0] * x.shape[0], cols.size)


def col2im_into(cols, geo_args, x) -> None:
    """Overwrite ``x (n, C, H, W)`` with the column sums of ``cols``."""
    check_contiguous(cols, x)
    run_split(_col2im, (cols, *geo_args, x), x.shape[0] * x.shape[1], cols.size)
