"""Argument normalisation and output geometry shared by every convolution path.

Public functions validate their arguments once, here, into a frozen :class:`Geometry`
that the engine, the kernels and the reference all read.
"""

from __future__ import annotations

import functools
import numbers
from typing import NamedTuple

import numpy as np

__all__ = [
    "Geometry",
    "as_int",
    "as_pair",
    "padding_sides",
    "window_geometry",
    "conv_geometry",
    "resolve_dtypes",
]


class Geometry(NamedTuple):
    """Shapes, strides and paddings of one sliding-window operation (NCHW).

    ``pt, pb, pl, pr`` are the zero padding at top, bottom, left and right;
    ``OH, OW`` the output size. ``F`` and ``groups`` are set for convolutions only.
    """

    N: int
    C: int
    H: int
    W: int
    KH: int
    KW: int
    sh: int
    sw: int
    dh: int
    dw: int
    pt: int
    pb: int
    pl: int
    pr: int
    OH: int
    OW: int
    F: int = 0
    groups: int = 1

    @property
    def P(self) -> int:
        """Number of output positions per image, ``OH * OW``."""
        return self.OH * self.OW

    @property
    def Cg(self) -> int:
        """Input channels per group."""
        return self.C // self.groups

    @property
    def Fg(self) -> int:
        """Filters per group."""
        return self.F // self.groups

    @property
    def window_rows(self) -> int:
        """Rows of one group's im2col matrix, ``Cg * KH * KW``."""
        return self.Cg * self.KH * self.KW

    @property
    def is_pointwise(self) -> bool:
        """True for a 1x1, stride-1, unpadded window whose output is the whole input (a
        transposed convolution's output padding adds input rows no output reads): a
        plain GEMM on the input, no im2col."""
        window = (self.KH, self.KW, self.sh, self.sw, self.pt, self.pb, self.pl, self.pr)
        return window == (1, 1, 1, 1, 0, 0, 0, 0) and (self.H, self.W) == (self.OH, self.OW)

    @property
    def kernel_args(self) -> tuple[int, ...]:
        """The integers the window kernels take, in their order."""
        return (self.KH, self.KW, self.sh, self.sw, self.dh, self.dw, self.pt, self.pl, self.OH, self.OW)


