"""The im2col + GEMM engine's work plan: every split (by images, output rows, input
channels) and every chunking gives the reference's results, for the convolution and the
transposed convolution (which runs on the same engine), and the plan covers the work
exactly once (in whole 2x2 tiles for the Winograd engine) without two threads writing
one element."""

import threading

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from layer_strategies import transpose_configs, transpose_out_size

import convcore as cc
from convcore import _blas, _gemm, conv, reference, workspace
from convcore._geometry import conv_geometry

from strategies import (
    arrays_for,
    assert_agrees_with_reference,
    conv_configs,
    split_engine_work,
)

ENGINE = (cc.conv2d_forward, cc.conv2d_backward)
REFERENCE = (reference.conv2d_forward, reference.conv2d_backward)
TRANSPOSED = (cc.conv_transpose2d_forward, cc.conv_transpose2d_backward)
TRANSPOSED_REFERENCE = (reference.conv_transpose2d_forward, reference.conv_transpose2d_backward)


def split_work(threads, chunk_bytes):
    """Split even tiny problems over ``threads`` threads in chunks of ``chunk_bytes``."""
    return split_engine_work("gemm", threads, chunk_bytes)


# 1 byte: one output row per chunk; 2 KiB: a few rows or images; 1 MiB: whole shares
SPLITS = [(2, 1), (2, 2048), (3, 1), (3, 1 << 20)]


@pytest.mark.parametrize("threads, chunk_bytes", SPLITS)
@given(cfg=conv_configs(), seed=st.integers(0, 2**16))
def test_every_split_agrees_with_reference(threads, chunk_bytes, cfg, seed):
    with split_work(threads, chunk_bytes):
        assert_agrees_with_reference(ENGINE, REFERENCE, *arrays_for(cfg, seed), cfg["opts"])


@pytest.mark.parametrize("threads, chunk_bytes", SPLITS)
@given(cfg=conv_configs(), seed=st.integers(0, 2**16))
def test_every_split_agrees_in_float32(threads, chunk_bytes, cfg, seed):
    with split_work(threads, chunk_bytes):
        assert_agrees_with_reference(ENGINE, REFERENCE, *arrays_for(cfg, seed, np.float32), cfg["opts"])


@pytest.mark.parametrize("threads, chunk_bytes", SPLITS)
@given(cfg=transpose_configs(), seed=st.integers(0, 2**16))
def test_every_split_of_the_transposed_convolution_agrees_with_reference(threads, chunk_bytes, cfg, seed):
    assume(min(transpose_out_size(cfg)) >= 1)
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(cfg["x"]), rng.standard_normal(cfg["w"])
    b = None if cfg["b"] is None else rng.standard_normal(cfg["b"])
    with split_work(threads, chunk_bytes):
        assert_agrees_with_reference(TRANSPOSED, TRANSPOSED_REFERENCE, x, w, b, cfg["opts"])


@pytest.mark.parametrize(
    "x_shape, w_shape, opts",
    [
        ((1, 6, 9, 7), (6, 2, 3, 3), dict(groups=3, padding=1)),  # channel split across groups
        ((1, 8, 7, 7), (8, 2, 3, 3), dict(groups=4, padding=1)),  # ... runs of whole groups stacked
        ((1, 8, 5, 5), (4, 2, 1, 1), dict(groups=4)),  # pointwise, one image, channels split
        ((1, 5, 8, 8), (4, 5, 1, 1), {}),  # pointwise, one image
        ((2, 4, 6, 6), (6, 2, 1, 1), dict(groups=2)),  # pointwise, grouped, images split
        ((1, 3, 11, 10), (2, 3, 3, 2), dict(stride=(2, 3), padding=((2, 0), (1, 1)), dilation=(2, 1))),
        ((5, 2, 4, 4), (3, 2, 4, 4), {}),  # kernel as large as the input
    ],
)
@pytest.mark.parametrize("threads, chunk_bytes", SPLITS)
def test_splits_of_edge_configurations(x_shape, w_shape, opts, threads, chunk_bytes):
    cfg = dict(x=x_shape, w=w_shape, bias=True)
    with split_work(threads, chunk_bytes):
        assert_agrees_with_reference(ENGINE, REFERENCE, *arrays_for(cfg, 5), opts)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("w_shape, opts", [((6, 4, 3, 3), dict(padding=1)), ((6, 2, 3, 3), dict(groups=2))])
def test_stacked_products_of_several_images(monkeypatch, w_shape, opts, threads):
    """Every image multiplied straight out of its own columns and into y (one stacked
    product per chunk), several images to a chunk, with and without groups."""
    monkeypatch.setattr(_gemm, "_PER_IMAGE_MIN_P", 1)
    cfg = dict(x=(5, 4, 6, 5), w=w_shape, bias=True)
    with split_work(threads, 1 << 20):
        assert_agrees_with_reference(ENGINE, REFERENCE, *arrays_for(cfg, 6), opts)


