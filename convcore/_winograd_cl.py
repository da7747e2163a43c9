"""Winograd F(2x2, 3x3) over channels-last tiles, for small images (and float32 layers
of many channels, where it measured faster too; see ``convcore.conv``).

The algorithm of :mod:`convcore._winograd` (its filter transforms and its tables of the
four linear maps), laid out for images of a few dozen tiles. There each pass of a
transform is a loop over one channel's plane of tiles: on 16x16 images, 72 values, too
short to pay the loop's setup (on cifar_c32_16_k3, on one thread, its transforms took
10.7 of 22 ms). Here channels come last: tile arrays are ``(16, tiles, C)`` for the
inputs and ``(16, tiles, F)`` for the outputs, tile ``(image i, tile row t, column b)``
at ``(i*TH + t)*TW + b``, so a tile row's values of one position are one run of
``TW*C`` (or ``TW*F``) contiguous values and each pass is a loop over such a run.

The input is first copied into its zero-padded channels-last phases
``xq (n, 2*TH + 2, 2, TW + 1, C)``, padded row ``h`` and column ``2*w + p`` at
``[i, h, p, w]``: block column ``j`` of tile ``b`` is phase ``j % 2``, column
``b + j // 2``, so a tile row's blocks read four runs, one ``C`` apart, and no tile needs
a bounds check. The output transform builds each image channels-last and transposes it
into NCHW ``y``; its adjoint reads ``dy`` the same way round. The input gradient is
gathered in phases (neighbouring blocks overlap) and copied back into ``dx``.

The GEMMs: ``M[k] = V[k] @ U[k].T``, ``dU[k] += dM[k].T @ V[k]`` and
``dV[k] = dM[k] @ U[k]``, written over ``V``. Every chunk is whole images of all
channels (see :func:`applies`). As on the NCHW engine, passes with a NaN or an infinity
among their operands run im2col + GEMM instead (see :mod:`convcore._winograd`).
"""

from __future__ import annotations

import numba
import numpy as np

from convcore import _gemm, _winograd
from convcore._gemm import add_chunk_bias_grad, add_in_order, forward_plan, image_fits, run_plan
from convcore._geometry import Geometry
from convcore._kernels import _transpose
from convcore._numba import _jit, check_contiguous
from convcore._winograd import (
    _A,
    _AT,
    _B,
    _BT,
    _lin,
    filter_transform,
    filter_transform_adjoint,
    plane_stride,
    tiles,
)
from convcore.workspace import scratch

u = numba.uint64


