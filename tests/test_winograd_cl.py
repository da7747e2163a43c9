"""The channels-last Winograd engine: its transforms against the matrices of the algorithm,
each transform's adjoint against the transform itself, its scratch against its budget, and
forward and backward passes (every split and chunking) against the naive reference."""

import contextlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convcore as cc
from convcore import _gemm, _winograd_cl, conv, reference, workspace
from convcore._geometry import conv_geometry
from convcore._winograd import tiles

from strategies import (
    AT,
    BT,
    arrays_for,
    assert_agrees_with_reference,
    engine_path,
    max_rel_err,
    split_engine_work,
    winograd_configs,
)

ENGINE = (cc.conv2d_forward, cc.conv2d_backward)
REFERENCE = (reference.conv2d_forward, reference.conv2d_backward)

# 1 MiB: whole shares; 128 KiB: an image or two a chunk (the largest drawn image needs
# ~80 KB), the smallest chunks this engine runs (it needs whole images)
SPLITS = [(1, 1 << 20), (2, 1 << 17), (3, 1 << 17), (3, 1 << 20)]


@contextlib.contextmanager
def on_this_engine(cfg, dtype, threads, chunk_bytes):
    """Split as asked, after checking the geometry really runs here (not the fallback)."""
    opts = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, **cfg["opts"]}
    with split_engine_work("winograd_cl", threads, chunk_bytes):
        assert conv._strategy(conv_geometry(cfg["x"], cfg["w"], **opts), dtype) == "winograd_cl"
        yield


@pytest.mark.parametrize("threads, chunk_bytes", SPLITS)
@given(cfg=winograd_configs(groups=(1,)), seed=st.integers(0, 2**16))
def test_float64_agrees_with_reference(threads, chunk_bytes, cfg, seed):
    with on_this_engine(cfg, np.float64, threads, chunk_bytes):
        assert_agrees_with_reference(ENGINE, REFERENCE, *arrays_for(cfg, seed), cfg["opts"])


@pytest.mark.parametrize("threads, chunk_bytes", SPLITS[:2])
@given(cfg=winograd_configs(groups=(1,)), seed=st.integers(0, 2**16))
def test_float32_agrees_with_float64_reference(threads, chunk_bytes, cfg, seed):
    with on_this_engine(cfg, np.float32, threads, chunk_bytes):
        float32_arrays = arrays_for(cfg, seed, np.float32)
        assert_agrees_with_reference(ENGINE, REFERENCE, *float32_arrays, cfg["opts"], mixes_taps=True)


@pytest.mark.parametrize(
    "x_shape, w_shape, padding",
    [
        ((1, 1, 3, 3), (1, 1, 3, 3), 0),  # one output: one tile, three quarters outside
        ((2, 3, 1, 1), (2, 3, 3, 3), 1),  # 1x1 images
        ((1, 2, 4, 9), (3, 2, 3, 3), ((3, 0), (0, 4))),  # padding beyond the kernel's reach
        ((1, 8, 9, 7), (8, 8, 3, 3), "same"),  # odd sides: half tiles on the edges
        ((1, 1, 2, 40), (1, 1, 3, 3), ((1, 0), (1, 0))),  # one tile row, long
        ((5, 17, 6, 5), (19, 17, 3, 3), 1),  # channels and filters past a block of 16
        ((3, 40, 5, 6), (36, 40, 3, 3), 1),  # ... and past two
    ],
)
@pytest.mark.parametrize("threads, chunk_bytes", SPLITS)
def test_edge_configurations(x_shape, w_shape, padding, threads, chunk_bytes):
    cfg = dict(x=x_shape, w=w_shape, bias=True, opts=dict(padding=padding))
    with on_this_engine(cfg, np.float64, threads, chunk_bytes):
        assert_agrees_with_reference(ENGINE, REFERENCE, *arrays_for(cfg, 7), cfg["opts"])


def phases_of(x, pt, pl, TH, TW):
    """``xq (n, 2*TH + 2, 2, TW + 1, C)`` of ``x (n, C, H, W)`` through the engine's copy."""
    n, C = x.shape[:2]
    xq = np.full((n, 2 * TH + 2, 2, TW + 1, C), np.nan)
    _winograd_cl._phase_copy(x, pt, pl, xq, False)
    return xq


