"""The seeds' worked examples, as hand-derived expectations (not computed by convcore)."""

import numpy as np
import pytest

import convcore as cc

# distinct, exactly representable values so every sum below is exact in float64
X3 = np.array([[2.0, 3.0, 5.0], [7.0, 11.0, 13.0], [17.0, 19.0, 23.0]])
F2 = np.array([[0.5, -1.0], [1.5, 2.0]])
DO2 = np.array([[1.0, -2.0], [0.25, 4.0]])


def _named(a, base=1):
    """{'11': a[0, 0], '12': a[0, 1], ...} with the seeds' 1-based (or 0-based) names."""
    return {f"{i + base}{j + base}": a[i, j] for i in range(a.shape[0]) for j in range(a.shape[1])}


@pytest.fixture(params=["conv2d_forward", "conv_forward"])
def seed_3x3(request):
    x, f = X3[None, None], F2[None, None]
    if request.param == "conv_forward":
        y, cache = cc.conv_forward(x, f, np.zeros(1), {"stride": 1, "pad": 0})
    else:
        y, cache = cc.conv2d_forward(x, f)
    dx, df, _ = cc.conv2d_backward(DO2[None, None], cache)
    return y[0, 0], dx[0, 0], df[0, 0]


def test_seed03_3x3_forward(seed_3x3):
    X, F = _named(X3), _named(F2)
    O = np.array(
        [
            [
                X["11"] * F["11"] + X["12"] * F["12"] + X["21"] * F["21"] + X["22"] * F["22"],
                X["12"] * F["11"] + X["13"] * F["12"] + X["22"] * F["21"] + X["23"] * F["22"],
            ],
            [
                X["21"] * F["11"] + X["22"] * F["12"] + X["31"] * F["21"] + X["32"] * F["22"],
                X["22"] * F["11"] + X["23"] * F["12"] + X["32"] * F["21"] + X["33"] * F["22"],
            ],
        ]
    )
    np.testing.assert_array_equal(seed_3x3[0], O)


def test_seed03_3x3_input_gradient(seed_3x3):
    F, dO = _named(F2), _named(DO2)
    dX = np.array(
        [
            [dO["11"] * F["11"], dO["11"] * F["12"] + dO["12"] * F["11"], dO["12"] * F["12"]],
            [
                dO["11"] * F["21"] + dO["21"] * F["11"],
                dO["11"] * F["22"] + dO["12"] * F["21"] + dO["21"] * F["12"] + dO["22"] * F["11"],
                dO["12"] * F["22"] + dO["22"] * F["12"],
            ],
            [dO["21"] * F["21"], dO["21"] * F["22"] + dO["22"] * F["21"], dO["22"] * F["22"]],
        ]
    )
    np.testing.assert_array_equal(seed_3x3[1], dX)


def test_seed03_3x3_filter_gradient(seed_3x3):
    X, dO = _named(X3), _named(DO2)
    dF = np.array(
        [
            [
                dO["11"] * X["11"] + dO["12"] * X["12"] + dO["21"] * X["21"] + dO["22"] * X["22"],
                dO["11"] * X["12"] + dO["12"] * X["13"] + dO["21"] * X["22"] + dO["22"] * X["23"],
            ],
            [
                dO["11"] * X["21"] + dO["12"] * X["22"] + dO["21"] * X["31"] + dO["22"] * X["32"],
                dO["11"] * X["22"] + dO["12"] * X["23"] + dO["21"] * X["32"] + dO["22"] * X["33"],
            ],
        ]
    )
    np.testing.assert_array_equal(seed_3x3[2], dF)


X5 = np.arange(1.0, 26.0).reshape(5, 5) ** 1.5 // 1  # 25 distinct integers
F3 = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.5], [2.5, -3.0, 0.25]])
DY2 = np.array([[1.5, -0.5], [2.0, 3.0]])


@pytest.fixture
def seed_5x5():
    y, cache = cc.conv2d_forward(X5[None, None], F3[None, None], stride=2)
    dx, df, _ = cc.conv2d_backward(DY2[None, None], cache)
    return y[0, 0], dx[0, 0], df[0, 0]


def test_seed03_stride2_forward(seed_5x5):
    x, f = _named(X5, 0), _named(F3, 0)

    def window(r, c):  # y_rc = sum_{m,n} x_{2r+m, 2c+n} f_{mn}, as the slides expand it
        return sum(x[f"{2 * r + m}{2 * c + n}"] * f[f"{m}{n}"] for m in range(3) for n in range(3))

    y00 = (
        x["00"] * f["00"]
        + x["01"] * f["01"]
        + x["02"] * f["02"]
        + x["10"] * f["10"]
        + x["11"] * f["11"]
        + x["12"] * f["12"]
        + x["20"] * f["20"]
        + x["21"] * f["21"]
        + x["22"] * f["22"]
    )
    y11 = (
        x["22"] * f["00"]
        + x["23"] * f["01"]
        + x["24"] * f["02"]
        + x["32"] * f["10"]
        + x["33"] * f["11"]
        + x["34"] * f["12"]
        + x["42"] * f["20"]
        + x["43"] * f["21"]
        + x["44"] * f["22"]
    )
    assert seed_5x5[0][0, 0] == y00 and seed_5x5[0][1, 1] == y11
    np.testing.assert_array_equal(seed_5x5[0], [[window(0, 0), window(0, 1)], [window(1, 0), window(1, 1)]])


def test_seed03_stride2_input_gradient(seed_5x5):
    f, dy = _named(F3, 0), _named(DY2, 0)
    dx = seed_5x5[1]
    assert dx[0, 0] == dy["00"] * f["00"]
    assert dx[0, 1] == dy["00"] * f["01"]
    assert dx[0, 2] == dy["00"] * f["02"] + dy["01"] * f["00"]
    # the slide prints f20 for the third term; x22 is tap (0, 2) of window y10
    assert dx[2, 2] == dy["00"] * f["22"] + dy["01"] * f["20"] + dy["10"] * f["02"] + dy["11"] * f["00"]
    # rows and columns 3, 4 are reached only by windows y1*, y*1
    assert dx[4, 4] == dy["11"] * f["22"]
    assert dx[3, 0] == dy["10"] * f["10"]


def test_seed03_stride2_filter_gradient(seed_5x5):
    x, dy = _named(X5, 0), _named(DY2, 0)
    df = seed_5x5[2]
    assert df[0, 0] == dy["00"] * x["00"] + dy["01"] * x["02"] + dy["10"] * x["20"] + dy["11"] * x["22"]
    assert df[2, 2] == dy["00"] * x["22"] + dy["01"] * x["24"] + dy["10"] * x["42"] + dy["11"] * x["44"]


def test_unreached_rows_get_zero_gradient():
    # 6x6 input, 3x3 kernel, stride 2: output 2x2 covers rows/cols 0..4; row/col 5 unreached
    y, cache = cc.conv2d_forward(np.ones((1, 1, 6, 6)), np.ones((1, 1, 3, 3)), stride=2)
    dx = cc.conv2d_backward(np.ones_like(y), cache)[0][0, 0]
    assert y.shape == (1, 1, 2, 2)
    np.testing.assert_array_equal(dx[5, :], 0)
    np.testing.assert_array_equal(dx[:, 5], 0)
    np.testing.assert_array_equal(
        dx[:5, :5], [[1, 1, 2, 1, 1]] * 2 + [[2, 2, 4, 2, 2]] + [[1, 1, 2, 1, 1]] * 2
    )
