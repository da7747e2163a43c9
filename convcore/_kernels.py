"""Numba kernels: window extraction (im2col) and its adjoint, the scatter-add col2im.

Every kernel here is private and receives clean arrays: C-contiguous, one float dtype,
with the geometry already validated. Numba's flags are set in :func:`_jit` only.

Column layout: ``cols[r, n * P + oh * OW + ow]`` with ``r = (c * KH + kh) * KW + kw`` and
``P = OH * OW``: a ``(C*KH*KW, N*P)`` matrix, so one GEMM per group covers a whole batch.

Each kernel processes a range ``[lo, hi)`` of independent jobs whose writes never overlap;
:func:`convcore._threads.run_split` spreads the jobs over a few Python threads (the
kernels release the GIL).
"""

from __future__ import annotations

import warnings

import numba

from convcore._threads import run_split


def _jit(func):
    """The one place Numba options are chosen: compiled once per dtype, cached on disk,
    releasing the GIL. Where no cache directory can be written (a read-only install
    without NUMBA_CACHE_DIR and no writable user cache), the kernel is compiled in memory
    on first use instead, every time the package is imported."""
    try:
        kernel = numba.njit(cache=True, nogil=True)(func)
        _probe_cache(kernel)
        return kernel
    except (RuntimeError, OSError):  # Numba found no writable cache location for this file
        if not _CACHE_WARNING:
            _CACHE_WARNING.append(func.__name__)
            warnings.warn(
                "convcore: no writable Numba cache directory, kernels are compiled in memory "
                "(set NUMBA_CACHE_DIR to a writable directory to cache them)",
                RuntimeWarning,
                stacklevel=2,
            )
        return numba.njit(cache=False, nogil=True)(func)


_CACHE_WARNING: list[str] = []


def _probe_cache(kernel) -> None:
    """Raise OSError if the cache directory Numba chose for ``kernel`` cannot be written.

    Some of Numba's cache locators (the one for zip imports, for instance) do not check
    this themselves and then fail on the first call instead.
    """
    locator = getattr(getattr(getattr(kernel, "_cache", None), "_impl", None), "locator", None)
    if locator is not None:
        locator.ensure_cache_path()


@_jit
def _valid_range(offset, stride, size, count):
    """Outputs ``o`` in ``[lo, hi)`` with ``0 <= o * stride + offset < size``, clipped to count."""
    lo = min(max(-((offset) // stride), 0), count)
    hi = min(max(-((offset - size) // stride), lo), count)
    return lo, hi


@_jit
def _copy_row(dst, d, src, s, n, step):
    """``dst[d + i] = src[s + i * step]`` for ``i < n``, on unsigned indices (no
    negative-index wraparound in the loop, so a unit step vectorises)."""
    d, s, n, step = numba.uint64(d), numba.uint64(s), numba.uint64(n), numba.uint64(step)
    if step == 1:
        for i in range(n):
            dst[d + i] = src[s + i]
    else:
        for i in range(n):
            dst[d + i] = src[s + i * step]


@_jit
def _add_row(dst, d, src, s, n, step):
    """``dst[d + i * step] += src[s + i]`` for ``i < n``, on unsigned indices."""
    d, s, n, step = numba.uint64(d), numba.uint64(s), numba.uint64(n), numba.uint64(step)
    if step == 1:
        for i in range(n):
            dst[d + i] += src[s + i]
    else:
        for i in range(n):
            dst[d + i * step] += src[s + i]


@_jit
def _zero(a, start, stop):
    for i in range(numba.uint64(start), numba.uint64(stop)):
        a[i] = 0


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


def _check_contiguous(*arrays) -> None:
    # the kernels index flat views; a copy made by ravel() would silently drop writes
    if not all(a.flags.c_contiguous for a in arrays):
        raise ValueError("window kernels need C-contiguous arrays")


def im2col_into(x, geo_args, cols) -> None:
    """Fill ``cols (C*KH*KW, n*OH*OW)`` from ``x (n, C, H, W)``; both C-contiguous, one dtype."""
    _check_contiguous(x, cols)
    run_split(_im2col, (x, *geo_args, cols), cols.shape[0] * x.shape[0], cols.size)


def col2im_into(cols, geo_args, x) -> None:
    """Overwrite ``x (n, C, H, W)`` with the column sums of ``cols``."""
    _check_contiguous(cols, x)
    run_split(_col2im, (cols, *geo_args, x), x.shape[0] * x.shape[1], cols.size)


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
