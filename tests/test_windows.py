import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convcore as cc
from convcore._geometry import window_geometry

from naive import unfold
from strategies import window_cases


def test_im2col_hand_example():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    np.testing.assert_array_equal(
        cc.im2col(x, 2)[0], [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]]
    )


def test_im2col_zero_padding_reads_zero():
    cols = cc.im2col(np.ones((1, 1, 2, 2)), 3, padding=1)
    # window at (0, 0) covers the padded 4x4 corner: 4 ones out of 9
    assert cols.shape == (1, 9, 4)
    np.testing.assert_array_equal(cols[0, :, 0], [0, 0, 0, 0, 1, 1, 0, 1, 1])


@given(window_cases(), st.integers(0, 2**16))
def test_im2col_matches_loops(case, seed):
    shape, opts = case
    x = np.random.default_rng(seed).standard_normal(shape)
    geo = window_geometry(shape, **opts)
    np.testing.assert_array_equal(cc.im2col(x, **opts), unfold(x, geo))


@given(window_cases(), st.integers(0, 2**16))
def test_col2im_is_the_adjoint_of_im2col(case, seed):
    shape, opts = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    cols = cc.im2col(x, **opts)
    c = rng.standard_normal(cols.shape)
    lhs = np.vdot(cols, c)
    rhs = np.vdot(x, cc.col2im(c, shape[2:], **opts))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, np.abs(cols).sum() * np.abs(c).max())


def test_col2im_counts_overlaps():
    np.testing.assert_array_equal(
        cc.col2im(np.ones((1, 4, 4)), (3, 3), 2)[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_window_functions_keep_float_dtype(dtype):
    x = np.ones((1, 2, 4, 4), dtype)
    cols = cc.im2col(x, 3)
    assert cols.dtype == dtype and cc.col2im(cols, 4, 3).dtype == dtype


def test_im2col_of_a_non_contiguous_view():
    base = np.random.default_rng(0).standard_normal((2, 3, 10, 12))
    view = base[:, ::-1, 1::2, ::3]
    np.testing.assert_array_equal(cc.im2col(view, 2), cc.im2col(view.copy(), 2))


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (
            lambda: cc.im2col(np.ones((3, 4, 4)), 2),
            ValueError,
            r"x must be 4-D \(N, C, H, W\), got shape \(3, 4, 4\)",
        ),
        (lambda: cc.im2col(np.ones((1, 1, 4, 4)), 0), ValueError, r"kernel_size must be >= 1, got 0"),
        (lambda: cc.im2col(np.ones((1, 1, 4, 4), complex), 2), TypeError, r"real numeric"),
        (
            lambda: cc.col2im(np.ones((1, 5, 4)), 3, 2),
            ValueError,
            r"cols.shape\[1\]=5 is not a multiple of KH\*KW=4",
        ),
        (
            lambda: cc.col2im(np.ones((1, 4, 5)), 3, 2),
            ValueError,
            r"cols.shape\[2\]=5 does not match the 2x2=4",
        ),
        (lambda: cc.col2im(np.ones((4, 4)), 3, 2), ValueError, r"cols must be 3-D"),
        (lambda: cc.col2im(np.ones((1, 4, 4)), 1.5, 2), TypeError, r"output_size must be an int, got 1.5"),
    ],
)
def test_window_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_empty_batch_gives_empty_columns():
    cols = cc.im2col(np.ones((0, 3, 5, 5)), 2)
    assert cols.shape == (0, 12, 16)
    assert cc.col2im(cols, 5, 2).shape == (0, 3, 5, 5)
