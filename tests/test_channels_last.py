"""The channels-last engine: its layout kernels against NumPy and the naive unfold, the
column scatter against its adjoint, and forward and backward passes (every split and
chunking that keeps whole images) against the naive reference."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convcore as cc
import convcore.conv as conv
from convcore import _channels_last, reference
from convcore._geometry import conv_geometry, window_geometry
from convcore._kernels import col2im_cl_into, from_channels_last, im2col_cl_into, to_channels_last

from naive import unfold
from strategies import (
    arrays_for,
    assert_agrees_with_reference,
    conv_configs,
    engine_path,
    split_engine_work,
    window_cases,
)

ENGINE = (cc.conv2d_forward, cc.conv2d_backward)
REFERENCE = (reference.conv2d_forward, reference.conv2d_backward)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 7), (2, 17, 4, 5), (1, 40, 9, 3), (3, 16, 4, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layout_transposes_match_numpy(shape, dtype):
    # channel and position counts on both sides of the kernels' 16-wide blocks
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    xh = np.empty((shape[0], *shape[2:], shape[1]), dtype)
    to_channels_last(x, xh)
    np.testing.assert_array_equal(xh, x.transpose(0, 2, 3, 1))
    back = np.empty_like(x)
    from_channels_last(xh, back)
    np.testing.assert_array_equal(back, x)


def _cols_t(x, geo, rows=None):
    oh0, oh1 = rows or (0, geo.OH)
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    cols_t = np.full((x.shape[0] * (oh1 - oh0) * geo.OW, geo.C * geo.KH * geo.KW), np.nan)
    im2col_cl_into(xh, geo.kernel_args, cols_t, (oh0, oh1))
    return cols_t


@given(window_cases(), st.integers(0, 2**16), st.data())
def test_channels_last_columns_are_the_unfolded_windows_reordered(case, seed, data):
    shape, opts = case
    x = np.random.default_rng(seed).standard_normal(shape)
    geo = window_geometry(shape, **opts)
    oh0 = data.draw(st.integers(0, geo.OH - 1))
    oh1 = data.draw(st.integers(oh0 + 1, geo.OH))
    cols = unfold(x, geo).reshape(geo.N, geo.C, geo.KH, geo.KW, geo.OH, geo.OW)[..., oh0:oh1, :]
    want = cols.transpose(0, 4, 5, 2, 3, 1).reshape(-1, geo.C * geo.KH * geo.KW)
    np.testing.assert_array_equal(_cols_t(x, geo, (oh0, oh1)), want)


@given(window_cases(), st.integers(0, 2**16))
def test_channels_last_scatter_is_the_adjoint_of_the_columns(case, seed):
    shape, opts = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    geo = window_geometry(shape, **opts)
    cols_t = _cols_t(x, geo)
    c = rng.standard_normal(cols_t.shape)
    folded = np.full((geo.N, geo.H, geo.W, geo.C), np.nan)  # overwritten, not added to
    col2im_cl_into(c, geo.kernel_args, folded)
    lhs, rhs = np.vdot(cols_t, c), np.vdot(x.transpose(0, 2, 3, 1), folded)
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, np.abs(cols_t).sum() * np.abs(c).max())


def split_work(threads, chunk_bytes):
    return split_engine_work("channels_last", threads, chunk_bytes)


# chunk sizes that keep whole images (the engine's condition) for the small configurations
SPLITS = [(1, 1 << 20), (2, 1 << 16), (3, 1 << 20)]


@pytest.mark.parametrize("threads, chunk_bytes", SPLITS)
@given(cfg=conv_configs(max_batch=5), seed=st.integers(0, 2**16))
def test_float64_agrees_with_reference(threads, chunk_bytes, cfg, seed):
    with split_work(threads, chunk_bytes):
        assert_agrees_with_reference(ENGINE, REFERENCE, *arrays_for(cfg, seed), cfg["opts"])


@pytest.mark.parametrize("threads, chunk_bytes", SPLITS)
@given(cfg=conv_configs(max_batch=5), seed=st.integers(0, 2**16))
def test_float32_agrees_with_float64_reference(threads, chunk_bytes, cfg, seed):
    with split_work(threads, chunk_bytes):
        assert_agrees_with_reference(ENGINE, REFERENCE, *arrays_for(cfg, seed, np.float32), cfg["opts"])


EDGES = [
    ((3, 5, 1, 1), (4, 5, 3, 3), dict(padding=1)),  # 1x1 images
    ((4, 3, 5, 5), (2, 3, 5, 5), {}),  # kernel as large as the input
    ((5, 2, 9, 4), (3, 2, 2, 3), dict(stride=(3, 1), padding=((2, 0), (0, 1)), dilation=(2, 1))),
    ((4, 20, 6, 6), (7, 20, 3, 3), dict(stride=2, padding=((3, 0), (0, 4)))),  # padding past the kernel
    ((3, 3, 7, 7), (4, 3, 1, 1), dict(stride=2)),  # 1x1 kernel, strided
]


@pytest.mark.parametrize("x_shape, w_shape, opts", EDGES)
@pytest.mark.parametrize("threads, chunk_bytes", SPLITS)
def test_edge_configurations_run_channels_last(x_shape, w_shape, opts, threads, chunk_bytes):
    x, w, b = arrays_for(dict(x=x_shape, w=w_shape, bias=True), 5)
    geo = conv_geometry(x_shape, w_shape, **{"stride": 1, "padding": 0, "dilation": 1, "groups": 1, **opts})
    with split_work(threads, chunk_bytes):
        assert conv._strategy(geo, np.float64) == "channels_last"
        assert_agrees_with_reference(ENGINE, REFERENCE, x, w, b, opts)


@pytest.mark.parametrize(
    "x_shape, w_shape, opts, applies",
    [
        ((4, 8, 8, 8), (8, 8, 3, 3), dict(padding=1), True),
        ((4, 8, 8, 8), (8, 4, 3, 3), dict(padding=1, groups=2), False),
        ((4, 8, 8, 8), (8, 8, 1, 1), {}, False),  # pointwise: a GEMM on the input itself
        ((1, 64, 40, 40), (64, 64, 3, 3), dict(padding=1), False),  # batch split by channels
    ],
)
def test_where_the_engine_applies(x_shape, w_shape, opts, applies, monkeypatch):
    from convcore import _threads

    monkeypatch.setattr(_threads, "_THREADS", 2)
    geo = conv_geometry(x_shape, w_shape, **{"stride": 1, "padding": 0, "dilation": 1, "groups": 1, **opts})
    assert _channels_last.applies(geo, 8) == applies


def test_images_larger_than_a_chunk_fall_back_to_the_gemm_engine():
    geo = conv_geometry((2, 16, 12, 12), (4, 16, 3, 3), 1, 1, 1, 1)
    with split_work(1, 4096):  # one image's columns alone exceed 4 KiB
        assert not _channels_last.applies(geo, 8)
        assert conv._strategy(geo, np.float64) == "gemm"


def test_gradients_match_numerical_gradients():
    x, w, b = arrays_for(dict(x=(3, 4, 6, 5), w=(5, 4, 3, 2), bias=True), 9)
    with engine_path("channels_last"):
        errors = cc.gradcheck(x, w, b, stride=(2, 1), padding=1, seed=9)
    assert set(errors) == {"dx", "dw", "db"} and max(errors.values()) <= 1e-7, errors


def test_nan_at_the_edge_stays_local():
    x = np.zeros((2, 3, 6, 6))
    x[1, 2, 5, 5] = np.nan
    w = np.ones((2, 3, 3, 3))
    with engine_path("channels_last"):
        y, cache = cc.conv2d_forward(x, w, padding=1)
        dx, dw, _ = cc.conv2d_backward(np.ones_like(y), cache)
    y_ref, cache_ref = reference.conv2d_forward(x, w, padding=1)
    dx_ref, dw_ref, _ = reference.conv2d_backward(np.ones_like(y_ref), cache_ref)
    for got, want in ((y, y_ref), (dx, dx_ref), (dw, dw_ref)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
