import numpy as np
import pytest

from convcore import _geometry
from convcore._geometry import as_pair, conv_geometry, resolve_dtypes, window_geometry


@pytest.mark.parametrize(
    "H, K, s, d, p, expected",
    [
        (3, 2, 1, 1, 0, 2),  # seed 03, stride 1
        (5, 3, 2, 1, 0, 2),  # seed 03, stride 2
        (6, 3, 2, 1, 0, 2),  # (6-3)//2+1 = 2: floored, the last row is never reached
        (7, 3, 2, 1, 1, 4),
        (32, 3, 1, 1, 1, 32),
        (112, 7, 2, 1, 3, 56),
        (10, 3, 1, 3, 0, 4),  # dilated span 7
        (5, 5, 1, 1, 0, 1),  # kernel as large as the input
    ],
)
def test_output_size_is_floored(H, K, s, d, p, expected):
    g = window_geometry((1, 1, H, H), K, s, p, d)
    assert (g.OH, g.OW) == (expected, expected)


@pytest.mark.parametrize("H", range(1, 12))
@pytest.mark.parametrize("s", [1, 2, 3])
@pytest.mark.parametrize("K, d", [(1, 1), (2, 1), (3, 1), (3, 2), (4, 3)])
def test_same_padding_gives_ceil_of_size_over_stride(H, s, K, d):
    g = window_geometry((1, 1, H, H + 1), K, s, "same", d)
    assert g.OH == -(-H // s) and g.OW == -(-(H + 1) // s)
    assert g.pb - g.pt in (0, 1) and g.pr - g.pl in (0, 1)  # odd extra at bottom/right


def test_same_padding_puts_the_odd_row_at_the_bottom():
    g = window_geometry((1, 1, 5, 5), 4, 1, "same")
    assert (g.pt, g.pb, g.pl, g.pr) == (1, 2, 1, 2)


@pytest.mark.parametrize(
    "padding, pads",
    [
        (0, (0, 0, 0, 0)),
        (2, (2, 2, 2, 2)),
        ((1, 2), (1, 1, 2, 2)),
        (((0, 1), (2, 3)), (0, 1, 2, 3)),
        ("valid", (0, 0, 0, 0)),
        (np.int64(1), (1, 1, 1, 1)),
    ],
)
def test_padding_forms(padding, pads):
    g = window_geometry((1, 1, 8, 8), 3, 1, padding)
    assert (g.pt, g.pb, g.pl, g.pr) == pads


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(stride=0), ValueError, r"stride must be >= 1, got 0"),
        (dict(dilation=-1), ValueError, r"dilation must be >= 1, got -1"),
        (dict(padding=-1), ValueError, r"padding must be >= 0, got -1"),
        (dict(stride=1.5), TypeError, r"stride must be an int, got 1.5"),
        (dict(stride=True), TypeError, r"stride must be an int, got True"),
        (dict(padding="full"), ValueError, r"padding must be .* got 'full'"),
        (dict(stride=(1, 2, 3)), ValueError, r"stride must be an int or a pair"),
        (dict(kernel_size=9), ValueError, r"kernel spans 9 rows .* padded input has only 8 rows"),
        (dict(kernel_size=3, dilation=4), ValueError, r"spans 9 rows .*dilation 4"),
    ],
)
def test_bad_window_options(kwargs, exc, match):
    kwargs = {"kernel_size": 3, **kwargs}
    with pytest.raises(exc, match=match):
        window_geometry((1, 1, 8, 8), **kwargs)


def test_as_pair():
    assert as_pair(3, "k") == (3, 3)
    assert as_pair([1, 2], "k") == (1, 2)


@pytest.mark.parametrize(
    "x_shape, w_shape, groups, match",
    [
        ((1, 4, 5, 5), (2, 3, 3, 3), 1, r"x has C=4 channels but w .* expects"),
        ((1, 4, 5, 5), (2, 2, 3, 3), 3, r"groups=3 must divide both the input channels C=4"),
        ((1, 4, 5, 5), (3, 2, 3, 3), 2, r"groups=2 must divide .* filters F=3"),
        ((1, 4, 5, 5), (0, 4, 3, 3), 1, r"at least one filter"),
    ],
)
def test_bad_conv_shapes(x_shape, w_shape, groups, match):
    with pytest.raises(ValueError, match=match):
        conv_geometry(x_shape, w_shape, groups=groups)


