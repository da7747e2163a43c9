import math

import numpy as np
import pytest

import convcore as cc


def test_conv2d_layer_forward_backward_match_the_functions():
    conv = cc.Conv2D(3, 4, 3, stride=2, padding=1, padding_mode="reflect", dtype=np.float64, rng=0)
    x = np.random.default_rng(1).standard_normal((2, 3, 7, 6))
    y = conv(x)
    want, cache = cc.conv2d_forward(
        x, conv.params["w"], conv.params["b"], stride=2, padding=1, padding_mode="reflect"
    )
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(conv.forward(x), want)
    dy = np.random.default_rng(2).standard_normal(y.shape)
    dx = conv.backward(dy)
    for got, ref in zip((dx, conv.grads["w"], conv.grads["b"]), cc.conv2d_backward(dy, cache)):
        np.testing.assert_array_equal(got, ref)


def test_conv_transpose_layer_forward_backward_match_the_functions():
    up = cc.ConvTranspose2D(4, 6, (3, 2), stride=2, padding=1, output_padding=1, groups=2, rng=0)
    assert up.params["w"].shape == (4, 3, 3, 2) and up.params["b"].shape == (6,)
    x = np.random.default_rng(1).standard_normal((2, 4, 5, 5)).astype(np.float32)
    y = up(x)
    want, cache = cc.conv_transpose2d_forward(
        x, up.params["w"], up.params["b"], stride=2, padding=1, output_padding=1, groups=2
    )
    np.testing.assert_array_equal(y, want)
    dy = np.ones_like(y)
    dx = up.backward(dy)
    for got, ref in zip((dx, up.grads["w"], up.grads["b"]), cc.conv_transpose2d_backward(dy, cache)):
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize(
    "layer, forward, backward",
    [
        (cc.MaxPool2D(3, stride=2, padding=1, ceil_mode=True), cc.max_pool2d_forward, cc.max_pool2d_backward),
        (cc.AvgPool2D(2, count_include_pad=False), cc.avg_pool2d_forward, cc.avg_pool2d_backward),
    ],
)
def test_pool_layers_match_the_functions(layer, forward, backward):
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 6))
    o = layer.options
    kwargs = dict(stride=o.stride, padding=o.padding, ceil_mode=o.ceil_mode)
    kwargs.update(dilation=o.dilation) if isinstance(layer, cc.MaxPool2D) else kwargs.update(
        count_include_pad=False
    )
    want, cache = forward(x, o.kernel_size, **kwargs)
    np.testing.assert_array_equal(layer(x), want)
    dy = np.random.default_rng(1).standard_normal(want.shape)
    np.testing.assert_array_equal(layer.backward(dy), backward(dy, cache))
    assert layer.params == {} and layer.grads == {}


@pytest.mark.parametrize(
    "make, fan_in, w_shape",
    [
        (lambda rng: cc.Conv2D(8, 16, 3, rng=rng), 8 * 9, (16, 8, 3, 3)),
        (lambda rng: cc.Conv2D(8, 16, (5, 3), groups=4, rng=rng), 2 * 15, (16, 2, 5, 3)),
        (lambda rng: cc.ConvTranspose2D(8, 16, 3, rng=rng), 16 * 9, (8, 16, 3, 3)),
        (lambda rng: cc.ConvTranspose2D(8, 16, 3, groups=2, rng=rng), 8 * 9, (8, 8, 3, 3)),
    ],
)
def test_kaiming_uniform_initialisation(make, fan_in, w_shape):
    layer = make(0)
    w, b = layer.params["w"], layer.params["b"]
    bound = 1 / math.sqrt(fan_in)
    assert w.shape == w_shape and w.dtype == np.float32
    # U(-bound, bound): inside the bound, reaching close to it, mean ~0, variance bound**2 / 3
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert abs(w.mean()) < 0.1 * bound
    assert abs(w.var() / (bound**2 / 3) - 1) < 0.15
    assert np.abs(b).max() <= bound and b.dtype == np.float32
    np.testing.assert_array_equal(make(0).params["w"], w)  # reproducible from a seed
    assert not np.array_equal(make(1).params["w"], w)
    np.testing.assert_array_equal(make(np.random.default_rng(0)).params["w"], w)
    assert all(not g.any() for g in layer.grads.values())


def test_parameters_are_updated_in_place_by_an_optimiser():
    conv = cc.Conv2D(1, 1, 3, padding=1, dtype=np.float64, rng=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1, 6, 6))
    target = cc.conv2d(x, np.full((1, 1, 3, 3), 0.1), np.array([0.5]), padding=1)
    w_array, grad_array = conv.params["w"], conv.grads["w"]
    losses = []
    for _ in range(300):
        err = conv(x) - target
        losses.append(float(np.mean(err**2)))
        conv.backward(2 * err / err.size)
        for k in conv.params:
            conv.params[k] -= 0.5 * conv.grads[k]
    assert conv.params["w"] is w_array and conv.grads["w"] is grad_array
    assert losses[-1] < 1e-6 * losses[0]
    np.testing.assert_allclose(conv.params["w"], 0.1, atol=1e-3)


def test_no_bias_and_float64():
    conv = cc.Conv2D(2, 3, 1, bias=False, dtype="float64", rng=0)
    assert set(conv.params) == set(conv.grads) == {"w"} and conv.params["w"].dtype == np.float64
    y = conv(np.ones((1, 2, 4, 4)))
    conv.backward(np.ones_like(y))
    assert set(conv.grads) == {"w"}


def test_grads_keep_the_parameter_dtype():
    conv = cc.Conv2D(2, 3, 3, rng=0)  # float32 parameters
    y = conv(np.ones((1, 2, 4, 4)))  # float64 input promotes the output
    assert y.dtype == np.float64
    conv.backward(np.ones_like(y))
    assert conv.grads["w"].dtype == conv.grads["b"].dtype == np.float32


