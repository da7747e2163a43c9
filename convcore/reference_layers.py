"""Naive loops for the layer operations: padding modes, transposed convolution, max and
average pooling. Like :mod:`convcore.reference`, they are the tests' oracle: written
element by element from the definitions, for obviousness rather than speed.

Argument normalisation is shared with the engine; output sizes, index maps, window
bounds, tie-breaking and divisors are computed here independently.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "pad",
    "pad_backward",
    "padded_conv2d_forward",
    "padded_conv2d_backward",
    "conv_transpose2d_forward",
    "conv_transpose2d_backward",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
]


# --- padding modes -------------------------------------------------------------------------


def _source(i: int, n: int, mode: str) -> int | None:
    """The input index that padded index ``i`` (``i < 0`` or ``i >= n`` in the padding) reads."""
    if 0 <= i < n:
        return i
    if mode == "zeros":
        return None
    if mode == "reflect":  # mirror about the edge element, which is not repeated
        return -i if i < 0 else 2 * (n - 1) - i
    if mode == "replicate":
        return 0 if i < 0 else n - 1
    if mode == "circular":  # one wrap around
        return i + n if i < 0 else i - n
    raise ValueError(f"unknown padding mode {mode!r}")


def pad(x, pads, mode):
    """Pad ``x (N, C, H, W)`` by ``pads = (top, bottom, left, right)`` in ``mode``."""
    pt, pb, pl, pr = pads
    N, C, H, W = x.shape
    xp = np.zeros((N, C, H + pt + pb, W + pl + pr), dtype=x.dtype)
    for i in range(xp.shape[2]):
        for j in range(xp.shape[3]):
            si, sj = _source(i - pt, H, mode), _source(j - pl, W, mode)
            if si is not None and sj is not None:
                xp[:, :, i, j] = x[:, :, si, sj]
    return xp


def pad_backward(dxp, x_shape, pads, mode):
    """Adjoint of :func:`pad`: each padded element's gradient added to the element it copies."""
    pt, pb, pl, pr = pads
    N, C, H, W = x_shape
    dx = np.zeros(x_shape, dtype=dxp.dtype)
    for i in range(dxp.shape[2]):
        for j in range(dxp.shape[3]):
            si, sj = _source(i - pt, H, mode), _source(j - pl, W, mode)
            if si is not None and sj is not None:
                dx[:, :, si, sj] += dxp[:, :, i, j]
    return dx


def padded_conv2d_forward(x, w, b=None, *, padding_mode, stride=1, padding=0, dilation=1, groups=1):
    """Convolution with a padding mode: :func:`pad`, then the naive unpadded convolution.

    Returns ``(y, cache)``; the same arguments as :func:`convcore.conv2d_forward`.
    """
    from convcore import reference
    from convcore.conv import prepare_conv

    x, w, b, geo, out_dtype = prepare_conv(x, w, b, stride, padding, dilation, groups)
    pads = (geo.pt, geo.pb, geo.pl, geo.pr)
    y, cache = reference.conv2d_forward(
        pad(x, pads, padding_mode), w, b, stride=stride, dilation=dilation, groups=groups
    )
    return y.astype(out_dtype), (cache, x.shape, pads, padding_mode, out_dtype)


def padded_conv2d_backward(dy, cache):
    """Returns ``(dx, dw, db)`` for :func:`padded_conv2d_forward`."""
    from convcore import reference

    inner, x_shape, pads, mode, out_dtype = cache
    dxp, dw, db = reference.conv2d_backward(dy, inner)
    dx = pad_backward(np.asarray(dxp, dtype=inner[0].dtype), x_shape, pads, mode)
    return tuple(None if a is None else np.asarray(a, dtype=out_dtype) for a in (dx, dw, db))


# --- transposed convolution ----------------------------------------------------------------