@pytest.mark.parametrize("column_major", [False, True])
@pytest.mark.parametrize("chunk_bytes", [1, 2 * 3 * 4 * 8 * 2, 1 << 20])  # 1, 2 and all 5 at a time
@pytest.mark.parametrize("groups, k", [(2, 5), (1, 1)])
def test_add_products_sums_each_stack(monkeypatch, column_major, chunk_bytes, groups, k):
    """``dw += sum over k of a[g, k] @ b[g, k]``, whatever the layout and however many
    products it takes at a time (bounded by the chunk size), one product included."""
    monkeypatch.setattr(_gemm, "_CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((groups, k, 3, 6)), rng.standard_normal((groups, k, 6, 4))
    dw = rng.standard_normal((groups, 3, 4))
    want = dw + np.einsum("gkrs,gkst->grt", a, b)
    _gemm.add_products(dw, a, b, column_major)
    np.testing.assert_allclose(dw, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize(
    "channels, want",
    [
        ((0, 8), [(0, 4, 0, 18, 0)]),  # every group whole: one segment
        ((1, 7), [(0, 1, 9, 18, 0), (1, 3, 0, 18, 9), (3, 4, 0, 9, 45)]),  # cut at both ends
        ((2, 5), [(1, 2, 0, 18, 0), (2, 3, 0, 9, 18)]),
        ((3, 4), [(1, 2, 9, 18, 0)]),  # inside one group
    ],
)
def test_segments_stack_runs_of_whole_groups(channels, want):
    """Groups of 2 channels, 3x3 windows: 18 weight rows a group, 9 a channel."""
    geo = conv_geometry((1, 8, 5, 5), (4, 2, 3, 3), 1, 0, 1, 4)
    chunk = _gemm.Chunk(0, 1, 0, geo.OH, *channels)
    assert _gemm.group_segments(geo, chunk, geo.KH * geo.KW) == want


def _covered(plan, geo, axes):
    """How often each (image, output row[, channel]) is visited, and by which thread."""
    count = np.zeros([geo.N, geo.OH] + ([geo.C] if "c" in axes else []), np.int64)
    owner = np.full(count.shape, -1)
    for t, chunks in enumerate(plan):
        for c in chunks:
            block = (slice(c.n0, c.n1), slice(c.oh0, c.oh1)) + ((slice(c.c0, c.c1),) if "c" in axes else ())
            count[block] += 1
            owner[block] = t
    return count, owner


@pytest.mark.parametrize("tile", [1, 2])  # 2: the Winograd engine's 2x2 tiles
@given(
    n=st.integers(1, 6),
    c=st.integers(1, 6),
    h=st.integers(1, 13),
    threads=st.integers(1, 4),
    chunk_bytes=st.sampled_from([1, 500, 5000, 50000, 1 << 20]),
)
def test_plans_cover_the_work_once_and_keep_each_plane_on_one_thread(tile, n, c, h, threads, chunk_bytes):
    geo = conv_geometry((n, c, h, h), (3, c, 3, 3), 1, 1, 1, 1)
    with split_work(threads, chunk_bytes):
        forward, backward = _gemm.forward_plan(geo, 8, tile), _gemm.backward_plan(geo, 8, tile)
    rows = -(-geo.OH // tile)
    assert len(forward) == min(threads, max(n, rows)) and len(backward) == min(threads, max(n, c))
    for chunks in forward + backward:  # bands of rows are whole tiles
        for ch in chunks:
            assert ch.oh0 % tile == 0 and (ch.oh1 % tile == 0 or ch.oh1 == geo.OH)
    count, _ = _covered(forward, geo, "nh")
    assert (count == 1).all()
    count, owner = _covered(backward, geo, "nhc")
    assert (count == 1).all()
    # col2im adds every row band of a plane dx[n, c] into it: one thread per plane
    assert (owner == owner[:, :1, :]).all()
    for chunks in backward:  # bands of an image come in order, the first overwrites
        starts = [(ch.n0, ch.c0, ch.oh0) for ch in chunks]
        assert starts == sorted(starts)


def test_chunks_respect_the_workspace_limit():
    geo = conv_geometry((8, 16, 40, 40), (32, 16, 3, 3), 1, 1, 1, 1)
    per_row = _gemm._scratch_per_row(geo, 4, geo.C)
    old = cc.set_workspace_limit(6 * per_row)
    try:
        with split_work(2, 1 << 30):
            plans = _gemm.forward_plan(geo, 4), _gemm.backward_plan(geo, 4)
    finally:
        cc.set_workspace_limit(old)
    for plan in plans:
        assert len(plan) == 2
        for chunks in plan:
            for c in chunks:  # each of two threads holds at most half the limit
                assert (c.n1 - c.n0) * (c.oh1 - c.oh0) * per_row <= 3 * per_row


def test_threads_together_stay_under_the_limit_after_a_call_on_one_thread():
    # many filters: the output gradient's block, not the columns, fills the scratch
    x, w, b = arrays_for(dict(x=(4, 2, 24, 24), w=(64, 2, 3, 3), bias=False), 1)
    old = cc.set_workspace_limit(1 << 20)
    try:
        with split_work(1, 1 << 30):  # one thread: the caller's buffer grows past half the limit
            cc.conv2d_backward(np.ones((4, 64, 24, 24)), cc.conv2d_forward(x, w, padding=1)[1])
            assert workspace._holder().buffer.size > (1 << 19) + 64
        with split_work(2, 1 << 30):  # two threads: each keeps at most half
            cc.conv2d_backward(np.ones((4, 64, 24, 24)), cc.conv2d_forward(x, w, padding=1)[1])
            assert workspace._holder().buffer.size <= (1 << 19) + 64
    finally:
        cc.set_workspace_limit(old)
        workspace.release_workspace()


@pytest.mark.parametrize(
    "x_shape, w_shape, opts, threads, fused",
    [
        ((4, 3, 9, 9), (5, 3, 3, 3), dict(padding=1), 2, True),  # images split
        ((1, 6, 9, 9), (5, 6, 3, 3), dict(padding=1), 2, False),  # one image: channels split
        ((1, 6, 9, 9), (5, 6, 3, 3), dict(padding=1), 1, True),  # ... unless on one thread
        ((4, 6, 9, 9), (6, 3, 3, 3), dict(padding=1, groups=2), 2, False),
        ((4, 6, 9, 9), (5, 6, 1, 1), {}, 2, False),  # pointwise: no columns to extend
    ],
)
def test_where_the_bias_rides_in_the_gemms(x_shape, w_shape, opts, threads, fused):
    geo = conv_geometry(x_shape, w_shape, **{"stride": 1, "padding": 0, "dilation": 1, "groups": 1, **opts})
    with split_work(threads, 1 << 20):
        assert _gemm._bias_in_gemm(geo, _gemm.backward_plan(geo, 8)) == fused
        x, w, b = arrays_for(dict(x=x_shape, w=w_shape, bias=True), 6)
        assert_agrees_with_reference(ENGINE, REFERENCE, x, w, b, opts)


def test_outputs_must_be_contiguous():
    geo = conv_geometry((2, 4, 5, 5), (3, 4, 1, 1), 1, 0, 1, 1)
    x, w = np.ones((2, 4, 5, 5)), np.ones((3, 4, 1, 1))
    y = np.zeros((2, 3, 5, 10))[..., ::2]  # a view the pointwise path would reshape into a copy
    with pytest.raises(ValueError, match="C-contiguous"):
        _gemm.forward(x, w, None, geo, y)


@pytest.mark.parametrize(
    "path, n, chunk_bytes",
    [("gemm", 3, 2048), ("winograd", 3, 4096), ("winograd_cl", 5, 1 << 16), ("channels_last", 5, 1 << 16)],
)
def test_split_results_are_bitwise_reproducible(path, n, chunk_bytes):
    x, w, b = arrays_for(dict(x=(n, 4, 9, 9), w=(5, 4, 3, 3), bias=True), 2)
    with split_engine_work(path, 2, chunk_bytes):
        assert conv._strategy(cc.conv2d_forward(x, w, b, padding=1)[1].geo, x.dtype) == path
        runs = [
            cc.conv2d_backward(np.ones((n, 5, 9, 9)), cc.conv2d_forward(x, w, b, padding=1)[1])
            for _ in range(3)
        ]
    for run in runs[1:]:
        for a, c in zip(run, runs[0], strict=True):
            assert a.tobytes() == c.tobytes()


def _blas_threads():
    return [lib.get_num_threads() for lib in _blas._blas_libraries()]


def test_single_threaded_blas_is_nestable_and_restores_the_count():
    before = _blas_threads()
    with _blas.single_threaded_blas():
        assert _blas_threads() == [1] * len(before)
        with _blas.single_threaded_blas():
            assert _blas_threads() == [1] * len(before)
        assert _blas_threads() == [1] * len(before)
    assert _blas_threads() == before


def test_single_threaded_blas_works_from_any_thread():
    """Any thread may be the first to enter (threadpoolctl would let only one thread
    change OpenBLAS's count), and the last to leave restores it."""
    if not _blas._blas_libraries():
        pytest.skip("no BLAS library found")
    before = _blas_threads()
    inside, entered, release = [], threading.Event(), threading.Event()

    def hold():
        with _blas.single_threaded_blas():
            inside.append(_blas_threads())
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    entered.wait(10)
    seen_by_main = _blas_threads()
    release.set()
    holder.join()
    assert inside == [[1] * len(before)] and seen_by_main == [1] * len(before)
    assert _blas_threads() == before
