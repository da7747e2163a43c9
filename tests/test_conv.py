import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convcore as cc
from convcore import _threads, conv, reference
from convcore._geometry import conv_geometry

from strategies import (
    ENGINE_PATHS,
    arrays_for,
    assert_agrees_with_reference,
    assert_same_non_finite,
    conv_configs,
    engine_and_reference,
    engine_path,
    max_rel_err,
    reference_passes,
)

ENGINE = (cc.conv2d_forward, cc.conv2d_backward)
REFERENCE = (reference.conv2d_forward, reference.conv2d_backward)


@pytest.mark.parametrize("path", ENGINE_PATHS)
@given(cfg=conv_configs(), seed=st.integers(0, 2**16))
def test_float64_agrees_with_reference(path, cfg, seed):
    with engine_path(path):
        assert_agrees_with_reference(ENGINE, REFERENCE, *arrays_for(cfg, seed), cfg["opts"])


@pytest.mark.parametrize("path", ENGINE_PATHS)
@given(cfg=conv_configs(), seed=st.integers(0, 2**16))
def test_float32_agrees_with_float64_reference(path, cfg, seed):
    with engine_path(path):
        assert_agrees_with_reference(ENGINE, REFERENCE, *arrays_for(cfg, seed, np.float32), cfg["opts"])


@pytest.mark.parametrize(
    "x_shape, w_shape, opts",
    [
        ((2, 3, 7, 7), (4, 3, 1, 1), {}),  # pointwise: the plain-GEMM path
        ((2, 4, 7, 5), (6, 2, 1, 1), dict(groups=2)),
        ((2, 3, 7, 7), (4, 3, 1, 1), dict(stride=2)),  # 1x1 but strided: im2col path
        ((1, 2, 5, 5), (3, 2, 5, 5), {}),  # kernel as large as the input
        ((3, 6, 8, 8), (6, 1, 3, 3), dict(groups=6, padding="same")),  # depthwise
        ((1, 1, 1, 1), (1, 1, 1, 1), {}),
        ((2, 2, 9, 4), (3, 2, 2, 3), dict(stride=(3, 1), padding=((2, 0), (0, 1)), dilation=(2, 1))),
    ],
)
@pytest.mark.parametrize("path", ENGINE_PATHS)
def test_edge_configurations(x_shape, w_shape, opts, path):
    cfg = dict(x=x_shape, w=w_shape, bias=True)
    with engine_path(path):
        got, want, _ = engine_and_reference(ENGINE, REFERENCE, *arrays_for(cfg, 3), opts)
    for g, r in zip(got, want):
        assert max_rel_err(g, r) <= 1e-10


