import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from layer_strategies import pool_configs, random_input

import convcore as cc
from convcore import reference
from convcore.gradient_check import numerical_gradient, relative_error

from strategies import max_rel_err

OPS = {
    "max": (
        cc.max_pool2d_forward,
        cc.max_pool2d_backward,
        reference.max_pool2d_forward,
        reference.max_pool2d_backward,
    ),
    "avg": (
        cc.avg_pool2d_forward,
        cc.avg_pool2d_backward,
        reference.avg_pool2d_forward,
        reference.avg_pool2d_backward,
    ),
}


def engine_and_reference(kind, x, opts):
    fwd, bwd, rfwd, rbwd = OPS[kind]
    opts = dict(opts)
    kernel = opts.pop("kernel_size")
    y, cache = fwd(x, kernel, **opts)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(y.dtype)
    x64, dy64 = np.asarray(x, np.float64), np.asarray(dy, np.float64)
    yr, cr = rfwd(x64, kernel, **opts)
    # sums of term magnitudes: average pooling of |x|; either backward pass on |dy| (max
    # pooling's forward pass does no arithmetic, so its own magnitude is its scale)
    y_terms = yr if kind == "max" else rfwd(np.abs(x64), kernel, **opts)[0]
    return (y, bwd(dy, cache)), (yr, rbwd(dy64, cr)), (y_terms, rbwd(np.abs(dy64), cr))


@settings(max_examples=120)
@given(st.sampled_from(["max", "avg"]), st.data(), st.booleans(), st.integers(0, 2**16))
def test_float64_agrees_with_reference(kind, data, ties, seed):
    cfg = data.draw(pool_configs(max_kind=kind == "max"))
    (y, dx), (yr, dxr), _ = engine_and_reference(kind, random_input(cfg["x"], seed, ties=ties), cfg["opts"])
    assert y.shape == yr.shape and dx.shape == dxr.shape and y.dtype == dx.dtype == np.float64
    assert max_rel_err(y, yr) <= 1e-10
    assert max_rel_err(dx, dxr) <= 1e-10


@settings(max_examples=60)
@given(st.sampled_from(["max", "avg"]), st.data(), st.integers(0, 2**16))
def test_float32_agrees_with_float64_reference(kind, data, seed):
    cfg = data.draw(pool_configs(max_kind=kind == "max"))
    got, want, scales = engine_and_reference(kind, random_input(cfg["x"], seed, np.float32), cfg["opts"])
    assert got[0].dtype == got[1].dtype == np.float32
    # Relative to the largest reference magnitude, except where the terms of a sum cancel:
    # float32 rounding scales with the terms, so the scale is the largest sum of term
    # magnitudes (the reference on absolute values), which is >= the largest |reference|.
    for g, r, m in zip(got, want, scales):
        assert np.abs(g - r).max() <= 2e-5 * np.abs(m).max()


