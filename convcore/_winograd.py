"""Winograd F(2x2, 3x3): 3x3, stride-1, undilated convolutions in 16 GEMMs (per group).

Each 2x2 block of outputs (a tile) reads a 4x4 block of the zero-padded input. With
``B^T``, ``G`` and ``A^T`` below, the tile is ``A^T [(G g G^T) * (B^T d B)] A``, exactly
(in exact arithmetic) the cross-correlation of the 4x4 input block ``d`` with the 3x3
filter ``g``. Summed over channels, the elementwise product becomes, for each of the 16
positions ``k`` of a transformed tile, one GEMM ``M[k] = U[k] @ V[k]`` of the transformed
filters ``U (16, F, C)`` and inputs ``V (16, C, tiles)``: 4*F*C multiply-adds per output
position instead of im2col's 9*F*C. With groups, each group's filters meet its own
channels: 16 GEMMs a group, in one stacked call.

The backward pass runs the adjoints: ``dM = A dy A^T`` per tile, ``dU[k] = dM[k] @ V[k].T``
(dw = ``G^T dU G``) and ``dV[k] = U[k].T @ dM[k]``, whose adjoint input transform
``B dV B^T`` is added into dx (neighbouring tiles overlap by two rows and columns).

The transforms use only additions (and halving in ``G``), and an output combines exactly
the inputs of its 3x3 window; rounding differs from the direct sum by a small factor
(transformed values are sums of up to four inputs and nine weights), and so does the
range: a value within a factor of ~4 of the dtype's largest can overflow in the
transforms. Non-finite values do not carry over: an infinity meets its own copy with
the other sign (one infinite input turned 52-72 values of y, dx or dw of an 8-channel
6x6 layer into NaN where the direct sum gives infinities), and a NaN spreads further
than in the direct sum (one in a corner input reached weight-gradient taps the direct
sum does not: the filter transform mixes the taps). So passes with a NaN or an
infinity among their operands (or, in the forward pass, values large enough to
overflow) run im2col + GEMM instead: the weights are looked at first; in the forward
pass each chunk looks at its own images before it transforms them (see
:func:`finite`), and the backward pass finds a non-finite input or output gradient in
its transformed weight gradient (see :func:`weight_grad_sum`).

Layout: a chunk covers tile rows ``[t0, t1)`` of a few images. Each of the 16 planes of
a tile array numbers a channel's tiles ``(image, tile row, tile column)``, with one spare
tile at the end of each tile row; the input is first split into its four phases (even or
odd rows and columns). Then every pass of a transform (along rows, then along columns) is
a long unit-stride loop over a whole plane of tiles with a few input streams, which LLVM
vectorises; with the spare tile, the block one column to the right is one element
further along. The spare tiles cost 1/tiles-per-row more GEMM work, and their gradient
is zero, so they add nothing to dx or dw.
"""

from __future__ import annotations

import numba
import numpy as np

from convcore import _gemm
from convcore._blas import single_threaded_blas
from convcore._gemm import (
    Chunk,
    add_chunk_bias_grad,
    add_in_order,
    backward_plan,
    forward_plan,
    group_segments,
    run_plan,
)
from convcore._geometry import Geometry
from convcore._numba import _jit, _valid_range, check_contiguous
from convcore.workspace import scratch

u = numba.uint64  # flat offsets are unsigned: no wraparound checks in the loops
_ONE = np.uint64(1)
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def tiles(n: int) -> int:
    """Tiles along an output side of ``n``: ``ceil(n / 2)``."""
    return (n + 1) // 2


def filter_transform(w: np.ndarray) -> np.ndarray:
    """``U (16, F, C)`` from ``w (F, C, 3, 3)``: ``G w G^T``, its 4x4 positions first.

    Two 2-D products over all F*C kernels at once (NumPy's stacked product of F*C 3x3
    matrices took 4x as long: 0.22 against 0.06 ms on 64x32 float32 filters), on one
    BLAS thread: BLAS threads left spinning after them slowed the engine's own threads
    (forward+backward of 16x128x28x28 ran 1.7x slower)."""
    g = _G.astype(w.dtype)
    fc = w.shape[0] * w.shape[1]
    with single_threaded_blas():
        right = w.reshape(fc * 3, 3) @ g.T  # (fc, kernel row, j)
        u = g @ right.reshape(fc, 3, 4).transpose(1, 0, 2).reshape(3, fc * 4)  # (i, fc, j)
    return np.ascontiguousarray(u.reshape(4, *w.shape[:2], 4).transpose(0, 3, 1, 2)).reshape(16, *w.shape[:2])


