"""Naive loop convolution: the oracle the engine is tested against and the baseline it is
benchmarked against. Written for obviousness, not speed.

It follows the classic ``conv_forward_naive`` / ``conv_backward_naive`` loops, generalised
to per-axis stride, asymmetric padding, dilation and groups: pad the input with zeros, slide
each filter over its group's channels, and in backward scatter ``dy * w`` into the padded
input gradient, then crop.
"""

from __future__ import annotations

import numpy as np

from convcore.conv import prepare_conv

__all__ = ["conv2d_forward", "conv2d_backward"]


def _window(geo, i, j):
    """Row and column slices of the padded input seen by output position (i, j)."""
    rows = slice(i * geo.sh, i * geo.sh + geo.dh * (geo.KH - 1) + 1, geo.dh)
    cols = slice(j * geo.sw, j * geo.sw + geo.dw * (geo.KW - 1) + 1, geo.dw)
    return rows, cols


def _pad(x, geo):
    return np.pad(x, ((0, 0), (0, 0), (geo.pt, geo.pb), (geo.pl, geo.pr)))


def conv2d_forward(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
    """Naive forward pass; same arguments and shapes as :func:`convcore.conv2d_forward`.

    Returns ``(y, cache)`` where ``cache = (x, w, b, geo, out_dtype)``.
    """
    x, w, b, geo, out_dtype = prepare_conv(x, w, b, stride, padding, dilation, groups)
    xp = _pad(x, geo)
    y = np.zeros((geo.N, geo.F, geo.OH, geo.OW), dtype=x.dtype)
    for n in range(geo.N):
        for f in range(geo.F):
            g = f // geo.Fg
            channels = slice(g * geo.Cg, (g + 1) * geo.Cg)
            for i in range(geo.OH):
                for j in range(geo.OW):
                    rows, cols = _window(geo, i, j)
                    y[n, f, i, j] = np.sum(xp[n, channels, rows, cols] * w[f])
            if b is not None:
                y[n, f] += b[f]
    return y.astype(out_dtype, copy=False), (x, w, b, geo, out_dtype)


def conv2d_backward(dy, cache):
    """Naive backward pass; returns ``(dx, dw, db)`` like :func:`convcore.conv2d_backward`."""
    x, w, b, geo, out_dtype = cache
    dy = np.asarray(dy, dtype=x.dtype)
    if dy.shape != (geo.N, geo.F, geo.OH, geo.OW):
        raise ValueError(f"dy has shape {dy.shape}, expected {(geo.N, geo.F, geo.OH, geo.OW)}")
    xp = _pad(x, geo)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for n in range(geo.N):
        for f in range(geo.F):
            g = f // geo.Fg
            channels = slice(g * geo.Cg, (g + 1) * geo.Cg)
            for i in range(geo.OH):
                for j in range(geo.OW):
                    rows, cols = _window(geo, i, j)
                    dw[f] += xp[n, channels, rows, cols] * dy[n, f, i, j]
                    dxp[n, channels, rows, cols] += w[f] * dy[n, f, i, j]
    dx = dxp[:, :, geo.pt : geo.pt + geo.H, geo.pl : geo.pl + geo.W]
    db = None if b is None else dy.sum(axis=(0, 2, 3))
    return tuple(None if a is None else np.array(a, dtype=out_dtype) for a in (dx, dw, db))


# The naive loops for padding modes, transposed convolution and pooling.
from convcore.reference_layers import *  # noqa: E402, F403
from convcore.reference_layers import __all__ as _layer_loops  # noqa: E402

__all__ += _layer_loops
