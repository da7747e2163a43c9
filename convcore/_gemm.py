"""The im2col + GEMM engine behind :func:`convcore.conv2d` in the general case.

Per group, the forward pass, dW and the column gradient are BLAS products over im2col
columns ``(Cg*KH*KW, m)`` of ``m`` output positions; col2im folds the column gradient into
dx. A 1x1, stride-1, unpadded convolution multiplies the input itself, with no im2col.

Work plan (:func:`forward_plan`, :func:`backward_plan`): convcore's threads share the
work and BLAS runs single-threaded inside them, so each core gathers its own columns and
multiplies them (with BLAS threads beside the kernels, a kernel thread ran up to 1.6x
slower while they spun after each GEMM), and no result depends on how many BLAS threads
another call left running. A batch of at least one image per thread is split into
contiguous ranges of images; a smaller one is split by output rows (forward) and by input
channels (backward: dW rows, column-gradient rows and the dx planes they fold into all
belong to one channel), except on the channels-last Winograd engine, which takes whole
images and so runs on at most one thread an image. Each thread walks its share in chunks whose scratch (budgeted
as columns, their gradient and the GEMM output) stays under its share of the workspace
limit and :data:`_CHUNK_BYTES`; an image larger than that runs in bands of output rows. No two
threads write one element; with an image split each thread keeps its own dW, and the
partial sums are added in thread order, so results are bitwise reproducible for a given
thread count and workspace limit.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from convcore._bias import add_bias, bias_grad
from convcore._blas import single_threaded_blas
from convcore._geometry import Geometry
from convcore._kernels import col2im_into, im2col_into
from convcore._numba import check_contiguous
from convcore._threads import even_ranges, run_tasks, thread_count
from convcore.workspace import fit_workspace, get_workspace_limit, scratch

# Scratch per chunk when the batch is split over threads (measured on the anchor suite:
# see README, Performance); the workspace limit caps it further.
_CHUNK_BYTES = 8 << 20
# Below this much work (multiply-adds times the itemsize) a call runs on the calling
# thread only: a split over two threads costs ~0.2 ms a call here (the hand-off to the
# pool thread, ~0.1 ms, and each thread waiting for the GIL the other holds between its
# NumPy and kernel calls).
# Forward+backward on two threads against one (benchmarks/engine_paths.py --only threads):
# float32 1.09-2.07x the time below 32M (b1_c16_32x32_k3, 9.4M: 2.07), one layer 0.94;
# 0.70-0.82 from 38M, bar layers of one or two images a thread (1.14-1.27); float64 1.54
# on b1_c16_32x32_k3 (19M), 0.62-0.95 from 38M bar one (1.13).
_MIN_PARALLEL_MAC_BYTES = 1 << 25
# Images with at least this many output positions are multiplied image by image (one
# stacked call for a chunk's images) straight into y and out of dy; 256 and 1 measured
# 0.98-1.13 of this on 16 to 28 wide layers, so smaller images keep the transposes.
_PER_IMAGE_MIN_P = 1024


def add_products(dw: np.ndarray, a: np.ndarray, b: np.ndarray, column_major: bool) -> None:
    """``dw += a[..., 0, :, :] @ b[..., 0, :, :] + ... (k terms)`` for stacks
    ``a (..., k, r, s)`` and ``b (..., k, s, t)`` of one leading shape, into
    ``dw (..., r, t)``: stacked products into an array laid out as ``column_major`` says
    (see :func:`_column_major`), then added into ``dw`` one by one. The products live outside
    the workspace, at most :data:`_CHUNK_BYTES` of them at a time (one product, if that
    is larger): a pointwise layer's chunk is a thread's whole share of the batch, and
    1024 filters of 1024 channels take 4 MiB an image in float32."""
    lead, r, t = a.shape[:-2], a.shape[-2], b.shape[-1]

    def products(*stack):  # uninitialised (*stack, r, t), laid out as column_major says
        return (
            np.empty((*stack, t, r), dw.dtype).swapaxes(-1, -2)
            if column_major
            else np.empty((*stack, r, t), dw.dtype)
        )

    if math.prod(lead) == 1:  # one product: a 2-D call
        one = (0,) * len(lead)
        part = products()
        np.matmul(a[one], b[one], out=part)
        dw[one[1:]] += part
        return
    k, per_product = lead[-1], math.prod(lead[:-1]) * r * t * dw.itemsize
    step = min(k, max(1, _CHUNK_BYTES // per_product))
    part = products(*lead[:-1], step)
    for i in range(0, k, step):
        j = min(i + step, k)
        products = part[..., : j - i, :, :]
        np.matmul(a[..., i:j, :, :], b[..., i:j, :, :], out=products)
        for q in range(j - i):  # in place, in order: no temporary (a sum over the stack
            dw += products[..., q, :, :]  # took 1.1x the time on 1024x1024 products)


def _column_major(dtype, geo: Geometry) -> bool:
    """Whether the weight-gradient products go into column-major arrays.

    The layout picks the BLAS call: NumPy computes ``dy @ cols.T`` into a column-major
    output as ``cols @ dy.T``, which OpenBLAS runs faster in float32 (interleaved A/B,
    forward+backward: resnet_c64_56_k3 31.5 against 33.5 ms, cifar_c32_16_k3 13.7
    against 14.3, lenet_c1_28_k5 2.5 against 2.8; the product alone 0.60-0.99 of the
    row-major one over 6 to 128 filters and 26 to 577 window rows). In float64 it wins
    where the filters are few or the windows mid-sized (the product alone 0.81-0.92 with
    16 filters a group, 0.86-0.99 at 73 to 145 window rows) and loses on long windows of
    many filters (1.03-1.10 from 289 window rows and 24 filters), which keep the
    row-major output (see :func:`_column_major_f64`). Forward+backward in float64,
    interleaved: b1_c16_32x32_k3 0.93, grp4_c64_28_k3 0.96, stem_c3_112_k7s2 0.98;
    cifar_c3_32_k3 (27 window rows, 32 filters) 1.02, so short windows of more filters
    stay row-major. A pointwise layer's products keep the row-major layout.
    """
    if geo.is_pointwise:
        return False
    return np.dtype(dtype) == np.float32 or _column_major_f64(geo.Fg, geo.window_rows)


def _column_major_f64(filters: int, window_rows: int) -> bool:
    """Where a float64 weight-gradient product goes column-major: filters per group and
    window rows (Cg*KH*KW) for which OpenBLAS ran it faster that way."""
    return filters <= 16 or 64 <= window_rows < 256


def _bias_in_gemm(geo: Geometry, plan) -> bool:
    """True where the bias rides in the GEMMs: a row of ones under the columns meets a
    bias column beside the weights, so the forward product adds the bias and the weight
    gradient's product sums dy into its last column, with no pass of their own over y
    and dy (on cifar_c3_32_k3, whose output is 10x its input, those passes cost 21-28% of
    forward+backward). For one group and chunks of every channel; a pointwise
    convolution multiplies the input itself, which has no row to spare."""
    if geo.groups != 1 or geo.is_pointwise:
        return False
    return all(c.c0 == 0 and c.c1 == geo.C for chunks in plan for c in chunks)


class Chunk(NamedTuple):
    """Images ``[n0, n1)``, output rows ``[oh0, oh1)`` and input channels ``[c0, c1)``."""

    n0: int
    n1: int
    oh0: int
    oh1: int
    c0: int
    c1: int


def _scratch_per_row(geo: Geometry, itemsize: int, channels: int, tile: int = 1, channels_last=False) -> int:
    """Scratch for one output row of one image: with ``tile == 1`` its columns (and a row
    of ones, see :func:`_bias_in_gemm`) and their gradient plus the GEMM output (and with
    ``channels_last``, see :mod:`convcore._channels_last`, a share of the image's
    channels-last copy); with ``tile == 2`` (Winograd, see :mod:`convcore._winograd`) half
    a tile row's transformed inputs, their gradient and the transformed outputs, 16 values
    per tile each (and one spare tile a row); with both (:mod:`convcore._winograd_cl`),
    half a tile row's transformed inputs and outputs and a share of the padded input.
    The im2col backward writes the gradient over the columns, so it uses about half of
    its budget; budgeting for one array measured no faster (0.98-1.03)."""
    if channels_last and tile == 2:  # the padded input's phases (its rows at most 2x a tile
        tw = (geo.OW + 1) // 2  # row's share), and 16 transformed inputs and outputs a tile
        return (4 * (tw + 1) * channels + 8 * tw * (channels + geo.F)) * itemsize
    if channels_last:
        image = -(-channels * geo.H * geo.W // geo.OH)
        return _scratch_per_row(geo, itemsize, channels) + image * itemsize
    if geo.is_pointwise and tile == 1:
        return 0
    if tile == 2:
        return 8 * ((geo.OW + 1) // 2 + 1) * (2 * channels + geo.F) * itemsize
    return (2 * channels * geo.KH * geo.KW + 1 + geo.F) * geo.OW * itemsize  # + 1: the bias's ones


def _whole_image(per_row: int, geo: Geometry, tile: int) -> int:
    """Scratch for all output rows of an image at ``per_row`` bytes a row (an odd last row
    takes a whole tile row)."""
    return per_row * -(-geo.OH // tile) * tile


def _chunks(
    geo: Geometry, images, rows, channels, budget: int, itemsize: int, tile: int, channels_last: bool
) -> list[Chunk]:
    """Chunks covering ``images x rows x channels`` (each a ``(start, stop)`` range) with at
    most ``budget`` bytes of scratch each, several whole images at a time if they fit;
    bands of rows start at multiples of ``tile``."""
    (n0, n1), (h0, h1), (c0, c1) = images, rows, channels
    per_row = _scratch_per_row(geo, itemsize, c1 - c0, tile, channels_last)
    whole = _whole_image(per_row, geo, tile)
    if (h0, h1, c0, c1) == (0, geo.OH, 0, geo.C) and whole <= budget:
        step = max(n1 - n0, 1) if whole == 0 else budget // whole
        return [Chunk(n, min(n + step, n1), 0, geo.OH, 0, geo.C) for n in range(n0, n1, step)]
    band = max(tile, budget // per_row // tile * tile) if per_row else h1 - h0
    return [Chunk(n, n + 1, h, min(h + band, h1), c0, c1) for n in range(n0, n1) for h in range(h0, h1, band)]


def forward_plan(
    geo: Geometry, itemsize: int, tile: int = 1, channels_last=False
) -> tuple[tuple[Chunk, ...], ...]:
    """The forward chunks of each thread, in order; the first runs on the caller. A batch
    smaller than the thread count is split by output rows, in multiples of ``tile`` (2 for
    Winograd's 2x2 tiles). ``channels_last`` counts the channels-last copy of the input
    in the scratch; with ``tile == 2`` too (channels-last Winograd), there are at most as
    many threads as images, and the batch is split by images."""
    return _plan(geo, itemsize, 1, tile, channels_last, *_settings())


def backward_plan(
    geo: Geometry, itemsize: int, tile: int = 1, channels_last=False
) -> tuple[tuple[Chunk, ...], ...]:
    """The backward chunks of each thread, in order; the first runs on the caller. A
    batch smaller than the thread count is split by input channels (but see
    :func:`forward_plan` for channels-last Winograd)."""
    return _plan(geo, itemsize, 2, tile, channels_last, *_settings())


def _settings() -> tuple[int, int, int, int]:
    return thread_count(), get_workspace_limit(), _CHUNK_BYTES, _MIN_PARALLEL_MAC_BYTES


@functools.lru_cache(maxsize=256)
def _plan(
    geo: Geometry,
    itemsize: int,
    small_batch_axis: int,
    tile: int,
    channels_last: bool,
    threads,
    limit,
    chunk_bytes,
    min_work,
):
    """Cached: a layer runs the same geometry call after call, and planning costs ~10 us."""
    everything = ((0, geo.N), (0, geo.OH), (0, geo.C))
    units = (geo.N, -(-geo.OH // tile), geo.C)  # rows are split in whole tiles
    extent = units[small_batch_axis]
    macs = geo.N * geo.F * geo.P * geo.Cg * geo.KH * geo.KW
    threads = max(1, min(threads, max(geo.N, extent))) if macs * itemsize >= min_work else 1
    if tile == 2 and channels_last:  # whole images only (:mod:`convcore._winograd_cl`)
        threads = min(threads, geo.N)
    budget = _chunk_budget(limit, threads, chunk_bytes, tile)
    axis = 0 if geo.N >= threads else small_batch_axis
    shares = []
    scale = tile if axis == 1 else 1
    for lo, hi in even_ranges(units[axis], threads):
        share = list(everything)
        share[axis] = (lo * scale, min(hi * scale, everything[axis][1]))
        shares.append(tuple(_chunks(geo, *share, budget, itemsize, tile, channels_last)))
    return tuple(shares)


def _chunk_budget(limit: int, threads: int, chunk_bytes: int, tile: int) -> int:
    """Scratch bytes a chunk may take: a thread's share of the limit, at most
    ``chunk_bytes``, less room for the Winograd engines' tile arrays to be padded by up to
    two cache lines a plane (at most three arrays of 16 planes)."""
    budget = min(limit // threads, chunk_bytes)
    return max(budget - 3 * 16 * 128, 0) if tile == 2 else budget


def image_fits(geo: Geometry, itemsize: int, threads: int, tile: int, channels_last: bool) -> bool:
    """Whether one whole image's scratch fits a chunk's budget on ``threads`` threads (a
    plan may still give an image that does not fit one chunk, when its rows cannot be
    banded finer than one tile row)."""
    whole = _whole_image(_scratch_per_row(geo, itemsize, geo.C, tile, channels_last), geo, tile)
    return whole <= _chunk_budget(get_workspace_limit(), threads, _CHUNK_BYTES, tile)


def run_plan(work, per_thread) -> list:
    """``work(chunks)`` for each thread's chunks, BLAS single-threaded throughout; each
    thread first drops a workspace buffer larger than its share of the limit (left from a
    call split over fewer threads), so that together they stay under it."""
    share = get_workspace_limit() // len(per_thread)

    def task(chunks):
        fit_workspace(share)
        return work(chunks)

    with single_threaded_blas():
        if len(per_thread) == 1:
            return [task(per_thread[0])]
        return run_tasks([lambda chunks=chunks: task(chunks) for chunks in per_thread])


def weight_matrix(w: np.ndarray, geo: Geometry) -> np.ndarray:
    """View ``w (F, Cg, KH, KW)`` as ``(groups, Fg, Cg*KH*KW)``."""
    return w.reshape(geo.groups, geo.Fg, geo.window_rows)


def matmul_each(a, b, out) -> None:
    """``out[i] = a[i] @ b[i]`` for each leading index ``i`` (a group) of ``a (G, r, s)``,
    ``b (G, [n,] s, t)`` and ``out (G, [n,] r, t)``: every group (and every image of a
    stack of them) in one NumPy call.

    One call, not one per group or image: NumPy releases the GIL for the whole stack,
    and per-image calls made two threads wait on each other for it between products
    (forward of 64x3x32x32 on two threads: 1.68 ms with a call per image, 1.01 ms with
    one per chunk; 4 groups of 16x28x28 and 16x56x56 images: 0.95-0.99 of a call per
    group).
    """
    if math.prod(out.shape[:-2]) == 1:  # one product: a 2-D call costs ~1.5 us less
        np.matmul(a[0], b[(0,) * (b.ndim - 2)], out=out[(0,) * (out.ndim - 2)])
    else:
        np.matmul(a[:, None] if b.ndim == 4 else a, b, out=out)


def _blocks(a: np.ndarray, geo: Geometry, per_group: int, c: Chunk) -> np.ndarray:
    """View output rows ``[oh0, oh1)`` of the chunk's images of
    ``a (N, groups*per_group, OH, OW)`` as ``(groups, n, per_group, positions)``."""
    n, positions = c.n1 - c.n0, slice(c.oh0 * geo.OW, c.oh1 * geo.OW)
    return a[c.n0 : c.n1].reshape(n, geo.groups, per_group, -1)[..., positions].transpose(1, 0, 2, 3)


def _by_image(cols: np.ndarray, k: int) -> np.ndarray:
    """View ``cols (rows, k*m)`` as ``(k, rows, m)``: the columns of each of ``k`` images."""
    return cols.reshape(cols.shape[0], k, -1).transpose(1, 0, 2)


def _as_filter_major(a: np.ndarray, geo: Geometry, n: int) -> np.ndarray:
    """View a ``(F, n*OH*OW)`` GEMM operand as ``(n, F, OH, OW)``."""
    return a.reshape(geo.F, n, geo.OH, geo.OW).transpose(1, 0, 2, 3)


def group_segments(geo: Geometry, c: Chunk, per_channel: int) -> list[tuple[int, int, int, int, int]]:
    """The groups meeting channels ``[c0, c1)`` as ``(g0, g1, r0, r1, at)``: groups
    ``[g0, g1)``, the rows ``[r0, r1)`` of each one's weight matrix that those channels
    own, and the row ``at`` where the first starts in the chunk's columns
    (``per_channel`` rows per channel, the groups' rows one after another). Whole
    groups side by side make one segment, a group cut by the chunk's ends one of its
    own, so each segment's products are one stacked call."""
    out = []
    for g in range(c.c0 // geo.Cg, (c.c1 - 1) // geo.Cg + 1):
        lo, hi = max(c.c0, g * geo.Cg), min(c.c1, (g + 1) * geo.Cg)
        r0, r1 = (lo - g * geo.Cg) * per_channel, (hi - g * geo.Cg) * per_channel
        whole = r1 - r0 == geo.Cg * per_channel
        if out and whole and out[-1][3] - out[-1][2] == r1 - r0:  # extends a run of whole groups
            out[-1] = (out[-1][0], g + 1, *out[-1][2:])
        else:
            out.append((g, g + 1, r0, r1, (lo - c.c0) * per_channel))
    return out


def _rows_by_group(a: np.ndarray, at: int, groups: int, rows: int) -> np.ndarray:
    """View rows ``[at, at + groups*rows)`` of ``a (k, R, m)`` as
    ``(groups, k, rows, m)``: ``rows`` rows a group."""
    k, m = a.shape[0], a.shape[2]
    return a[:, at : at + groups * rows].reshape(k, groups, rows, m).transpose(1, 0, 2, 3)


def _forward_pointwise(x, wm, b, geo: Geometry, y, c: Chunk) -> None:
    """1x1, stride 1, unpadded: ``y[n] = w @ x[n]`` per image and group, no im2col."""
    matmul_each(wm, _blocks(x, geo, geo.Cg, c), _blocks(y, geo, geo.Fg, c))
    if b is not None:
        add_bias(y, b, (c.n0, c.n1), (c.oh0, c.oh1))


def _per_image(geo: Geometry, c: Chunk) -> int:
    """Output positions per GEMM: one image's (rows), the chunk's images stacked in one
    call, multiplying straight into ``y`` and out of ``dy``; or 0 for one GEMM over the
    whole chunk, whose product and output gradient are transposed through the workspace
    (cheaper for small images)."""
    n, m = c.n1 - c.n0, (c.oh1 - c.oh0) * geo.OW
    return m if n == 1 or geo.P >= _PER_IMAGE_MIN_P else 0


def output_grad_operands(dy, geo: Geometry, c: Chunk, grad=None) -> np.ndarray:
    """The chunk's block of ``dy`` as stacked GEMM operands ``(groups, k, Fg, positions)``:
    views of ``dy``, one per image (``k = n``), when ``grad`` is None (see
    :func:`_per_image`); else ``grad (groups, Fg, n*positions)`` filled with the whole
    chunk (``k = 1``)."""
    if grad is None:
        return _blocks(dy, geo, geo.Fg, c)
    np.copyto(_as_filter_major(grad, geo, c.n1 - c.n0), dy[c.n0 : c.n1])
    return grad[:, None]


def _forward_im2col(x, wm, b, geo: Geometry, y, c: Chunk) -> None:
    """im2col into the workspace, then one stacked product over the groups (and the
    chunk's images, see :func:`_per_image`) into NCHW ``y``, plus the bias (``b``, or a
    bias column of ``wm`` meeting a row of ones under the columns)."""
    n = c.n1 - c.n0
    m = n * (c.oh1 - c.oh0) * geo.OW
    rows = geo.groups * wm.shape[2]
    per = _per_image(geo, c)
    if per:
        (cols,) = scratch(x.dtype, (rows, m))
    else:
        cols, out = scratch(x.dtype, (rows, m), (geo.groups, geo.Fg, m))
    im2col_into(x[c.n0 : c.n1], geo.kernel_args, cols, (c.oh0, c.oh1))  # the first C*KH*KW rows
    cols[geo.C * geo.KH * geo.KW :] = 1
    if per:
        cols_g = _rows_by_group(_by_image(cols, n), 0, geo.groups, wm.shape[2])
        matmul_each(wm, cols_g, _blocks(y, geo, geo.Fg, c))
        if b is not None:
            add_bias(y, b, (c.n0, c.n1), (c.oh0, c.oh1))
        return
    matmul_each(wm, cols.reshape(geo.groups, -1, m), out)
    if b is None:
        np.copyto(y[c.n0 : c.n1], _as_filter_major(out, geo, n))
    else:
        np.add(_as_filter_major(out, geo, n), b[:, None, None], out=y[c.n0 : c.n1])


def forward(x, w, b, geo: Geometry, y) -> None:
    """Fill ``y (N, F, OH, OW)`` with the convolution of ``x`` and ``w`` (plus ``b``)."""
    check_contiguous(x, w, y)  # written through reshaped views, which must not be copies
    wm = weight_matrix(w, geo)
    chunk_forward = _forward_pointwise if geo.is_pointwise else _forward_im2col
    plan = forward_plan(geo, x.itemsize)
    if b is not None and _bias_in_gemm(geo, plan):
        wm, b = np.concatenate((wm, b.reshape(1, -1, 1)), axis=2), None

    def work(chunks):
        for c in chunks:
            chunk_forward(x, wm, b, geo, y, c)

    run_plan(work, plan)


def _backward_pointwise(x, dy, wm, geo: Geometry, dx, dw, c: Chunk) -> None:
    """Per image and group: ``dx[n] = w.T @ dy[n]`` and ``dw += dy[n] @ x[n].T``, for the
    chunk's channels (each only when its array is given), stacked over its images and
    whole groups."""
    dys = _blocks(dy, geo, geo.Fg, c)
    dxs = None if dx is None else _blocks(dx, geo, geo.Cg, c)
    xs = None if x is None else _blocks(x, geo, geo.Cg, c).transpose(0, 1, 3, 2)
    column_major = _column_major(dy.dtype, geo)  # False: pointwise products stay row-major
    for g0, g1, r0, r1, _ in group_segments(geo, c, 1):
        if dx is not None:
            wt = wm[g0:g1, :, r0:r1].transpose(0, 2, 1)
            matmul_each(wt, dys[g0:g1], dxs[g0:g1, :, r0:r1])
        if x is not None:
            add_products(dw[g0:g1, :, r0:r1], dys[g0:g1], xs[g0:g1, :, :, r0:r1], column_major)


def _backward_im2col(x, dy, wm, geo: Geometry, dx, dw, c: Chunk) -> None:
    """Recompute the columns of the chunk's channels and add ``dy @ cols.T`` into dw
    (given x); add ``col2im(w.T @ dy)`` into dx, the first band of an image overwriting
    it (given dx). A dw one column wider than ``wm`` (see :func:`_bias_in_gemm`) also
    takes the bias gradient, from a row of ones under the columns.

    The column gradient takes the columns' place: each segment's products write it into
    the rows its weight-gradient products have just read, so the scratch is one array of
    columns (plus, on the single-GEMM path, the output gradient's block) and the pass
    touches half the memory (b1_c16_32x32_k3's columns then stay in cache between im2col,
    the products and col2im)."""
    n = c.n1 - c.n0
    m = n * (c.oh1 - c.oh0) * geo.OW
    per_channel = geo.KH * geo.KW
    rows = (c.c1 - c.c0) * per_channel
    ones = 0 if x is None else dw.shape[2] - wm.shape[2]  # one segment when 1 (one group)
    if _per_image(geo, c):
        (cols,), grad = scratch(dy.dtype, (rows + ones, m)), None
    else:  # whole images, every channel
        cols, grad = scratch(dy.dtype, (rows + ones, m), (geo.groups, geo.Fg, m))
    dcols = cols[:rows]
    grads = output_grad_operands(dy, geo, c, grad)
    k = grads.shape[1]
    if x is not None:
        im2col_into(x[c.n0 : c.n1, c.c0 : c.c1], geo.kernel_args, cols, (c.oh0, c.oh1))
        cols[rows:] = 1
        cols_k, column_major = _by_image(cols, k), _column_major(dy.dtype, geo)
    dcols_k = _by_image(dcols, k) if dx is not None else None
    for g0, g1, r0, r1, at in group_segments(geo, c, per_channel):
        if x is not None:  # the ones row, if any, follows the only group's rows
            cols_s = _rows_by_group(cols_k, at, g1 - g0, r1 + ones - r0).transpose(0, 1, 3, 2)
            add_products(dw[g0:g1, :, r0 : r1 + ones], grads[g0:g1], cols_s, column_major)
        if dx is not None:  # over the rows just read
            wt = wm[g0:g1, :, r0:r1].transpose(0, 2, 1)
            matmul_each(wt, grads[g0:g1], _rows_by_group(dcols_k, at, g1 - g0, r1 - r0))
    if dx is not None:
        col2im_into(
            dcols, geo.kernel_args, dx[c.n0 : c.n1, c.c0 : c.c1], (c.oh0, c.oh1), overwrite=c.oh0 == 0
        )


def backward(x, w, dy, geo: Geometry, dx, db=None) -> np.ndarray | None:
    """Gradients of the convolution of ``x`` and ``w`` from ``dy (N, F, OH, OW)``: fill
    ``dx (N, C, H, W)`` with the input gradient unless it is None, fill ``db (F,)`` with
    the bias gradient if given, and return the weight gradient, shaped like ``w``, unless
    ``x`` is None."""
    check_contiguous(*(a for a in (x, w, dy, dx) if a is not None))  # see forward
    wm = weight_matrix(w, geo)
    chunk_backward = _backward_pointwise if geo.is_pointwise else _backward_im2col
    plan = backward_plan(geo, dy.itemsize)
    ones = int(db is not None and x is not None and _bias_in_gemm(geo, plan))
    shape = (geo.groups, geo.Fg, geo.window_rows + ones)

    def work(chunks):
        dw = None if x is None else np.zeros(shape, wm.dtype)
        db_part = None if db is None or ones else np.zeros_like(db)
        for c in chunks:
            add_chunk_bias_grad(dy, c, db_part)
            chunk_backward(x, dy, wm, geo, dx, dw, c)
        return dw, db_part

    partial = run_plan(work, plan)
    if x is None:
        add_in_order([p[1] for p in partial], db)
        return None
    dw = add_in_order([p[0] for p in partial])
    if ones:
        db[...] = dw[0, :, -1]
        return np.ascontiguousarray(dw[:, :, :-1]).reshape(w.shape)
    add_in_order([p[1] for p in partial], db)
    return dw.reshape(w.shape)


def add_chunk_bias_grad(dy, c: Chunk, part) -> None:
    """Add the chunk's block of ``dy`` summed per filter into a thread's partial bias
    gradient ``part`` (unless None). Only chunks starting at channel 0 count: a batch split
    by channels gives each thread every image. Called just before the chunk's own passes
    over the same block, which then find it in cache."""
    if part is not None and c.c0 == 0:
        bias_grad(dy, part, (c.n0, c.n1), (c.oh0, c.oh1))


def add_in_order(parts, out=None):
    """The threads' partial sums added in thread order, into ``out`` when given: the same
    result for the same plan, whichever thread finished first. Parts of None (nothing was
    asked of the threads) give ``out``."""
    if parts[0] is None:
        return out
    if out is None:
        out = parts[0]
    else:
        out[...] = parts[0]
    for p in parts[1:]:
        out += p
    return out
