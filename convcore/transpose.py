"""Transposed convolution (torch's ``conv_transpose2d``): the input gradient of a convolution
run as a forward pass.

Its forward pass is the dX path of :mod:`convcore.conv`, one GEMM per group then col2im;
its backward pass is that convolution's forward machinery, im2col then GEMMs.

The geometry is that of the convolution being transposed: ``Geometry.H, W`` are the
transposed output's size, ``Geometry.OH, OW`` the input's, ``F`` its channels ``C_in``
and ``C`` the output channels ``C_out``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convcore import _gemm
from convcore._bias import add_bias, bias_grad
from convcore._blas import single_threaded_blas
from convcore._checks import output_grad
from convcore._geometry import Geometry, as_int, as_pair, check_ndim, padding_sides, resolve_dtypes

__all__ = [
    "TransposeOptions",
    "TransposeCache",
    "transpose_options",
    "conv_transpose2d",
    "conv_transpose2d_forward",
    "conv_transpose2d_backward",
]


@dataclass(frozen=True)
class TransposeOptions:
    """Normalised options: per-axis stride, dilation, output padding, (top, bottom, left, right)."""

    stride: tuple[int, int]
    padding: tuple[int, int, int, int]
    output_padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int


def transpose_options(stride=1, padding=0, output_padding=0, dilation=1, groups=1) -> TransposeOptions:
    """Validate the shape-independent options of a transposed convolution.

    ``padding`` is an int, ``(ph, pw)`` or ``((top, bottom), (left, right))``; each
    ``output_padding`` must be smaller than the stride or the dilation of its axis.
    """
    s = as_pair(stride, "stride")
    d = as_pair(dilation, "dilation")
    if isinstance(padding, str):
        raise ValueError(
            f"padding must be an int, a pair or a pair of pairs for a transposed convolution, got {padding!r}"
        )
    pads = padding_sides(padding, 0, 0, (1, 1), s, d)
    op = as_pair(output_padding, "output_padding", minimum=0)
    for axis in range(2):
        if op[axis] >= s[axis] and op[axis] >= d[axis]:
            raise ValueError(
                f"output_padding={op} must be smaller than either stride={s} or dilation={d} in each axis"
            )
    return TransposeOptions(s, pads, op, d, as_int(groups, "groups", 1))


def transpose_geometry(x_shape, w_shape, opts: TransposeOptions) -> Geometry:
    """Validate ``x (N, C_in, H, W)`` against ``w (C_in, C_out/groups, KH, KW)`` and size the output.

    ``OH = (H - 1)*stride - pad_top - pad_bottom + dilation*(KH - 1) + output_padding + 1``.
    """
    N, C_in, H, W = x_shape
    Cw, Cg_out, KH, KW = w_shape
    g = opts.groups
    if C_in == 0:
        raise ValueError(f"x must have at least one input channel, got shape {tuple(x_shape)}")
    if C_in % g:
        raise ValueError(f"groups={g} must divide the input channels C_in={C_in}")
    if Cw != C_in:
        raise ValueError(
            f"x has C_in={C_in} channels but w of shape {tuple(w_shape)} expects w.shape[0]={Cw}"
        )
    if 0 in (Cg_out, KH, KW):
        raise ValueError(f"w must have output channels and a non-empty kernel, got shape {tuple(w_shape)}")
    (sh, sw), (dh, dw), (oph, opw) = opts.stride, opts.dilation, opts.output_padding
    pt, pb, pl, pr = opts.padding
    OH = (H - 1) * sh - pt - pb + dh * (KH - 1) + oph + 1
    OW = (W - 1) * sw - pl - pr + dw * (KW - 1) + opw + 1
    if OH < 1 or OW < 1:
        raise ValueError(
            f"the transposed convolution of an input of size {(H, W)} with kernel {(KH, KW)} and "
            f"padding {opts.padding} has an empty output of size {(OH, OW)}"
        )
    return Geometry(N, Cg_out * g, OH, OW, KH, KW, sh, sw, dh, dw, pt, pb, pl, pr, H, W, C_in, g)


@dataclass(frozen=True, eq=False)
class TransposeCache:
    """What :func:`conv_transpose2d_backward` needs: inputs in the compute dtype and the geometry."""

    x: np.ndarray
    w: np.ndarray
    has_bias: bool
    geo: Geometry
    out_dtype: np.dtype


def _prepare(x, w, b, opts: TransposeOptions):
    x, w = np.asarray(x), np.asarray(w)
    b = None if b is None else np.asarray(b)
    compute, out_dtype = resolve_dtypes(x, w, b)
    check_ndim(x, 4, "x", "(N, C_in, H, W)")
    check_ndim(w, 4, "w", "(C_in, C_out/groups, KH, KW)")
    geo = transpose_geometry(x.shape, w.shape, opts)
    if b is not None and b.shape != (geo.C,):
        raise ValueError(f"b must have shape (C_out,) = ({geo.C},), got {b.shape}")
    x = np.ascontiguousarray(x, dtype=compute)
    w = np.ascontiguousarray(w, dtype=compute)
    b = None if b is None else np.ascontiguousarray(b, dtype=compute)
    return x, w, b, geo, out_dtype


def _forward(x, w, b, geo: Geometry) -> np.ndarray:
    # the input gradient of the convolution whose output gradient is x
    y = np.empty((geo.N, geo.C, geo.H, geo.W), dtype=x.dtype)
    _gemm.backward(None, w, x, geo, y)
    if b is not None:
        add_bias(y, b)
    return y


def _backward(dy, cache: TransposeCache):
    # dx: that convolution applied to dy; dw: its weight gradient, with input dy and
    # output gradient x
    geo = cache.geo
    dx = np.empty_like(cache.x)
    _gemm.forward(dy, cache.w, None, geo, dx)
    return dx, _gemm.backward(dy, cache.w, cache.x, geo, None)


def conv_transpose2d_forward(x, w, b=None, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """Transposed 2-D convolution of NCHW input, keeping what backward needs.

    The adjoint of :func:`convcore.conv2d` with respect to its input, with torch's
    ``conv_transpose2d`` arguments: each input pixel scatters ``x * w`` into the output.

    Parameters
    ----------
    x : array, shape (N, C_in, H, W)
    w : array, shape (C_in, C_out // groups, KH, KW)
    b : array, shape (C_out,), optional
    stride, dilation : int or (int, int)
    padding : int, (ph, pw) or ((top, bottom), (left, right))
        Rows and columns removed from the full output's borders.
    output_padding : int or (int, int)
        Rows and columns added at the bottom and right; each smaller than the stride or
        the dilation of its axis.
    groups : int
        Divides ``C_in``; group g maps channels ``g*C_in/groups ...`` to ``g*C_out/groups ...``.

    Returns
    -------
    y : ndarray, shape (N, C_out, OH, OW)
        ``OH = (H - 1)*stride - pad_top - pad_bottom + dilation*(KH - 1) + output_padding + 1``.
    cache : TransposeCache
        Pass to :func:`conv_transpose2d_backward`.

    Examples
    --------
    >>> y, cache = conv_transpose2d_forward(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)), stride=2)
    >>> y.shape
    (1, 1, 4, 4)
    """
    opts = transpose_options(stride, padding, output_padding, dilation, groups)
    x, w, b, geo, out_dtype = _prepare(x, w, b, opts)
    y = _forward(x, w, b, geo)
    return y.astype(out_dtype, copy=False), TransposeCache(x, w, b is not None, geo, out_dtype)


def conv_transpose2d_backward(dy, cache: TransposeCache):
    """Gradients of a transposed convolution from the output gradient.

    Parameters
    ----------
    dy : array, shape (N, C_out, OH, OW)
    cache : TransposeCache
        From :func:`conv_transpose2d_forward`; not modified.

    Returns
    -------
    dx : ndarray, shape (N, C_in, H, W)
    dw : ndarray, shape (C_in, C_out // groups, KH, KW)
    db : ndarray, shape (C_out,), or None without a bias

    Examples
    --------
    >>> y, cache = conv_transpose2d_forward(np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3)))
    >>> dx, dw, db = conv_transpose2d_backward(np.ones_like(y), cache)
    >>> dx[0, 0]
    array([[9., 9.],
           [9., 9.]])
    """
    if not isinstance(cache, TransposeCache):
        raise TypeError(f"cache must come from conv_transpose2d_forward, got {type(cache).__name__}")
    geo = cache.geo
    dy = output_grad(dy, (geo.N, geo.C, geo.H, geo.W), cache.x.dtype)
    dx, dw = _backward(dy, cache)
    db = None
    if cache.has_bias:
        with single_threaded_blas():  # see convcore._bias
            db = bias_grad(dy, np.zeros(geo.C, dy.dtype))
    return tuple(None if a is None else a.astype(cache.out_dtype, copy=False) for a in (dx, dw, db))


def conv_transpose2d(x, w, b=None, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """Transposed 2-D convolution; :func:`conv_transpose2d_forward` without the cache.

    Examples
    --------
    >>> conv_transpose2d(np.ones((2, 4, 5, 5)), np.ones((4, 3, 3, 3)), stride=2, padding=1,
    ...                  output_padding=1).shape
    (2, 3, 10, 10)
    """
    opts = transpose_options(stride, padding, output_padding, dilation, groups)
    x, w, b, geo, out_dtype = _prepare(x, w, b, opts)
    return _forward(x, w, b, geo).astype(out_dtype, copy=False)
