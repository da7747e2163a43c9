"""Direct convolution loops, for the problems where im2col + GEMM is the wrong tool.

- Tiny problems: plain loops, one kernel for the forward pass and one for both gradients,
  serial; cheap to compile and to call.
- Depthwise problems (one channel and one filter per group): shift-and-add per filter tap
  over whole rows, one output (or input) plane per parallel job, one filter per job for the
  weight gradient, so no two jobs write one element.
"""

from __future__ import annotations

import numpy as np

from convcore._numba import (
    _axpy_row,
    _jit,
    _mul_add_row,
    _valid_range,
    _zero,
    check_contiguous,
)
from convcore._threads import run_split


@_jit
def _conv_direct(x, w, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW, groups, y):
    """Direct convolution loops for tiny problems; ``y`` holds the bias (or 0) on entry."""
    N, C, H, W = x.shape
    F, Cg = w.shape[0], w.shape[1]
    Fg = F // groups
    for n in range(N):
        for f in range(F):
            c0 = (f // Fg) * Cg
            for oh in range(OH):
                for ow in range(OW):
                    acc = y[n, f, oh, ow]
                    for c in range(Cg):
                        for kh in range(KH):
                            ih = oh * sh + kh * dh - pt
                            if 0 <= ih < H:
                                for kw in range(KW):
                                    iw = ow * sw + kw * dw - pl
                                    if 0 <= iw < W:
                                        acc += x[n, c0 + c, ih, iw] * w[f, c, kh, kw]
                    y[n, f, oh, ow] = acc


@_jit
def _conv_direct_backward(x, w, gy, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW, groups, gx, gw):
    """Direct loops for the input and weight gradients of tiny problems (overwrites gx, gw)."""
    N, C, H, W = x.shape
    F, Cg = w.shape[0], w.shape[1]
    Fg = F // groups
    gx[:] = 0
    gw[:] = 0
    for n in range(N):
        for f in range(F):
            c0 = (f // Fg) * Cg
            for oh in range(OH):
                for ow in range(OW):
                    d = gy[n, f, oh, ow]
                    for c in range(Cg):
                        for kh in range(KH):
                            ih = oh * sh + kh * dh - pt
                            if 0 <= ih < H:
                                for kw in range(KW):
                                    iw = ow * sw + kw * dw - pl
                                    if 0 <= iw < W:
                                        gx[n, c0 + c, ih, iw] += w[f, c, kh, kw] * d
                                        gw[f, c, kh, kw] += x[n, c0 + c, ih, iw] * d


@_jit
def _shift_add(x, w, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW, groups, y, lo, hi):
    """Direct convolution, one output plane per job ``j = n * F + f``: for every filter tap,
    add the shifted input rows times the tap to the output rows. ``y`` holds the bias (or
    zeros) on entry."""
    N, C, H, W = x.shape
    F, Cg = w.shape[0], w.shape[1]
    Fg = F // groups
    P = OH * OW
    xf, yf = x.ravel(), y.ravel()
    for job in range(lo, hi):
        n = job // F
        f = job - n * F
        first = n * C + (f // Fg) * Cg
        for c in range(Cg):
            plane = (first + c) * H * W
            for kh in range(KH):
                h_lo, h_hi = _valid_range(kh * dh - pt, sh, H, OH)
                for kw in range(KW):
                    off = kw * dw - pl
                    w_lo, w_hi = _valid_range(off, sw, W, OW)
                    tap = w[f, c, kh, kw]
                    for oh in range(h_lo, h_hi):
                        src = plane + (oh * sh + kh * dh - pt) * W + off + w_lo * sw
                        _axpy_row(yf, job * P + oh * OW + w_lo, 1, xf, src, sw, w_hi - w_lo, tap)


@_jit
def _shift_add_input_grad(gy, w, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW, groups, gx, lo, hi):
    """Input gradient of :func:`_shift_add`, one input plane per job ``j = n * C + c``
    (overwritten): every filter tap scatters the output-gradient rows back, scaled."""
    N, C, H, W = gx.shape
    F, Cg = w.shape[0], w.shape[1]
    Fg = F // groups
    P = OH * OW
    gyf, gxf = gy.ravel(), gx.ravel()
    for job in range(lo, hi):
        n = job // C
        c = job - n * C
        g, cl = c // Cg, c % Cg
        plane = job * H * W
        _zero(gxf, plane, plane + H * W)
        for f in range(g * Fg, (g + 1) * Fg):
            for kh in range(KH):
                h_lo, h_hi = _valid_range(kh * dh - pt, sh, H, OH)
                for kw in range(KW):
                    off = kw * dw - pl
                    w_lo, w_hi = _valid_range(off, sw, W, OW)
                    tap = w[f, cl, kh, kw]
                    for oh in range(h_lo, h_hi):
                        dst = plane + (oh * sh + kh * dh - pt) * W + off + w_lo * sw
                        src = (n * F + f) * P + oh * OW + w_lo
                        _axpy_row(gxf, dst, sw, gyf, src, 1, w_hi - w_lo, tap)


@_jit
def _shift_add_weight_grad(x, gy, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW, groups, gw, lo, hi):
    """Weight gradient of :func:`_shift_add`, one filter per job ``j = f`` (overwritten): each
    tap is the dot product of the output gradient with the input it saw, over the batch.
    Products are taken in the arrays' dtype; the long sum is accumulated in float64, one
    partial sum per output column (see :func:`convcore._numba._mul_add_row`)."""
    N, C, H, W = x.shape
    F, Cg = gw.shape[0], gw.shape[1]
    Fg = F // groups
    P = OH * OW
    xf, gyf = x.ravel(), gy.ravel()
    sums = np.zeros(OW)
    for f in range(lo, hi):
        first = (f // Fg) * Cg
        for c in range(Cg):
            for kh in range(KH):
                h_lo, h_hi = _valid_range(kh * dh - pt, sh, H, OH)
                for kw in range(KW):
                    off = kw * dw - pl
                    w_lo, w_hi = _valid_range(off, sw, W, OW)
                    sums[:] = 0  # float64: a float32 sum over N*OH*OW terms would drift
                    for n in range(N):
                        plane = (n * C + first + c) * H * W
                        for oh in range(h_lo, h_hi):
                            src = plane + (oh * sh + kh * dh - pt) * W + off + w_lo * sw
                            _mul_add_row(
                                sums, gyf, (n * F + f) * P + oh * OW + w_lo, xf, src, sw, w_hi - w_lo
                            )
                    gw[f, c, kh, kw] = sums.sum()


def depthwise_forward(x, w, geo_args, groups, y) -> None:
    """Add the convolution of ``x`` with ``w`` to ``y (N, F, OH, OW)``; C-contiguous arrays."""
    check_contiguous(x, w, y)
    work = y.size * w.shape[1] * w.shape[2] * w.shape[3]
    run_split(_shift_add, (x, w, *geo_args, groups, y), y.shape[0] * y.shape[1], work)


def depthwise_backward(x, w, gy, geo_args, groups, gx, gw) -> None:
    """Overwrite ``gx`` and ``gw`` with the input and weight gradients for ``gy``."""
    check_contiguous(x, w, gy, gx, gw)
    work = gy.size * w.shape[1] * w.shape[2] * w.shape[3]
    run_split(_shift_add_input_grad, (gy, w, *geo_args, groups, gx), gx.shape[0] * gx.shape[1], work)
    run_split(_shift_add_weight_grad, (x, gy, *geo_args, groups, gw), gw.shape[0], work)


def tiny_forward(x, w, geo_args, groups, y) -> None:
    """Add the convolution of ``x`` with ``w`` to ``y``, serially (tiny problems)."""
    check_contiguous(x, w, y)
    _conv_direct(x, w, *geo_args, groups, y)


def tiny_backward(x, w, gy, geo_args, groups, gx, gw) -> None:
    """Overwrite ``gx`` and ``gw`` with the gradients for ``gy``, serially (tiny problems)."""
    check_contiguous(x, w, gy, gx, gw)
    _conv_direct_backward(x, w, gy, *geo_args, groups, gx, gw)