def filter_transform_adjoint(du: np.ndarray) -> np.ndarray:
    """``dw (F, C, 3, 3)`` from ``dU (16, F, C)``: ``G^T dU G``, in two 2-D products
    (see :func:`filter_transform`)."""
    g = _G.astype(du.dtype)
    fc = du.shape[1] * du.shape[2]
    with single_threaded_blas():
        left = (g.T @ du.reshape(4, 4 * fc)).reshape(3, 4, fc)  # (kernel row, j, fc)
        dw = np.ascontiguousarray(left.transpose(2, 0, 1)).reshape(fc * 3, 4) @ g
    return dw.reshape(*du.shape[1:], 3, 3)


# The four linear maps, each row a sum of up to three terms ``(index, sign)`` (sign 0: no
# term): the rows of B^T (input transform, on rows and then on columns), of A^T (output
# transform), and their adjoints A and B.
_BT = ((0, 1, 2, -1, 0, 0), (1, 1, 2, 1, 0, 0), (2, 1, 1, -1, 0, 0), (1, 1, 3, -1, 0, 0))
_AT = ((0, 1, 1, 1, 2, 1), (1, 1, 2, -1, 3, -1))
_A = ((0, 1, 0, 0, 0, 0), (0, 1, 1, 1, 0, 0), (0, 1, 1, -1, 0, 0), (1, -1, 0, 0, 0, 0))
_B = ((0, 1, 0, 0, 0, 0), (1, 1, 2, -1, 3, 1), (1, 1, 2, 1, 0, -1), (3, -1, 0, 0, 0, 0))


@_jit
def _lin(dst, d, src, row, offsets, coef, n):
    """``dst[d + k] = sum of sign * src[offsets[index] + k]`` over the terms
    ``(index, sign)`` of ``row`` (see ``_BT``), for ``k < n``; ``coef[sign]`` is the sign
    in the arrays' dtype. One to three loads and a store a loop, so each vectorises."""
    i1, s1, i2, s2, i3, s3 = row
    d, o1, o2, o3 = u(d), u(offsets[i1]), u(offsets[i2]), u(offsets[i3])
    c1, c2, c3 = coef[s1], coef[s2], coef[s3]
    if s2 == 0:
        for k in range(u(n)):
            dst[d + k] = c1 * src[o1 + k]
    elif s3 == 0:
        for k in range(u(n)):
            dst[d + k] = c1 * src[o1 + k] + c2 * src[o2 + k]
    else:
        for k in range(u(n)):
            dst[d + k] = c1 * src[o1 + k] + c2 * src[o2 + k] + c3 * src[o3 + k]


@_jit
def _every_other(src, s0, n, start, dst, d0, size):
    """``dst[d0 + k] = src[s0 + start + 2*k]`` for ``k < size``, zero where
    ``start + 2*k`` falls outside the source row ``[0, n)`` (flat arrays, unsigned)."""
    lo, hi = _valid_range(start, 2, n, size)
    d, count = u(d0), u(hi - lo)
    for k in range(u(lo)):
        dst[d + k] = 0
    first = u(s0 + start + 2 * lo)  # >= s0 when lo > 0 or start >= 0
    at = d + u(lo)
    for k in range(count):
        dst[at + k] = src[first + k + k]
    for k in range(at + count, d + u(size)):
        dst[k] = 0


@_jit
def _add_every_other(src, s0, size, start, dst, d0, n):
    """``dst[d0 + start + 2*k] += src[s0 + k]`` for ``k < size`` wherever
    ``start + 2*k`` lies in ``[0, n)``."""
    lo, hi = _valid_range(start, 2, n, size)
    for k in range(lo, hi):
        dst[d0 + start + 2 * k] += src[s0 + k]


