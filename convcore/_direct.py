"""Direct convolution loops for tiny problems, where im2col + GEMM is the wrong tool: one
kernel for the forward pass and one for the gradients, serial; cheap to compile and to
call. The padding's zeros are multiplied like any input (so an infinite or NaN weight
or output gradient meets them as in the direct sum: ``0 * inf`` is NaN). The kernels
index the arrays by ``(n, c, h, w)``, not through flat views, so they need no
contiguity check (a few tenths of a microsecond a call, of the seeds' ~8).
"""

from __future__ import annotations

import numpy as np

from convcore._numba import _jit


@_jit
def _conv_direct(x, w, b, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW, groups, y):
    """Direct convolution loops for tiny problems: overwrite ``y`` with the bias ``b``
    (none if empty) plus the convolution."""
    N, C, H, W = x.shape
    F, Cg = w.shape[0], w.shape[1]
    Fg = F // groups
    bias, zero = b.size != 0, y.dtype.type(0)
    for n in range(N):
        for f in range(F):
            c0 = (f // Fg) * Cg
            for oh in range(OH):
                for ow in range(OW):
                    acc = b[f] if bias else zero
                    for c in range(Cg):
                        for kh in range(KH):
                            ih = oh * sh + kh * dh - pt
                            for kw in range(KW):
                                iw = ow * sw + kw * dw - pl
                                inside = 0 <= ih < H and 0 <= iw < W
                                acc += (x[n, c0 + c, ih, iw] if inside else zero) * w[f, c, kh, kw]
                    y[n, f, oh, ow] = acc


@_jit
def _conv_direct_backward(x, w, gy, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW, groups, gx, gw, gb):
    """Direct loops for the input, weight and (unless ``gb`` is empty) bias gradients of
    tiny problems (overwrites gx, gw, gb)."""
    N, C, H, W = x.shape
    F, Cg = w.shape[0], w.shape[1]
    Fg = F // groups
    bias, zero = gb.size != 0, gx.dtype.type(0)
    gx[:] = 0
    gw[:] = 0
    gb[:] = 0
    for n in range(N):
        for f in range(F):
            c0 = (f // Fg) * Cg
            for oh in range(OH):
                for ow in range(OW):
                    d = gy[n, f, oh, ow]
                    if bias:
                        gb[f] += d
                    for c in range(Cg):
                        for kh in range(KH):
                            ih = oh * sh + kh * dh - pt
                            for kw in range(KW):
                                iw = ow * sw + kw * dw - pl
                                if 0 <= ih < H and 0 <= iw < W:
                                    gx[n, c0 + c, ih, iw] += w[f, c, kh, kw] * d
                                    gw[f, c, kh, kw] += x[n, c0 + c, ih, iw] * d
                                else:  # the padding: its zeros times d, as in the direct sum
                                    gw[f, c, kh, kw] += zero * d


_NO_BIAS = {np.dtype(np.float32): np.empty(0, np.float32), np.dtype(np.float64): np.empty(0, np.float64)}


def tiny_forward(x, w, b, geo_args, groups, y) -> None:
    """Overwrite ``y`` with the convolution of ``x`` with ``w`` plus ``b`` (unless None),
    serially (tiny problems)."""
    b = _NO_BIAS[x.dtype] if b is None else b
    _conv_direct(x, w, b, *geo_args, groups, y)


def tiny_backward(x, w, gy, geo_args, groups, gx, gw, gb=None) -> None:
    """Overwrite ``gx``, ``gw`` and ``gb`` (unless None) with the gradients for ``gy``,
    serially (tiny problems)."""
    gb = _NO_BIAS[gx.dtype] if gb is None else gb  # size 0: the kernel writes nothing to it
    _conv_direct_backward(x, w, gy, *geo_args, groups, gx, gw, gb)