def _arrays(dtype=np.float64, shape=(2, 3, 6, 6)):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((4, shape[1], 3, 3)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    return x, w, b


def _fwd_bwd(x, w, b, **opts):
    y, cache = cc.conv2d_forward(x, w, b, **opts)
    dy = np.linspace(-1, 1, y.size).reshape(y.shape)
    return (y, *cc.conv2d_backward(dy, cache))


@pytest.mark.parametrize(
    "make_view",
    [
        lambda a: np.asfortranarray(a),
        lambda a: a[::-1, :, ::-1, :].copy()[::-1, :, ::-1, :],  # negative strides
        lambda a: np.ascontiguousarray(np.swapaxes(a, 2, 3)).swapaxes(2, 3),  # transposed layout
        lambda a: np.repeat(a, 2, axis=3)[..., ::2],  # strided view
    ],
    ids=["fortran", "negative-strides", "transposed", "strided"],
)
def test_any_memory_layout_gives_the_same_result(make_view):
    x, w, b = _arrays()
    want = _fwd_bwd(x, w, b, padding=1, stride=2)
    got = _fwd_bwd(make_view(x), make_view(w), b, padding=1, stride=2)
    for g, r in zip(got, want):
        np.testing.assert_array_equal(g, r)


def test_read_only_inputs_and_no_mutation():
    x, w, b = _arrays()
    copies = [a.copy() for a in (x, w, b)]
    for a in (x, w, b):
        a.flags.writeable = False
    y, cache = cc.conv2d_forward(x, w, b, padding="same")
    dy = np.ones_like(y)
    dy.flags.writeable = False
    dx, dw, db = cc.conv2d_backward(dy, cache)
    for a, c in zip((x, w, b), copies):
        np.testing.assert_array_equal(a, c)
    for out in (y, dx, dw, db):
        assert out.flags.writeable
        assert not any(np.shares_memory(out, a) for a in (x, w, b, dy))


def test_pointwise_outputs_do_not_alias_inputs():
    x, w, b = _arrays(shape=(2, 3, 4, 4))
    w = w[:, :, :1, :1].copy()
    y, cache = cc.conv2d_forward(x, w)
    dx, dw, _ = cc.conv2d_backward(y, cache)
    assert not any(np.shares_memory(o, a) for o in (y, dx, dw) for a in (x, w))


def test_backward_can_be_repeated():
    x, w, b = _arrays()
    y, cache = cc.conv2d_forward(x, w, b, stride=2, padding=1)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    first = cc.conv2d_backward(dy, cache)
    second = cc.conv2d_backward(dy, cache)
    for a, c in zip(first, second):
        np.testing.assert_array_equal(a, c)


def test_conv2d_equals_forward_output():
    x, w, b = _arrays()
    np.testing.assert_array_equal(cc.conv2d(x, w, b, padding=1), cc.conv2d_forward(x, w, b, padding=1)[0])


def test_empty_batch():
    x = np.zeros((0, 3, 8, 8), np.float32)
    w = np.ones((5, 3, 3, 3), np.float32)
    y, cache = cc.conv2d_forward(x, w, np.zeros(5, np.float32), stride=2)
    assert y.shape == (0, 5, 3, 3) and y.dtype == np.float32
    dx, dw, db = cc.conv2d_backward(y, cache)
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == (5,)
    assert not dw.any() and not db.any()


def test_no_bias_gives_db_none():
    x, w, _ = _arrays()
    assert cc.conv2d_backward(*_dy_and_cache(x, w))[2] is None


def _dy_and_cache(x, w, b=None):
    y, cache = cc.conv2d_forward(x, w, b)
    return np.ones_like(y), cache


@pytest.mark.parametrize(
    "x_dtype, w_dtype, out_dtype",
    [
        (np.float32, np.float32, np.float32),
        (np.float64, np.float64, np.float64),
        (np.float32, np.float64, np.float64),
        (np.int64, np.int32, np.float64),
        (np.bool_, np.bool_, np.float64),
        (np.float16, np.float16, np.float16),
    ],
)
def test_dtype_rules(x_dtype, w_dtype, out_dtype):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 2, 5, 5)) * 3).astype(x_dtype)
    w = (rng.standard_normal((3, 2, 2, 2)) * 3).astype(w_dtype)
    y, cache = cc.conv2d_forward(x, w, np.ones(3, x_dtype), padding=1)
    grads = cc.conv2d_backward(np.ones(y.shape, x_dtype), cache)
    assert all(a.dtype == out_dtype for a in (y, *grads))
    ref = reference.conv2d_forward(x.astype(np.float64), w.astype(np.float64), np.ones(3), padding=1)[0]
    tol = {np.float16: 2e-3, np.float32: 2e-6}.get(np.dtype(out_dtype).type, 1e-12)
    assert max_rel_err(y, ref) <= tol


def test_float32_is_computed_in_float32():
    # 1 + 2**-30 is exact in float64 but rounds to 1 in float32: a float64 computation
    # would carry the difference through to the output.
    x = np.full((1, 1, 1, 2), [1.0, 2**-30], dtype=np.float64).astype(np.float32)
    w = np.ones((1, 1, 1, 2), np.float32)
    y = cc.conv2d(x, w)
    assert y.dtype == np.float32
    assert y[0, 0, 0, 0] == np.float32(1.0) + np.float32(2**-30)


