"""Max and average pooling on the window machinery: im2col gathers each window into a
column, the reduction runs down the columns, and col2im scatters the gradient back.

Options follow torch's ``max_pool2d`` / ``avg_pool2d``: ``stride`` defaults to
``kernel_size``; ``padding`` is symmetric and at most half the kernel; with ``ceil_mode``
the output size is rounded up, but the last window must start inside the input or its
left padding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from convcore._checks import as_flag, float_input, output_grad
from convcore._geometry import Geometry, as_int, as_pair, check_ndim
from convcore.windows import columns, fold_columns

__all__ = [
    "PoolOptions",
    "pool_options",
    "max_pool2d",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "max_pool_forward",
    "max_pool_backward",
]


@dataclass(frozen=True)
class PoolOptions:
    """Normalised pooling options, each per axis ``(h, w)``."""

    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    ceil_mode: bool


def pool_options(kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False) -> PoolOptions:
    """Validate the shape-independent pooling options."""
    k = as_pair(kernel_size, "kernel_size")
    s = k if stride is None else as_pair(stride, "stride")
    p = as_pair(padding, "padding", minimum=0)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"padding={p} must be at most half of kernel_size={k}")
    return PoolOptions(k, s, p, as_pair(dilation, "dilation"), as_flag(ceil_mode, "ceil_mode"))


def _out_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool, axis: str) -> int:
    span = d * (k - 1) + 1
    out = (size + 2 * p - span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    if out < 1:
        raise ValueError(
            f"the pooling window spans {span} {axis} (kernel_size {k}, dilation {d}) but the padded "
            f"input has only {size + 2 * p} {axis} (input {size} + padding {2 * p})"
        )
    return out


def pool_geometry(x_shape, opts: PoolOptions) -> Geometry:
    """Geometry of pooling ``x (N, C, H, W)``; the windows of each channel are pooled alone."""
    N, C, H, W = x_shape
    (KH, KW), (sh, sw), (ph, pw), (dh, dw) = opts.kernel_size, opts.stride, opts.padding, opts.dilation
    OH = _out_size(H, KH, sh, ph, dh, opts.ceil_mode, "rows")
    OW = _out_size(W, KW, sw, pw, dw, opts.ceil_mode, "columns")
    return Geometry(N, C, H, W, KH, KW, sh, sw, dh, dw, ph, ph, pw, pw, OH, OW)


def _planes(geo: Geometry) -> Geometry:
    """The geometry of the same windows over ``(N*C, 1, H, W)``: one column per output element."""
    return geo._replace(N=geo.N * geo.C, C=1)


def _prepare(x, opts: PoolOptions):
    x, out_dtype = float_input(x)
    check_ndim(x, 4, "x", "(N, C, H, W)")
    return x, pool_geometry(x.shape, opts), out_dtype


# --- max pooling ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MaxPoolCache:
    """The geometry and, per output element, the row of its window's first maximum."""

    geo: Geometry
    padded: Geometry
    argmax: np.ndarray
    dtype: np.dtype
    out_dtype: np.dtype


def _pad_to_windows(a: np.ndarray, geo: Geometry, value) -> tuple[np.ndarray, Geometry]:
    """Pad ``a (n, 1, H, W)`` with ``value`` so every window lies inside; return it and its geometry."""
    bottom = max((geo.OH - 1) * geo.sh + geo.dh * (geo.KH - 1) + 1 - geo.pt - geo.H, 0)
    right = max((geo.OW - 1) * geo.sw + geo.dw * (geo.KW - 1) + 1 - geo.pl - geo.W, 0)
    pads = ((0, 0), (0, 0), (geo.pt, bottom), (geo.pl, right))
    a = np.pad(a, pads, constant_values=value)
    return a, geo._replace(H=a.shape[2], W=a.shape[3], pt=0, pb=0, pl=0, pr=0)


def _max_forward(x: np.ndarray, geo: Geometry):
    planes = _planes(geo)
    xp, padded = _pad_to_windows(x.reshape(planes.N, 1, geo.H, geo.W), planes, -np.inf)
    cols = columns(xp, padded)
    arg = cols.argmax(axis=0)
    y = cols[arg, np.arange(cols.shape[1])]
    stuck = np.flatnonzero(y == -np.inf)
    if stuck.size:  # a window whose maximum is -inf: its first element inside the input
        inside, _ = _pad_to_windows(np.ones((1, 1, geo.H, geo.W), x.dtype), planes._replace(N=1), 0)
        arg[stuck] = columns(inside, padded._replace(N=1))[:, stuck % geo.P].argmax(axis=0)
    return y.reshape(geo.N, geo.C, geo.OH, geo.OW), arg, padded


