"""The depthwise kernels on phase planes: forward and backward passes (every block size and
thread split) against the naive reference, NaN locality, the non-finite weights fallback,
the exact bias gradient, the float32 weight gradient's accuracy and the bounds on its
blocks."""

import contextlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convcore as cc
from convcore import _depthwise, _threads, reference

from strategies import (
    arrays_for,
    assert_agrees_with_reference,
    engine_path,
    max_rel_err,
    paddings,
)

ENGINE = (cc.conv2d_forward, cc.conv2d_backward)
REFERENCE = (reference.conv2d_forward, reference.conv2d_backward)


@st.composite
def depthwise_configs(draw):
    """One channel and one filter per group (or a multiplier of filters per channel, which
    the depthwise kernels also compute when forced onto them), any window."""
    channels, per_channel = draw(st.integers(1, 4)), draw(st.sampled_from([1, 1, 2]))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    h = draw(st.integers(dilation[0] * (kh - 1) + 1, dilation[0] * (kh - 1) + 9))
    w = draw(st.integers(dilation[1] * (kw - 1) + 1, dilation[1] * (kw - 1) + 9))
    return dict(
        x=(draw(st.integers(1, 4)), channels, h, w),
        w=(channels * per_channel, 1, kh, kw),
        bias=draw(st.booleans()),
        opts=dict(stride=stride, padding=draw(paddings()), dilation=dilation, groups=channels),
    )


_BOUNDS = ("_ACCUMULATOR_BYTES", "_BATCH_BYTES", "_BLOCK_BYTES")


@contextlib.contextmanager
def blocks(threads, nbytes):
    """The depthwise path on ``threads`` threads (even for tiny problems), its blocks
    bounded by ``nbytes`` (1: one row and one image a block), or as by default (None)."""
    saved = (_threads._THREADS, _threads._MIN_PARALLEL_WORK, *(getattr(_depthwise, b) for b in _BOUNDS))
    _threads._THREADS, _threads._MIN_PARALLEL_WORK = threads, 0
    for bound in _BOUNDS if nbytes is not None else ():
        setattr(_depthwise, bound, nbytes)
    try:
        with engine_path("depthwise"):
            yield
    finally:
        _threads._THREADS, _threads._MIN_PARALLEL_WORK = saved[:2]
        for bound, value in zip(_BOUNDS, saved[2:], strict=True):
            setattr(_depthwise, bound, value)


SPLITS = [(1, None), (1, 1), (3, 1), (2, 2048)]


@pytest.mark.parametrize("threads, nbytes", SPLITS)
@given(cfg=depthwise_configs(), seed=st.integers(0, 2**16))
def test_float64_agrees_with_reference(threads, nbytes, cfg, seed):
    with blocks(threads, nbytes):
        assert_agrees_with_reference(ENGINE, REFERENCE, *arrays_for(cfg, seed), cfg["opts"])


@pytest.mark.parametrize("threads, nbytes", SPLITS)
@given(cfg=depthwise_configs(), seed=st.integers(0, 2**16))
def test_float32_agrees_with_float64_reference(threads, nbytes, cfg, seed):
    with blocks(threads, nbytes):
        assert_agrees_with_reference(ENGINE, REFERENCE, *arrays_for(cfg, seed, np.float32), cfg["opts"])


EDGES = [
    ((3, 5, 1, 1), (5, 1, 3, 3), dict(padding=1)),  # 1x1 images
    ((1, 4, 5, 5), (4, 1, 5, 5), {}),  # kernel as large as the input, batch 1
    ((2, 3, 9, 4), (3, 1, 2, 3), dict(stride=(3, 1), padding=((2, 0), (0, 1)), dilation=(2, 1))),
    ((2, 6, 6, 6), (6, 1, 3, 3), dict(stride=2, padding=((3, 0), (0, 4)))),  # padding past the kernel
    ((3, 3, 7, 7), (3, 1, 1, 1), dict(stride=2)),  # 1x1 kernel, strided
    ((2, 4, 11, 7), (4, 1, 1, 7), dict(padding=(0, 3))),  # a 1x7 kernel
    ((2, 4, 13, 13), (4, 1, 3, 3), dict(stride=3, dilation=3, padding=2)),  # stride = dilation
    ((2, 2, 50, 60), (4, 1, 3, 3), dict(padding=1)),  # 2 filters a channel, several forward runs
    # the weight gradient sums four images a pass, then two, then one
    ((5, 3, 9, 9), (3, 1, 3, 3), dict(padding=1)),  # four, then one
    ((6, 2, 7, 7), (2, 1, 5, 5), dict(padding=2)),  # four, then two
    ((7, 2, 8, 10), (4, 1, 3, 3), dict(stride=2, padding=1)),  # four, two, one; 2 filters a channel
]


