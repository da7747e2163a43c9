"""Direct loops for depthwise layers (one channel per group, one filter or a few).

Window tap ``(kh, kw)`` of output ``(oh, ow)`` reads padded input row ``oh*sh + kh*dh``
and column ``ow*sw + kw*dw``. Split the zero-padded input plane into its ``sh*sw``
phases, phase ``(a, b)`` holding the padded rows ``a, a + sh, ...`` and columns
``b, b + sw, ...``, every phase with the same row stride ``Wq``. Each tap then reads one
phase, ``((kh*dh) % sh, (kw*dw) % sw)``, at row ``oh + (kh*dh) // sh`` and column
``ow + (kw*dw) // sw``: a constant offset. Laid out with the same row stride, an output
plane takes a tap in one long unit-stride loop, ``out[k] += tap * phase[shift + k]``, which
vectorises (tap by tap over rows of OW values, the loops were too short to).

The columns ``ow >= OW`` of such a plane read past the end of their row into the next
one; they are never copied out. Every output element is the sum the direct loops take
(the padding's zeros included, as in im2col + GEMM), so a NaN stays where it was.

- Forward: the taps gather into output rows of row stride ``Wq``, three taps to a pass
  over one run of them at a time; the bias plus their first OW columns is ``y``. With
  one channel a group, the group's filters share its phases.
- Input gradient, the adjoint: every phase row gathers, tap by tap, the output-gradient
  row that tap reached it from, out of rows copied with stride ``Wq`` and zeros beyond
  OW (with unit column stride, three taps of a kernel row to a pass); the input's own
  positions are then copied out of the phases. The zeros carry ``0 * tap`` into
  positions no output reaches, so non-finite weights would spread there: the engine
  gives those to im2col + GEMM instead (:func:`convcore.conv._backward`).
- Weight gradient and bias gradient: for every tap (and the bias, a tap reading ones),
  the products of the output-gradient plane and the shifted phase, summed element by
  element over up to 16 images (four a pass, then two, then one) in the arrays' dtype,
  then into float64 (one float32 sum over N*OH*OW terms would drift; a single image's
  products go straight into float64), then down the columns of the rows, and over the
  first OW columns at the end.

Each pass takes blocks of rows, as few as keep its buffers (per thread, outside the
workspace) within :data:`_BLOCK_BYTES`, or :data:`_ACCUMULATOR_BYTES` plus
:data:`_BATCH_BYTES` for the weight gradient: under 1 MiB a thread, unless the phase
rows one output row needs (``sh*sw*((KH-1)*dh // sh + 2)`` rows of ``Wq`` values) are
larger. A block rebuilds the ``(KH-1)*dh // sh`` phase rows its taps reach below it.
Blocks change neither the output nor the input gradient, which are the same sums in the
same order.

Forward+backward against im2col + GEMM (``benchmarks/engine_paths.py --only depthwise``):
0.05-0.25; against the whole-plane loops of the previous version, interleaved: float32
0.76-0.84, float64 0.80-0.89 (8x64x56x56, 16x128x28x28 stride 2, 8x32x112x112,
16x256x14x14 5x5), 0.74-0.78 on 2x4x1024x1024.
"""

from __future__ import annotations

import numba
import numpy as np

from convcore._numba import _jit, _valid_range, check_contiguous
from convcore._threads import run_split, run_splits

u = numba.uint64  # flat offsets are unsigned: no wraparound checks in the loops
# The forward pass's and the input gradient's buffers per thread (phases, output or
# output-gradient rows) hold blocks of rows within this, at least one row.
_BLOCK_BYTES = 512 << 10
# Elements per block of the weight gradient's loops: every tap runs over one block of
# partial sums while it is in cache; and of the forward pass's output.
_RUN = 512
_FORWARD_RUN = 2048
# The weight gradient's float64 accumulators (one plane per tap) per thread, at most; and
# the images whose phases it reads while a block of the accumulators is in cache.
_ACCUMULATOR_BYTES = 128 << 10
_BATCH_BYTES = 256 << 10
# ... and at most this many: their products are summed in the arrays' dtype (vectors twice
# as wide as in float64) before they join the float64 sums.
_BATCH_IMAGES = 16