def _bad(kind):
    x, w, b = np.ones((1, 4, 6, 6)), np.ones((2, 4, 3, 3)), np.ones(2)
    calls = {
        "x ndim": lambda: cc.conv2d(x[0], w),
        "w ndim": lambda: cc.conv2d(x, w[0]),
        "channels": lambda: cc.conv2d(x, np.ones((2, 3, 3, 3))),
        "groups C": lambda: cc.conv2d(x, np.ones((3, 1, 3, 3)), groups=3),
        "groups F": lambda: cc.conv2d(x, np.ones((3, 2, 3, 3)), groups=2),
        "bias": lambda: cc.conv2d(x, w, np.ones(3)),
        "bias 2d": lambda: cc.conv2d(x, w, np.ones((2, 1))),
        "stride": lambda: cc.conv2d(x, w, stride=0),
        "dilation": lambda: cc.conv2d(x, w, dilation=(1, 0)),
        "padding": lambda: cc.conv2d(x, w, padding=-2),
        "float stride": lambda: cc.conv2d(x, w, stride=1.5),
        "bool padding": lambda: cc.conv2d(x, w, padding=True),
        "padding string": lambda: cc.conv2d(x, w, padding="full"),
        "kernel too large": lambda: cc.conv2d(x, np.ones((2, 4, 9, 3))),
        "dilated too large": lambda: cc.conv2d(x, w, dilation=3),
        "complex": lambda: cc.conv2d(x.astype(complex), w),
        "object": lambda: cc.conv2d(x.astype(object), w),
        "string": lambda: cc.conv2d(x, w.astype(str)),
        "dy shape": lambda: cc.conv2d_backward(np.ones((1, 2, 3, 3)), cc.conv2d_forward(x, w)[1]),
        "cache": lambda: cc.conv2d_backward(np.ones((1, 2, 4, 4)), (x, w, b, {})),
        "conv_param stride": lambda: cc.conv_forward(x, w, b, {"stride": 0, "pad": 1}),
        "conv_param pad": lambda: cc.conv_forward(x, w, b, {"stride": 1, "pad": -1}),
        "conv_param float": lambda: cc.conv_forward(x, w, b, {"stride": 2.0}),
        "conv_param key": lambda: cc.conv_forward(x, w, b, {"padding": 1}),
        "conv_param type": lambda: cc.conv_forward(x, w, b, [("stride", 1)]),
    }
    return calls[kind]