def conv_transpose2d_forward(x, w, b=None, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """Naive transposed convolution: every input pixel scatters ``x * w`` into a canvas,
    whose ``padding`` borders are then cropped. Same arguments as
    :func:`convcore.conv_transpose2d_forward`; returns ``(y, cache)``.
    """
    from convcore._geometry import resolve_dtypes
    from convcore.transpose import transpose_options

    o = transpose_options(stride, padding, output_padding, dilation, groups)
    compute, out_dtype = resolve_dtypes(np.asarray(x), np.asarray(w), None if b is None else np.asarray(b))
    x, w = np.asarray(x, dtype=compute), np.asarray(w, dtype=compute)
    N, C_in, H, W = x.shape
    _, Cg_out, KH, KW = w.shape
    (sh, sw), (dh, dw), (oph, opw) = o.stride, o.dilation, o.output_padding
    pt, pb, pl, pr = o.padding
    OH = (H - 1) * sh - pt - pb + dh * (KH - 1) + oph + 1
    OW = (W - 1) * sw - pl - pr + dw * (KW - 1) + opw + 1
    # the full scatter, tall enough for every window and for the cropped output
    rows = max((H - 1) * sh + dh * (KH - 1) + 1, pt + OH)
    cols = max((W - 1) * sw + dw * (KW - 1) + 1, pl + OW)
    canvas = np.zeros((N, Cg_out * o.groups, rows, cols), compute)
    Cg_in = C_in // o.groups
    for n in range(N):
        for ci in range(C_in):
            outs = slice(ci // Cg_in * Cg_out, (ci // Cg_in + 1) * Cg_out)
            for i in range(H):
                for j in range(W):
                    for kh in range(KH):
                        for kw in range(KW):
                            canvas[n, outs, i * sh + kh * dh, j * sw + kw * dw] += (
                                x[n, ci, i, j] * w[ci, :, kh, kw]
                            )
    y = canvas[:, :, pt : pt + OH, pl : pl + OW].copy()
    if b is not None:
        y += np.asarray(b, dtype=compute)[:, None, None]
    return y.astype(out_dtype), (x, w, b is not None, o, canvas.shape, out_dtype)


def conv_transpose2d_backward(dy, cache):
    """Naive gradients ``(dx, dw, db)`` of :func:`conv_transpose2d_forward`."""
    x, w, has_bias, o, canvas_shape, out_dtype = cache
    dy = np.asarray(dy, dtype=x.dtype)
    pt, _, pl, _ = o.padding
    dcanvas = np.zeros(canvas_shape, dtype=x.dtype)
    dcanvas[:, :, pt : pt + dy.shape[2], pl : pl + dy.shape[3]] = dy
    N, C_in, H, W = x.shape
    _, Cg_out, KH, KW = w.shape
    (sh, sw), (dh, dw_) = o.stride, o.dilation
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    Cg_in = C_in // o.groups
    for n in range(N):
        for ci in range(C_in):
            outs = slice(ci // Cg_in * Cg_out, (ci // Cg_in + 1) * Cg_out)
            for i in range(H):
                for j in range(W):
                    for kh in range(KH):
                        for kw in range(KW):
                            g = dcanvas[n, outs, i * sh + kh * dh, j * sw + kw * dw_]
                            dx[n, ci, i, j] += np.sum(g * w[ci, :, kh, kw])
                            dw[ci, :, kh, kw] += x[n, ci, i, j] * g
    db = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return tuple(None if a is None else a.astype(out_dtype) for a in (dx, dw, db))


# --- pooling -------------------------------------------------------------------------------


def _pool_size(size, k, s, p, d, ceil_mode):
    span = d * (k - 1) + 1
    if not ceil_mode:
        return (size + 2 * p - span) // s + 1
    out = math.ceil((size + 2 * p - span) / s) + 1
    if (out - 1) * s - p >= size:  # the last window would start in the right padding
        out -= 1
    return out


def _pool_setup(x, kernel_size, stride, padding, dilation, ceil_mode):
    from convcore._geometry import resolve_dtypes
    from convcore.pooling import pool_options

    o = pool_options(kernel_size, stride, padding, dilation, ceil_mode)
    compute, out_dtype = resolve_dtypes(np.asarray(x))
    x = np.asarray(x, dtype=compute)
    H, W = x.shape[2:]
    OH = _pool_size(H, o.kernel_size[0], o.stride[0], o.padding[0], o.dilation[0], o.ceil_mode)
    OW = _pool_size(W, o.kernel_size[1], o.stride[1], o.padding[1], o.dilation[1], o.ceil_mode)
    return x, o, OH, OW, out_dtype


def _window(o, oh, ow, H, W):
    """Input positions of window (oh, ow) in row-major window order, skipping the padding."""
    (KH, KW), (sh, sw), (ph, pw), (dh, dw) = o.kernel_size, o.stride, o.padding, o.dilation
    for kh in range(KH):
        for kw in range(KW):
            ih, iw = oh * sh - ph + kh * dh, ow * sw - pw + kw * dw
            if 0 <= ih < H and 0 <= iw < W:
                yield ih, iw


def max_pool2d_forward(x, kernel_size, *, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Naive max pooling; returns ``(y, cache)``. A later element wins only if it is
    strictly larger (or NaN over a number), so ties go to the first maximum.
    """
    x, o, OH, OW, out_dtype = _pool_setup(x, kernel_size, stride, padding, dilation, ceil_mode)
    N, C, H, W = x.shape
    y = np.full((N, C, OH, OW), -np.inf, dtype=x.dtype)
    where = {}
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    best = None
                    for ih, iw in _window(o, oh, ow, H, W):
                        v = x[n, c, ih, iw]
                        if best is None or v > best or (np.isnan(v) and not np.isnan(best)):
                            best, where[n, c, oh, ow] = v, (ih, iw)
                    if best is not None:
                        y[n, c, oh, ow] = best
    return y.astype(out_dtype), (x.shape, where, x.dtype, out_dtype)


def max_pool2d_backward(dy, cache):
    """Naive gradient of :func:`max_pool2d_forward`: each ``dy`` goes to its window's winner."""
    x_shape, where, dtype, out_dtype = cache
    dy = np.asarray(dy, dtype=dtype)
    dx = np.zeros(x_shape, dtype=dtype)
    for (n, c, oh, ow), (ih, iw) in where.items():
        dx[n, c, ih, iw] += dy[n, c, oh, ow]
    return dx.astype(out_dtype)


def _avg_divisor(o, oh, ow, H, W, count_include_pad):
    (KH, KW), (sh, sw), (ph, pw) = o.kernel_size, o.stride, o.padding
    hs, ws = oh * sh - ph, ow * sw - pw
    he, we = min(hs + KH, H + ph), min(ws + KW, W + pw)  # clipped to the padded input
    if count_include_pad:
        return (he - hs) * (we - ws)
    return (min(he, H) - max(hs, 0)) * (min(we, W) - max(ws, 0))


def avg_pool2d_forward(x, kernel_size, *, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Naive average pooling; returns ``(y, cache)``."""
    x, o, OH, OW, out_dtype = _pool_setup(x, kernel_size, stride, padding, 1, ceil_mode)
    N, C, H, W = x.shape
    y = np.zeros((N, C, OH, OW), dtype=x.dtype)
    for oh in range(OH):
        for ow in range(OW):
            total = sum(x[:, :, ih, iw] for ih, iw in _window(o, oh, ow, H, W))
            y[:, :, oh, ow] = total / _avg_divisor(o, oh, ow, H, W, count_include_pad)
    return y.astype(out_dtype), (x.shape, o, count_include_pad, x.dtype, out_dtype)


def avg_pool2d_backward(dy, cache):
    """Naive gradient of :func:`avg_pool2d_forward`."""
    x_shape, o, count_include_pad, dtype, out_dtype = cache
    dy = np.asarray(dy, dtype=dtype)
    H, W = x_shape[2:]
    dx = np.zeros(x_shape, dtype=dtype)
    for oh in range(dy.shape[2]):
        for ow in range(dy.shape[3]):
            share = dy[:, :, oh, ow] / _avg_divisor(o, oh, ow, H, W, count_include_pad)
            for ih, iw in _window(o, oh, ow, H, W):
                dx[:, :, ih, iw] += share
    return dx.astype(out_dtype)