@_jit
def _phase_copy(x, pt, pl, xq, back):
    """Without ``back``, fill ``xq (n, Hp, 2, Wq, C)``:
    ``xq[i, h + pt, (w + pl) % 2, (w + pl) // 2, c] = x[i, c, h, w]``, zero elsewhere
    (the padding). With ``back``, the reverse: ``x[i, c, h, w]`` from that entry."""
    n, C, H, W = x.shape
    Hp, Wq = xq.shape[1], xq.shape[3]
    xf, qf = x.ravel(), xq.ravel()
    row, plane = u(2 * Wq * C), u(H * W)
    for i in range(n):
        for hp in range(Hp):  # a padded row: both phases
            q = u(i * Hp + hp) * row
            h = hp - pt
            if not back:  # zero the row, then fill it while it is in cache
                for k in range(row):
                    qf[q + k] = 0
            if not 0 <= h < H:
                continue
            for c0 in range(0, C, 16):  # 16 channels at a time: 16 read streams
                c1 = u(min(c0 + 16, C) - c0)
                for w in range(W):
                    at = q + u(((w + pl) % 2 * Wq + (w + pl) // 2) * C + c0)
                    src = u(((i * C + c0) * H + h) * W + w)
                    if back:
                        for c in range(c1):
                            xf[src + c * plane] = qf[at + c]
                    else:
                        for c in range(c1):
                            qf[at + c] = xf[src + c * plane]


@_jit
def _input_transform(xq, TH, TW, V):
    """``V[4a + b, t, c]`` (``V (16, >= tiles*C)``): ``B^T d B`` of the 4x4 block ``d``
    of channel ``c`` read by tile ``t``, from the phases ``xq (n, 2*TH + 2, 2, TW + 1, C)``
    (see :func:`_phase_copy`)."""
    n, Hp, _, Wq, C = xq.shape
    run, out = Wq * C, TW * C  # a phase row; a tile row's values of one position
    rows = np.empty(8 * run, V.dtype)  # B^T row a of a tile row's blocks, column parity p, at 2a + p
    qf, vf = xq.ravel(), V.ravel()
    coef, offsets = np.array([0, 1, -1], V.dtype), np.empty(4, np.int64)
    for i in range(n):
        for t in range(TH):
            for a in range(4):
                for p in range(2):
                    for r in range(4):
                        offsets[r] = ((i * Hp + 2 * t + r) * 2 + p) * run
                    _lin(rows, (2 * a + p) * run, qf, _BT[a], offsets, coef, run)
            base = (i * TH + t) * out
            for a in range(4):
                for j in range(4):  # block column j of tile b: phase j % 2, b + j // 2
                    offsets[j] = (2 * a + j % 2) * run + (j // 2) * C
                for b in range(4):
                    _lin(vf, (4 * a + b) * V.shape[1] + base, rows, _BT[b], offsets, coef, out)


@_jit
def _output_transform(M, bias, TH, TW, y):
    """``y[i, f, 2t + r, 2b + s] = (A^T m A)[r, s] + bias[f]`` for the tile ``m`` of
    filter ``f`` at tile row ``t``, column ``b`` of image ``i`` in ``M (16, >= tiles*F)``
    (``M[4a + b', tile, f]``); rows and columns beyond ``y (n, F, OH, OW)`` dropped."""
    n, F, OH, OW = y.shape
    out = TW * F
    rows = np.empty(8 * out, y.dtype)  # A^T row r of the tiles, column j, at 4r + j
    done = np.empty(4 * out, y.dtype)  # output (2t + r, 2b + s) of filter f at (2r + s)*out + b*F + f
    image = np.empty(OH * OW * F, y.dtype)  # image i's output, channels-last
    mf, yf = M.ravel(), y.ravel()
    coef, offsets = np.array([0, 1, -1], y.dtype), np.empty(4, np.int64)
    for i in range(n):
        for t in range(TH):
            base = (i * TH + t) * out
            for j in range(4):
                for a in range(4):
                    offsets[a] = (4 * a + j) * M.shape[1] + base
                for r in range(2):
                    _lin(rows, (4 * r + j) * out, mf, _AT[r], offsets, coef, out)
            for r in range(2):
                for j in range(4):
                    offsets[j] = (4 * r + j) * out
                for s in range(2):
                    _lin(done, (2 * r + s) * out, rows, _AT[s], offsets, coef, out)
            for r in range(min(2, OH - 2 * t)):  # channels-last rows 2t + r, columns w = 2b + s
                for w in range(OW):
                    src = u((2 * r + w % 2) * out + (w // 2) * F)
                    at = u(((2 * t + r) * OW + w) * F)
                    for f in range(u(F)):
                        image[at + f] = done[src + f] + bias[f]
        _transpose(image, yf[i * F * OH * OW :], 1, OH * OW, F)


@_jit
def _output_transform_adjoint(dy, TH, TW, dM):
    """``dM[4a + b, tile, f]``: ``A g A^T`` of the 2x2 tile ``g`` of filter ``f`` of
    ``dy (n, F, OH, OW)`` (zero beyond its rows and columns); the adjoint of
    :func:`_output_transform`."""
    n, F, OH, OW = dy.shape
    out = TW * F
    g = np.zeros(4 * out, dy.dtype)  # dy (2t + r, 2b + s) of filter f at (2r + s)*out + b*F + f
    image = np.empty(OH * OW * F, dy.dtype)  # image i's output gradient, channels-last
    rows = np.empty(8 * out, dy.dtype)  # A row a of the tiles, column s, at 2a + s
    gf, df = dy.ravel(), dM.ravel()
    coef, offsets = np.array([0, 1, -1], dy.dtype), np.empty(4, np.int64)
    for i in range(n):
        _transpose(gf[i * F * OH * OW :], image, 1, F, OH * OW)
        for t in range(TH):
            for r in range(2):  # dy row 2t + r, column w = 2b + s
                if 2 * t + r < OH:
                    for w in range(OW):  # with OW odd, (r, 1) of the last tile stays zero
                        at = u((2 * r + w % 2) * out + (w // 2) * F)
                        src = u(((2 * t + r) * OW + w) * F)
                        for f in range(u(F)):
                            g[at + f] = image[src + f]
                else:
                    g[2 * r * out : (2 * r + 2) * out] = 0
            for s in range(2):
                for r in range(2):
                    offsets[r] = (2 * r + s) * out
                for a in range(4):
                    _lin(rows, (2 * a + s) * out, g, _A[a], offsets, coef, out)
            base = (i * TH + t) * out
            for a in range(4):
                for s in range(2):
                    offsets[s] = (2 * a + s) * out
                for b in range(4):
                    _lin(df, (4 * a + b) * dM.shape[1] + base, rows, _A[b], offsets, coef, out)


@_jit
def _input_transform_adjoint(dV, TH, TW, dxq):
    """Zero ``dxq (n, 2*TH + 2, 2, TW + 1, C)``, then add ``B dv B^T`` of every tile ``dv``
    of ``dV (16, >= tiles*C)`` into the 4x4 block of phases it was read from (the adjoint
    of :func:`_input_transform`; neighbouring blocks overlap)."""
    n, Hp, _, Wq, C = dxq.shape
    run, out = Wq * C, TW * C
    rows = np.empty(16 * out, dV.dtype)  # B row a of the tiles, column b, at 4a + b
    block = np.empty(16 * out, dV.dtype)  # block entry (a, j) at 4a + j
    vf, qf = dV.ravel(), dxq.ravel()
    for k in range(u(qf.size)):
        qf[k] = 0
    coef, offsets = np.array([0, 1, -1], dV.dtype), np.empty(4, np.int64)
    for i in range(n):
        for t in range(TH):
            base = (i * TH + t) * out
            for b in range(4):
                for a in range(4):
                    offsets[a] = (4 * a + b) * dV.shape[1] + base
                for r in range(4):
                    _lin(rows, (4 * r + b) * out, vf, _B[r], offsets, coef, out)
            for r in range(4):
                for b in range(4):
                    offsets[b] = (4 * r + b) * out
                for j in range(4):
                    _lin(block, (4 * r + j) * out, rows, _B[j], offsets, coef, out)
            for r in range(4):
                for j in range(4):  # phase j % 2, from tile column b + j // 2 on
                    at = u(((i * Hp + 2 * t + r) * 2 + j % 2) * run + (j // 2) * C)
                    src = u((4 * r + j) * out)
                    for k in range(u(out)):
                        qf[at + k] += block[src + k]


def applies(geo: Geometry, itemsize: int) -> bool:
    """True where this engine can run: 3x3, stride 1, undilated, one group, every chunk
    whole images of all channels within its thread's scratch budget (see :func:`_plan`)."""
    return geo.groups == 1 and _winograd.applies(geo) and _plan(geo, itemsize) is not None


def _plan(geo: Geometry, itemsize: int):
    """The chunks of each thread, or None where they would not all be whole images of all
    channels within the scratch budget. There is an image per thread at least (see
    :func:`convcore._gemm._plan`), so the batch is split by images both ways and the
    backward pass runs the forward pass's chunks. Checked on every call: the workspace
    limit may change between choosing this engine and running it, and a chunk of part of
    an image would count its weight and bias gradients more than once."""
    plan = forward_plan(geo, itemsize, tile=2, channels_last=True)
    if not image_fits(geo, itemsize, len(plan), tile=2, channels_last=True):
        return None
    whole = all((c.oh0, c.oh1, c.c0, c.c1) == (0, geo.OH, 0, geo.C) for chunks in plan for c in chunks)
    return plan if whole else None


def _scratch(dtype, geo: Geometry, n: int):
    """Workspace for a chunk of ``n`` images: their phases ``(n, 2*TH + 2, 2, TW + 1, C)``
    (see :func:`_phase_copy`) and tile arrays of their tiles' C and F values, each as
    ``(16, stride)`` (planes padded apart as in :func:`convcore._winograd._tile_arrays`)
    and as a ``(16, tiles, width)`` view."""
    TH, TW = tiles(geo.OH), tiles(geo.OW)
    m, itemsize = n * TH * TW, np.dtype(dtype).itemsize
    widths = (geo.C, geo.F)
    xq, *planes = scratch(
        dtype, (n, 2 * TH + 2, 2, TW + 1, geo.C), *[(16, plane_stride(itemsize, m * r)) for r in widths]
    )
    return xq, *[(a, a[:, : m * r].reshape(16, m, r)) for a, r in zip(planes, widths, strict=True)]


def forward(x, w, b, geo: Geometry, y) -> None:
    """Fill ``y (N, F, OH, OW)`` with the convolution of ``x (N, C, H, W)`` and
    ``w (F, C, 3, 3)`` (plus ``b``)."""
    check_contiguous(x, w, y)
    plan = _plan(geo, x.itemsize)
    if plan is None or not _winograd.finite(w):
        return _gemm.forward(x, w, b, geo, y)
    ut = np.ascontiguousarray(filter_transform(w).transpose(0, 2, 1))  # (16, C, F): 3% faster GEMMs
    bias = np.zeros(geo.F, x.dtype) if b is None else np.ascontiguousarray(b, x.dtype)
    TH, TW = tiles(geo.OH), tiles(geo.OW)

    def work(chunks):
        for c in chunks:
            if not _winograd.finite(x[c.n0 : c.n1]):
                return False
            xq, (v, v3), (prod, prod3) = _scratch(x.dtype, geo, c.n1 - c.n0)
            _phase_copy(x[c.n0 : c.n1], geo.pt, geo.pl, xq, False)
            _input_transform(xq, TH, TW, v)
            np.matmul(v3, ut, out=prod3)
            _output_transform(prod, bias, TH, TW, y[c.n0 : c.n1])
        return True

    if not all(run_plan(_winograd.quietly(work), plan)):
        _gemm.forward(x, w, b, geo, y)  # a NaN or an infinity (see convcore._winograd)


def backward(x, w, dy, geo: Geometry, dx, db=None) -> np.ndarray:
    """Fill ``dx (N, C, H, W)`` with the input gradient (and ``db (F,)``, if given) and
    return the weight gradient ``(F, C, 3, 3)``, from ``dy (N, F, OH, OW)``."""
    check_contiguous(x, w, dy, dx)
    plan = _plan(geo, x.itemsize)
    if plan is None or not _winograd.finite(w):
        return _gemm.backward(x, w, dy, geo, dx, db)
    filters = filter_transform(w)  # U (16, F, C)
    TH, TW = tiles(geo.OH), tiles(geo.OW)

    def work(chunks):
        du = np.zeros((16, geo.F, geo.C), x.dtype)
        part = np.empty_like(du)
        db_part = None if db is None else np.zeros_like(db)
        for c in chunks:
            add_chunk_bias_grad(dy, c, db_part)
            xq, (v, v3), (dm, dm3) = _scratch(x.dtype, geo, c.n1 - c.n0)
            _phase_copy(x[c.n0 : c.n1], geo.pt, geo.pl, xq, False)
            _input_transform(xq, TH, TW, v)
            _output_transform_adjoint(dy[c.n0 : c.n1], TH, TW, dm)
            du += np.matmul(dm3.transpose(0, 2, 1), v3, out=part)  # dU[k] += dM[k].T @ V[k]
            np.matmul(dm3, filters, out=v3)  # dV[k] = dM[k] @ U[k], over V
            _input_transform_adjoint(v, TH, TW, xq)
            _phase_copy(dx[c.n0 : c.n1], geo.pt, geo.pl, xq, True)
        return du, db_part

    partial = run_plan(_winograd.quietly(work), plan)
    du = _winograd.weight_grad_sum([p[0] for p in partial])
    if du is None:  # a NaN or an infinity in x or dy
        return _gemm.backward(x, w, dy, geo, dx, db)
    add_in_order([p[1] for p in partial], db)
    return filter_transform_adjoint(du)
