"""Agreement with torch's padding modes, conv_transpose2d, pooling and layer initialisation
when torch happens to be installed."""

import math

import numpy as np
import pytest

import convcore as cc

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _grads(tensors):
    return [t.grad.numpy() for t in tensors]


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize(
    "opts", [dict(padding=2), dict(padding=(1, 2), stride=(2, 1), dilation=(1, 2), groups=2)]
)
def test_padding_modes_match_torch(mode, opts):
    rng = np.random.default_rng(0)
    x, b = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal(6)
    conv = torch.nn.Conv2d(4, 6, 3, bias=True, padding_mode=mode, **opts).double()
    w = conv.weight.detach().numpy().copy()
    conv.bias.data = torch.tensor(b)
    y, cache = cc.conv2d_forward(x, w, b, padding_mode=mode, **opts)
    dy = rng.standard_normal(y.shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = conv(xt)
    yt.backward(torch.tensor(dy))
    want = [yt.detach().numpy(), xt.grad.numpy(), conv.weight.grad.numpy(), conv.bias.grad.numpy()]
    for ours, theirs in zip((y, *cc.conv2d_backward(dy, cache)), want):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "opts",
    [
        dict(),
        dict(stride=2, padding=1, output_padding=1),
        dict(stride=(3, 2), padding=(2, 0), output_padding=(2, 1), dilation=(1, 2), groups=2),
        dict(stride=1, dilation=3, output_padding=2),
    ],
)
def test_conv_transpose2d_matches_torch(opts):
    rng = np.random.default_rng(0)
    g = opts.get("groups", 1)
    x, w, b = (
        rng.standard_normal((2, 4, 5, 6)),
        rng.standard_normal((4, 6 // g, 3, 2)),
        rng.standard_normal(6),
    )
    y, cache = cc.conv_transpose2d_forward(x, w, b, **opts)
    dy = rng.standard_normal(y.shape)
    ts = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    yt = F.conv_transpose2d(*ts, **opts)
    yt.backward(torch.tensor(dy))
    for ours, theirs in zip(
        (y, *cc.conv_transpose2d_backward(dy, cache)), [yt.detach().numpy(), *_grads(ts)]
    ):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)


POOL_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 1), ceil_mode=True),
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=(2, 3), stride=(3, 1), ceil_mode=True),
]


@pytest.mark.parametrize("size", [(7, 8), (5, 5), (6, 9)])
@pytest.mark.parametrize(
    "opts", POOL_CASES + [dict(kernel_size=(3, 2), stride=2, padding=1, dilation=(2, 1))]
)
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool2d_matches_torch_with_and_without_ties(size, opts, ties):
    rng = np.random.default_rng(0)
    shape = (2, 3, *size)
    x = rng.integers(-1, 2, shape).astype(np.float64) if ties else rng.standard_normal(shape)
    y, cache = cc.max_pool2d_forward(x, **opts)
    dy = rng.standard_normal(y.shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = F.max_pool2d(xt, **opts)
    yt.backward(torch.tensor(dy))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_allclose(cc.max_pool2d_backward(dy, cache), xt.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size", [(7, 8), (5, 5), (6, 9)])
@pytest.mark.parametrize("opts", POOL_CASES)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool2d_matches_torch(size, opts, count_include_pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, *size))
    y, cache = cc.avg_pool2d_forward(x, **opts, count_include_pad=count_include_pad)
    dy = rng.standard_normal(y.shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = F.avg_pool2d(xt, **opts, count_include_pad=count_include_pad)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cc.avg_pool2d_backward(dy, cache), xt.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda: cc.Conv2D(6, 8, (3, 5), groups=2, rng=0), lambda: torch.nn.Conv2d(6, 8, (3, 5), groups=2)),
        (
            lambda: cc.ConvTranspose2D(6, 8, 3, groups=2, rng=0),
            lambda: torch.nn.ConvTranspose2d(6, 8, 3, groups=2),
        ),
    ],
)
def test_initialisation_bounds_match_torch(ours, theirs):
    # torch's default init is U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and bias;
    # the largest of many draws approaches the bound
    torch.manual_seed(0)
    t = theirs()
    mine = ours()
    assert mine.params["w"].shape == tuple(t.weight.shape)
    for key, tensor in (("w", t.weight), ("b", t.bias)):
        fan_in = t.weight.shape[1] * math.prod(t.weight.shape[2:])
        bound = 1 / math.sqrt(fan_in)
        assert tensor.abs().max().item() <= bound
        assert np.abs(mine.params[key]).max() <= bound
    assert np.abs(mine.params["w"]).max() > 0.9 * t.weight.abs().max().item()