@pytest.mark.parametrize("x_shape, w_shape, opts", EDGES)
@pytest.mark.parametrize("threads, nbytes", SPLITS)
def test_edge_configurations(x_shape, w_shape, opts, threads, nbytes):
    x, w, b = arrays_for(dict(x=x_shape, w=w_shape, bias=True), 5)
    opts = {**opts, "groups": x_shape[1]}
    with blocks(threads, nbytes):
        assert_agrees_with_reference(ENGINE, REFERENCE, x, w, b, opts)


@pytest.mark.parametrize("opts", [dict(padding=2), dict(stride=(2, 1), dilation=(1, 2), padding=(3, 1))])
@pytest.mark.parametrize("w_shape", [(3, 1, 5, 4), (6, 1, 5, 4), (3, 2, 3, 3)])  # 2 filters, 2 channels
def test_row_blocks_leave_output_and_input_gradient_bits_unchanged(opts, w_shape):
    # every element is the same sum in the same order, whatever rows a block takes
    channels = 3 * w_shape[1]
    x, w, b = arrays_for(dict(x=(2, channels, 37, 29), w=w_shape, bias=True), 7)
    opts = {**opts, "groups": 3}
    results = []
    for nbytes in (None, 1, 8192):  # one block, rows one by one, blocks of 7 to 12 rows
        with blocks(2, nbytes):
            y, cache = cc.conv2d_forward(x, w, b, **opts)
            results.append((y, cc.conv2d_backward(np.cos(y), cache)[0]))
    for y, dx in results[1:]:
        np.testing.assert_array_equal(y, results[0][0])
        np.testing.assert_array_equal(dx, results[0][1])


def _non_finite(x, w, dy, **opts):
    """Masks of the NaNs and infinities of (y, dx, dw), on the depthwise path and in the
    reference."""
    with engine_path("depthwise"):
        y, cache = cc.conv2d_forward(x, w, **opts)
        got = (y, *cc.conv2d_backward(dy, cache)[:2])
    y_ref, cache_ref = reference.conv2d_forward(x, w, **opts)
    want = (y_ref, *reference.conv2d_backward(dy, cache_ref)[:2])
    return [~np.isfinite(a) for a in got], [~np.isfinite(a) for a in want]


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("where", ["x", "dy"])
@pytest.mark.parametrize("stride", [1, 2])
def test_nan_at_the_edge_stays_local(where, stride):
    # the spare columns of each plane read the next row's first values: never copied out
    x, w = np.ones((2, 3, 7, 7)), np.ones((3, 1, 3, 3))
    dy = np.ones(cc.conv2d(x, w, padding=1, stride=stride, groups=3).shape)
    (x if where == "x" else dy)[1, 2, -1, -1] = np.nan
    (x if where == "x" else dy)[0, 1, 0, 0] = np.nan
    got, want = _non_finite(x, w, dy, padding=1, stride=stride, groups=3)
    # x's NaN reaches y and dw, dy's reaches dx and dw; each only part of the way
    assert [r.any() for r in want] == ([True, False, True] if where == "x" else [False, True, True])
    assert not any(r.all() for r in want)
    for g, r in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, r)


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # inf * 0, with Numba off
@pytest.mark.parametrize("per_channel", [1, 2])
def test_non_finite_weights_spread_no_further_than_in_the_reference(per_channel):
    # the input gradient's flat gather would carry 0 * inf into inputs no output reaches
    x, dy = np.ones((2, 3, 6, 6)), np.ones((2, 3 * per_channel, 6, 6))
    w = np.ones((3 * per_channel, 1, 3, 3))
    w[1, 0, 0, 0] = np.inf
    got, want = _non_finite(x, w, dy, padding=1, groups=3)
    assert want[1].any() and not want[1].all()
    for g, r in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, r)


def test_bias_gradient_is_the_exact_sum():
    # integer-valued dy: every partial sum is exact in float32 and float64 alike
    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, 4, 9, 9)).astype(np.float32)
    w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    with blocks(2, 1):
        y, cache = cc.conv2d_forward(x, w, np.zeros(4, np.float32), padding=1, groups=4)
        dy = rng.integers(-1000, 1000, y.shape).astype(np.float32)
        db = cc.conv2d_backward(dy, cache)[2]
    np.testing.assert_array_equal(db, dy.astype(np.int64).sum(axis=(0, 2, 3)))