@pytest.mark.parametrize(
    "kind, opts",
    [
        ("max", dict(kernel_size=2)),
        ("max", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
        ("max", dict(kernel_size=(2, 3), stride=1, dilation=(2, 1), padding=(1, 1))),
        ("avg", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
        ("avg", dict(kernel_size=(3, 2), stride=1, padding=(1, 0), count_include_pad=False)),
    ],
)
def test_gradients_match_numerical_gradients(kind, opts):
    # distinct values, far apart compared with the step: no maximum changes place
    x = np.random.default_rng(0).permutation(2 * 5 * 6).reshape(1, 2, 5, 6) / 10.0
    fwd, bwd = OPS[kind][:2]
    opts = dict(opts)
    kernel = opts.pop("kernel_size")
    y, cache = fwd(x, kernel, **opts)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    loss = lambda: float(np.sum(fwd(x, kernel, **opts)[0] * dy))
    assert relative_error(bwd(dy, cache), numerical_gradient(loss, x)) <= 1e-7


def test_max_gradient_goes_to_the_first_maximum_only():
    x = np.array([[[[5.0, 5.0, 1.0], [5.0, 2.0, 5.0], [0.0, 5.0, 5.0]]]])
    y, cache = cc.max_pool2d_forward(x, 2, stride=1)
    np.testing.assert_array_equal(y[0, 0], [[5, 5], [5, 5]])
    dx = cc.max_pool2d_backward(np.array([[[[1.0, 10.0], [100.0, 1000.0]]]]), cache)
    # windows at (0,0), (0,1) and (1,0) all pick x[0,0,0,0] or x[0,0,0,1] / x[0,0,1,0] first in row order
    want = [[1.0, 10.0, 0.0], [100.0, 0.0, 1000.0], [0.0, 0.0, 0.0]]
    np.testing.assert_array_equal(dx[0, 0], want)
    assert (
        np.count_nonzero(
            cc.max_pool2d_backward(np.ones((1, 1, 1, 1)), cc.max_pool2d_forward(np.ones((1, 1, 2, 2)), 2)[1])
        )
        == 1
    )


def test_nan_wins_and_takes_the_gradient():
    x = np.array([[[[1.0, np.nan], [3.0, np.nan]]]])
    y, cache = cc.max_pool2d_forward(x, 2)
    assert np.isnan(y[0, 0, 0, 0])
    np.testing.assert_array_equal(cc.max_pool2d_backward(np.ones_like(y), cache)[0, 0], [[0, 1], [0, 0]])


def test_windows_of_minus_infinity():
    # a window whose maximum is -inf gives -inf, and its gradient goes to its first element inside
    # the input: windows (0, 0), (0, 1), (1, 0), (1, 1) start at rows/columns -1 or 1
    x = np.full((1, 1, 3, 3), -np.inf)
    y, cache = cc.max_pool2d_forward(x, 3, stride=2, padding=1)
    yr, cr = reference.max_pool2d_forward(x, 3, stride=2, padding=1)
    np.testing.assert_array_equal(y, yr)
    dy = np.arange(1.0, 5.0).reshape(y.shape)
    np.testing.assert_array_equal(cc.max_pool2d_backward(dy, cache), reference.max_pool2d_backward(dy, cr))
    np.testing.assert_array_equal(cc.max_pool2d_backward(dy, cache)[0, 0], [[1, 2, 0], [3, 4, 0], [0, 0, 0]])


def test_a_dilated_window_that_sees_only_padding():
    # kernel 2, dilation 2, padding 1 on one row: the window reads rows -1 and 1, neither inside
    x = np.ones((1, 1, 1, 3))
    y, cache = cc.max_pool2d_forward(x, (2, 1), padding=(1, 0), dilation=(2, 1))
    np.testing.assert_array_equal(y, np.full((1, 1, 1, 3), -np.inf))
    assert not cc.max_pool2d_backward(np.ones_like(y), cache).any()


@pytest.mark.parametrize(
    "size, kernel, stride, padding, floor_out, ceil_out",
    [
        (7, 2, 2, 0, 3, 4),
        (6, 2, 2, 0, 3, 3),
        (5, 3, 2, 1, 3, 3),  # the ceil window would start in the right padding: dropped
        (6, 3, 2, 1, 3, 4),
    ],
)
def test_output_size_floor_and_ceil(size, kernel, stride, padding, floor_out, ceil_out):
    x = np.ones((1, 1, size, size))
    for ceil_mode, out in ((False, floor_out), (True, ceil_out)):
        for pool in (cc.max_pool2d, cc.avg_pool2d):
            assert pool(x, kernel, stride=stride, padding=padding, ceil_mode=ceil_mode).shape == (
                1,
                1,
                out,
                out,
            )


def test_avg_divisors_by_hand():
    x = np.ones((1, 1, 3, 3))
    # padding 1, kernel 2, stride 2: windows over rows {-1,0}, {1,2}
    np.testing.assert_array_equal(cc.avg_pool2d(x, 2, padding=1)[0, 0], [[0.25, 0.5], [0.5, 1.0]])
    np.testing.assert_array_equal(
        cc.avg_pool2d(x, 2, padding=1, count_include_pad=False)[0, 0], np.ones((2, 2))
    )
    # ceil_mode on 3 with kernel 2: the last window hangs past the input and counts 1 row, not 2
    np.testing.assert_array_equal(
        cc.avg_pool2d(np.ones((1, 1, 3, 3)), 2, ceil_mode=True)[0, 0], np.ones((2, 2))
    )
    y, cache = cc.avg_pool2d_forward(np.ones((1, 1, 3, 3)), 2, ceil_mode=True)
    np.testing.assert_array_equal(
        cc.avg_pool2d_backward(np.ones_like(y), cache)[0, 0],
        [[0.25, 0.25, 0.5], [0.25, 0.25, 0.5], [0.5, 0.5, 1.0]],
    )


def test_classic_drop_ins():
    x = random_input((2, 3, 8, 7), 0, ties=True)
    out, cache = cc.max_pool_forward(x, {"pool_height": 2, "pool_width": 3, "stride": 2})
    want, wcache = reference.max_pool2d_forward(x, (2, 3), stride=2)
    np.testing.assert_array_equal(out, want)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    np.testing.assert_array_equal(
        cc.max_pool_backward(dout, cache), reference.max_pool2d_backward(dout, wcache)
    )
    default, _ = cc.max_pool_forward(x, {"pool_height": 2, "pool_width": 2})
    np.testing.assert_array_equal(default, cc.max_pool2d(x, 2))


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_layout_mutation_repeat_aliasing_and_empty_batch(kind):
    fwd, bwd = OPS[kind][:2]
    x = random_input((2, 3, 7, 6), 0)
    y, cache = fwd(x, 3, stride=2, padding=1)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    dx = bwd(dy, cache)
    copies = x.copy(), dy.copy()
    x.flags.writeable = dy.flags.writeable = False
    y2, cache2 = fwd(np.asfortranarray(x)[:, ::-1][:, ::-1], 3, stride=2, padding=1)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(bwd(dy, cache2), dx)
    np.testing.assert_array_equal(bwd(dy, cache2), dx)
    np.testing.assert_array_equal(x, copies[0])
    np.testing.assert_array_equal(dy, copies[1])
    assert not any(np.shares_memory(o, a) for o in (y, dx) for a in (x, dy))
    y0, cache0 = fwd(np.zeros((0, 3, 7, 6)), 3, stride=2, padding=1)
    assert y0.shape == (0, 3, 4, 3) and bwd(y0, cache0).shape == (0, 3, 7, 6)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(
    "dtype, out_dtype",
    [
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.int32, np.float64),
        (np.bool_, np.float64),
        (np.float16, np.float16),
    ],
)
def test_dtype_rules(kind, dtype, out_dtype):
    fwd, bwd = OPS[kind][:2]
    x = np.arange(16).reshape(1, 1, 4, 4).astype(dtype)
    y, cache = fwd(x, 2)
    dx = bwd(np.ones(y.shape, dtype), cache)
    assert y.dtype == dx.dtype == out_dtype
    if dtype != np.bool_:
        np.testing.assert_array_equal(
            y[0, 0], [[5, 7], [13, 15]] if kind == "max" else [[2.5, 4.5], [10.5, 12.5]]
        )


def _bad(kind):
    x = np.ones((1, 2, 6, 6))
    calls = {
        "x ndim": lambda: cc.max_pool2d(x[0], 2),
        "kernel": lambda: cc.max_pool2d(x, 0),
        "stride": lambda: cc.avg_pool2d(x, 2, stride=(1, 0)),
        "padding": lambda: cc.max_pool2d(x, 3, padding=2),
        "negative padding": lambda: cc.avg_pool2d(x, 3, padding=-1),
        "float kernel": lambda: cc.max_pool2d(x, 2.5),
        "dilation": lambda: cc.max_pool2d(x, 2, dilation=0),
        "ceil_mode": lambda: cc.max_pool2d(x, 2, ceil_mode=1),
        "count_include_pad": lambda: cc.avg_pool2d(x, 2, count_include_pad="yes"),
        "too large": lambda: cc.max_pool2d(x, 4, dilation=2),
        "complex": lambda: cc.avg_pool2d(x.astype(complex), 2),
        "dy shape": lambda: cc.max_pool2d_backward(np.ones((1, 2, 2, 2)), cc.max_pool2d_forward(x, 2)[1]),
        "cache": lambda: cc.avg_pool2d_backward(np.ones((1, 2, 3, 3)), cc.max_pool2d_forward(x, 2)[1]),
        "pool_param type": lambda: cc.max_pool_forward(x, [2, 2]),
        "pool_param key": lambda: cc.max_pool_forward(x, {"pool_height": 2, "pool_width": 2, "pad": 1}),
        "pool_param missing": lambda: cc.max_pool_forward(x, {"pool_height": 2}),
        "pool_param value": lambda: cc.max_pool_forward(x, {"pool_height": 0, "pool_width": 2}),
        "pool_param pair": lambda: cc.max_pool_forward(x, {"pool_height": (2, 3), "pool_width": 2}),
    }
    return calls[kind]


@pytest.mark.parametrize(
    "kind, exc, match",
    [
        ("x ndim", ValueError, r"x must be 4-D \(N, C, H, W\), got shape \(2, 6, 6\)"),
        ("kernel", ValueError, r"kernel_size must be >= 1, got 0"),
        ("stride", ValueError, r"stride must be >= 1, got 0"),
        ("padding", ValueError, r"padding=\(2, 2\) must be at most half of kernel_size=\(3, 3\)"),
        ("negative padding", ValueError, r"padding must be >= 0, got -1"),
        ("float kernel", TypeError, r"kernel_size must be an int, got 2.5"),
        ("dilation", ValueError, r"dilation must be >= 1, got 0"),
        ("ceil_mode", TypeError, r"ceil_mode must be a bool, got 1"),
        ("count_include_pad", TypeError, r"count_include_pad must be a bool, got 'yes'"),
        ("too large", ValueError, r"window spans 7 rows \(kernel_size 4, dilation 2\) .* only 6 rows"),
        ("complex", TypeError, r"real numeric arrays only, got dtype complex128"),
        (
            "dy shape",
            ValueError,
            r"dy has shape \(1, 2, 2, 2\) but the forward output had shape \(1, 2, 3, 3\)",
        ),
        ("cache", TypeError, r"cache must come from avg_pool2d_forward, got MaxPoolCache"),
        ("pool_param type", TypeError, r"pool_param must be a dict, got list"),
        ("pool_param key", ValueError, r"pool_param has unknown keys \['pad'\]"),
        ("pool_param missing", ValueError, r"pool_param is missing \['pool_width'\]"),
        ("pool_param value", ValueError, r"pool_param\['pool_height'\] must be >= 1, got 0"),
        ("pool_param pair", TypeError, r"pool_param\['pool_height'\] must be an int, got \(2, 3\)"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(kind, exc, match):
    with pytest.raises(exc, match=match):
        _bad(kind)()
