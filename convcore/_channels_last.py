"""im2col + GEMM over a channels-last copy of the input, for layers with short rows.

The NCHW window kernels (:mod:`convcore._kernels`) copy one output row of one window
tap at a time: OW values. On small images (an 8 or 16 wide output) those runs are too
short to vectorise, and im2col cost 0.9 ns a value on an 8-wide output against 0.17 on
a 56-wide one. Here each chunk of images is first transposed to ``(n, H, W, C)``, where
every window tap is a run of C contiguous values, and the columns are built transposed,
``cols_t (positions, KH*KW*C)``; the GEMMs take them as they are (BLAS reads transposed
operands in place): ``cols_t @ w2.T`` (the output, channels-last, transposed into NCHW
``y`` by the same kernel), ``dw2 = dy @ cols_t`` and ``dcols_t = dy.T @ w2``, with
``w2 (F, KH*KW*C)`` the weights in tap-major order. The column gradient is folded into
a channels-last scratch image and transposed back into dx.

Used for one group, whole images per chunk and a batch split by images (see
:func:`applies`); chunks, threads and the workspace are those of :mod:`convcore._gemm`.
"""

from __future__ import annotations

import numpy as np

from convcore._gemm import (
    _per_image,
    add_in_order,
    add_products,
    backward_plan,
    forward_plan,
    output_grad_operands,
    run_plan,
)
from convcore._geometry import Geometry
from convcore._kernels import col2im_cl_into, from_channels_last, im2col_cl_into, to_channels_last
from convcore._numba import check_contiguous
from convcore.workspace import scratch


def applies(geo: Geometry, itemsize: int) -> bool:
    """True where this engine can run: one group, not pointwise, every chunk whole images
    of all channels (the batch split by images, each image within the scratch budget)."""
    if geo.groups != 1 or geo.is_pointwise:
        return False
    plans = forward_plan(geo, itemsize, channels_last=True), backward_plan(geo, itemsize, channels_last=True)
    return all(
        (c.oh0, c.oh1, c.c0, c.c1) == (0, geo.OH, 0, geo.C)
        for plan in plans
        for chunks in plan
        for c in chunks
    )


def _tap_major(w: np.ndarray) -> np.ndarray:
    """``w (F, C, KH, KW)`` as ``(F, KH*KW*C)``, taps outermost."""
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(w.shape[0], -1)


def _columns(x, geo: Geometry, n0: int, n1: int, width: int, *more):
    """Scratch for the chunk's channels-last input and ``cols_t (positions, width)`` (plus
    ``more`` shapes), with ``cols_t`` filled from ``x[n0:n1]``: its KH*KW*C columns, then
    ones in a last column if ``width`` has room for one (the bias's)."""
    n = n1 - n0
    xh, cols_t, *rest = scratch(x.dtype, (n, geo.H, geo.W, geo.C), (n * geo.P, width), *more)
    to_channels_last(x[n0:n1], xh)
    im2col_cl_into(xh, geo.kernel_args, cols_t)
    cols_t[:, geo.C * geo.KH * geo.KW :] = 1
    return xh, cols_t, rest


def forward(x, w, b, geo: Geometry, y) -> None:
    """Fill ``y (N, F, OH, OW)`` with the convolution of ``x`` and ``w`` (plus ``b``).

    The GEMM output is position-major, ``cols_t @ w2.T``, transposed into ``y`` by the
    same kernel as the input: in float32 OpenBLAS ran that product 10-25% faster than
    ``w2 @ cols_t.T`` on the anchors' small layers (in float64, 15% slower). The bias
    rides in it: a column of ones beside the columns meets a bias column beside ``w2``.
    """
    check_contiguous(x, w, y)
    w2 = _tap_major(w) if b is None else np.concatenate((_tap_major(w), b[:, None]), axis=1)

    def work(chunks):
        for c in chunks:
            n = c.n1 - c.n0
            _, cols_t, (out,) = _columns(x, geo, c.n0, c.n1, w2.shape[1], (n * geo.P, geo.F))
            np.matmul(cols_t, w2.T, out=out)
            from_channels_last(out.reshape(n, geo.OH, geo.OW, geo.F), y[c.n0 : c.n1])

    run_plan(work, forward_plan(geo, x.itemsize, channels_last=True))


def backward(x, w, dy, geo: Geometry, dx, db=None) -> np.ndarray:
    """Fill ``dx (N, C, H, W)`` with the input gradient (and ``db (F,)``, if given, with
    the bias gradient: the last column of the weight gradient's product, from a column
    of ones beside the columns) and return the weight gradient, shaped like ``w``, from
    ``dy (N, F, OH, OW)``."""
    check_contiguous(x, w, dy, dx)
    w2 = _tap_major(w)
    width = w2.shape[1] + (db is not None)

    def work(chunks):
        dw2 = np.zeros((geo.F, width), w2.dtype)
        for c in chunks:
            n = c.n1 - c.n0
            more = [(n * geo.P, w2.shape[1])] + ([] if _per_image(geo, c) else [(1, geo.F, n * geo.P)])
            xh, cols_t, (dcols_t, *grad) = _columns(x, geo, c.n0, c.n1, width, *more)
            grads = output_grad_operands(dy, geo, c, *grad)[0]  # (k, F, positions)
            k = grads.shape[0]
            add_products(dw2, grads, cols_t.reshape(k, -1, width), False)
            np.matmul(grads.transpose(0, 2, 1), w2, out=dcols_t.reshape(k, -1, w2.shape[1]))
            col2im_cl_into(dcols_t, geo.kernel_args, xh)
            from_channels_last(xh, dx[c.n0 : c.n1])
        return dw2

    dw2 = add_in_order(run_plan(work, backward_plan(geo, x.itemsize, channels_last=True)))
    if db is not None:
        db[...] = dw2[:, -1]
    dw2 = dw2[:, : w2.shape[1]]
    return np.ascontiguousarray(dw2.reshape(geo.F, geo.KH, geo.KW, geo.C).transpose(0, 3, 1, 2))
