"""The bias add and its gradient against NumPy: whole arrays, bands of rows, ranges of images."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convcore._bias import add_bias, bias_grad

DTYPES = [np.float32, np.float64]


@st.composite
def blocks(draw):
    """An NCHW shape and a range of images and of output rows inside it."""
    shape = tuple(draw(st.integers(1, n)) for n in (4, 5, 9, 40))
    n0 = draw(st.integers(0, shape[0] - 1))
    oh0 = draw(st.integers(0, shape[2] - 1))
    return shape, (n0, draw(st.integers(n0 + 1, shape[0]))), (oh0, draw(st.integers(oh0 + 1, shape[2])))


@pytest.mark.parametrize("dtype", DTYPES)
@given(block=blocks())
def test_add_bias_adds_to_the_block_only(dtype, block):
    shape, (n0, n1), (oh0, oh1) = block
    rng = np.random.default_rng(0)
    y, b = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
    want = y.copy()
    want[n0:n1, :, oh0:oh1] += b[:, None, None]
    add_bias(y, b, (n0, n1), (oh0, oh1))
    assert np.array_equal(y, want)  # one addition per element: exact


@pytest.mark.parametrize("dtype", DTYPES)
@given(block=blocks())
def test_bias_grad_adds_the_block_sum(dtype, block):
    shape, (n0, n1), (oh0, oh1) = block
    rng = np.random.default_rng(1)
    dy = rng.standard_normal(shape).astype(dtype)
    start = rng.standard_normal(shape[1]).astype(dtype)
    got = bias_grad(dy, start.copy(), (n0, n1), (oh0, oh1))
    block64 = dy[n0:n1, :, oh0:oh1].astype(np.float64)
    want = start + block64.sum(axis=(0, 2, 3))
    magnitude = np.abs(start) + np.abs(block64).sum(axis=(0, 2, 3))
    assert np.all(np.abs(got - want) <= 8 * np.finfo(dtype).eps * magnitude)


def test_bias_grad_of_integers_is_exact():
    # integer values below 2**24 add exactly in float32, whatever the order
    dy = np.arange(2 * 3 * 5 * 7, dtype=np.float32).reshape(2, 3, 5, 7)
    got = bias_grad(dy, np.zeros(3, np.float32))
    assert np.array_equal(got, dy.astype(np.int64).sum(axis=(0, 2, 3)))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 17, 100, 1023])
def test_the_sum_covers_every_element_once(n):
    # distinct powers of two (or small integers) add exactly in any order
    a = 2.0 ** np.arange(n) if n < 50 else np.arange(n, dtype=np.float64)
    assert bias_grad(a.reshape(1, 1, 1, n), np.zeros(1))[0] == a.sum()
    band = np.append(a, np.nan).reshape(1, 1, n + 1, 1)  # the last row is left out
    assert bias_grad(band, np.zeros(1), rows=(0, n))[0] == a.sum()


def test_nan_reaches_only_its_filter():
    dy = np.ones((2, 3, 4, 4))
    dy[1, 2, 3, 3] = np.nan  # at the last position of the last image
    got = bias_grad(dy, np.zeros(3))
    assert np.isnan(got[2]) and np.array_equal(got[:2], [32.0, 32.0])


@pytest.mark.parametrize("images, rows", [((0, 3), None), ((1, 0), None), (None, (0, 5)), (None, (-1, 2))])
def test_ranges_outside_the_array_are_refused(images, rows):
    with pytest.raises(ValueError, match="must lie within shape"):
        add_bias(np.zeros((2, 3, 4, 4)), np.zeros(3), images, rows)
    with pytest.raises(ValueError, match="must lie within shape"):
        bias_grad(np.zeros((2, 3, 4, 4)), np.zeros(3), images, rows)


def test_arrays_must_be_contiguous():
    with pytest.raises(ValueError, match="C-contiguous"):
        add_bias(np.zeros((2, 3, 4, 8))[..., ::2], np.zeros(3))
    with pytest.raises(ValueError, match="C-contiguous"):
        bias_grad(np.zeros((2, 3, 4, 4)), np.zeros(6)[::2])