def _max_backward(dy: np.ndarray, cache: MaxPoolCache) -> np.ndarray:
    geo, padded = cache.geo, cache.padded
    dcols = np.zeros((geo.KH * geo.KW, dy.size), dtype=dy.dtype)
    dcols[cache.argmax, np.arange(dy.size)] = dy.reshape(-1)
    dxp = fold_columns(dcols, padded, np.empty((padded.N, 1, padded.H, padded.W), dy.dtype))
    dx = dxp[:, 0, geo.pt : geo.pt + geo.H, geo.pl : geo.pl + geo.W]
    return np.ascontiguousarray(dx).reshape(geo.N, geo.C, geo.H, geo.W)


def max_pool2d_forward(x, kernel_size, *, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Max pooling of NCHW input, keeping what backward needs.

    Padding never wins (it acts as -inf). Each window's maximum is taken at its first
    occurrence in row-major window order, and backward sends the window's gradient there
    only; NaN counts as the largest value.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int)
        At most half the kernel size.
    dilation : int or (int, int)
    ceil_mode : bool
        Round the output size up instead of down; the last window must still start inside
        the input or its left padding.

    Returns
    -------
    y : ndarray, shape (N, C, OH, OW)
        ``OH = (H + 2*padding - dilation*(KH - 1) - 1) // stride + 1`` (rounded up with ceil_mode).
    cache : MaxPoolCache

    Examples
    --------
    >>> x = np.array([[[[1.0, 3.0], [3.0, 2.0]]]])
    >>> y, cache = max_pool2d_forward(x, 2)
    >>> y[0, 0], max_pool2d_backward(np.ones_like(y), cache)[0, 0]
    (array([[3.]]), array([[0., 1.],
           [0., 0.]]))
    """
    opts = pool_options(kernel_size, stride, padding, dilation, ceil_mode)
    x, geo, out_dtype = _prepare(x, opts)
    y, arg, padded = _max_forward(x, geo)
    return y.astype(out_dtype, copy=False), MaxPoolCache(geo, padded, arg, x.dtype, out_dtype)


def max_pool2d_backward(dy, cache: MaxPoolCache) -> np.ndarray:
    """Input gradient of max pooling: ``dy (N, C, OH, OW)`` -> ``dx (N, C, H, W)``.

    Each window's gradient goes to its first maximum; overlapping windows add up.
    """
    if not isinstance(cache, MaxPoolCache):
        raise TypeError(f"cache must come from max_pool2d_forward, got {type(cache).__name__}")
    g = cache.geo
    dy = output_grad(dy, (g.N, g.C, g.OH, g.OW), cache.dtype)
    return _max_backward(dy, cache).astype(cache.out_dtype, copy=False)


def max_pool2d(x, kernel_size, *, stride=None, padding=0, dilation=1, ceil_mode=False) -> np.ndarray:
    """Max pooling; :func:`max_pool2d_forward` without the cache.

    Examples
    --------
    >>> max_pool2d(np.ones((2, 3, 7, 7)), 2, ceil_mode=True).shape
    (2, 3, 4, 4)
    """
    return max_pool2d_forward(
        x, kernel_size, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode
    )[0]


# --- average pooling -----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AvgPoolCache:
    """The geometry and the divisor of each output position."""

    geo: Geometry
    divisor: np.ndarray
    dtype: np.dtype
    out_dtype: np.dtype


def _counts(size: int, k: int, s: int, p: int, out: int, include_pad: bool) -> np.ndarray:
    """Per output position, the window's length inside the padded input (or the input)."""
    start = np.arange(out) * s - p
    end = np.minimum(start + k, size + p)
    if include_pad:
        return end - start
    return np.minimum(end, size) - np.maximum(start, 0)


def _divisor(geo: Geometry, include_pad: bool, dtype) -> np.ndarray:
    rows = _counts(geo.H, geo.KH, geo.sh, geo.pt, geo.OH, include_pad)
    cols = _counts(geo.W, geo.KW, geo.sw, geo.pl, geo.OW, include_pad)
    return np.multiply.outer(rows, cols).astype(dtype)