def test_reprs():
    assert repr(cc.Conv2D(3, 8, 3, padding=1, rng=0)) == (
        "Conv2D(3, 8, kernel_size=(3, 3), stride=1, padding=1, dilation=1, groups=1, "
        "padding_mode='zeros', bias=True, dtype=float32)"
    )
    assert repr(cc.ConvTranspose2D(4, 2, 3, stride=2, bias=False, rng=0)) == (
        "ConvTranspose2D(4, 2, kernel_size=(3, 3), stride=(2, 2), padding=(0, 0, 0, 0), "
        "output_padding=(0, 0), dilation=(1, 1), groups=1, bias=False, dtype=float32)"
    )
    assert repr(cc.MaxPool2D(2)) == (
        "MaxPool2D(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1), ceil_mode=False)"
    )
    assert repr(cc.AvgPool2D(3, stride=1, padding=1, count_include_pad=False)) == (
        "AvgPool2D(kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), ceil_mode=False, count_include_pad=False)"
    )


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (
            lambda: cc.Conv2D(3, 4, 3, rng=0)(np.ones((1, 2, 5, 5))),
            ValueError,
            r"Conv2D expects x with 3 channels, got x of shape \(1, 2, 5, 5\)",
        ),
        (
            lambda: cc.ConvTranspose2D(3, 4, 3, rng=0)(np.ones((1, 4, 5, 5))),
            ValueError,
            r"ConvTranspose2D expects x with 3 channels",
        ),
        (
            lambda: cc.Conv2D(3, 4, 3, rng=0)(np.ones((3, 5, 5))),
            ValueError,
            r"x must be 4-D \(N, C, H, W\), got shape \(3, 5, 5\)",
        ),
        (
            lambda: cc.Conv2D(3, 4, 3, rng=0).backward(np.ones((1, 4, 3, 3))),
            RuntimeError,
            r"Conv2D.backward needs a forward pass first",
        ),
        (
            lambda: cc.MaxPool2D(2).backward(np.ones((1, 4, 3, 3))),
            RuntimeError,
            r"MaxPool2D.backward needs a forward pass",
        ),
        (lambda: cc.Conv2D(0, 4, 3), ValueError, r"in_channels must be >= 1, got 0"),
        (lambda: cc.Conv2D(3, 4.0, 3), TypeError, r"out_channels must be an int, got 4.0"),
        (
            lambda: cc.Conv2D(3, 4, 3, groups=2),
            ValueError,
            r"groups=2 must divide both in_channels=3 and out_channels=4",
        ),
        (lambda: cc.Conv2D(3, 4, (3, 0)), ValueError, r"kernel_size must be >= 1, got 0"),
        (lambda: cc.Conv2D(3, 4, 3, stride=0), ValueError, r"stride must be >= 1, got 0"),
        (lambda: cc.Conv2D(3, 4, 3, padding="full"), ValueError, r"padding must be .* got 'full'"),
        (lambda: cc.Conv2D(3, 4, 3, padding_mode="mirror"), ValueError, r"padding_mode must be one of"),
        (lambda: cc.Conv2D(3, 4, 3, bias=1), TypeError, r"bias must be a bool, got 1"),
        (
            lambda: cc.Conv2D(3, 4, 3, dtype=np.int32),
            TypeError,
            r"dtype must be float32 or float64, got int32",
        ),
        (
            lambda: cc.Conv2D(3, 4, 3, dtype=np.float16),
            TypeError,
            r"dtype must be float32 or float64, got float16",
        ),
        (
            lambda: cc.Conv2D(3, 4, 3, dtype="nonsense"),
            TypeError,
            r"dtype must be float32 or float64, got 'nonsense'",
        ),
        (
            lambda: cc.Conv2D(3, 4, 3, rng="seed"),
            TypeError,
            r"rng must be None, an int seed or a numpy Generator, got 'seed'",
        ),
        (
            lambda: cc.ConvTranspose2D(3, 4, 3, stride=2, output_padding=2),
            ValueError,
            r"output_padding=\(2, 2\) must be smaller",
        ),
        (
            lambda: cc.ConvTranspose2D(3, 4, 3, padding="same"),
            ValueError,
            r"padding must be an int, a pair or a pair of pairs",
        ),
        (
            lambda: cc.MaxPool2D(3, padding=2),
            ValueError,
            r"padding=\(2, 2\) must be at most half of kernel_size=\(3, 3\)",
        ),
        (
            lambda: cc.AvgPool2D(2, count_include_pad=None),
            TypeError,
            r"count_include_pad must be a bool, got None",
        ),
        (lambda: cc.MaxPool2D(2, ceil_mode="no"), TypeError, r"ceil_mode must be a bool, got 'no'"),
    ],
)
def test_bad_layer_arguments_are_refused(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_layers_are_exported():
    for name in ("Conv2D", "ConvTranspose2D", "MaxPool2D", "AvgPool2D"):
        assert name in cc.__all__ and hasattr(cc, name)


@pytest.mark.parametrize(
    "make",
    [lambda: cc.Conv2D(2, 3, 3, padding=1, rng=0), lambda: cc.ConvTranspose2D(2, 3, 3, stride=2, rng=0)],
)
def test_reusing_the_input_buffer_does_not_change_gradients(make):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 5, 5)).astype(np.float32)
    first, second = make(), make()
    dy = np.ones_like(first(x))
    first.backward(dy)
    second(x)
    x[...] = 0  # the caller recycles its buffer before the backward pass
    second.backward(dy)
    np.testing.assert_array_equal(second.grads["w"], first.grads["w"])