@pytest.mark.parametrize(
    "kind, exc, match",
    [
        ("x ndim", ValueError, r"x must be 4-D \(N, C, H, W\), got shape \(4, 6, 6\)"),
        ("w ndim", ValueError, r"w must be 4-D .* got shape \(4, 3, 3\)"),
        ("channels", ValueError, r"x has C=4 channels but w of shape \(2, 3, 3, 3\) expects"),
        ("groups C", ValueError, r"groups=3 must divide both the input channels C=4"),
        ("groups F", ValueError, r"groups=2 must divide .* filters F=3"),
        ("bias", ValueError, r"b must have shape \(F,\) = \(2,\), got \(3,\)"),
        ("bias 2d", ValueError, r"b must have shape \(F,\) = \(2,\), got \(2, 1\)"),
        ("stride", ValueError, r"stride must be >= 1, got 0"),
        ("dilation", ValueError, r"dilation must be >= 1, got 0"),
        ("padding", ValueError, r"padding must be >= 0, got -2"),
        ("float stride", TypeError, r"stride must be an int, got 1.5"),
        ("bool padding", TypeError, r"padding must be an int, got True"),
        ("padding string", ValueError, r"padding must be .*'valid' or 'same', got 'full'"),
        ("kernel too large", ValueError, r"kernel spans 9 rows .* padded input has only 6 rows"),
        ("dilated too large", ValueError, r"kernel spans 7 rows \(kernel_size 3, dilation 3\)"),
        ("complex", TypeError, r"real numeric arrays only, got dtype complex128"),
        ("object", TypeError, r"real numeric arrays only, got dtype object"),
        ("string", TypeError, r"real numeric arrays only, got dtype <U"),
        (
            "dy shape",
            ValueError,
            r"dy has shape \(1, 2, 3, 3\) but the forward output had shape \(1, 2, 4, 4\)",
        ),
        ("cache", TypeError, r"cache must come from conv2d_forward, got tuple"),
        ("conv_param stride", ValueError, r"conv_param\['stride'\] must be >= 1, got 0"),
        ("conv_param pad", ValueError, r"conv_param\['pad'\] must be >= 0, got -1"),
        ("conv_param float", TypeError, r"conv_param\['stride'\] must be an int, got 2.0"),
        ("conv_param key", ValueError, r"conv_param has unknown keys \['padding'\]"),
        ("conv_param type", TypeError, r"conv_param must be a dict, got list"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(kind, exc, match):
    with pytest.raises(exc, match=match):
        _bad(kind)()


def test_conv_forward_is_the_naive_drop_in():
    x, w, b = _arrays()
    out, cache = cc.conv_forward(x, w, b, {"stride": 2, "pad": 1})
    want, wcache = reference.conv2d_forward(x, w, b, stride=2, padding=1)
    assert max_rel_err(out, want) <= 1e-12
    dout = np.ones_like(out)
    for g, r in zip(cc.conv_backward(dout, cache), reference.conv2d_backward(dout, wcache)):
        assert max_rel_err(g, r) <= 1e-12
    default, _ = cc.conv_forward(x, w, b, {})
    np.testing.assert_array_equal(default, cc.conv2d(x, w, b))


def test_nan_at_the_edge_stays_local():
    x = np.zeros((1, 1, 6, 6))
    x[0, 0, 0, 5] = np.nan
    y = cc.conv2d(x, np.ones((1, 1, 3, 3)), padding=1)
    assert np.isnan(y[0, 0, :2, 4:]).all()
    assert np.isfinite(np.delete(y[0, 0], np.s_[4:], axis=1)).all() and np.isfinite(y[0, 0, 2:]).all()


def test_workspace_chunks_agree_with_a_single_chunk():
    x, w, b = _arrays(shape=(7, 3, 9, 9))
    whole = _fwd_bwd(x, w, b, padding=1)
    old = cc.set_workspace_limit(1)  # one image per chunk
    try:
        chunked = _fwd_bwd(x, w, b, padding=1)
    finally:
        cc.set_workspace_limit(old)
    for g, r in zip(chunked, whole):
        assert max_rel_err(g, r) <= 1e-12


@pytest.mark.parametrize("shape", [(2, 4, 0, 6), (2, 4, 6, 0)])
def test_empty_images_are_refused(shape):
    with pytest.raises(ValueError, match=r"x must have a non-empty height and width, got shape"):
        cc.conv2d(np.ones(shape), np.ones((6, 4, 3, 3)), padding=2)


@pytest.mark.parametrize(
    "x_shape, w_shape, dtype, opts, want",
    [
        ((1, 1, 3, 3), (1, 1, 2, 2), np.float64, {}, "tiny"),
        ((8, 64, 56, 56), (64, 1, 3, 3), np.float32, dict(padding=1, groups=64), "depthwise"),
        ((8, 64, 56, 56), (64, 64, 3, 3), np.float32, dict(padding=1), "winograd_cl"),  # 64 channels
        ((16, 16, 64, 64), (16, 16, 3, 3), np.float32, dict(padding=1), "winograd"),  # 16, wide
        ((16, 32, 28, 28), (64, 32, 3, 3), np.float32, dict(padding=1), "winograd_cl"),  # 32 channels
        ((16, 64, 28, 28), (16, 64, 3, 3), np.float32, dict(padding=1), "winograd"),  # 16 filters
        ((8, 64, 56, 56), (64, 64, 3, 3), np.float64, dict(padding=1), "winograd"),  # wide
        ((1, 256, 16, 16), (256, 256, 3, 3), np.float64, dict(padding=1), "gemm"),  # an image a thread
        ((64, 32, 16, 16), (64, 32, 3, 3), np.float64, dict(padding=1), "winograd_cl"),  # narrow
        ((64, 32, 16, 16), (64, 32, 3, 3), np.float32, dict(padding=1), "winograd_cl"),
        ((8, 512, 7, 7), (512, 512, 3, 3), np.float64, dict(padding=1), "winograd_cl"),
        ((8, 512, 7, 7), (512, 512, 3, 3), np.float32, dict(padding=1), "channels_last"),  # 392 positions
        ((16, 64, 28, 28), (64, 64, 3, 3), np.float64, dict(padding=1), "winograd"),  # 28 wide
        ((16, 32, 16, 16), (32, 32, 3, 3), np.float32, dict(padding=1), "channels_last"),  # small
        ((8, 16, 32, 32), (16, 16, 3, 3), np.float64, dict(padding=1), "gemm"),  # small
        ((1, 128, 56, 56), (128, 128, 3, 3), np.float64, dict(padding=1), "winograd"),  # batch 1, wide
        ((1, 128, 28, 28), (128, 128, 3, 3), np.float64, dict(padding=1), "gemm"),  # batch 1, narrow
        ((64, 3, 32, 32), (32, 3, 3, 3), np.float64, dict(padding=1), "gemm"),  # 3 channels
        ((8, 64, 56, 56), (64, 64, 3, 3), np.float64, dict(stride=2), "gemm"),
        ((8, 64, 56, 56), (64, 32, 3, 3), np.float64, dict(groups=2), "winograd"),  # 32 a group
        ((16, 64, 56, 56), (64, 8, 3, 3), np.float32, dict(padding=1, groups=8), "gemm"),  # 8 a group
        ((8, 64, 56, 56), (64, 64, 3, 3), np.float64, dict(dilation=2), "gemm"),
        ((64, 64, 16, 16), (128, 64, 3, 3), np.float32, dict(stride=2, padding=1), "channels_last"),
        ((16, 12, 37, 29), (24, 12, 5, 5), np.float32, dict(stride=3, padding=2), "channels_last"),
        ((64, 64, 16, 16), (128, 64, 3, 3), np.float64, dict(stride=2, padding=1), "gemm"),  # float64
        ((16, 32, 32, 32), (32, 32, 3, 3), np.float32, dict(padding=2, dilation=2), "gemm"),  # wide rows
        ((64, 3, 16, 16), (32, 3, 3, 3), np.float32, dict(padding=1), "gemm"),  # 3 channels
        ((64, 32, 16, 16), (64, 16, 3, 3), np.float32, dict(padding=1, groups=2), "gemm"),
        ((8, 32, 56, 56), (64, 1, 3, 3), np.float32, dict(padding=1, groups=32), "depthwise"),  # 2 a channel
        ((64, 1, 28, 28), (6, 1, 5, 5), np.float64, {}, "depthwise"),  # 6 x 25 = 150
        ((8, 16, 32, 32), (128, 1, 5, 5), np.float64, dict(padding=2, groups=16), "depthwise"),  # 200
        ((64, 1, 28, 28), (12, 1, 5, 5), np.float64, {}, "gemm"),  # 300
        ((7, 1, 28, 28), (6, 1, 5, 5), np.float64, {}, "gemm"),  # 7 images
        ((32, 1, 64, 64), (8, 1, 3, 3), np.float32, dict(stride=2), "gemm"),  # 8 x 9 x 4 phases
        ((4, 1, 224, 224), (8, 1, 3, 3), np.float32, dict(padding=1), "gemm"),  # small batch
    ],
)
def test_strategy_choice(x_shape, w_shape, dtype, opts, want, monkeypatch):
    monkeypatch.setattr(_threads, "_THREADS", 2)  # as on the machine the conditions were measured on
    geo = conv_geometry(x_shape, w_shape, **{"stride": 1, "padding": 0, "dilation": 1, "groups": 1, **opts})
    assert conv._strategy(geo, dtype) == want


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # inf * 0, as in the direct sum
@pytest.mark.parametrize("path", ENGINE_PATHS)
@given(
    cfg=conv_configs(),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([np.float32, np.float64]),
    where=st.lists(st.sampled_from(["x", "w", "b", "dy"]), min_size=1, max_size=3),
    values=st.lists(st.sampled_from([np.inf, -np.inf, np.nan]), min_size=3, max_size=3),
)
def test_a_nan_or_an_infinity_gives_what_the_direct_sum_gives(path, cfg, seed, dtype, where, values):
    # the padding's zeros included: 0 * inf is NaN in the direct sum (see the Winograd
    # engines' own tests for theirs); up to three values, so infinities of both signs meet
    x, w, b = arrays_for(cfg, seed, dtype)
    rng = np.random.default_rng(seed)
    dy = rng.standard_normal(reference.conv2d_forward(x, w, **cfg["opts"])[0].shape).astype(dtype)
    for name, value in zip(where, values):
        a = dict(x=x, w=w, b=b, dy=dy)[name]
        if a is not None:
            a[tuple(rng.integers(0, n) for n in a.shape)] = value
    want = reference_passes(x, w, b, dy, **cfg["opts"])
    with engine_path(path):
        y, cache = cc.conv2d_forward(x, w, b, **cfg["opts"])
        got = (y, *cc.conv2d_backward(dy, cache))
    assert_same_non_finite(got, want)
