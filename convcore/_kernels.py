"""Window kernels: extraction (im2col) and its adjoint, the scatter-add col2im.

Column layout: ``cols[r, n * P + oh * OW + ow]`` with ``r = (c * KH + kh) * KW + kw`` and
``P = OH * OW``: a ``(C*KH*KW, N*P)`` matrix, so one GEMM per group covers a whole batch.

Each call covers a band of output rows ``[oh0, oh1)`` of a few images (columns
``(C*KH*KW, n*(oh1-oh0)*OW)``), so the engine can keep its columns under the workspace
limit; it runs on the calling thread, and :mod:`convcore._gemm` gives each of its
threads whole images, or (for a batch smaller than the thread count) bands of output rows
in the forward pass and whole input channels in the backward pass, so no two threads
write one element.

The channels-last twins (:func:`im2col_cl_into`, :func:`col2im_cl_into`) build the same
columns transposed from an ``(n, H, W, C)`` copy of the input, made and undone by
:func:`to_channels_last` and :func:`from_channels_last` (see
:mod:`convcore._channels_last`).
"""

from __future__ import annotations

import numba

from convcore._numba import _jit, _valid_range, check_contiguous


@_jit
def _im2col(x, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW, oh0, oh1, cols):
    """Gather the windows of output rows ``[oh0, oh1)`` of ``x (n, C, H, W)`` into
    ``cols (C*KH*KW, n*(oh1-oh0)*OW)``.

    Flat unsigned offsets keep negative-index wraparound checks out of the loops (written
    out here: as calls to row helpers the loops ran 1.4-1.9x slower). The job's indices are
    counted and its tap's ranges worked out when they change, not divided out per job:
    that took 0.56-0.63 of the time on 8 and 16 wide outputs, 0.73-0.98 on wider ones
    (the integer divisions cost more than short rows' copies). The zeros right of each
    row go in a pass of their own (1x16x32x32 float32 0.83 against 1.08).
    """
    N, C, H, W = x.shape
    Pb, M = (oh1 - oh0) * OW, cols.shape[1]
    xf, cf = x.ravel(), cols.ravel()
    u = numba.uint64
    n, c, kh, kw = 0, 0, 0, 0  # of job (((c*KH + kh)*KW + kw)*N + n), counted, not divided
    rows = _band(_valid_range(-pt, sh, H, OH), oh0, oh1)  # of window row kh, worked out
    w_lo, w_hi = _valid_range(-pl, sw, W, OW)  # when it changes (it divides), and of column kw
    for _ in range(C * KH * KW * N):  # row r of image n
        r = (c * KH + kh) * KW + kw
        off = kw * dw - pl
        h_lo, h_hi = rows
        if w_hi == w_lo:  # no column in range: the whole block is zero
            h_hi = h_lo
        base = u(r * M + n * Pb)
        for i in range(u(0), u((h_lo - oh0) * OW)):
            cf[base + i] = 0
        for i in range(u((h_hi - oh0) * OW), u(Pb)):
            cf[base + i] = 0
        width, step = u(w_hi - w_lo), u(sw)
        plane = (n * C + c) * H * W
        for oh in range(h_lo, h_hi):
            row = base + u((oh - oh0) * OW)
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
        for oh in range(h_lo, h_hi if w_hi < OW else h_lo):
            row = base + u((oh - oh0) * OW)
            for i in range(u(w_hi), u(OW)):
                cf[row + i] = 0
        n += 1
        if n == N:
            n, kw = 0, kw + 1
            if kw == KW:
                kw, kh = 0, kh + 1
                if kh == KH:
                    kh, c = 0, c + 1
                rows = _band(_valid_range(kh * dh - pt, sh, H, OH), oh0, oh1)
            w_lo, w_hi = _valid_range(kw * dw - pl, sw, W, OW)


@_jit
def _col2im(cols, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW, oh0, oh1, overwrite, x):
    """Add ``cols (C*KH*KW, n*(oh1-oh0)*OW)``, the column gradient of output rows
    ``[oh0, oh1)``, into ``x (n, C, H, W)``; with ``overwrite``, ``x`` is zeroed first.

    The loops run plane by plane (one ``x[n, c]`` at a time), so each input row stays in
    cache while its KH*KW rows of columns are added in.
    """
    N, C, H, W = x.shape
    Pb, M = (oh1 - oh0) * OW, cols.shape[1]
    xf, cf = x.ravel(), cols.ravel()
    u = numba.uint64
    for job in range(N * C):
        n = job // C
        c = job - n * C
        plane = job * H * W
        if overwrite:
            for i in range(u(plane), u(plane + H * W)):
                xf[i] = 0
        for kh in range(KH):
            h_lo, h_hi = _band(_valid_range(kh * dh - pt, sh, H, OH), oh0, oh1)
            for kw in range(KW):
                off = kw * dw - pl
                w_lo, w_hi = _valid_range(off, sw, W, OW)
                if w_hi == w_lo:
                    continue
                width, step = u(w_hi - w_lo), u(sw)
                base = ((c * KH + kh) * KW + kw) * M + n * Pb
                for oh in range(h_lo, h_hi):
                    dst = u(plane + (oh * sh + kh * dh - pt) * W + off + w_lo * sw)
                    src = u(base + (oh - oh0) * OW + w_lo)
                    if sw == 1:
                        for i in range(width):
                            xf[dst + i] += cf[src + i]
                    else:
                        for i in range(width):
                            xf[dst + i * step] += cf[src + i]