def as_int(value, name: str, minimum: int) -> int:
    """``value`` as an int of at least ``minimum``, else an error naming ``name`` and the value."""
    if type(value) is int and value >= minimum:  # the common case, checked cheaply
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def as_pair(value, name: str, minimum: int = 1) -> tuple[int, int]:
    """Normalise ``value`` (an int or a pair of ints) to ``(h, w)``.

    Examples
    --------
    >>> as_pair(3, "stride"), as_pair((1, 2), "stride")
    ((3, 3), (1, 2))
    """
    if type(value) is int and value >= minimum:
        return (value, value)
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (h, w), got {value!r}")
        return (as_int(value[0], name, minimum), as_int(value[1], name, minimum))
    if isinstance(value, np.ndarray) and value.shape == (2,):
        return as_pair(tuple(value.tolist()), name, minimum)
    v = as_int(value, name, minimum)
    return (v, v)


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def padding_sides(padding, H, W, k, s, d) -> tuple[int, int, int, int]:
    """Return ``(top, bottom, left, right)`` for any accepted padding form."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            return _same_padding(H, k[0], s[0], d[0]) + _same_padding(W, k[1], s[1], d[1])
        raise ValueError(
            f"padding must be an int, a pair, a pair of pairs, 'valid' or 'same', got {padding!r}"
        )
    if (
        isinstance(padding, (tuple, list))
        and len(padding) == 2
        and all(isinstance(p, (tuple, list)) for p in padding)
    ):
        (pt, pb), (pl, pr) = (as_pair(p, "padding", minimum=0) for p in padding)
        return (pt, pb, pl, pr)
    ph, pw = as_pair(padding, "padding", minimum=0)
    return (ph, ph, pw, pw)


def _output_size(size, pad, k, s, d, axis):
    span = d * (k - 1) + 1
    if size + pad < span:
        raise ValueError(
            f"the kernel spans {span} {axis} (kernel_size {k}, dilation {d}) but the padded input "
            f"has only {size + pad} {axis} (input {size} + padding {pad})"
        )
    return (size + pad - span) // s + 1


def window_geometry(x_shape, kernel_size, stride=1, padding=0, dilation=1, *, F=0, groups=1) -> Geometry:
    """Validate window options for an input of shape ``(N, C, H, W)``.

    Output size per axis is ``(H + pad_top + pad_bottom - dilation*(KH-1) - 1) // stride + 1``.

    Examples
    --------
    >>> g = window_geometry((2, 3, 5, 5), 3, stride=2)
    >>> (g.OH, g.OW)
    (2, 2)
    """
    N, C, H, W = x_shape
    if H == 0 or W == 0:
        raise ValueError(f"x must have a non-empty height and width, got shape {tuple(x_shape)}")
    k = as_pair(kernel_size, "kernel_size")
    s = as_pair(stride, "stride")
    d = as_pair(dilation, "dilation")
    pt, pb, pl, pr = padding_sides(padding, H, W, k, s, d)
    OH = _output_size(H, pt + pb, k[0], s[0], d[0], "rows")
    OW = _output_size(W, pl + pr, k[1], s[1], d[1], "columns")
    return Geometry(N, C, H, W, k[0], k[1], s[0], s[1], d[0], d[1], pt, pb, pl, pr, OH, OW, F, groups)


def check_ndim(a: np.ndarray, ndim: int, name: str, layout: str) -> None:
    """Raise ValueError unless ``a`` has ``ndim`` dimensions."""
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {layout}, got shape {a.shape}")


def conv_geometry(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1) -> Geometry:
    """Validate a convolution of ``x (N, C, H, W)`` with ``w (F, C/groups, KH, KW)``.

    A layer makes the same call step after step, so geometries of plain-int shapes and
    options given as plain ints, strings and tuples of them are cached (1.4 us a call
    otherwise, a tenth of a tiny forward+backward); other values, which may compare
    equal to a plain one but not validate or compute like it (``True == 1``,
    ``1.0 == 1``, ``np.int64(8) == 8``), are validated every time and never cached.
    """
    options = (stride, padding, dilation, groups)
    plain_options = type(stride) is type(padding) is type(dilation) is type(groups) is int or _plain(options)
    # every dimension a plain int: a float or a NumPy integer anywhere changes the sum's type
    if plain_options and type(sum(x_shape) + sum(w_shape)) is int:
        return _cached_conv_geometry(tuple(x_shape), tuple(w_shape), *options)
    return _conv_geometry(x_shape, w_shape, *options)


def _plain(value) -> bool:
    """True for an int (not a bool), a str, or a tuple of them (nested)."""
    kind = type(value)
    return kind is int or kind is str or (kind is tuple and all(map(_plain, value)))


@functools.lru_cache(maxsize=1024)
def _cached_conv_geometry(x_shape, w_shape, stride, padding, dilation, groups) -> Geometry:
    return _conv_geometry(x_shape, w_shape, stride, padding, dilation, groups)


def _conv_geometry(x_shape, w_shape, stride, padding, dilation, groups) -> Geometry:
    N, C, H, W = x_shape
    F, Cg, KH, KW = w_shape
    groups = as_int(groups, "groups", 1)
    if C % groups or F % groups:
        raise ValueError(f"groups={groups} must divide both the input channels C={C} and the filters F={F}")
    if Cg * groups != C:
        raise ValueError(
            f"x has C={C} channels but w of shape {tuple(w_shape)} expects "
            f"w.shape[1] * groups = {Cg} * {groups} = {Cg * groups}"
        )
    if KH == 0 or KW == 0:
        raise ValueError(f"w must have a non-empty kernel, got shape {tuple(w_shape)}")
    if F == 0:
        raise ValueError(f"w must have at least one filter, got shape {tuple(w_shape)}")
    return window_geometry(x_shape, (KH, KW), stride, padding, dilation, F=F, groups=groups)


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def resolve_dtypes(*arrays) -> tuple[np.dtype, np.dtype]:
    """Return ``(compute_dtype, output_dtype)`` for the given inputs (None ignored).

    Floats keep their precision, mixed inputs follow numpy promotion, integers and bools
    compute in float64, float16 computes in float32 and returns float16. Complex, object,
    string and other dtypes raise TypeError.
    """
    first = arrays[0] if arrays else None
    if first is not None and first.dtype in _FLOATS:  # the common case, checked cheaply
        dtype = first.dtype
        for a in arrays[1:]:  # a plain loop: half the cost of all() over a generator
            if a is not None and a.dtype != dtype:
                break
        else:
            return dtype, dtype
    present = [a for a in arrays if a is not None]
    for a in present:
        if a.dtype.kind not in "biuf":
            raise TypeError(f"convcore supports real numeric arrays only, got dtype {a.dtype}")
    out = np.result_type(*present)
    if out.kind in "biu":
        out = np.dtype(np.float64)
    if out == np.float16:
        return np.dtype(np.float32), out
    if out not in (np.float32, np.float64):  # longdouble
        raise TypeError(f"convcore computes in float32 or float64, got dtype {out}")
    return out, out