@_jit
def _planes(KH, KW, sh, sw, dh, dw, OH, OW):
    """``(rows below, Wq)``: the phase rows a tap reaches below its output row at most,
    and the row stride of the planes."""
    return (KH - 1) * dh // sh, OW + (KW - 1) * dw // sw


@_jit
def _phase_rows(H, pt, sh, OH, below):
    """The phase rows the input gradient covers: those some output reads, and at least
    every input row's."""
    return max(OH + below, (H - 1 + pt) // sh + 1)


@_jit
def _tap_offset(kh, kw, sh, sw, dh, dw, Hb, Wq):
    """Where tap ``(kh, kw)`` of output ``(0, 0)`` reads in phases of ``Hb`` rows."""
    phase = (kh * dh) % sh * sw + (kw * dw) % sw
    return (phase * Hb + (kh * dh) // sh) * Wq + (kw * dw) // sw


@_jit
def _tap_offsets(KH, KW, sh, sw, dh, dw, Hb, Wq):
    """:func:`_tap_offset` of every tap, in row-major order (worked out once a call: it
    divides)."""
    at = np.empty(KH * KW, np.int64)
    for t in range(KH * KW):
        at[t] = _tap_offset(t // KW, t % KW, sh, sw, dh, dw, Hb, Wq)
    return at


@_jit
def _copy(dst, d, dstep, src, s, sstep, n):
    """``dst[d + i*dstep] = src[s + i*sstep]`` for ``i < n``, unsigned indices (one of
    the two steps is 1)."""
    if n <= 0:  # d and s may point before the arrays when nothing is to be done
        return
    d, dstep, s, sstep = u(d), u(dstep), u(s), u(sstep)
    if dstep == 1 and sstep == 1:
        for i in range(u(n)):
            dst[d + i] = src[s + i]
    elif dstep == 1:
        for i in range(u(n)):
            dst[d + i] = src[s + i * sstep]
    else:
        for i in range(u(n)):
            dst[d + i * dstep] = src[s + i]


@_jit
def _axpy(dst, d, src, s, n, alpha):
    """``dst[d + i] += alpha * src[s + i]`` for ``i < n``, unsigned indices."""
    d, s = u(d), u(s)
    for i in range(u(n)):
        dst[d + i] += alpha * src[s + i]


@_jit
def _zero_every(dst, d, step, n):
    """``dst[d + i*step] = 0`` for ``i < n``, unsigned indices."""
    if n <= 0:
        return
    d, step = u(d), u(step)
    if step == 1:
        for i in range(u(n)):
            dst[d + i] = 0
    else:
        for i in range(u(n)):
            dst[d + i * step] = 0


@_jit
def _row_sum(a, s, n):
    """``a[s] + a[s + 1] + ... + a[s + n - 1]``, added in that order (from a zero of the
    array's dtype: ``a[s] * 0`` would be NaN for an infinite ``a[s]``)."""
    total = a.dtype.type(0)
    for i in range(n):
        total += a[s + i]
    return total


@_jit
def _set_row(dst, d, src, s, n, c):
    """``dst[d + i] = c + src[s + i]`` for ``i < n``, unsigned indices."""
    d, s = u(d), u(s)
    for i in range(u(n)):
        dst[d + i] = c + src[s + i]


@_jit
def _axpy3(dst, d, src, s0, s1, s2, n, a0, a1, a2):
    """``dst[d + i] += a0*src[s0 + i] + a1*src[s1 + i] + a2*src[s2 + i]`` for ``i < n``."""
    d, s0, s1, s2 = u(d), u(s0), u(s1), u(s2)
    for i in range(u(n)):
        dst[d + i] += a0 * src[s0 + i] + a1 * src[s1 + i] + a2 * src[s2 + i]


@_jit
def _split_phases(xf, plane, H, W, sh, sw, pt, pl, r0, Hb, Wq, ph, p0):
    """Fill ``ph`` with phase rows ``[r0, r0 + Hb)`` of the zero-padded ``H x W`` plane
    at ``xf[plane:]``: phase ``(a, b)``, row ``i``, column ``j`` at
    ``p0 + ((a*sw + b)*Hb + i)*Wq + j`` is padded row ``(r0 + i)*sh + a``, column ``j*sw + b``.

    The padding columns of each row are the same for every plane and row: they are never
    written, so ``ph`` must start out zero (rows of padding are zeroed on every call).
    """
    unit = np.int64(1)
    for b in range(sw):
        lo, hi = _valid_range(b - pl, sw, W, Wq)  # once a column phase: it divides
        for a in range(sh):
            for i in range(Hb):
                h = (r0 + i) * sh + a - pt
                at = p0 + ((a * sw + b) * Hb + i) * Wq
                if 0 <= h < H:
                    _copy(ph, at + lo, unit, xf, plane + h * W + lo * sw + b - pl, sw, hi - lo)
                else:
                    _zero_every(ph, at, unit, Wq)


@_jit
def _depthwise_forward(x, w, b, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW, groups, y, rows, lo, hi):
    """Overwrite the output planes of images and groups ``j = n*groups + group`` in
    ``[lo, hi)`` of ``y`` with the bias ``b`` plus the convolution, ``rows`` output rows
    at a time. With one channel a group, the group's filters share its phases."""
    N, C, H, W = x.shape
    F, Cg = w.shape[0], w.shape[1]
    Fg = F // groups
    below, Wq = _planes(KH, KW, sh, sw, dh, dw, OH, OW)
    Hb = rows + below + 1  # one more row: the last row's spare columns read into it
    ph = np.zeros(sh * sw * Hb * Wq, x.dtype)  # see _split_phases
    out = np.empty(rows * Wq, x.dtype)
    xf, yf, wf, taps = x.ravel(), y.ravel(), w.ravel(), KH * KW
    at = _tap_offsets(KH, KW, sh, sw, dh, dw, Hb, Wq)
    zero, unit = np.int64(0), np.int64(1)  # typed offsets and steps: one compilation each
    for job in range(lo, hi):
        n = job // groups
        group = job - n * groups
        first = n * C + group * Cg
        for r0 in range(0, OH, rows):
            m = (min(OH, r0 + rows) - r0) * Wq
            for f in range(group * Fg, (group + 1) * Fg):
                _zero_every(out, zero, unit, m)
                for c in range(Cg):
                    if Cg > 1 or f == group * Fg:
                        _split_phases(xf, (first + c) * H * W, H, W, sh, sw, pt, pl, r0, Hb, Wq, ph, zero)
                    for k in range(0, m, _FORWARD_RUN):  # every tap on a block in cache
                        n_k = min(_FORWARD_RUN, m - k)
                        for t in range(0, taps - 2, 3):  # three taps to a pass
                            a0, a1, a2 = wf[(f * Cg + c) * taps + t : (f * Cg + c) * taps + t + 3]
                            _axpy3(out, k, ph, at[t] + k, at[t + 1] + k, at[t + 2] + k, n_k, a0, a1, a2)
                        for t in range(taps - taps % 3, taps):
                            _axpy(out, k, ph, at[t] + k, n_k, wf[(f * Cg + c) * taps + t])
                for oh in range(r0, min(OH, r0 + rows)):
                    _set_row(yf, ((n * F + f) * OH + oh) * OW, out, (oh - r0) * Wq, OW, b[f])


@_jit
def _depthwise_input_grad(gy, w, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW, groups, gx, rows, lo, hi):
    """Overwrite input-gradient planes ``j = n*C + c`` in ``[lo, hi)`` of ``gx``, the
    gradient of ``rows`` rows of the phases at a time."""
    N, C, H, W = gx.shape
    F, Cg = w.shape[0], w.shape[1]
    Fg = F // groups
    below, Wq = _planes(KH, KW, sh, sw, dh, dw, OH, OW)
    phase_rows = _phase_rows(H, pt, sh, OH, below)
    z = np.empty(sh * sw * rows * Wq, gx.dtype)  # the gradient of a block of the phases
    lead = (KW - 1) * dw // sw  # zeros before the output gradient's first row
    g = np.zeros(lead + (rows + below) * Wq, gx.dtype)  # rows of stride Wq; zeros beyond OW
    gyf, gxf = gy.ravel(), gx.ravel()
    row_shift, row_phase = np.empty(KH, np.int64), np.empty(KH, np.int64)  # worked out once:
    column_shift, column_phase = np.empty(KW, np.int64), np.empty(KW, np.int64)  # they divide
    for kh in range(KH):
        row_shift[kh], row_phase[kh] = (kh * dh) // sh, (kh * dh) % sh * sw * rows * Wq
    for kw in range(KW):
        column_shift[kw], column_phase[kw] = (kw * dw) // sw, (kw * dw) % sw * rows * Wq
    zero, unit = np.int64(0), np.int64(1)  # typed offsets and steps: one compilation each
    for job in range(lo, hi):
        n = job // C
        c = job - n * C
        group, cl = c // Cg, c % Cg
        for i0 in range(0, phase_rows, rows):
            m = min(rows, phase_rows - i0) * Wq
            _zero_every(z, zero, unit, z.size)
            for f in range(group * Fg, (group + 1) * Fg):
                for r in range(max(below - i0, 0), min(m // Wq + below, OH + below - i0)):
                    # output row i0 - below + r (other rows' columns < OW are never read)
                    _copy(g, lead + r * Wq, unit, gyf, ((n * F + f) * OH + i0 - below + r) * OW, unit, OW)
                # phase row i gathers tap (kh, kw) from output row i - (kh*dh)//sh where
                # that is a row, column j from column j - (kw*dw)//sw
                for kh in range(KH):
                    q = row_shift[kh]
                    r0 = max(i0, q) - i0  # the block's first row the tap reaches, and count
                    n_k = max(min(i0 + m // Wq, q + OH) - i0 - r0, 0) * Wq
                    at = row_phase[kh] + r0 * Wq
                    src = lead + (below - q + r0) * Wq
                    single = 0  # with unit column stride, a kernel row's taps share a phase,
                    if sw == 1:  # dw apart: three to a pass
                        for kw in range(0, KW - 2, 3):
                            t0, t1, t2 = w[f, cl, kh, kw], w[f, cl, kh, kw + 1], w[f, cl, kh, kw + 2]
                            s0 = src - kw * dw
                            _axpy3(z, at, g, s0, s0 - dw, s0 - 2 * dw, n_k, t0, t1, t2)
                        single = KW - KW % 3
                    for kw in range(single, KW):
                        _axpy(z, at + column_phase[kw], g, src - column_shift[kw], n_k, w[f, cl, kh, kw])
            for b in range(sw):  # input columns b - pl, b - pl + sw, ... from column phase b
                first, full = _valid_range(b - pl, sw, W, W + pl + 1)
                last = max(min(full, Wq), first)
                for a in range(sh):
                    for i in range(i0, i0 + m // Wq):  # the block's phase rows' input rows
                        h = i * sh + a - pt
                        if 0 <= h < H:
                            row = (job * H + h) * W + first * sw + b - pl
                            at = ((a * sw + b) * rows + i - i0) * Wq + first
                            _copy(gxf, row, sw, z, at, unit, last - first)
                            if full > last:  # input columns past the phases' width get nothing
                                _zero_every(gxf, row + (last - first) * sw, sw, full - last)


@_jit
def _mul_add2(acc, a, x, i, j, v, s, r, n):
    """``acc[a + k] += x[i + k] * v[s + k] + x[j + k] * v[r + k]`` for ``k < n``, in the
    inputs' dtype."""
    a, i, j, s, r = u(a), u(i), u(j), u(s), u(r)
    for k in range(u(n)):
        acc[a + k] += x[i + k] * v[s + k] + x[j + k] * v[r + k]


@_jit
def _mul_add4(acc, a, x, i, xstep, v, s, vstep, n):
    """``acc[a + k] += x[i + k] * v[s + k] + ... + x[i + 3*xstep + k] * v[s + 3*vstep + k]``
    for ``k < n``, in the inputs' dtype."""
    a, i0, i1, i2, i3 = u(a), u(i), u(i + xstep), u(i + 2 * xstep), u(i + 3 * xstep)
    s0, s1, s2, s3 = u(s), u(s + vstep), u(s + 2 * vstep), u(s + 3 * vstep)
    for k in range(u(n)):
        first = x[i0 + k] * v[s0 + k] + x[i1 + k] * v[s1 + k]
        acc[a + k] += first + (x[i2 + k] * v[s2 + k] + x[i3 + k] * v[s3 + k])


@_jit
def _mul_add(acc, a, x, i, v, s, n):
    """``acc[a + k] += x[i + k] * v[s + k]`` for ``k < n``, the product in the inputs' dtype."""
    a, i, s = u(a), u(i), u(s)
    for k in range(u(n)):
        acc[a + k] += x[i + k] * v[s + k]


@_jit
def _depthwise_weight_grad(x, gy, KH, KW, sh, sw, dh, dw, pt, pl, OH, OW, groups, gw, db, rows, nb, lo, hi):
    """Overwrite the weight gradient of filters ``[lo, hi)`` (and, if ``db`` is not empty,
    their bias gradient: one more "tap", reading ones), ``rows`` output rows and ``nb``
    images at a time."""
    N, C, H, W = x.shape
    F, Cg = gw.shape[0], gw.shape[1]
    Fg = F // groups
    below, Wq = _planes(KH, KW, sh, sw, dh, dw, OH, OW)
    Hb = rows + below + 1
    taps, m, size = KH * KW, rows * Wq, sh * sw * Hb * Wq
    sums = taps + (db.size > 0)
    ph = np.zeros(nb * size, x.dtype)  # see _split_phases
    g = np.zeros(nb * m, x.dtype)  # output-gradient rows of stride Wq
    acc = np.empty(sums * m)  # float64, one plane of products per tap
    part = np.empty(sums * _RUN, x.dtype)
    ones = np.ones(_RUN, x.dtype)
    columns = np.empty(sums * Wq)  # float64: each tap's sums down the columns of its rows
    xf, gyf = x.ravel(), gy.ravel()
    at = _tap_offsets(KH, KW, sh, sw, dh, dw, Hb, Wq)
    zero, unit = np.int64(0), np.int64(1)  # typed offsets and steps: one compilation each
    for f in range(lo, hi):
        first = (f // Fg) * Cg
        for c in range(Cg):
            planes = taps + (c == 0) * (sums - taps)  # the bias once per filter
            _zero_every(columns, zero, unit, columns.size)
            for r0 in range(0, OH, rows):
                r1 = min(OH, r0 + rows)
                _zero_every(acc, zero, unit, acc.size)
                for n0 in range(0, N, nb):
                    for i in range(min(nb, N - n0)):
                        plane = ((n0 + i) * C + first + c) * H * W
                        _split_phases(xf, plane, H, W, sh, sw, pt, pl, r0, Hb, Wq, ph, i * size)
                        for oh in range(r0, r1):
                            src = (((n0 + i) * F + f) * OH + oh) * OW
                            _copy(g, i * m + (oh - r0) * Wq, unit, gyf, src, unit, OW)
                    batch = min(nb, N - n0)
                    for k in range(0, (r1 - r0) * Wq, _RUN):
                        n_k = min(_RUN, (r1 - r0) * Wq - k)
                        if batch > 1:
                            _zero_every(part, zero, unit, part.size)  # the block's products over the images
                        i = 0
                        while i < batch:  # four images a pass (then two, then one): fewer stores
                            # (the kernel alone, one thread, against two a pass: 0.80-0.89 in
                            # float64, 0.86-0.99 in float32; eight a pass measured no better)
                            pass_images = 4 if batch - i >= 4 else (2 if batch - i >= 2 else 1)
                            for t in range(planes):  # the taps, then the bias: a tap reading ones
                                src, s, step = ph, i * size + at[min(t, taps - 1)] + k, size
                                if t == taps:
                                    src, s, step = ones, zero, zero
                                if pass_images == 4:
                                    _mul_add4(part, t * _RUN, g, i * m + k, m, src, s, step, n_k)
                                elif pass_images == 2:
                                    _mul_add2(
                                        part, t * _RUN, g, i * m + k, (i + 1) * m + k, src, s, s + step, n_k
                                    )
                                elif batch > 1:
                                    _mul_add(part, t * _RUN, g, i * m + k, src, s, n_k)
                                else:  # one image: its products go straight into the float64 sums
                                    _mul_add(acc, t * m + k, g, k, src, s, n_k)
                            i += pass_images
                        for t in range(planes if batch > 1 else 0):
                            _mul_add(acc, t * m + k, part, t * _RUN, ones, zero, n_k)
                for t in range(planes):  # down the columns: vectorises, unlike a row's sum
                    for oh in range(r1 - r0):
                        _axpy(columns, t * Wq, acc, t * m + oh * Wq, OW, 1.0)
            for t in range(taps):
                gw[f, c, t // KW, t % KW] = _row_sum(columns, t * Wq, OW)
            if planes > taps:
                db[f] = _row_sum(columns, taps * Wq, OW)


def _even_rows(extent: int, fit: int) -> int:
    """Rows a block: as few blocks of at most ``fit`` rows (at least one) as cover
    ``extent`` rows, of even height (22 + 2 rows of a 24-row plane ran 1.26x slower than
    one block in the weight gradient: each block rebuilds the rows its taps reach below)."""
    blocks = -(-extent // max(1, min(extent, fit)))
    return -(-extent // blocks)


def _plane_blocks(geo_args, H: int, itemsize: int) -> tuple[int, int]:
    """``(forward rows, input-gradient rows)``: the output rows the forward pass takes at
    a time, its phases and output rows within :data:`_BLOCK_BYTES`, and the phase rows
    the input gradient takes (of an input ``H`` rows high), their gradient and the
    output-gradient rows they read within the same."""
    KH, KW, sh, sw, dh, dw, pt, _, OH, OW = geo_args
    below, Wq = _planes(KH, KW, sh, sw, dh, dw, OH, OW)
    budget = _BLOCK_BYTES // (Wq * itemsize)  # in rows of Wq values
    phases = sh * sw
    forward = _even_rows(OH, (budget - phases * (below + 1)) // (phases + 1))
    extent = _phase_rows(H, pt, sh, OH, below)
    return forward, _even_rows(extent, (budget - below - 1) // (phases + 1))


def _weight_grad_blocks(geo_args, N: int, itemsize: int) -> tuple[int, int]:
    """``(rows, images)`` a block of the weight gradient covers: float64 accumulators of
    at most :data:`_ACCUMULATOR_BYTES` for ``rows`` output rows (as few blocks of rows as
    that allows, of even height), and phases and output gradients of that many rows of
    ``images`` images in :data:`_BATCH_BYTES`."""
    KH, KW, sh, sw, dh, dw, _, _, OH, OW = geo_args
    below, Wq = _planes(KH, KW, sh, sw, dh, dw, OH, OW)
    rows = _even_rows(OH, _ACCUMULATOR_BYTES // ((KH * KW + 1) * Wq * 8))
    per_image = (sh * sw * (rows + below + 1) + rows) * Wq * itemsize
    return rows, max(1, min(N, _BATCH_IMAGES, _BATCH_BYTES // per_image))


def depthwise_forward(x, w, b, geo_args, groups, y) -> None:
    """Overwrite ``y (N, F, OH, OW)`` with the convolution of ``x (N, C, H, W)`` with
    ``w (F, C/groups, KH, KW)`` plus ``b (F,)`` (None: no bias); C-contiguous arrays,
    ``geo_args`` the geometry's kernel_args."""
    check_contiguous(x, w, y)
    b = np.zeros(w.shape[0], x.dtype) if b is None else b
    work = y.size * w.shape[1] * w.shape[2] * w.shape[3]
    rows = _plane_blocks(geo_args, x.shape[2], x.itemsize)[0]
    run_split(_depthwise_forward, (x, w, b, *geo_args, groups, y, rows), y.shape[0] * groups, work)


def depthwise_backward(x, w, gy, geo_args, groups, gx, gw, db=None) -> None:
    """Overwrite ``gx`` (like ``x``), ``gw`` (like ``w``) and ``db (F,)``, if given, with
    the gradients for ``gy (N, F, OH, OW)``. The weights must be finite: the input
    gradient's flat passes would spread a NaN or an infinity into inputs no output reaches
    (see the module docstring), so :func:`convcore.conv._backward` gives such weights to
    im2col + GEMM."""
    check_contiguous(x, w, gy, gx, gw)
    work = gy.size * w.shape[1] * w.shape[2] * w.shape[3]
    rows = _plane_blocks(geo_args, gx.shape[2], gy.itemsize)[1]
    db = np.empty(0, gy.dtype) if db is None else db
    weight_args = (x, gy, *geo_args, groups, gw, db, *_weight_grad_blocks(geo_args, gy.shape[0], gy.itemsize))
    splits = [
        (_depthwise_input_grad, (gy, w, *geo_args, groups, gx, rows), gx.shape[0] * gx.shape[1]),
        (_depthwise_weight_grad, weight_args, gw.shape[0]),
    ]
    run_splits(splits, work)  # one hand-off for both: 0.90-0.98 of the time of two
