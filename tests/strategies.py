"""Hypothesis strategies for valid convolution configurations (small, so the reference is quick)."""

import contextlib

import numpy as np
from hypothesis import strategies as st

from convcore import reference

PADDING_FORMS = ("int", "pair", "pairs", "valid", "same")


@st.composite
def paddings(draw):
    form = draw(st.sampled_from(PADDING_FORMS))
    small = st.integers(0, 2)
    if form == "int":
        return draw(small)
    if form == "pair":
        return (draw(small), draw(small))
    if form == "pairs":
        return ((draw(small), draw(small)), (draw(small), draw(small)))
    return form


def pad_totals(padding):
    """Total padding (rows, columns) of an explicit padding; None for 'same'."""
    if isinstance(padding, str):
        return (0, 0) if padding == "valid" else None
    if isinstance(padding, int):
        return (2 * padding, 2 * padding)
    if isinstance(padding[0], tuple):
        return (sum(padding[0]), sum(padding[1]))
    return (2 * padding[0], 2 * padding[1])


@st.composite
def window_cases(draw):
    """An input shape and window options (kernel_size, stride, padding, dilation)."""
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad = draw(paddings())
    H = draw(st.integers(d[0] * (k[0] - 1) + 1, 9))
    W = draw(st.integers(d[1] * (k[1] - 1) + 1, 9))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), H, W)
    return shape, dict(kernel_size=k, stride=s, padding=pad, dilation=d)


@st.composite
def conv_configs(draw, max_batch=3):
    """A dict with x, w, b shapes and the conv options, always a valid configuration."""
    groups = draw(st.integers(1, 3))
    cg, fg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(paddings())
    pads = pad_totals(padding) or (10**6, 10**6)
    min_h = max(1, dilation[0] * (kh - 1) + 1 - pads[0])
    min_w = max(1, dilation[1] * (kw - 1) + 1 - pads[1])
    h = draw(st.integers(min_h, min_h + 6))
    w = draw(st.integers(min_w, min_w + 6))
    return dict(
        x=(draw(st.integers(1, max_batch)), cg * groups, h, w),
        w=(fg * groups, cg, kh, kw),
        bias=draw(st.booleans()),
        opts=dict(stride=stride, padding=padding, dilation=dilation, groups=groups),
    )


# F(2x2, 3x3) (Lavin and Gray, 2016): a 2x2 output tile is A^T [(G g G^T) * (B^T d B)] A
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], float)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], float)