def test_phase_copy_places_the_padded_input_and_copies_it_back():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 6))
    xq = phases_of(x, 1, 2, 3, 4)  # rows 1 + 5 of 8, columns 2 + 6 of 10
    padded = np.zeros((2, 8, 10, 3))
    padded[:, 1:6, 2:8] = x.transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(xq[:, :, 0], padded[:, :, 0::2])
    np.testing.assert_array_equal(xq[:, :, 1], padded[:, :, 1::2])
    back = np.full_like(x, np.nan)
    _winograd_cl._phase_copy(back, 1, 2, xq, True)
    np.testing.assert_array_equal(back, x)


def tile_planes(m, width):
    """A ``(16, stride)`` tile array of ``m`` tiles of ``width`` values (planes a few
    values apart) and its ``(16, m, width)`` view."""
    flat = np.full((16, m * width + 3), np.nan)
    return flat, flat[:, : m * width].reshape(16, m, width)


def test_input_transform_is_bt_d_b():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 7, 6))
    pt, pl, TH, TW = 1, 2, 4, 3  # 7 + 1 rows padded (4 tile rows), 6 + 2 columns (3 tiles)
    flat, v = tile_planes(2 * TH * TW, 3)
    _winograd_cl._input_transform(phases_of(x, pt, pl, TH, TW), TH, TW, flat)
    padded = np.pad(x, ((0, 0), (0, 0), (pt, 3), (pl, 2)))
    for n, c, t, k in np.ndindex(2, 3, TH, TW):
        d = padded[n, c, 2 * t : 2 * t + 4, 2 * k : 2 * k + 4]
        got = v[:, (n * TH + t) * TW + k, c].reshape(4, 4)
        np.testing.assert_allclose(got, BT @ d @ BT.T, rtol=0, atol=1e-13)


def test_output_transform_is_at_m_a_plus_bias():
    rng = np.random.default_rng(2)
    TH, TW, F = 2, 3, 17  # 17 filters: a block of 16 and one more
    flat, m = tile_planes(2 * TH * TW, F)
    m[...] = rng.standard_normal(m.shape)
    bias = rng.standard_normal(F)
    y = np.full((2, F, 3, 5), np.nan)  # odd sides: the last tile row and column are cut
    _winograd_cl._output_transform(flat, bias, TH, TW, y)
    for n, f, t, k in np.ndindex(2, F, TH, TW):
        tile = AT @ m[:, (n * TH + t) * TW + k, f].reshape(4, 4) @ AT.T + bias[f]
        want = tile[: 3 - 2 * t, : 5 - 2 * k]
        np.testing.assert_allclose(y[n, f, 2 * t : 2 * t + 2, 2 * k : 2 * k + 2], want, rtol=0, atol=1e-13)


@pytest.mark.parametrize(
    "shape, padding", [((2, 3, 7, 6), (1, 2)), ((1, 2, 4, 4), (0, 0)), ((1, 1, 5, 3), (3, 1))]
)
def test_input_transform_adjoint_is_its_adjoint(shape, padding):
    """``<T x, v> == <x, T^T v>``, so dx is exactly the gradient of the forward transform."""
    rng = np.random.default_rng(3)
    N, C, H, W = shape
    pt, pl = padding
    geo = conv_geometry(shape, (1, C, 3, 3), 1, ((pt, pt), (pl, pl)), 1, 1)
    TH, TW = tiles(geo.OH), tiles(geo.OW)
    x = rng.standard_normal(shape)
    v_flat, v = tile_planes(N * TH * TW, C)
    g_flat, g = tile_planes(N * TH * TW, C)
    g[...] = rng.standard_normal(g.shape)
    _winograd_cl._input_transform(phases_of(x, pt, pl, TH, TW), TH, TW, v_flat)
    dxq = np.full((N, 2 * TH + 2, 2, TW + 1, C), np.nan)  # the adjoint zeroes it first
    _winograd_cl._input_transform_adjoint(g_flat, TH, TW, dxq)
    dx = np.empty_like(x)
    _winograd_cl._phase_copy(dx, pt, pl, dxq, True)
    lhs, rhs = np.vdot(v, g), np.vdot(x, dx)
    assert abs(lhs - rhs) <= 1e-12 * np.abs(v).sum() * np.abs(g).max()


