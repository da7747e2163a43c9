"""Window extraction (``im2col``) and its adjoint (``col2im``), public NCHW contracts."""

from __future__ import annotations

import numpy as np

from convcore import _kernels
from convcore._geometry import Geometry, as_pair, check_ndim, resolve_dtypes, window_geometry

__all__ = ["im2col", "col2im", "columns", "fold_columns"]


def columns(x: np.ndarray, geo: Geometry) -> np.ndarray:
    """Internal im2col: ``x (n, C, H, W)`` contiguous -> ``(C*KH*KW, n*OH*OW)``."""
    cols = np.empty((geo.C * geo.KH * geo.KW, x.shape[0] * geo.P), dtype=x.dtype)
    _kernels.im2col_into(x, geo.kernel_args, cols)
    return cols


def fold_columns(cols: np.ndarray, geo: Geometry, out: np.ndarray) -> np.ndarray:
    """Internal col2im: ``cols (C*KH*KW, n*OH*OW)`` summed into ``out (n, C, H, W)``."""
    _kernels.col2im_into(cols, geo.kernel_args, out)
    return out


def _float_array(a, name: str) -> tuple[np.ndarray, np.dtype]:
    a = np.asarray(a)
    compute, out = resolve_dtypes(a)
    return np.ascontiguousarray(a, dtype=compute), out


def im2col(x, kernel_size, *, stride=1, padding=0, dilation=1) -> np.ndarray:
    """Extract sliding windows of ``x`` as columns (torch's ``unfold``).

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    kernel_size, stride, dilation : int or (int, int)
    padding : int, (ph, pw), ((top, bottom), (left, right)), 'valid' or 'same'

    Returns
    -------
    cols : ndarray, shape (N, C*KH*KW, OH*OW)
        Rows ordered (c, kh, kw), columns (oh, ow); zero padding reads as 0.

    Examples
    --------
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> im2col(x, 2)[0]
    array([[0., 1., 3., 4.],
           [1., 2., 4., 5.],
           [3., 4., 6., 7.],
           [4., 5., 7., 8.]])
    """
    x, out_dtype = _float_array(x, "x")
    check_ndim(x, 4, "x", "(N, C, H, W)")
    geo = window_geometry(x.shape, kernel_size, stride, padding, dilation)
    cols = columns(x, geo).reshape(geo.C * geo.KH * geo.KW, geo.N, geo.P).transpose(1, 0, 2)
    return np.ascontiguousarray(cols, dtype=out_dtype)


def col2im(cols, output_size, kernel_size, *, stride=1, padding=0, dilation=1) -> np.ndarray:
    """Sum columns back into an image, adding overlaps (torch's ``fold``).

    The adjoint of :func:`im2col`: ``<im2col(x), c> == <x, col2im(c)>``.

    Parameters
    ----------
    cols : array, shape (N, C*KH*KW, OH*OW)
    output_size : int or (H, W)
        Size of the image to rebuild.
    kernel_size, stride, padding, dilation
        As in :func:`im2col`.

    Returns
    -------
    x : ndarray, shape (N, C, H, W)

    Examples
    --------
    >>> col2im(np.ones((1, 4, 4)), (3, 3), 2)[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    cols, out_dtype = _float_array(cols, "cols")
    check_ndim(cols, 3, "cols", "(N, C*KH*KW, L)")
    H, W = as_pair(output_size, "output_size")
    KH, KW = as_pair(kernel_size, "kernel_size")
    N, rows, L = cols.shape
    if rows % (KH * KW):
        raise ValueError(
            f"cols.shape[1]={rows} is not a multiple of KH*KW={KH * KW} for kernel_size {(KH, KW)}"
        )
    geo = window_geometry((N, rows // (KH * KW), H, W), (KH, KW), stride, padding, dilation)
    if L != geo.P:
        raise ValueError(
            f"cols.shape[2]={L} does not match the {geo.OH}x{geo.OW}={geo.P} windows of "
            f"output_size {(H, W)} with these options"
        )
    flat = np.ascontiguousarray(cols.transpose(1, 0, 2)).reshape(rows, N * L)
    x = np.empty((N, geo.C, H, W), dtype=cols.dtype)
    return fold_columns(flat, geo, x).astype(out_dtype, copy=False)