@st.composite
def winograd_configs(draw, groups=(1, 1, 2, 3)):
    """3x3, stride 1, any padding, any size the padding allows, one of ``groups``."""
    padding = draw(paddings())
    pads = pad_totals(padding) or (2, 2)  # "same" pads a 3x3 kernel by 2 in all
    h = draw(st.integers(max(1, 3 - pads[0]), 11))
    w = draw(st.integers(max(1, 3 - pads[1]), 11))
    g = draw(st.sampled_from(groups))
    n, cg, fg = draw(st.integers(1, 3)), draw(st.integers(1, 5 // g + 1)), draw(st.integers(1, 3))
    return dict(
        x=(n, cg * g, h, w),
        w=(fg * g, cg, 3, 3),
        bias=draw(st.booleans()),
        opts=dict(padding=padding, groups=g),
    )


def arrays_for(cfg, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(cfg["x"]).astype(dtype)
    w = rng.standard_normal(cfg["w"]).astype(dtype)
    b = rng.standard_normal(cfg["w"][0]).astype(dtype) if cfg["bias"] else None
    return x, w, b


def max_rel_err(got, want):
    """Max |got - want| relative to the largest reference magnitude."""
    want = np.asarray(want, dtype=np.float64)
    scale = max(np.abs(want).max(initial=0.0), 1e-300)
    return float(np.abs(np.asarray(got, dtype=np.float64) - want).max(initial=0.0) / scale)


@contextlib.contextmanager
def engine_path(path):
    """Force the engine onto one strategy: 'gemm' (im2col + GEMM, or the plain GEMM of a
    pointwise convolution), 'tiny' (serial direct loops), 'depthwise' (shift-and-add),
    'winograd' or 'winograd_cl' (Winograd over NCHW or channels-last tiles) or
    'channels_last' (im2col + GEMM over a channels-last copy); the last three fall back
    to 'gemm' where they do not apply."""
    import convcore.conv as conv

    old, conv._FORCE = conv._FORCE, path
    try:
        yield
    finally:
        conv._FORCE = old


ENGINE_PATHS = ("gemm", "tiny", "depthwise", "channels_last")


@contextlib.contextmanager
def split_engine_work(path, threads, chunk_bytes):
    """Run on engine ``path`` ('gemm', 'winograd', 'winograd_cl' or 'channels_last'),
    splitting even tiny problems over ``threads`` threads in chunks of at most
    ``chunk_bytes`` of scratch."""
    from convcore import _gemm, _threads

    saved = _threads._THREADS, _gemm._MIN_PARALLEL_MAC_BYTES, _gemm._CHUNK_BYTES
    _threads._THREADS, _gemm._MIN_PARALLEL_MAC_BYTES, _gemm._CHUNK_BYTES = threads, 0, chunk_bytes
    try:
        with engine_path(path):
            yield
    finally:
        _threads._THREADS, _gemm._MIN_PARALLEL_MAC_BYTES, _gemm._CHUNK_BYTES = saved


GRADIENT_NAMES = ("y", "dx", "dw", "db")


def engine_and_reference(engine, reference, x, w, b, opts, dy_seed=1, mixes_taps=False):
    """Run a forward/backward pair of the engine and of its naive reference.

    ``engine`` and ``reference`` are ``(forward, backward)`` pairs. Returns the engine's
    ``(y, dx, dw, db)``, the float64 reference's, and the reference on |x|, |w|, |b|, |dy|:
    for each output element the sum of the magnitudes of the terms it adds up, the scale
    of float rounding errors.

    With ``mixes_taps`` (the Winograd engine; only float32 checks read the scale) the
    scale of y and dx counts every weight of each (filter, channel) kernel at every tap,
    and that of dw every tap's terms: the transforms add all nine weights, and a tile's
    4x4 input block, into each value before the products, so an output whose own terms
    cancel or are few (a tiny weight on the only input a padded 1x1 image has) still
    carries the rounding of the others.
    """
    y, cache = engine[0](x, w, b, **opts)
    dy = np.random.default_rng(dy_seed).standard_normal(y.shape).astype(y.dtype)
    got = (y, *engine[1](dy, cache))

    def naive(transform, weights=w):
        as_ref = lambda a: None if a is None else transform(np.asarray(a, np.float64))
        yr, cr = reference[0](as_ref(x), as_ref(weights), as_ref(b), **opts)
        return (yr, *reference[1](as_ref(dy), cr))

    magnitudes = naive(np.abs)
    if mixes_taps:
        kernel_sums = np.abs(np.asarray(w, np.float64)).sum(axis=(2, 3), keepdims=True)
        y_mag, dx_mag, _, _ = naive(np.abs, np.broadcast_to(kernel_sums, w.shape))
        dw_mag = np.broadcast_to(magnitudes[2].sum(axis=(2, 3), keepdims=True), w.shape)
        magnitudes = (y_mag, dx_mag, dw_mag, magnitudes[3])
    return got, naive(lambda a: a), magnitudes


def assert_float64_agreement(got, want):
    """Each output within 1e-10 of the reference, relative to its largest magnitude."""
    for name, g, r in zip(GRADIENT_NAMES, got, want, strict=True):
        if r is None:
            assert g is None, name
            continue
        assert g.shape == r.shape and g.dtype == np.float64, name
        assert max_rel_err(g, r) <= 1e-10, name


def assert_float32_agreement(got, want, magnitudes):
    """Each float32 output within 2e-5 of the float64 reference, relative to the largest
    sum of term magnitudes: float32 rounding scales with the terms, so where a sum cancels
    (a 1x1x1x1 input with three filters, say) the largest |reference| would be the wrong
    scale. Where nothing cancels the two scales are equal."""
    for name, g, r, m in zip(GRADIENT_NAMES, got, want, magnitudes, strict=True):
        if r is None:
            assert g is None, name
            continue
        assert g.dtype == np.float32, name
        assert np.abs(g - r).max() <= 2e-5 * np.abs(m).max(), name


def assert_agrees_with_reference(engine, reference, x, w, b, opts, mixes_taps=False):
    """Run :func:`engine_and_reference` on ``x, w, b`` and assert the agreement their
    dtype must reach: :func:`assert_float32_agreement` for float32 inputs, else
    :func:`assert_float64_agreement`."""
    got, want, magnitudes = engine_and_reference(engine, reference, x, w, b, opts, mixes_taps=mixes_taps)
    if x.dtype == np.float32:
        assert_float32_agreement(got, want, magnitudes)
    else:
        assert_float64_agreement(got, want)


def _non_finite_masks(*arrays):
    return [(np.isnan(a), np.isposinf(a), np.isneginf(a)) for a in arrays]


def assert_same_non_finite(got, want):
    """The same NaNs and infinities as the reference, and close values elsewhere (pairs
    of None, a bias gradient without a bias, are skipped)."""
    for g, r in zip(got, want, strict=True):
        if g is None and r is None:
            continue
        for g_mask, r_mask in zip(_non_finite_masks(g), _non_finite_masks(r), strict=True):
            np.testing.assert_array_equal(g_mask, r_mask)
        finite = np.isfinite(r)
        assert max_rel_err(g[finite], r[finite]) <= (1e-5 if g.dtype == np.float32 else 1e-12)


def reference_passes(x, w, b, dy, **opts):
    """y, dx, dw and db (None without ``b``) of the float64 reference, quiet about its own
    ``inf * 0``."""
    b = None if b is None else b.astype(np.float64)
    with np.errstate(invalid="ignore"):
        y, cache = reference.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b, **opts)
        return (y, *reference.conv2d_backward(dy.astype(np.float64), cache))
