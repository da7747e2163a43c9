"""Window kernels: extraction (im2col) and its adjoint, the scatter-add col2im.

Column layout: ``cols[r, n * P + oh * OW + ow]`` with ``r = (c * KH + kh) * KW + kw`` and
``P = OH * OW``: a ``(C*KH*KW, N*P)`` matrix, so one GEMM per group covers a whole batch.

Each kernel processes a range ``[lo, hi)`` of independent jobs whose writes never overlap
(so they could be split over threads, as the depthwise kernels are); the wrappers below
run the whole range on the calling thread, for the reason given above them.
"""

from __future__ import annotations

import numba

from convcore._numba import _jit, _valid_range, check_contiguous


@_jit
def _im2col(x, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW, cols, lo, hi):
    """Gather windows of ``x (N, C, H, W)`` into ``cols (C*KH*KW, N*OH*OW)``.

    Job ``j = r * N + n`` writes row ``r`` of image ``n`` only. Flat unsigned offsets keep
    negative-index wraparound checks out of the loops (written out here: as calls to row
    helpers the loops ran 1.4-1.9x slower).
    """
    N, C, H, W = x.shape
    P, M = OH * OW, cols.shape[1]
    xf, cf = x.ravel(), cols.ravel()
    u = numba.uint64
    for job in range(lo, hi):
        r = job // N
        n = job - r * N
        c = r // (KH * KW)
        kh = (r // KW) % KH
        kw = r % KW
        off = kw * dw - pl
        w_lo, w_hi = _valid_range(off, sw, W, OW)
        h_lo, h_hi = _valid_range(kh * dh - pt, sh, H, OH)
        if w_hi == w_lo:  # no column in range: the whole block is zero
            h_hi = h_lo
        base = u(r * M + n * P)
        for i in range(u(0), u(h_lo * OW)):
            cf[base + i] = 0
        for i in range(u(h_hi * OW), u(P)):
            cf[base + i] = 0
        width, step = u(w_hi - w_lo), u(sw)
        plane = (n * C + c) * H * W
        for oh in range(h_lo, h_hi):
            row = base + u(oh * OW)
            for i in range(u(w_lo)):
                cf[row + i] = 0
            # first valid input element and output position: both >= 0
            src = u(plane + (oh * sh + kh * dh - pt) * W + off + w_lo * sw)
            dst = row + u(w_lo)
            if sw == 1:
                for i in range(width):
                    cf[dst + i] = xf[src + i]
            else:
                for i in range(width):
                    cf[dst + i] = xf[src + i * step]
            for i in range(u(w_hi), u(OW)):
                cf[row + i] = 0


@_jit
def _col2im(cols, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW, x, lo, hi):
    """Sum ``cols (C*KH*KW, N*OH*OW)`` into ``x (N, C, H, W)``, overwriting ``x``.

    Job ``j = n * C + c`` owns the image plane ``x[n, c]``: no two jobs write one element.
    """
    N, C, H, W = x.shape
    P, M = OH * OW, cols.shape[1]
    xf, cf = x.ravel(), cols.ravel()
    u = numba.uint64
    for job in range(lo, hi):
        n = job // C
        c = job - n * C
        plane = job * H * W
        for i in range(u(plane), u(plane + H * W)):
            xf[i] = 0
        for kh in range(KH):
            h_lo, h_hi = _valid_range(kh * dh - pt, sh, H, OH)
            for kw in range(KW):
                off = kw * dw - pl
                w_lo, w_hi = _valid_range(off, sw, W, OW)
                if w_hi == w_lo:
                    continue
                width, step = u(w_hi - w_lo), u(sw)
                base = ((c * KH + kh) * KW + kw) * M + n * P
                for oh in range(h_lo, h_hi):
                    dst = u(plane + (oh * sh + kh * dh - pt) * W + off + w_lo * sw)
                    src = u(base + oh * OW + w_lo)
                    if sw == 1:
                        for i in range(width):
                            xf[dst + i] += cf[src + i]
                    else:
                        for i in range(width):
                            xf[dst + i * step] += cf[src + i]


# im2col and col2im run on the calling thread: they sit between GEMMs, and for ~0.1 s after
# a GEMM OpenBLAS's idle threads spin on the other cores, so a second kernel thread only
# competes with them. Measured on the cifar_c32_16_k3 anchor (float32, forward+backward in
# sequence): im2col 2.8 ms split over 2 threads against 1.7 ms on one, col2im 2.6 against 1.6.


def im2col_into(x, geo_args, cols) -> None:
    """Fill ``cols (C*KH*KW, n*OH*OW)`` from ``x (n, C, H, W)``; both C-contiguous, one dtype."""
    check_contiguous(x, cols)
    _im2col(x, *geo_args, cols, 0, cols.shape[0] * x.shape[0])


def col2im_into(cols, geo_args, x) -> None:
    """Overwrite ``x (n, C, H, W)`` with the column sums of ``cols``."""
    check_contiguous(cols, x)
    _col2im(cols, *geo_args, x, 0, x.shape[0] * x.shape[1])
