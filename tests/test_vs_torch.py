"""Agreement with torch's conv2d, unfold and fold when torch happens to be installed."""

import numpy as np
import pytest

import convcore as cc

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.mark.parametrize(
    "opts",
    [
        dict(stride=1, padding=0),
        dict(stride=2, padding=1),
        dict(stride=(1, 2), padding=(2, 1), dilation=(2, 1)),
        dict(padding=1, groups=4),
        dict(padding="same", dilation=2),
    ],
)
def test_conv2d_and_gradients_match_torch(opts):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 11, 9))
    w = rng.standard_normal((8, 4 // opts.get("groups", 1), 3, 3))
    b = rng.standard_normal(8)
    y, cache = cc.conv2d_forward(x, w, b, **opts)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = cc.conv2d_backward(dy, cache)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = F.conv2d(xt, wt, bt, **opts)
    yt.backward(torch.tensor(dy))
    for ours, theirs in [(y, yt), (dx, xt.grad), (dw, wt.grad), (db, bt.grad)]:
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-10)


def test_im2col_col2im_match_unfold_fold():
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 7))
    opts = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2))
    cols = cc.im2col(x, (3, 2), **opts)
    np.testing.assert_array_equal(cols, F.unfold(torch.tensor(x), (3, 2), **opts).numpy())
    np.testing.assert_allclose(
        cc.col2im(cols, (8, 7), (3, 2), **opts),
        F.fold(torch.tensor(cols), (8, 7), (3, 2), **opts).numpy(),
        rtol=1e-12,
    )
