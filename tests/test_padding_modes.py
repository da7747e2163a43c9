import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from layer_strategies import mode_fits, padded_conv_configs

import convcore as cc
from convcore import reference
from convcore._geometry import window_geometry
from convcore.gradient_check import numerical_gradient, relative_error
from convcore.padding import ModePadding

from strategies import (
    arrays_for,
    assert_agrees_with_reference,
)


def _pads(cfg):
    o = cfg["opts"]
    geo = window_geometry(cfg["x"], cfg["w"][2:], o["stride"], o["padding"], o["dilation"])
    return (geo.pt, geo.pb, geo.pl, geo.pr)


ENGINE = (cc.conv2d_forward, cc.conv2d_backward)
REFERENCE = (reference.padded_conv2d_forward, reference.padded_conv2d_backward)


@settings(max_examples=150)
@given(padded_conv_configs(), st.integers(0, 2**16))
def test_float64_agrees_with_reference(cfg, seed):
    assume(mode_fits(cfg, _pads(cfg)))
    assert_agrees_with_reference(ENGINE, REFERENCE, *arrays_for(cfg, seed), cfg["opts"])


@settings(max_examples=60)
@given(padded_conv_configs(), st.integers(0, 2**16))
def test_float32_agrees_with_float64_reference(cfg, seed):
    assume(mode_fits(cfg, _pads(cfg)))
    arrays = arrays_for(cfg, seed, np.float32)
    assert_agrees_with_reference(ENGINE, REFERENCE, *arrays, cfg["opts"])


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize(
    "opts", [dict(padding=2), dict(padding="same", stride=2), dict(padding=((2, 0), (1, 3)), dilation=(1, 2))]
)
def test_gradients_match_numerical_gradients(mode, opts):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((1, 2, 5, 4)), rng.standard_normal((2, 2, 3, 2)), rng.standard_normal(2)
    opts = dict(opts, padding_mode=mode)
    y, cache = cc.conv2d_forward(x, w, b, **opts)
    dy = rng.standard_normal(y.shape)
    analytic = cc.conv2d_backward(dy, cache)
    loss = lambda: float(np.sum(cc.conv2d(x, w, b, **opts) * dy))
    for got, a in zip(analytic, (x, w, b)):
        assert relative_error(got, numerical_gradient(loss, a)) <= 1e-7


# Padding [1, 2, 3] by two on each side, worked by hand; a 1x1 unit kernel shows the padded row.
@pytest.mark.parametrize(
    "mode, padded, counts",
    [
        ("reflect", [3, 2, 1, 2, 3, 2, 1], [2, 3, 2]),
        ("replicate", [1, 1, 1, 2, 3, 3, 3], [3, 1, 3]),
        ("circular", [2, 3, 1, 2, 3, 1, 2], [2, 3, 2]),
        ("zeros", [0, 0, 1, 2, 3, 0, 0], [1, 1, 1]),
    ],
)
def test_hand_worked_padding_and_its_adjoint(mode, padded, counts):
    x = np.array([[[[1.0, 2.0, 3.0]]]])
    y, cache = cc.conv2d_forward(x, np.ones((1, 1, 1, 1)), padding=((0, 0), (2, 2)), padding_mode=mode)
    np.testing.assert_array_equal(y[0, 0, 0], padded)
    dx, _, _ = cc.conv2d_backward(np.ones_like(y), cache)
    np.testing.assert_array_equal(dx[0, 0, 0], counts)


def test_reflect_in_two_dimensions_by_hand():
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    y = cc.conv2d(x, np.ones((1, 1, 1, 1)), padding=1, padding_mode="reflect")
    want = [[5, 4, 5, 6, 5], [2, 1, 2, 3, 2], [5, 4, 5, 6, 5], [8, 7, 8, 9, 8], [5, 4, 5, 6, 5]]
    np.testing.assert_array_equal(y[0, 0], want)