@pytest.mark.parametrize("shape", [(2, 3, 5, 6), (1, 2, 4, 4), (1, 1, 1, 3), (2, 18, 3, 3)])
def test_output_transform_adjoint_is_its_adjoint(shape):
    rng = np.random.default_rng(4)
    N, F, OH, OW = shape
    TH, TW = tiles(OH), tiles(OW)
    m_flat, m = tile_planes(N * TH * TW, F)
    g_flat, g = tile_planes(N * TH * TW, F)
    m[...] = rng.standard_normal(m.shape)
    g[...] = np.nan  # every value is written
    dy = rng.standard_normal(shape)
    y = np.empty(shape)
    _winograd_cl._output_transform(m_flat, np.zeros(F), TH, TW, y)
    _winograd_cl._output_transform_adjoint(dy, TH, TW, g_flat)
    lhs, rhs = np.vdot(y, dy), np.vdot(m, g)
    assert abs(lhs - rhs) <= 1e-12 * np.abs(m).sum() * np.abs(dy).max()


@pytest.mark.parametrize(
    "x_shape, f, itemsize",
    [((1, 32, 16, 16), 64, 4), ((1, 3, 7, 5), 2, 8), ((1, 128, 8, 8), 16, 8), ((1, 1, 1, 1), 1, 4)],
)
def test_an_image_takes_no_more_scratch_than_its_budget(x_shape, f, itemsize):
    geo = conv_geometry(x_shape, (f, x_shape[1], 3, 3), 1, 1, 1, 1)
    xq, (v, v3), (m, m3) = _winograd_cl._scratch(np.dtype(f"f{itemsize}"), geo, 1)
    TH, TW = tiles(geo.OH), tiles(geo.OW)
    assert xq.shape == (1, 2 * TH + 2, 2, TW + 1, geo.C)
    assert v3.shape == (16, TH * TW, geo.C) and m3.shape == (16, TH * TW, f)
    planes_padding = 2 * 16 * 128  # up to two cache lines a plane, which _plan sets aside
    assert v.shape[1] - TH * TW * geo.C <= 128 // itemsize and m.shape[1] - TH * TW * f <= 128 // itemsize
    used = xq.nbytes + v.nbytes + m.nbytes
    budget = _gemm._scratch_per_row(geo, itemsize, geo.C, tile=2, channels_last=True) * 2 * tiles(geo.OH)
    assert used <= budget + planes_padding


@pytest.mark.parametrize("padding", [0, 1, ((2, 0), (0, 1))])
def test_gradients_match_numerical_gradients(padding):
    x, w, b = arrays_for(dict(x=(2, 3, 7, 6), w=(4, 3, 3, 3), bias=True), 8)
    geo = conv_geometry(x.shape, w.shape, 1, padding, 1, 1)
    with engine_path("winograd_cl"):
        assert conv._strategy(geo, x.dtype) == "winograd_cl"
        errors = cc.gradcheck(x, w, b, padding=padding, seed=8)
    assert set(errors) == {"dx", "dw", "db"} and max(errors.values()) <= 1e-7, errors


def test_nan_at_the_edge_stays_as_local_as_in_the_direct_sum():
    x = np.zeros((1, 1, 6, 6))
    x[0, 0, 0, 5] = np.nan
    with engine_path("winograd_cl"):
        y, cache = cc.conv2d_forward(x, np.ones((1, 1, 3, 3)), padding=1)
        assert conv._strategy(cache.geo, x.dtype) == "winograd_cl"
        dx = cc.conv2d_backward(np.ones_like(y), cache)[0]
    want = reference.conv2d_forward(x, np.ones((1, 1, 3, 3)), padding=1)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want[0]))
    np.testing.assert_array_equal(
        np.isnan(dx), np.isnan(reference.conv2d_backward(np.ones_like(y), want[1])[0])
    )