@_jit
def _band(valid, oh0, oh1):
    """Clip a ``(lo, hi)`` range of output rows to the band ``[oh0, oh1)``."""
    lo = min(max(valid[0], oh0), oh1)
    return lo, min(max(valid[1], lo), oh1)


def im2col_into(x, geo_args, cols, rows=None) -> None:
    """Fill ``cols (C*KH*KW, n*b*OW)`` from ``x (n, C, H, W)``, for the ``b`` output rows
    ``rows = (oh0, oh1)`` (default: all); both C-contiguous, one dtype."""
    check_contiguous(x, cols)
    oh0, oh1 = (0, geo_args[-2]) if rows is None else rows
    _im2col(x, *geo_args, oh0, oh1, cols)


def col2im_into(cols, geo_args, x, rows=None, overwrite=True) -> None:
    """Add the column gradient of output rows ``rows = (oh0, oh1)`` (default: all) into
    ``x (n, C, H, W)``, which is zeroed first when ``overwrite``."""
    check_contiguous(cols, x)
    oh0, oh1 = (0, geo_args[-2]) if rows is None else rows
    _col2im(cols, *geo_args, oh0, oh1, overwrite, x)


# Channels-last windows: the same columns transposed, ``cols_t[n*P' + p, r]`` with
# ``r = (kh * KW + kw) * C + c`` and ``P' = (oh1 - oh0) * OW``, gathered from (and
# scattered into) a channels-last ``(n, H, W, C)`` copy of the input: every window tap is
# a run of C contiguous values, where the NCHW kernels above copy runs of OW.


@_jit
def _windows_cl(xh, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW, oh0, oh1, cols_t, fold):
    """Without ``fold``, gather the windows of output rows ``[oh0, oh1)`` of
    ``xh (n, H, W, C)`` into ``cols_t (n*(oh1-oh0)*OW, width)``, the first KH*KW*C
    columns (the rest untouched); with ``fold``, the adjoint: zero ``xh``, then add those
    columns of ``cols_t`` (a column gradient) into it. One kernel for both directions:
    one compilation per dtype on first use."""
    N, H, W, C = xh.shape
    width = cols_t.shape[1]
    xf, cf = xh.ravel(), cols_t.ravel()
    c = numba.uint64(C)
    if fold:
        for i in range(numba.uint64(xf.size)):
            xf[i] = 0
    for n in range(N):
        for oh in range(oh0, oh1):
            for ow in range(OW):
                col = numba.uint64(((n * (oh1 - oh0) + oh - oh0) * OW + ow) * width)
                for kh in range(KH):
                    h = oh * sh + kh * dh - pt
                    for kw in range(KW):
                        w = ow * sw + kw * dw - pl
                        if 0 <= h < H and 0 <= w < W:
                            at = numba.uint64(((n * H + h) * W + w) * C)
                            if fold:
                                for i in range(c):
                                    xf[at + i] += cf[col + i]
                            else:
                                for i in range(c):
                                    cf[col + i] = xf[at + i]
                        elif not fold:
                            for i in range(c):
                                cf[col + i] = 0
                        col += c


_BLOCK = 16  # transposes work in 16x16 blocks: 16 read streams, 16-element written runs


@_jit
def _transpose(src, dst, N, R, S):
    """``dst[n, s, r] = src[n, r, s]`` for ``N`` stacked ``(R, S)`` matrices (flat arrays)."""
    for n in range(N):
        for r0 in range(0, R, _BLOCK):
            width = numba.uint64(min(_BLOCK, R - r0))
            for s0 in range(0, S, _BLOCK):
                for s in range(s0, min(s0 + _BLOCK, S)):
                    d = numba.uint64((n * S + s) * R + r0)
                    f = numba.uint64((n * R + r0) * S + s)
                    for i in range(width):
                        dst[d + i] = src[f + i * numba.uint64(S)]


def to_channels_last(x, xh) -> None:
    """Copy ``x (n, C, H, W)`` into ``xh (n, H, W, C)``; both C-contiguous, one dtype."""
    check_contiguous(x, xh)
    n, C, H, W = x.shape
    _transpose(x.ravel(), xh.ravel(), n, C, H * W)


def from_channels_last(xh, x) -> None:
    """Copy ``xh (n, H, W, C)`` into ``x (n, C, H, W)``; both C-contiguous, one dtype."""
    check_contiguous(xh, x)
    n, C, H, W = x.shape
    _transpose(xh.ravel(), x.ravel(), n, H * W, C)


def im2col_cl_into(xh, geo_args, cols_t, rows=None) -> None:
    """Fill the first KH*KW*C columns of ``cols_t (n*b*OW, width)`` from
    ``xh (n, H, W, C)`` for the ``b`` output rows ``rows = (oh0, oh1)`` (default: all)."""
    check_contiguous(xh, cols_t)
    oh0, oh1 = (0, geo_args[-2]) if rows is None else rows
    _windows_cl(xh, *geo_args, oh0, oh1, cols_t, False)


def col2im_cl_into(cols_t, geo_args, xh, rows=None) -> None:
    """Overwrite ``xh (n, H, W, C)`` with the column gradient ``cols_t`` of output rows
    ``rows = (oh0, oh1)`` (default: all) folded back (the adjoint of :func:`im2col_cl_into`)."""
    check_contiguous(cols_t, xh)
    oh0, oh1 = (0, geo_args[-2]) if rows is None else rows
    _windows_cl(xh, *geo_args, oh0, oh1, cols_t, True)