@given(
    st.sampled_from(["reflect", "replicate", "circular"]),
    st.tuples(*[st.integers(0, 3)] * 4),
    st.integers(0, 2**16),
)
def test_fold_is_the_adjoint_of_pad(mode, pads, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 2, 4, 5))
    padding = ModePadding.create(mode, 4, 5, *pads)
    xp = padding.pad(x)
    g = rng.standard_normal(xp.shape)
    assert abs(np.vdot(xp, g) - np.vdot(x, padding.fold(g))) <= 1e-12 * np.abs(g).sum() * np.abs(x).max()
    np.testing.assert_array_equal(xp, reference.pad(x, pads, mode))


def test_zeros_mode_is_the_default():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    np.testing.assert_array_equal(
        cc.conv2d(x, w, padding=1, padding_mode="zeros"), cc.conv2d(x, w, padding=1)
    )


def test_mode_without_padding_is_the_plain_convolution():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    np.testing.assert_array_equal(cc.conv2d(x, w, padding_mode="reflect"), cc.conv2d(x, w))


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_layout_mutation_repeat_and_empty_batch(mode):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 3, 6, 7)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    opts = dict(padding=(2, 1), stride=2, padding_mode=mode)
    y, cache = cc.conv2d_forward(x, w, b, **opts)
    dy = rng.standard_normal(y.shape)
    want = cc.conv2d_backward(dy, cache)
    np.testing.assert_array_equal(cc.conv2d_backward(dy, cache)[0], want[0])
    xv = np.asfortranarray(x)[:, :, ::-1][:, :, ::-1]
    copies = x.copy(), w.copy()
    y2, cache2 = cc.conv2d_forward(xv, w, b, **opts)
    np.testing.assert_array_equal(y2, y)
    dx2 = cc.conv2d_backward(dy, cache2)[0]
    np.testing.assert_array_equal(dx2, want[0])
    np.testing.assert_array_equal(x, copies[0])
    np.testing.assert_array_equal(w, copies[1])
    assert not any(np.shares_memory(o, a) for o in (y, dx2) for a in (x, w, dy))
    y0, cache0 = cc.conv2d_forward(np.zeros((0, 3, 6, 7)), w, b, **opts)
    assert y0.shape == (0, 4, 4, 4) and cc.conv2d_backward(y0, cache0)[0].shape == (0, 3, 6, 7)


@pytest.mark.parametrize("mode", ["reflect", "circular"])
def test_float32_and_float16_keep_their_dtype(mode):
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 5))
    w = np.ones((2, 2, 3, 3))
    for dtype in (np.float32, np.float16):
        y, cache = cc.conv2d_forward(x.astype(dtype), w.astype(dtype), padding=1, padding_mode=mode)
        assert y.dtype == dtype and cc.conv2d_backward(y, cache)[0].dtype == dtype


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(padding=1, padding_mode="mirror"), ValueError, r"padding_mode must be one of .* got 'mirror'"),
        (dict(padding=1, padding_mode=None), TypeError, r"padding_mode must be a str, got None"),
        (dict(padding=3, padding_mode="reflect"), ValueError, r"'reflect' needs .* padding 3 .* 3 rows"),
        (dict(padding=(0, 4), padding_mode="circular"), ValueError, r"'circular' .* padding 4 .* 3 columns"),
    ],
)
def test_bad_padding_mode_is_refused(kwargs, exc, match):
    x, w = np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3))
    with pytest.raises(exc, match=match):
        cc.conv2d(x, w, **kwargs)
    with pytest.raises(exc, match=match):
        cc.conv2d_forward(x, w, **kwargs)


def test_reflect_accepts_padding_just_below_the_size_and_circular_equal_to_it():
    x = np.arange(3.0).reshape(1, 1, 1, 3)
    w = np.ones((1, 1, 1, 1))
    assert cc.conv2d(x, w, padding=(0, 2), padding_mode="reflect").shape == (1, 1, 1, 7)
    np.testing.assert_array_equal(
        cc.conv2d(x, w, padding=(0, 3), padding_mode="circular")[0, 0, 0], [0, 1, 2, 0, 1, 2, 0, 1, 2]
    )