def test_weight_gradient_stays_accurate_over_a_large_batch():
    # one float32 accumulator over N*OH*OW = 800,000 terms drifted to 3.6e-5 here
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 2, 112, 112)).astype(np.float32)
    w = rng.standard_normal((2, 1, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((64, 2, 112, 112)).astype(np.float32)
    with engine_path("depthwise"):
        y, cache = cc.conv2d_forward(x, w, padding=1, groups=2)
        dw = cc.conv2d_backward(dy, cache)[1]
    with engine_path("gemm"):
        want = cc.conv2d_backward(
            dy.astype(np.float64),
            cc.conv2d_forward(x.astype(np.float64), w.astype(np.float64), padding=1, groups=2)[1],
        )[1]
    assert dw.dtype == np.float32
    assert max_rel_err(dw, want) <= 2e-6


GEO_ARGS = [  # KH, KW, sh, sw, dh, dw, pt, pl, OH, OW
    (3, 3, 1, 1, 1, 1, 1, 1, 56, 56),
    (11, 11, 4, 4, 1, 1, 2, 2, 55, 55),  # large kernel, large stride
    (1, 7, 1, 1, 1, 1, 0, 3, 40, 30),
    (3, 3, 1, 1, 1, 1, 1, 1, 1, 1),
    (3, 3, 2, 2, 1, 1, 1, 1, 1024, 1024),  # planes larger than a block
    (5, 5, 1, 1, 2, 2, 4, 4, 4096, 4096),
    (3, 3, 1, 1, 1, 1, 1, 1, 3, 60000),  # rows larger than a block
]


def assert_even_blocks(rows, extent, fit):
    """``rows`` a block covers ``extent`` in as few blocks as blocks of ``fit`` rows, of
    even height."""
    blocks = -(-extent // rows)
    assert blocks == -(-extent // max(1, min(extent, fit)))
    assert rows * (blocks - 1) < extent <= rows * blocks and rows - extent // blocks <= 1


@pytest.mark.parametrize(
    "geo_args, H",
    [(g, (g[8] - 1) * g[2] + (g[0] - 1) * g[4] + 1 - 2 * g[6]) for g in GEO_ARGS]
    + [((2, 1, 3, 1, 1, 1, 0, 0, 1, 5), 4)],  # an input row no output reads
)
@pytest.mark.parametrize("itemsize", [4, 8])
def test_plane_blocks_bound_the_buffers(geo_args, H, itemsize):
    KH, KW, sh, sw, dh, dw, pt, _, OH, OW = geo_args
    Wq, below = OW + (KW - 1) * dw // sw, (KH - 1) * dh // sh
    forward, input_grad = _depthwise._plane_blocks(geo_args, H, itemsize)
    phase_rows = max(OH + below, (H - 1 + pt) // sh + 1)  # every input row's
    # the forward pass: phases of rows + below + 1 rows, and the output rows
    used = (sh * sw * (forward + below + 1) + forward) * Wq * itemsize
    assert 1 <= forward <= OH and (used <= _depthwise._BLOCK_BYTES or forward == 1)
    budget = _depthwise._BLOCK_BYTES // (Wq * itemsize)
    assert_even_blocks(forward, OH, (budget - sh * sw * (below + 1)) // (sh * sw + 1))
    # the input gradient: the phases' gradient, and the output-gradient rows it reads
    used = (sh * sw * input_grad + input_grad + below + 1) * Wq * itemsize
    assert 1 <= input_grad <= phase_rows and (used <= _depthwise._BLOCK_BYTES or input_grad == 1)
    assert_even_blocks(input_grad, phase_rows, (budget - below - 1) // (sh * sw + 1))


@pytest.mark.parametrize("N", [1, 8, 64])
@pytest.mark.parametrize("geo_args", GEO_ARGS)
@pytest.mark.parametrize("itemsize", [4, 8])
def test_weight_gradient_blocks_bound_the_accumulators(geo_args, N, itemsize):
    KH, KW, sh, sw, dh, dw, _, _, OH, OW = geo_args
    Wq, below = OW + (KW - 1) * dw // sw, (KH - 1) * dh // sh
    rows, images = _depthwise._weight_grad_blocks(geo_args, N, itemsize)
    per_row = (KH * KW + 1) * Wq * 8  # float64 accumulators for every tap and the bias
    assert 1 <= rows <= OH and (rows * per_row <= _depthwise._ACCUMULATOR_BYTES or rows == 1)
    assert_even_blocks(rows, OH, _depthwise._ACCUMULATOR_BYTES // per_row)
    per_image = (sh * sw * (rows + below + 1) + rows) * Wq * itemsize
    assert 1 <= images <= min(N, _depthwise._BATCH_IMAGES)
    assert images * per_image <= _depthwise._BATCH_BYTES or images == 1