@_jit
def _interleave(src, e, o, bias, dst, d0, n):
    """``dst[d0 + j] = src[e + j//2]`` (j even) or ``src[o + j//2]`` (j odd), plus
    ``bias``, for ``j < n``."""
    d = u(d0)
    for k in range(u(n // 2)):
        dst[d + k + k] = src[e + k] + bias
        dst[d + k + k + _ONE] = src[o + k] + bias
    if n % 2:
        dst[d + u(n - 1)] = src[e + n // 2] + bias


@_jit
def _sum4(dst, src, offsets, n):
    """``dst[k] = src[offsets[0] + k] + ... + src[offsets[3] + k]`` for ``k < n``."""
    o0, o1, o2, o3 = u(offsets[0]), u(offsets[1]), u(offsets[2]), u(offsets[3])
    for k in range(u(n)):
        dst[k] = src[o0 + k] + src[o1 + k] + src[o2 + k] + src[o3 + k]


@_jit
def _input_transform(x, pt, pl, t0, t1, L, V):
    """Fill tile array ``V``: ``B^T d B`` of every 4x4 block ``d`` of the zero-padded
    input ``x (n, C, H, W)`` read by tile rows ``[t0, t1)``.

    Tile arrays hold 16 planes (one per position of a transformed tile), ``V[q]`` with
    tile ``(image i, row t, column k)`` of channel ``c`` at ``c*m + (i*nb + t)*L + k``,
    ``nb = t1 - t0``, ``m = n*nb*L``; ``L`` is one more than the tiles per row, the spare
    column keeping every pass one long loop over a plane.
    """
    N, C, H, W = x.shape
    nb = t1 - t0
    m, tiles_n = N * nb * L, nb * L
    ps, rs = (nb + 1) * L, tiles_n + 1  # a phase plane; a row-pass plane and a spare
    phases = np.empty(4 * ps, x.dtype)  # padded (2t + rp, 2k + cp) at (2*rp + cp)*ps + t*L + k
    rows = np.zeros(8 * rs, x.dtype)  # B^T row a of the blocks, column parity cp, at (2a + cp)*rs
    xf, vf = x.ravel(), V.ravel()
    coef, offsets = np.array([0, 1, -1], x.dtype), np.empty(4, np.int64)
    for n in range(N):
        for c in range(C):
            plane = (n * C + c) * H * W
            for r in range(2 * nb + 2):
                h = 2 * t0 + r - pt
                for cp in range(2):
                    at = (2 * (r % 2) + cp) * ps + (r // 2) * L
                    if 0 <= h < H:
                        _every_other(xf, plane + h * W, W, cp - pl, phases, at, L)
                    else:
                        phases[at : at + L] = 0
            for a in range(4):  # block row i of tile row t: phase row t + i // 2
                for cp in range(2):
                    for i in range(4):
                        offsets[i] = (2 * (i % 2) + cp) * ps + (i // 2) * L
                    _lin(rows, (2 * a + cp) * rs, phases, _BT[a], offsets, coef, tiles_n)
            base = c * m + n * tiles_n
            for a in range(4):  # block column j of tile k: column k + j // 2 of its parity
                for j in range(4):
                    offsets[j] = (2 * a + j % 2) * rs + j // 2
                for b in range(4):
                    _lin(vf, (4 * a + b) * V.shape[1] + base, rows, _BT[b], offsets, coef, tiles_n)


@_jit
def _output_transform(M, bias, t0, t1, L, y):
    """Write ``A^T m A + bias`` of every tile ``m`` of tile array ``M`` (see
    :func:`_input_transform`) into output rows ``[2*t0, 2*t1)`` (those below OH) of
    ``y (n, F, OH, OW)``."""
    N, F, OH, OW = y.shape
    nb = t1 - t0
    m, tiles_n = N * nb * L, nb * L
    rows = np.empty(8 * tiles_n, y.dtype)  # A^T row r of the tiles, column b, at (4r + b)
    out = np.empty(4 * tiles_n, y.dtype)  # output (2t + r, 2k + cc) at (2r + cc)
    mf, yf = M.ravel(), y.ravel()
    coef, offsets = np.array([0, 1, -1], y.dtype), np.empty(4, np.int64)
    for n in range(N):
        for f in range(F):
            base = f * m + n * tiles_n
            for b in range(4):
                for a in range(4):
                    offsets[a] = (4 * a + b) * M.shape[1] + base
                for r in range(2):
                    _lin(rows, (4 * r + b) * tiles_n, mf, _AT[r], offsets, coef, tiles_n)
            for r in range(2):
                for b in range(4):
                    offsets[b] = (4 * r + b) * tiles_n
                for cc in range(2):
                    _lin(out, (2 * r + cc) * tiles_n, rows, _AT[cc], offsets, coef, tiles_n)
            for t in range(nb):
                for r in range(min(2, OH - 2 * (t0 + t))):
                    even = u(2 * r * tiles_n + t * L)
                    row = ((n * F + f) * OH + 2 * (t0 + t) + r) * OW
                    _interleave(out, even, even + u(tiles_n), bias[f], yf, row, OW)


@_jit
def _output_transform_adjoint(dy, t0, t1, L, dM):
    """Fill tile array ``dM`` (see :func:`_input_transform`) with ``A g A^T`` of every
    2x2 tile ``g`` of output rows ``[2*t0, 2*t1)`` of ``dy (n, F, OH, OW)`` (zero beyond
    it, so the spare tiles are zero)."""
    N, F, OH, OW = dy.shape
    nb = t1 - t0
    m, tiles_n = N * nb * L, nb * L
    g = np.empty(4 * tiles_n, dy.dtype)  # dy (2t + r, 2k + cc) at (2r + cc)*tiles_n + t*L + k
    rows = np.empty(8 * tiles_n, dy.dtype)  # A row a of the tiles, column cc, at (2a + cc)
    yf, df = dy.ravel(), dM.ravel()
    coef, offsets = np.array([0, 1, -1], dy.dtype), np.empty(4, np.int64)
    for n in range(N):
        for f in range(F):
            for t in range(nb):
                for r in range(2):
                    h = 2 * (t0 + t) + r
                    for cc in range(2):
                        at = (2 * r + cc) * tiles_n + t * L
                        if h < OH:
                            _every_other(yf, ((n * F + f) * OH + h) * OW, OW, cc, g, at, L)
                        else:
                            g[at : at + L] = 0
            for cc in range(2):
                for r in range(2):
                    offsets[r] = (2 * r + cc) * tiles_n
                for a in range(4):
                    _lin(rows, (2 * a + cc) * tiles_n, g, _A[a], offsets, coef, tiles_n)
            base = f * m + n * tiles_n
            for a in range(4):
                for cc in range(2):
                    offsets[cc] = (2 * a + cc) * tiles_n
                for b in range(4):
                    _lin(df, (4 * a + b) * dM.shape[1] + base, rows, _A[b], offsets, coef, tiles_n)


@_jit
def _input_transform_adjoint(dV, pt, pl, t0, t1, L, overwrite, dx):
    """Add ``B dv B^T`` of every tile ``dv`` of tile array ``dV`` (see
    :func:`_input_transform`; its spare tiles must be zero) into the 4x4 input blocks of
    tile rows ``[t0, t1)`` of ``dx (n, C, H, W)``; with ``overwrite``, each plane is
    zeroed first.

    Blocks overlap: padded row ``2t + rho`` and column ``2k + g`` sum block entry
    ``(rho, g)`` of tile ``(t, k)``, ``(rho, g + 2)`` of ``(t, k - 1)``, ``(rho + 2, g)``
    of ``(t - 1, k)`` and ``(rho + 2, g + 2)`` of ``(t - 1, k - 1)``: four shifted reads
    of planes padded with a zero tile row before and after.
    """
    N, C, H, W = dx.shape
    nb = t1 - t0
    m, tiles_n = N * nb * L, nb * L
    lead = L + 1
    ds = lead + tiles_n + L  # a block-entry plane: zeros, the tiles, a row of zeros
    rows = np.empty(16 * tiles_n, dx.dtype)  # B row i of the tiles, column b, at (4i + b)
    blocks = np.zeros(16 * ds, dx.dtype)  # block entry (i, j) at (4i + j)*ds + lead + t*L + k
    line = np.empty(L, dx.dtype)
    vf, xf = dV.ravel(), dx.ravel()
    coef, offsets = np.array([0, 1, -1], dx.dtype), np.empty(4, np.int64)
    for n in range(N):
        for c in range(C):
            base = c * m + n * tiles_n
            for b in range(4):
                for a in range(4):
                    offsets[a] = (4 * a + b) * dV.shape[1] + base
                for i in range(4):
                    _lin(rows, (4 * i + b) * tiles_n, vf, _B[i], offsets, coef, tiles_n)
            for i in range(4):
                for b in range(4):
                    offsets[b] = (4 * i + b) * tiles_n
                for j in range(4):
                    _lin(blocks, (4 * i + j) * ds + lead, rows, _B[j], offsets, coef, tiles_n)
            plane = (n * C + c) * H * W
            if overwrite:
                xf[plane : plane + H * W] = 0
            for t in range(nb + 1):
                for rho in range(2):
                    h = 2 * (t0 + t) + rho - pt
                    if 0 <= h < H:
                        for g in range(2):
                            at = lead + t * L
                            offsets[0] = (4 * rho + g) * ds + at
                            offsets[1] = (4 * rho + g + 2) * ds + at - 1
                            offsets[2] = (4 * rho + 8 + g) * ds + at - L
                            offsets[3] = (4 * rho + 10 + g) * ds + at - L - 1
                            _sum4(line, blocks, offsets, L)
                            _add_every_other(line, 0, L, g - pl, xf, plane + h * W, W)


def applies(geo: Geometry) -> bool:
    """True for the convolutions this engine computes: 3x3, stride 1, dilation 1 (any
    groups: the transforms work channel by channel and filter by filter, and only the 16
    GEMMs see the groups)."""
    return (geo.KH, geo.KW, geo.sh, geo.sw, geo.dh, geo.dw) == (3, 3, 1, 1, 1, 1)


def _tile_arrays(dtype, m: int, *rows: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each ``r`` in ``rows``, workspace for 16 planes of ``(r, m)`` values: the
    ``(16, stride)`` array the transforms take and its ``(16, r, m)`` view for the GEMMs.

    The planes are an odd number of cache lines apart: the transforms write (or read) all
    16 at once, and planes a multiple of 4 KiB apart (``r * m`` a power of two, as on
    most layers) share cache sets, which made the transforms 3-7x slower.
    """
    itemsize = np.dtype(dtype).itemsize
    flat = scratch(dtype, *[(16, plane_stride(itemsize, r * m)) for r in rows])
    return [(a, a[:, : r * m].reshape(16, r, m)) for a, r in zip(flat, rows, strict=True)]


def plane_stride(itemsize: int, n: int) -> int:
    """Elements from one tile-array plane of ``n`` values to the next: an odd number of
    cache lines (see :func:`_tile_arrays`)."""
    lines = -(-n * itemsize // 64)
    return (lines + 1 - lines % 2) * 64 // itemsize


def _tile_rows(c: Chunk) -> tuple[int, int]:
    return c.oh0 // 2, tiles(c.oh1)


def finite(*arrays) -> bool:
    """Whether every sum of squares of ``arrays`` (C-contiguous) is finite: then none of
    them holds a NaN, an infinity, or a value large enough to overflow in the transforms
    (those need magnitudes near the dtype's largest; the sum of squares overflows from
    ~1e16 in float32 and ~1e150 in float64 on a million values, and such passes run
    im2col + GEMM, exactly). One BLAS dot product, ~0.14 ns a float32 value and ~0.28 a
    float64 one. The forward passes look at each chunk's images on the thread that then
    transforms them. On one BLAS thread: threads left spinning after a threaded dot
    product slowed the engine's own (float64 resnet_c64_56_k3 1.2x)."""
    with np.errstate(over="ignore", invalid="ignore"), single_threaded_blas():
        return all(np.isfinite(np.dot(v, v)) for v in (a.ravel() for a in arrays))


def quietly(work):
    """``work`` with NumPy's invalid-value and overflow warnings off on its thread: a pass
    that meets a non-finite value is rerun on im2col + GEMM (a forward band of rows that
    does not look may transform one, see :func:`forward`; the backward passes look
    afterwards, see :func:`weight_grad_sum`), so its warnings would be about results
    thrown away. (An overflow in a pass that is kept goes unwarned too, where im2col +
    GEMM would warn.)"""

    def run(chunks):
        with np.errstate(invalid="ignore", over="ignore"):
            return work(chunks)

    return run


def weight_grad_sum(parts) -> np.ndarray | None:
    """The threads' transformed weight gradients ``parts`` added in thread order, or None
    where the backward pass met a NaN or an infinity in x or dy: every transformed input
    and output gradient is multiplied into the sum (``dU[k] = sum over tiles of
    dM[k]^T V[k]``, and ``0 * inf`` and ``0 * nan`` are NaN), so it is finite unless one
    of them is not (or a product overflows: then the pass reruns needlessly, but
    exactly). A pass over 16*F*C values instead of over x and dy: looking at those first
    cost 4-7% of forward+backward on cifar_c32_16_k3 and resnet_c64_56_k3, one more pass
    over memory each. (A BLAS that skipped zero factors, as the reference BLAS does,
    could miss a value met only by zeros; NumPy's OpenBLAS multiplies them.) Quietly: the
    threads' parts may hold infinities of both signs."""
    with np.errstate(invalid="ignore", over="ignore"):
        du = add_in_order(parts)
        return du if np.isfinite(du).all() else None


def forward(x, w, b, geo: Geometry, y) -> None:
    """Fill ``y (N, F, OH, OW)`` with the convolution of ``x (N, C, H, W)`` and
    ``w (F, C, 3, 3)`` (plus ``b``), chunk by chunk: input transform, 16 GEMMs, output
    transform."""
    check_contiguous(x, w, y)
    if not finite(w):
        return _gemm.forward(x, w, b, geo, y)
    filters = _by_group(filter_transform(w), geo.groups)  # (16, groups, Fg, Cg)
    bias = np.zeros(geo.F, x.dtype) if b is None else np.ascontiguousarray(b, x.dtype)
    L = tiles(geo.OW) + 1

    def work(chunks):
        for c in chunks:  # every channel: the forward plan never splits them
            if c.oh0 == 0 and not finite(x[c.n0 : c.n1]):  # an image's first band looks
                return False
            t0, t1 = _tile_rows(c)
            (v, v3), (prod, prod3) = _tile_arrays(x.dtype, (c.n1 - c.n0) * (t1 - t0) * L, geo.C, geo.F)
            _input_transform(x[c.n0 : c.n1], geo.pt, geo.pl, t0, t1, L, v)
            # one call: NumPy loops over the 16 (times groups) BLAS products
            np.matmul(filters, _by_group(v3, geo.groups), out=_by_group(prod3, geo.groups))
            _output_transform(prod, bias, t0, t1, L, y[c.n0 : c.n1])
        return True

    if not all(run_plan(quietly(work), forward_plan(geo, x.itemsize, tile=2))):
        _gemm.forward(x, w, b, geo, y)  # a NaN or an infinity (see the module docstring)


def backward(x, w, dy, geo: Geometry, dx, db=None) -> np.ndarray:
    """Fill ``dx (N, C, H, W)`` with the input gradient (and ``db (F,)``, if given, with
    the bias gradient) and return the weight gradient ``(F, C, 3, 3)``, from
    ``dy (N, F, OH, OW)``."""
    check_contiguous(x, w, dy, dx)
    if not finite(w):
        return _gemm.backward(x, w, dy, geo, dx, db)
    filters_t = _by_group(filter_transform(w), geo.groups).transpose(0, 1, 3, 2)  # U[k].T by group
    L = tiles(geo.OW) + 1

    def work(chunks):
        du = np.zeros((16, geo.groups, geo.Fg, geo.Cg), x.dtype)
        db_part = None if db is None else np.zeros_like(db)
        for c in chunks:
            add_chunk_bias_grad(dy, c, db_part)
            t0, t1 = _tile_rows(c)
            ch = slice(c.c0, c.c1)
            m = (c.n1 - c.n0) * (t1 - t0) * L
            (v, v3), (dv, dv3), (dm, dm3) = _tile_arrays(x.dtype, m, c.c1 - c.c0, c.c1 - c.c0, geo.F)
            _output_transform_adjoint(dy[c.n0 : c.n1], t0, t1, L, dm)
            _input_transform(x[c.n0 : c.n1, ch], geo.pt, geo.pl, t0, t1, L, v)
            for g0, g1, r0, r1, at in group_segments(geo, c, 1):  # runs of whole groups: one call each
                rows = slice(at, at + (g1 - g0) * (r1 - r0))  # the segment's channels in v and dv
                vs, dvs = _by_group(v3[:, rows], g1 - g0), _by_group(dv3[:, rows], g1 - g0)
                dms = _by_group(dm3[:, g0 * geo.Fg : g1 * geo.Fg], g1 - g0)
                du[:, g0:g1, :, r0:r1] += np.matmul(dms, vs.transpose(0, 1, 3, 2))  # dU[k] += dM[k] @ V[k].T
                np.matmul(filters_t[:, g0:g1, r0:r1], dms, out=dvs)
            grad = dx[c.n0 : c.n1, ch]
            check_contiguous(grad)  # a channel range is split off one image at a time
            _input_transform_adjoint(dv, geo.pt, geo.pl, t0, t1, L, c.oh0 == 0, grad)
        return du, db_part

    partial = run_plan(quietly(work), backward_plan(geo, x.itemsize, tile=2))
    du = weight_grad_sum([p[0] for p in partial])
    if du is None:  # a NaN or an infinity in x or dy
        return _gemm.backward(x, w, dy, geo, dx, db)
    add_in_order([p[1] for p in partial], db)
    return filter_transform_adjoint(du.reshape(16, geo.F, geo.Cg))


def _by_group(a: np.ndarray, groups: int) -> np.ndarray:
    """View ``a (16, groups*r, m)`` as ``(16, groups, r, m)``."""
    return a.reshape(16, groups, -1, a.shape[2])