@pytest.mark.parametrize(
    "dtypes, compute, out",
    [
        ((np.float32, np.float32), np.float32, np.float32),
        ((np.float64, np.float64), np.float64, np.float64),
        ((np.float32, np.float64), np.float64, np.float64),
        ((np.int32, np.int64), np.float64, np.float64),
        ((np.bool_, np.bool_), np.float64, np.float64),
        ((np.float16, np.float16), np.float32, np.float16),
        ((np.float16, np.float32), np.float32, np.float32),
        ((np.int8, np.float32), np.float32, np.float32),
    ],
)
def test_dtype_rules(dtypes, compute, out):
    arrays = [np.zeros(1, dtype=d) for d in dtypes]
    assert resolve_dtypes(*arrays) == (np.dtype(compute), np.dtype(out))


@pytest.mark.parametrize("dtype", [np.complex128, object, "U3", "datetime64[s]"])
def test_unsupported_dtypes(dtype):
    with pytest.raises(TypeError, match="real numeric arrays only"):
        resolve_dtypes(np.zeros(1, dtype=dtype))


@pytest.mark.parametrize(
    "option, value, exc, match",
    [
        ("stride", True, TypeError, r"stride must be an int, got True"),
        ("stride", 1.0, TypeError, r"stride must be an int, got 1.0"),
        ("padding", (True, 0), TypeError, r"padding must be an int, got True"),
        ("groups", 1.0, TypeError, r"groups must be an int, got 1.0"),
    ],
)
def test_cached_geometry_still_rejects_lookalikes(option, value, exc, match):
    # True == 1 and 1.0 == 1 hash alike: the cache must not hand back the plain value's geometry
    shapes = ((2, 3, 8, 8), (4, 3, 3, 3))
    plain = {"stride": 1, "padding": (1, 0), "groups": 1}[option]
    conv_geometry(*shapes, **{option: plain})
    conv_geometry(*shapes, **{option: plain})  # now a cache hit
    with pytest.raises(exc, match=match):
        conv_geometry(*shapes, **{option: value})


@pytest.mark.parametrize(
    "opts",
    [
        dict(stride=2, padding=1),
        dict(stride=(2, 1), padding=((1, 0), (2, 2)), dilation=(1, 2)),
        dict(padding="same", dilation=2),
    ],
)
def test_cached_geometry_equals_uncached(opts):
    # lists and NumPy integers are validated every time; plain ints and tuples are cached
    shapes = ((2, 3, 9, 8), (6, 3, 3, 3))
    options = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, **opts}
    want = _geometry._conv_geometry(*shapes, **options)  # validated, never cached
    hits = _geometry._cached_conv_geometry.cache_info().hits
    assert conv_geometry(*shapes, **opts) == want
    assert conv_geometry(*shapes, **opts) == want
    assert _geometry._cached_conv_geometry.cache_info().hits > hits
    assert conv_geometry(*shapes, **{k: _as_lists(v) for k, v in opts.items()}) == want
    assert conv_geometry(*shapes, **{k: _as_numpy(v) for k, v in opts.items()}) == want


def _as_lists(value):
    return [_as_lists(v) for v in value] if isinstance(value, tuple) else value


def _as_numpy(value):
    if isinstance(value, tuple):
        return tuple(_as_numpy(v) for v in value)
    return np.int64(value) if type(value) is int else value


@pytest.mark.parametrize("dim", [8.0, np.int64(8)])
def test_cached_geometry_keeps_plain_int_fields(dim):
    # 8.0 == np.int64(8) == 8: a call with such shapes must not leave its fields in the cache
    _geometry._cached_conv_geometry.cache_clear()
    conv_geometry((2, 3, dim, 8), (4, 3, 3, 3))
    geo = conv_geometry((2, 3, 8, 8), (4, 3, 3, 3))
    assert all(type(v) is int for v in geo)


@pytest.mark.parametrize(
    "dtypes, compute",
    [
        ((None, np.float64), np.float64),
        ((np.float32, None), np.float32),
        ((np.float32, None, np.float64), np.float64),
        ((">f8",), np.float64),  # byte-swapped: the general path
    ],
)
def test_dtype_rules_skip_none(dtypes, compute):
    arrays = [None if d is None else np.zeros(1, dtype=d) for d in dtypes]
    assert resolve_dtypes(*arrays) == (np.dtype(compute), np.dtype(compute))