def avg_pool2d_forward(x, kernel_size, *, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average pooling of NCHW input, keeping what backward needs.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int)
        Zero padding, at most half the kernel size.
    ceil_mode : bool
        As in :func:`max_pool2d_forward`.
    count_include_pad : bool
        Divide by the window's size inside the padded input (True) or by the number of
        input elements it covers (False). Either way, the part of a ceil_mode window that
        hangs past the padding is not counted.

    Returns
    -------
    y : ndarray, shape (N, C, OH, OW)
    cache : AvgPoolCache

    Examples
    --------
    >>> y, cache = avg_pool2d_forward(np.arange(16.0).reshape(1, 1, 4, 4), 2)
    >>> y[0, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """
    opts = pool_options(kernel_size, stride, padding, 1, ceil_mode)
    include_pad = as_flag(count_include_pad, "count_include_pad")
    x, geo, out_dtype = _prepare(x, opts)
    planes = _planes(geo)
    divisor = _divisor(geo, include_pad, x.dtype)
    sums = columns(x.reshape(planes.N, 1, geo.H, geo.W), planes).sum(axis=0)
    y = sums.reshape(geo.N, geo.C, geo.OH, geo.OW) / divisor
    return y.astype(out_dtype, copy=False), AvgPoolCache(geo, divisor, x.dtype, out_dtype)


def avg_pool2d_backward(dy, cache: AvgPoolCache) -> np.ndarray:
    """Input gradient of average pooling: ``dy (N, C, OH, OW)`` -> ``dx (N, C, H, W)``.

    Every element of a window inside the input receives ``dy / divisor``.
    """
    if not isinstance(cache, AvgPoolCache):
        raise TypeError(f"cache must come from avg_pool2d_forward, got {type(cache).__name__}")
    geo = cache.geo
    dy = output_grad(dy, (geo.N, geo.C, geo.OH, geo.OW), cache.dtype)
    planes = _planes(geo)
    share = (dy / cache.divisor).reshape(1, -1)
    dcols = np.ascontiguousarray(np.broadcast_to(share, (geo.KH * geo.KW, share.shape[1])))
    dx = fold_columns(dcols, planes, np.empty((planes.N, 1, geo.H, geo.W), cache.dtype))
    return dx.reshape(geo.N, geo.C, geo.H, geo.W).astype(cache.out_dtype, copy=False)


def avg_pool2d(x, kernel_size, *, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average pooling; :func:`avg_pool2d_forward` without the cache.

    Examples
    --------
    >>> avg_pool2d(np.ones((1, 2, 5, 5)), 3, stride=2, padding=1, count_include_pad=False)[0, 0]
    array([[1., 1., 1.],
           [1., 1., 1.],
           [1., 1., 1.]])
    """
    return avg_pool2d_forward(
        x,
        kernel_size,
        stride=stride,
        padding=padding,
        ceil_mode=ceil_mode,
        count_include_pad=count_include_pad,
    )[0]


# --- the classic drop-ins ------------------------------------------------------------------


def _pool_param(pool_param) -> dict:
    if not isinstance(pool_param, Mapping):
        raise TypeError(f"pool_param must be a dict, got {type(pool_param).__name__}")
    keys = {"pool_height", "pool_width", "stride"}
    unknown = sorted(set(pool_param) - keys)
    if unknown:
        raise ValueError(f"pool_param has unknown keys {unknown}; expected {sorted(keys)}")
    missing = sorted({"pool_height", "pool_width"} - set(pool_param))
    if missing:
        raise ValueError(f"pool_param is missing {missing}")
    kernel = (
        as_int(pool_param["pool_height"], "pool_param['pool_height']", 1),
        as_int(pool_param["pool_width"], "pool_param['pool_width']", 1),
    )
    stride = pool_param.get("stride")
    return {
        "kernel_size": kernel,
        "stride": None if stride is None else as_pair(stride, "pool_param['stride']"),
    }


def max_pool_forward(x, pool_param):
    """Drop-in for the classic ``max_pool_forward_naive(x, pool_param)``.

    ``pool_param = {'pool_height': ph, 'pool_width': pw, 'stride': s}``; ``stride`` is
    optional and defaults to the pool size. No padding; the output size is floored.

    Examples
    --------
    >>> out, cache = max_pool_forward(np.ones((2, 3, 8, 8)), {"pool_height": 2, "pool_width": 2, "stride": 2})
    >>> out.shape, max_pool_backward(np.ones_like(out), cache).shape
    ((2, 3, 4, 4), (2, 3, 8, 8))
    """
    return max_pool2d_forward(x, **_pool_param(pool_param))


def max_pool_backward(dout, cache):
    """Drop-in for ``max_pool_backward_naive(dout, cache)``: returns ``dx``.

    The gradient of each window goes to its first maximum only, not to every tie.
    """
    return max_pool2d_backward(dout, cache)
