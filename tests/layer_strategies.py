"""Hypothesis strategies for the layer operations: padding modes, transposed convolution,
pooling (small shapes, so the naive loops are quick)."""

import numpy as np
from hypothesis import strategies as st

from strategies import conv_configs

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


@st.composite
def padded_conv_configs(draw):
    """A convolution configuration with a padding mode whose size limits it meets."""
    cfg = draw(conv_configs(max_batch=2))
    mode = draw(st.sampled_from(PADDING_MODES))
    cfg["opts"]["padding_mode"] = mode
    return cfg


def mode_fits(cfg, pads):
    """Whether the input is large enough for the padding mode (reflect: pad < size; circular: pad <= size)."""
    _, _, H, W = cfg["x"]
    pt, pb, pl, pr = pads
    mode = cfg["opts"]["padding_mode"]
    if mode == "reflect":
        return max(pt, pb) < H and max(pl, pr) < W
    if mode == "circular":
        return max(pt, pb) <= H and max(pl, pr) <= W
    return True


@st.composite
def transpose_configs(draw):
    groups = draw(st.integers(1, 2))
    cg_in, cg_out = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    small = st.integers(0, 2)
    padding = draw(
        st.one_of(
            small,
            st.tuples(small, small),
            st.tuples(st.tuples(small, small), st.tuples(small, small)),
        )
    )
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    return dict(
        x=(draw(st.integers(1, 2)), cg_in * groups, h, w),
        w=(cg_in * groups, cg_out, kh, kw),
        b=cg_out * groups if draw(st.booleans()) else None,
        opts=dict(
            stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, groups=groups
        ),
    )


def transpose_out_size(cfg):
    """The output size from torch's formula, for filtering configurations."""
    o = cfg["opts"]
    p = o["padding"]
    pads = (
        (p, p, p, p)
        if isinstance(p, int)
        else (p[0][0], p[0][1], p[1][0], p[1][1])
        if isinstance(p[0], tuple)
        else (p[0], p[0], p[1], p[1])
    )
    sizes = []
    for axis in range(2):
        n, k = cfg["x"][2 + axis], cfg["w"][2 + axis]
        s, d, op = o["stride"][axis], o["dilation"][axis], o["output_padding"][axis]
        sizes.append((n - 1) * s - pads[2 * axis] - pads[2 * axis + 1] + d * (k - 1) + op + 1)
    return tuple(sizes)


@st.composite
def pool_configs(draw, max_kind=True):
    """Pooling options and an input shape every window fits (padding at most half the kernel)."""
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if max_kind else (1, 1)
    padding = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    h = draw(st.integers(dilation[0] * (kh - 1) + 1, dilation[0] * (kh - 1) + 6))
    w = draw(st.integers(dilation[1] * (kw - 1) + 1, dilation[1] * (kw - 1) + 6))
    opts = dict(kernel_size=(kh, kw), stride=stride, padding=padding, ceil_mode=draw(st.booleans()))
    if max_kind:
        opts["dilation"] = dilation
    else:
        opts["count_include_pad"] = draw(st.booleans())
    return dict(x=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w), opts=opts)


def random_input(shape, seed, dtype=np.float64, ties=False):
    rng = np.random.default_rng(seed)
    if ties:  # few distinct values: many windows hold several maxima
        return rng.integers(-2, 3, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)
