"""The Winograd F(2x2, 3x3) engine: its transforms against the matrices of the algorithm
written out here, each transform's adjoint against the transform itself, and forward and
backward passes (every split and chunking) against the naive reference."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convcore as cc
from convcore import _gemm, _winograd, reference, workspace
from convcore._geometry import conv_geometry

from strategies import (
    AT,
    BT,
    G,
    arrays_for,
    assert_agrees_with_reference,
    assert_same_non_finite,
    engine_path,
    max_rel_err,
    reference_passes,
    split_engine_work,
    winograd_configs,
)

ENGINE = (cc.conv2d_forward, cc.conv2d_backward)
REFERENCE = (reference.conv2d_forward, reference.conv2d_backward)


def split_work(threads, chunk_bytes):
    """Run on the Winograd path, split over ``threads`` threads in chunks of ``chunk_bytes``."""
    return split_engine_work("winograd", threads, chunk_bytes)


# 1 byte: one tile row per chunk; 4 KiB: a few tile rows or images; 1 MiB: whole shares
SPLITS = [(1, 1 << 20), (2, 1), (2, 4096), (3, 1), (3, 1 << 20)]


@pytest.mark.parametrize("threads, chunk_bytes", SPLITS)
@given(cfg=winograd_configs(), seed=st.integers(0, 2**16))
def test_float64_agrees_with_reference(threads, chunk_bytes, cfg, seed):
    with split_work(threads, chunk_bytes):
        assert_agrees_with_reference(ENGINE, REFERENCE, *arrays_for(cfg, seed), cfg["opts"])


@pytest.mark.parametrize("threads, chunk_bytes", SPLITS[:3])
@given(cfg=winograd_configs(), seed=st.integers(0, 2**16))
def test_float32_agrees_with_float64_reference(threads, chunk_bytes, cfg, seed):
    with split_work(threads, chunk_bytes):
        float32_arrays = arrays_for(cfg, seed, np.float32)  # the one test that reads the float32 scale
        assert_agrees_with_reference(ENGINE, REFERENCE, *float32_arrays, cfg["opts"], mixes_taps=True)


@pytest.mark.parametrize(
    "x_shape, w_shape, padding",
    [
        ((1, 1, 3, 3), (1, 1, 3, 3), 0),  # one output: one tile, three quarters outside
        ((2, 3, 1, 1), (2, 3, 3, 3), 1),  # 1x1 images
        ((1, 2, 4, 9), (3, 2, 3, 3), ((3, 0), (0, 4))),  # padding beyond the kernel's reach
        ((1, 8, 9, 7), (8, 8, 3, 3), "same"),  # odd sides: half tiles on the edges
        ((1, 1, 2, 40), (1, 1, 3, 3), ((1, 0), (1, 0))),  # one tile row, long
        ((1, 6, 5, 7), (4, 3, 3, 3), 1),  # 2 groups, one image: channel splits cut groups
        ((3, 8, 6, 6), (12, 2, 3, 3), "same"),  # 4 groups of 2 channels and 3 filters
    ],
)
@pytest.mark.parametrize("threads, chunk_bytes", SPLITS)
def test_edge_configurations(x_shape, w_shape, padding, threads, chunk_bytes):
    cfg = dict(x=x_shape, w=w_shape, bias=True)
    opts = dict(padding=padding, groups=x_shape[1] // w_shape[1])
    with split_work(threads, chunk_bytes):
        assert_agrees_with_reference(ENGINE, REFERENCE, *arrays_for(cfg, 7), opts)


def test_input_transform_is_bt_d_b():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 6))
    pt, pl, TW = 1, 2, 3  # 7 + 1 rows padded (4 tile rows), 6 + 2 columns (3 tiles)
    L = TW + 1  # a tile row holds one spare tile
    ((v, v3),) = _winograd._tile_arrays(np.float64, 2 * 4 * L, 3)
    _winograd._input_transform(x, pt, pl, 0, 4, L, v)
    padded = np.pad(x, ((0, 0), (0, 0), (pt, 2), (pl, 2)))
    for n, c, t, k in np.ndindex(2, 3, 4, TW):
        d = padded[n, c, 2 * t : 2 * t + 4, 2 * k : 2 * k + 4]
        got = v3[:, c, (n * 4 + t) * L + k].reshape(4, 4)
        np.testing.assert_allclose(got, BT @ d @ BT.T, rtol=0, atol=1e-13)


def test_output_transform_is_at_m_a_plus_bias():
    rng = np.random.default_rng(1)
    TW, F = 3, 2
    L = TW + 1
    ((m, m3),) = _winograd._tile_arrays(np.float64, 2 * 2 * L, F)
    m3[...] = rng.standard_normal(m3.shape)
    bias = rng.standard_normal(F)
    y = np.full((2, F, 3, 5), np.nan)  # odd sides: the last tile row and column are cut
    _winograd._output_transform(m, bias, 0, 2, L, y)
    for n, f, t, k in np.ndindex(2, F, 2, TW):
        tile = AT @ m3[:, f, (n * 2 + t) * L + k].reshape(4, 4) @ AT.T + bias[f]
        want = tile[: 3 - 2 * t, : 5 - 2 * k]
        np.testing.assert_allclose(y[n, f, 2 * t : 2 * t + 2, 2 * k : 2 * k + 2], want, rtol=0, atol=1e-13)


def test_filter_transforms_are_g_w_gt_and_its_adjoint():
    rng = np.random.default_rng(2)
    w, du = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal((16, 3, 2))
    u = _winograd.filter_transform(w)
    for f, c in np.ndindex(3, 2):
        np.testing.assert_allclose(u[:, f, c].reshape(4, 4), G @ w[f, c] @ G.T, rtol=0, atol=1e-14)
    # <U(w), du> == <w, U^T(du)>
    lhs = np.vdot(u, du)
    rhs = np.vdot(w, _winograd.filter_transform_adjoint(du))
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


@pytest.mark.parametrize(
    "shape, padding", [((2, 3, 7, 6), (1, 2)), ((1, 2, 4, 4), (0, 0)), ((1, 1, 5, 3), (3, 1))]
)
@pytest.mark.parametrize("t0, t1", [(0, None), (1, None), (0, 1)])
def test_input_transform_adjoint_is_its_adjoint(shape, padding, t0, t1):
    """``<T x, v> == <x, T^T v>`` for a band of tile rows, so dx is exactly the gradient
    of the forward transform."""
    rng = np.random.default_rng(3)
    N, C, H, W = shape
    pt, pl = padding
    geo = conv_geometry(shape, (1, C, 3, 3), 1, ((pt, pt), (pl, pl)), 1, 1)
    TH, L = _winograd.tiles(geo.OH), _winograd.tiles(geo.OW) + 1
    t1 = TH if t1 is None else t1
    if t0 >= t1:
        pytest.skip("empty band")
    x = rng.standard_normal(shape)
    (v, v3), (g, g3) = _winograd._tile_arrays(np.float64, N * (t1 - t0) * L, C, C)
    g3[...] = rng.standard_normal(g3.shape)
    g3.reshape(16, C, -1, L)[..., -1] = 0  # the spare tiles, zero in every dV the engine makes
    _winograd._input_transform(x, pt, pl, t0, t1, L, v)
    v3.reshape(16, C, -1, L)[..., -1] = 0  # what the spare tiles hold does not matter
    dx = np.empty_like(x)
    _winograd._input_transform_adjoint(g, pt, pl, t0, t1, L, True, dx)
    lhs, rhs = np.vdot(v3, g3), np.vdot(x, dx)
    assert abs(lhs - rhs) <= 1e-12 * np.abs(v3).sum() * np.abs(g3).max()


@pytest.mark.parametrize("shape", [(2, 3, 5, 6), (1, 2, 4, 4), (1, 1, 1, 3)])
def test_output_transform_adjoint_is_its_adjoint(shape):
    rng = np.random.default_rng(4)
    N, F, OH, OW = shape
    TH, L = _winograd.tiles(OH), _winograd.tiles(OW) + 1
    (m, m3), (g, g3) = _winograd._tile_arrays(np.float64, N * TH * L, F, F)
    m3[...] = rng.standard_normal(m3.shape)
    dy = rng.standard_normal(shape)
    y = np.empty(shape)
    _winograd._output_transform(m, np.zeros(F), 0, TH, L, y)
    _winograd._output_transform_adjoint(dy, 0, TH, L, g)
    assert (g3.reshape(16, F, -1, L)[..., -1] == 0).all()  # spare tiles: zero
    lhs, rhs = np.vdot(y, dy), np.vdot(m3, g3)
    assert abs(lhs - rhs) <= 1e-12 * np.abs(m3).sum() * np.abs(dy).max()


def test_tile_planes_are_an_odd_number_of_cache_lines_apart():
    for dtype, m, rows in [(np.float32, 512, 32), (np.float64, 784, 64), (np.float32, 3, 1)]:
        for (flat, planes), r in zip(_winograd._tile_arrays(dtype, m, rows, 2 * rows), (rows, 2 * rows)):
            assert planes.shape == (16, r, m) and planes.strides[0] == flat.strides[0]
            assert flat.strides[0] % 64 == 0 and (flat.strides[0] // 64) % 2 == 1


@pytest.mark.parametrize("padding", [0, 1, ((2, 0), (0, 1))])
def test_gradients_match_numerical_gradients(padding):
    x, w, b = arrays_for(dict(x=(2, 3, 7, 6), w=(4, 3, 3, 3), bias=True), 8)
    with engine_path("winograd"):
        errors = cc.gradcheck(x, w, b, padding=padding, seed=8)
    assert set(errors) == {"dx", "dw", "db"} and max(errors.values()) <= 1e-7, errors


def test_nan_at_the_edge_stays_as_local_as_in_the_direct_sum():
    x = np.zeros((1, 1, 6, 6))
    x[0, 0, 0, 5] = np.nan
    with engine_path("winograd"):
        y, cache = cc.conv2d_forward(x, np.ones((1, 1, 3, 3)), padding=1)
    want = reference.conv2d_forward(x, np.ones((1, 1, 3, 3)), padding=1)[0]
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))


def test_chunks_respect_the_workspace_limit():
    geo = conv_geometry((4, 16, 40, 40), (32, 16, 3, 3), 1, 1, 1, 1)
    x, w = np.ones((4, 16, 40, 40), np.float32), np.ones((32, 16, 3, 3), np.float32)
    per_row = _gemm._scratch_per_row(geo, 4, geo.C, tile=2)
    old = cc.set_workspace_limit(20 * per_row)
    try:
        with split_work(2, 1 << 30):
            y = np.empty((4, 32, 40, 40), np.float32)
            _winograd.forward(x, w, None, geo, y)
            _winograd.backward(x, w, y, geo, np.empty_like(x))
            assert workspace._holder().buffer.size <= 10 * per_row + 64
    finally:
        cc.set_workspace_limit(old)


def test_forcing_winograd_where_it_does_not_apply_runs_the_gemm_engine():
    x, w, b = arrays_for(dict(x=(2, 3, 8, 8), w=(4, 3, 3, 3), bias=True), 4)
    with engine_path("winograd"):
        y = cc.conv2d(x, w, b, stride=2)
    assert max_rel_err(y, reference.conv2d_forward(x, w, b, stride=2)[0]) <= 1e-12


@pytest.fixture
def im2col_calls(monkeypatch):
    """The passes the Winograd engines handed to im2col + GEMM, in call order."""
    calls = []

    def spy(name, run):
        def called(*args):
            calls.append(name)
            return run(*args)

        return called

    for name in ("forward", "backward"):
        monkeypatch.setattr(_gemm, name, spy(name, getattr(_gemm, name)))
    return calls


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning:convcore._gemm")  # its inf * 0
@pytest.mark.filterwarnings("error")  # a pass thrown away must not warn
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("where, handed_over", [("x", 2), ("w", 2), ("dy", 1)])
@pytest.mark.parametrize("path, groups", [("winograd", 1), ("winograd", 2), ("winograd_cl", 1)])
def test_a_nan_or_an_infinity_gives_what_the_direct_sum_gives(
    path, groups, where, handed_over, value, dtype, im2col_calls
):
    # the transforms would subtract an infinity from itself (NaN where the direct sum has
    # an infinity) and carry a NaN further (see the next test): a pass that meets either
    # runs im2col + GEMM instead, whichever of the two threads (an image each) holds it
    rng = np.random.default_rng(5)
    x, w = (
        rng.standard_normal((2, 8, 6, 7)).astype(dtype),
        rng.standard_normal((8, 8 // groups, 3, 3)).astype(dtype),
    )
    b, dy = rng.standard_normal(8).astype(dtype), rng.standard_normal((2, 8, 6, 7)).astype(dtype)
    at = {"x": (1, 2, 0, 3), "w": (3, 1, 1, 2), "dy": (0, 5, 3, 3)}[where]
    dict(x=x, w=w, dy=dy)[where][at] = value
    want = reference_passes(x, w, b, dy, padding=1, groups=groups)
    with split_engine_work(path, 2, 1 << 30):
        y, cache = cc.conv2d_forward(x, w, b, padding=1, groups=groups)
        got = (y, *cc.conv2d_backward(dy, cache))
    assert sum((~np.isfinite(a)).sum() for a in want) >= 9  # the value reached several others
    assert_same_non_finite(got, want)
    # dy's NaN or infinity leaves the forward pass on Winograd
    assert im2col_calls == ["forward", "backward"][2 - handed_over :]


@pytest.mark.parametrize("path", ["winograd", "winograd_cl"])
def test_a_nan_at_the_corner_reaches_only_the_weights_the_direct_sum_reaches(path, im2col_calls):
    # the corner input meets only tap (2, 2) in the direct sum; through the transformed
    # weight gradient, whose filter transform mixes the taps, it would reach others
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((2, 2, 6, 6)), rng.standard_normal((2, 2, 3, 3))
    x[1, 0, 5, 5] = np.nan
    dy = rng.standard_normal((2, 2, 4, 4))
    want = reference_passes(x, w, np.zeros(2), dy)
    assert np.isnan(want[2]).sum() == 2  # tap (2, 2) of channel 0, both filters
    with engine_path(path):
        y, cache = cc.conv2d_forward(x, w)
        got = (y, *cc.conv2d_backward(dy, cache)[:2])
    assert_same_non_finite(got, want[:3])
    assert im2col_calls == ["forward", "backward"]


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("path", ["winograd", "winograd_cl"])
def test_infinities_of_both_signs_on_two_threads(path, im2col_calls):
    # each thread's transformed weight gradient holds one; their sum is NaN, quietly, and
    # the pass reruns on im2col + GEMM, where the direct sum has no NaN at all
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 8, 6, 6)), rng.standard_normal((8, 8, 3, 3))
    x[0, 3, 2, 2], x[1, 3, 2, 2] = np.inf, -np.inf
    dy = np.abs(rng.standard_normal((2, 8, 6, 6))) + 0.1
    dy[1] *= -1
    want = reference_passes(x, w, np.zeros(8), dy, padding=1)
    assert not any(np.isnan(a).any() for a in want)
    with split_engine_work(path, 2, 1 << 30):
        y, cache = cc.conv2d_forward(x, w, np.zeros(8), padding=1)
        got = (y, *cc.conv2d_backward(dy, cache))
    assert_same_non_finite(got, want)
    assert im2col_calls == ["forward", "backward"]


@pytest.mark.filterwarnings("error")
def test_an_infinity_split_off_in_a_band_of_rows_is_found(im2col_calls):
    # a batch of 1 on two threads: the first band's thread looks at the whole image, the
    # second's transforms the infinity meanwhile, quietly (these weights' transforms hold
    # exact zeros: 0 * inf there)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 8, 12, 10))
    w = np.array([1.0, -2.0, 1.0]) * (1 + np.abs(rng.standard_normal((8, 8, 3, 1))))
    x[0, 4, 11, 9] = np.inf
    with split_engine_work("winograd", 2, 1 << 30):
        plan = _gemm.forward_plan(conv_geometry(x.shape, w.shape, 1, 1, 1, 1), 8, tile=2)
        assert [[c.oh0 for c in chunks] for chunks in plan] == [[0], [6]]
        got = cc.conv2d(x, w, padding=1)
    want = reference_passes(x, w, np.zeros(8), np.zeros((1, 8, 12, 10)), padding=1)[0]
    assert np.isinf(want).any() and not np.isnan(want).any()
    assert_same_non_finite([got], [want])
    assert im2col_calls == ["forward"]


@pytest.mark.filterwarnings("ignore:overflow encountered")  # im2col's float32 sums overflow too
@pytest.mark.parametrize("path", ["winograd", "winograd_cl"])
def test_values_that_would_overflow_in_the_transforms_go_to_im2col(path, im2col_calls):
    # their sum is finite; in the transforms 3e38 - (-3e38) is not, nor, further on, NaN
    rng = np.random.default_rng(9)
    x, w = (
        rng.standard_normal((2, 8, 6, 6)).astype(np.float32),
        rng.standard_normal((8, 8, 3, 3)).astype(np.float32),
    )
    x[0, 0, 2, 2], x[0, 0, 2, 4] = 3e38, -3e38
    with engine_path("gemm"):
        want = cc.conv2d(x, w, padding=1)
    im2col_calls.clear()
    with engine_path(path):
        got = cc.conv2d(x, w, padding=1)
    assert np.isinf(want).any() and not np.isnan(want).any()
    assert_same_non_finite([got], [want])
    assert im2col_calls == ["forward"]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("path", ["winograd", "winograd_cl"])
def test_finite_passes_stay_on_the_winograd_engines(path, threads, im2col_calls):
    # values up to 1e10 included: only a NaN, an infinity or an overflowing sum of squares
    # hands over
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal((2, 8, 6, 7)) * 1e10, rng.standard_normal((8, 8, 3, 3))
    b, dy = rng.standard_normal(8), rng.standard_normal((2, 8, 6, 7))
    want = reference_passes(x, w, b, dy, padding=1)
    with split_engine_work(path, threads, 1 << 30):
        y, cache = cc.conv2d_forward(x, w, b, padding=1)
        got = (y, *cc.conv2d_backward(dy, cache))
    assert_same_non_finite(got, want)
    assert im2col_calls == []


@pytest.mark.parametrize(
    "arrays, want",
    [
        ([np.ones(5), np.zeros((2, 3))], True),
        ([np.array([np.nan, 1.0])], False),
        ([np.ones(3), np.array([1.0, np.inf])], False),
        ([np.array([-np.inf, 2.0], np.float32)], False),
        ([np.array([3e38, -3e38], np.float32)], False),  # a finite sum, but the transforms overflow
        ([np.array([1e20, 1.0], np.float32)], False),  # the squares overflow: im2col, needlessly
        ([np.full(1000, 1e15, np.float32)], True),
    ],
)
def test_finite(arrays, want):
    assert _winograd.finite(*arrays) is want


@pytest.mark.parametrize(
    "parts, kept",
    [([1.0, 2.0], True), ([1.0, np.nan], False), ([np.inf, -np.inf], False), ([np.inf, 1.0], False)],
)
def test_weight_grad_sum_is_none_unless_finite(parts, kept):
    with np.errstate(all="raise"):  # quietly
        got = _winograd.weight_grad_sum([np.full((16, 3, 2), p) for p in parts])
    if kept:
        np.testing.assert_array_equal(got, np.full((16, 3, 2), sum(parts)))
    else:
        assert got is None


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # inf * 0, as in the direct sum
@pytest.mark.parametrize("path", ["winograd", "winograd_cl"])
@given(
    cfg=winograd_configs(),
    seed=st.integers(0, 2**16),
    where=st.sampled_from(["x", "w", "dy"]),
    value=st.sampled_from([np.inf, -np.inf, np.nan]),
    threads=st.sampled_from([1, 2]),
)
def test_a_nan_or_an_infinity_anywhere_gives_what_the_direct_sum_gives(
    path, cfg, seed, where, value, threads
):
    x, w, b = arrays_for(cfg, seed)
    rng = np.random.default_rng(seed)
    dy = rng.standard_normal(reference.conv2d_forward(x, w, **cfg["opts"])[0].shape)
    a = dict(x=x, w=w, dy=dy)[where]
    a[tuple(rng.integers(0, n) for n in a.shape)] = value
    want = reference_passes(x, w, b, dy, **cfg["opts"])
    with split_engine_work(path, threads, 1 << 30):
        y, cache = cc.conv2d_forward(x, w, b, **cfg["opts"])
        got = (y, *cc.conv2d_backward(dy, cache))
    assert_same_non_finite(got, want)