def test_chunks_respect_the_workspace_limit():
    cfg = dict(x=(6, 16, 12, 12), w=(32, 16, 3, 3), bias=True, opts=dict(padding=1))
    geo = conv_geometry(cfg["x"], cfg["w"], 1, 1, 1, 1)
    image = _gemm._scratch_per_row(geo, 4, geo.C, tile=2, channels_last=True) * geo.OH
    share = 2 * image + 3 * 16 * 128  # two images a thread's chunk
    old = cc.set_workspace_limit(2 * share)
    try:
        workspace.release_workspace()
        with on_this_engine(cfg, np.float32, 2, 1 << 30):
            assert [len(chunks) for chunks in _winograd_cl._plan(geo, 4)] == [2, 2]  # 2 + 1 images
            x, w, b = arrays_for(cfg, 5, np.float32)
            assert_agrees_with_reference(ENGINE, REFERENCE, x, w, b, cfg["opts"], mixes_taps=True)
        buffers = [h.buffer.size for h in list(workspace._holders) if h.buffer is not None]
        assert buffers and max(buffers) <= share + 64
    finally:
        cc.set_workspace_limit(old)


def test_an_image_over_budget_runs_the_gemm_engine_even_with_one_tile_row():
    """A 2-row output cannot be banded finer than its tile row, so the plan's chunk is
    the whole image even where it does not fit."""
    geo = conv_geometry((2, 64, 2, 200), (64, 64, 3, 3), 1, 1, 1, 1)
    old = cc.set_workspace_limit(1 << 20)
    try:
        with split_engine_work("winograd_cl", 2, 1 << 30):
            assert not _winograd_cl.applies(geo, 8) and conv._strategy(geo, np.float64) == "gemm"
    finally:
        cc.set_workspace_limit(old)


def test_a_plan_of_part_images_falls_back_to_the_gemm_engine():
    """Called with a budget that cuts images (the limit changed after the engine was
    chosen), forward and backward still give whole gradients, on im2col + GEMM."""
    cfg = dict(x=(2, 8, 12, 12), w=(6, 8, 3, 3), bias=True, opts=dict(padding=1))
    x, w, b = arrays_for(cfg, 6)
    geo = conv_geometry(cfg["x"], cfg["w"], 1, 1, 1, 1)
    y, cache = reference.conv2d_forward(x, w, b, padding=1)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    want = reference.conv2d_backward(dy, cache)
    with split_engine_work("winograd_cl", 2, 1 << 12):  # a few tile rows a chunk
        assert _winograd_cl._plan(geo, 8) is None
        got_y, dx, db = np.empty_like(y), np.empty_like(x), np.empty_like(b)
        _winograd_cl.forward(x, w, b, geo, got_y)
        dw = _winograd_cl.backward(x, w, dy, geo, dx, db)
    for got, ref in zip((got_y, dx, dw, db), (y, *want), strict=True):
        assert max_rel_err(got, ref) <= 1e-12


@pytest.mark.parametrize(
    "x_shape, w_shape, opts, chunk_bytes",
    [
        ((2, 4, 8, 8), (4, 4, 3, 3), dict(stride=2), 1 << 20),  # stride 2
        ((2, 4, 8, 8), (4, 2, 3, 3), dict(groups=2), 1 << 20),  # groups
        ((2, 4, 8, 8), (4, 4, 3, 3), dict(padding=1), 1 << 10),  # an image exceeds a chunk
    ],
)
def test_forcing_it_where_it_does_not_apply_runs_the_gemm_engine(x_shape, w_shape, opts, chunk_bytes):
    x, w, b = arrays_for(dict(x=x_shape, w=w_shape, bias=True), 4)
    with split_engine_work("winograd_cl", 2, chunk_bytes):
        y, cache = cc.conv2d_forward(x, w, b, **opts)
        assert conv._strategy(cache.geo, x.dtype) == "gemm"
    assert max_rel_err(y, reference.conv2d_forward(x, w, b, **opts)[0]) <= 1e-12
