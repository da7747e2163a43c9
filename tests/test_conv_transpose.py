import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from layer_strategies import transpose_configs, transpose_out_size

import convcore as cc
from convcore import reference
from convcore.gradient_check import numerical_gradient, relative_error

from strategies import assert_agrees_with_reference, max_rel_err


def _arrays(cfg, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(cfg["x"]).astype(dtype)
    w = rng.standard_normal(cfg["w"]).astype(dtype)
    b = None if cfg["b"] is None else rng.standard_normal(cfg["b"]).astype(dtype)
    return x, w, b


ENGINE = (cc.conv_transpose2d_forward, cc.conv_transpose2d_backward)
REFERENCE = (reference.conv_transpose2d_forward, reference.conv_transpose2d_backward)


@settings(max_examples=150)
@given(transpose_configs(), st.integers(0, 2**16))
def test_float64_agrees_with_reference(cfg, seed):
    assume(min(transpose_out_size(cfg)) >= 1)
    assert_agrees_with_reference(ENGINE, REFERENCE, *_arrays(cfg, seed), cfg["opts"])


@settings(max_examples=60)
@given(transpose_configs(), st.integers(0, 2**16))
def test_float32_agrees_with_float64_reference(cfg, seed):
    assume(min(transpose_out_size(cfg)) >= 1)
    arrays = _arrays(cfg, seed, np.float32)
    assert_agrees_with_reference(ENGINE, REFERENCE, *arrays, cfg["opts"])


@pytest.mark.parametrize(
    "opts",
    [
        dict(stride=2, padding=1, output_padding=1),
        dict(stride=(1, 3), padding=((1, 0), (2, 1)), dilation=(2, 1), groups=2),
        dict(stride=1, dilation=2, output_padding=1),  # output_padding allowed by the dilation
    ],
)
def test_gradients_match_numerical_gradients(opts):
    rng = np.random.default_rng(0)
    groups = opts.get("groups", 1)
    x, w = rng.standard_normal((1, 2, 3, 4)), rng.standard_normal((2, 2, 3, 2))
    b = rng.standard_normal(2 * groups)
    y, cache = cc.conv_transpose2d_forward(x, w, b, **opts)
    dy = rng.standard_normal(y.shape)
    loss = lambda: float(np.sum(cc.conv_transpose2d(x, w, b, **opts) * dy))
    for got, a in zip(cc.conv_transpose2d_backward(dy, cache), (x, w, b)):
        assert relative_error(got, numerical_gradient(loss, a)) <= 1e-7


@pytest.mark.parametrize(
    "x_shape, opts",
    [
        ((2, 4, 9, 8), dict(stride=2, padding=1)),
        ((1, 4, 10, 7), dict(stride=(3, 2), padding=((0, 2), (1, 1)), dilation=(1, 2), groups=2)),
        ((2, 4, 6, 6), dict(padding="same", groups=4)),
    ],
)
def test_is_the_adjoint_of_conv2d(x_shape, opts):
    """<conv2d(x, w), g> == <x, conv_transpose2d(g, w)>, output_padding chosen to recover x's size."""
    rng = np.random.default_rng(0)
    groups = opts.get("groups", 1)
    x, w = rng.standard_normal(x_shape), rng.standard_normal((6 if groups < 4 else 4, 4 // groups, 3, 3))
    y, cache = cc.conv2d_forward(x, w, **opts)
    g = rng.standard_normal(y.shape)
    geo = cache.geo
    pads = ((geo.pt, geo.pb), (geo.pl, geo.pr))
    sizes = [
        (n - 1) * s - p + d * (k - 1) + 1
        for n, s, p, d, k in [
            (geo.OH, geo.sh, geo.pt + geo.pb, geo.dh, geo.KH),
            (geo.OW, geo.sw, geo.pl + geo.pr, geo.dw, geo.KW),
        ]
    ]
    out_pad = (x_shape[2] - sizes[0], x_shape[3] - sizes[1])
    back = cc.conv_transpose2d(
        g,
        w,
        stride=(geo.sh, geo.sw),
        padding=pads,
        output_padding=out_pad,
        dilation=(geo.dh, geo.dw),
        groups=groups,
    )
    assert back.shape == x.shape
    assert abs(np.vdot(y, g) - np.vdot(x, back)) <= 1e-12 * np.abs(y).sum() * np.abs(g).max()
    np.testing.assert_allclose(back, cc.conv2d_backward(g, cache)[0], rtol=0, atol=1e-12)


def test_hand_worked_stride_two():
    # each input pixel stamps its value times the 2x2 kernel at (2i, 2j)
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    w = np.array([[[[1.0, 10.0], [100.0, 1000.0]]]])
    want = [[1, 10, 2, 20], [100, 1000, 200, 2000], [3, 30, 4, 40], [300, 3000, 400, 4000]]
    np.testing.assert_array_equal(cc.conv_transpose2d(x, w, stride=2)[0, 0], want)
    cropped = cc.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1)
    np.testing.assert_array_equal(cropped[0, 0], [[1000, 200, 2000], [30, 4, 40], [3000, 400, 4000]])


def test_bias_layout_views_mutation_and_empty_batch():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 4, 5, 5)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(3)
    opts = dict(stride=2, padding=1)
    y, cache = cc.conv_transpose2d_forward(x, w, b, **opts)
    np.testing.assert_allclose(
        y - cc.conv_transpose2d(x, w, **opts),
        np.broadcast_to(b[:, None, None], y.shape[1:])[None].repeat(2, 0),
        atol=1e-12,
    )
    dy = rng.standard_normal(y.shape)
    want = cc.conv_transpose2d_backward(dy, cache)
    copies = [a.copy() for a in (x, w, b, dy)]
    for a in (x, w, b, dy):
        a.flags.writeable = False
    xv, wv = np.asfortranarray(x), w[::-1].copy()[::-1]
    y2, cache2 = cc.conv_transpose2d_forward(xv, wv, b, **opts)
    got = cc.conv_transpose2d_backward(dy, cache2)
    np.testing.assert_array_equal(y2, y)
    for g, r in zip(got, want):
        np.testing.assert_array_equal(g, r)
    for g, r in zip(cc.conv_transpose2d_backward(dy, cache2), want):  # repeatable
        np.testing.assert_array_equal(g, r)
    for a, c in zip((x, w, b, dy), copies):
        np.testing.assert_array_equal(a, c)
    assert not any(np.shares_memory(o, a) for o in (y2, *got) for a in (x, w, b, dy))
    y0, cache0 = cc.conv_transpose2d_forward(np.zeros((0, 4, 5, 5)), w, b, **opts)
    dx0, dw0, db0 = cc.conv_transpose2d_backward(y0, cache0)
    assert y0.shape == (0, 3, 9, 9) and dx0.shape == (0, 4, 5, 5) and not dw0.any() and not db0.any()
    assert cc.conv_transpose2d_backward(dy, cc.conv_transpose2d_forward(x, w, **opts)[1])[2] is None


def test_workspace_chunks_agree_with_a_single_chunk():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((5, 3, 6, 6)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(2)
    y, cache = cc.conv_transpose2d_forward(x, w, b, stride=2)
    dy = rng.standard_normal(y.shape)
    whole = (y, *cc.conv_transpose2d_backward(dy, cache))
    old = cc.set_workspace_limit(1)
    try:
        y1, cache1 = cc.conv_transpose2d_forward(x, w, b, stride=2)
        chunked = (y1, *cc.conv_transpose2d_backward(dy, cache1))
    finally:
        cc.set_workspace_limit(old)
    for g, r in zip(chunked, whole):
        assert max_rel_err(g, r) <= 1e-12


@pytest.mark.parametrize(
    "x_dtype, w_dtype, out_dtype",
    [
        (np.float32, np.float32, np.float32),
        (np.float32, np.float64, np.float64),
        (np.int64, np.int32, np.float64),
        (np.float16, np.float16, np.float16),
    ],
)
def test_dtype_rules(x_dtype, w_dtype, out_dtype):
    x = np.ones((1, 2, 3, 3), x_dtype)
    w = np.ones((2, 1, 2, 2), w_dtype)
    y, cache = cc.conv_transpose2d_forward(x, w, np.ones(1, x_dtype), stride=2)
    grads = cc.conv_transpose2d_backward(np.ones(y.shape, x_dtype), cache)
    assert all(a.dtype == out_dtype for a in (y, *grads))
    np.testing.assert_array_equal(y, 3.0)  # two channels of ones plus the bias


def _bad(kind):
    x, w = np.ones((1, 4, 3, 3)), np.ones((4, 2, 3, 3))
    calls = {
        "x ndim": lambda: cc.conv_transpose2d(x[0], w),
        "w ndim": lambda: cc.conv_transpose2d(x, w[0]),
        "channels": lambda: cc.conv_transpose2d(x, np.ones((3, 2, 3, 3))),
        "groups": lambda: cc.conv_transpose2d(x, w, groups=3),
        "bias": lambda: cc.conv_transpose2d(x, w, np.ones(4)),
        "string padding": lambda: cc.conv_transpose2d(x, w, padding="same"),
        "negative padding": lambda: cc.conv_transpose2d(x, w, padding=-1),
        "output_padding": lambda: cc.conv_transpose2d(x, w, stride=2, output_padding=2),
        "output_padding stride 1": lambda: cc.conv_transpose2d(x, w, output_padding=(0, 1)),
        "float stride": lambda: cc.conv_transpose2d(x, w, stride=1.5),
        "bool groups": lambda: cc.conv_transpose2d(x, w, groups=True),
        "empty output": lambda: cc.conv_transpose2d(x, w, padding=3),
        "complex": lambda: cc.conv_transpose2d(x.astype(complex), w),
        "dy shape": lambda: cc.conv_transpose2d_backward(
            np.ones((1, 2, 4, 4)), cc.conv_transpose2d_forward(x, w)[1]
        ),
        "no channels": lambda: cc.conv_transpose2d(np.ones((1, 0, 3, 3)), np.ones((0, 2, 3, 3))),
        "cache": lambda: cc.conv_transpose2d_backward(
            np.ones((1, 2, 5, 5)), cc.conv2d_forward(x, np.ones((2, 4, 3, 3)))[1]
        ),
    }
    return calls[kind]


@pytest.mark.parametrize(
    "kind, exc, match",
    [
        ("x ndim", ValueError, r"x must be 4-D \(N, C_in, H, W\), got shape \(4, 3, 3\)"),
        ("w ndim", ValueError, r"w must be 4-D \(C_in, C_out/groups, KH, KW\), got shape \(2, 3, 3\)"),
        (
            "channels",
            ValueError,
            r"x has C_in=4 channels but w of shape \(3, 2, 3, 3\) expects w.shape\[0\]=3",
        ),
        ("groups", ValueError, r"groups=3 must divide the input channels C_in=4"),
        ("no channels", ValueError, r"x must have at least one input channel, got shape \(1, 0, 3, 3\)"),
        ("bias", ValueError, r"b must have shape \(C_out,\) = \(2,\), got \(4,\)"),
        ("string padding", ValueError, r"padding must be an int, a pair or a pair of pairs .* got 'same'"),
        ("negative padding", ValueError, r"padding must be >= 0, got -1"),
        (
            "output_padding",
            ValueError,
            r"output_padding=\(2, 2\) must be smaller than either stride=\(2, 2\)",
        ),
        ("output_padding stride 1", ValueError, r"output_padding=\(0, 1\) must be smaller"),
        ("float stride", TypeError, r"stride must be an int, got 1.5"),
        ("bool groups", TypeError, r"groups must be an int, got True"),
        ("empty output", ValueError, r"has an empty output of size \(-1, -1\)"),
        ("complex", TypeError, r"real numeric arrays only, got dtype complex128"),
        (
            "dy shape",
            ValueError,
            r"dy has shape \(1, 2, 4, 4\) but the forward output had shape \(1, 2, 5, 5\)",
        ),
        ("cache", TypeError, r"cache must come from conv_transpose2d_forward, got ConvCache"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(kind, exc, match):
    with pytest.raises(exc, match=match):
        _bad(kind)()
