"""The functional convolution: forward, dW and dX as GEMMs over im2col columns.

Six strategies, chosen per call from the geometry (see :func:`_strategy`):

- im2col + GEMM (the general case, :mod:`convcore._gemm`): the forward pass, dW and the
  column gradient are BLAS products over im2col columns held in the per-thread workspace
  (:mod:`convcore.workspace`), the batch split over threads; col2im folds the column
  gradient into dx. 1x1, stride 1, no padding: GEMMs on the input itself, no im2col.
- Winograd F(2x2, 3x3) (:mod:`convcore._winograd`) for large 3x3, stride-1, undilated
  layers (grouped ones with at least 16 channels and filters a group): 16 GEMMs of
  4*F*C multiply-adds per output position against im2col's 9*F*C, between input and
  output transforms.
- the same algorithm over channels-last tiles (:mod:`convcore._winograd_cl`) for such
  layers with small images, whose planes of tiles are too short for the NCHW
  transforms' loops, and for float32 layers of many channels.
- im2col + GEMM on a channels-last copy of the input (:mod:`convcore._channels_last`)
  for float32 layers with short output rows, where the NCHW window kernels' runs of OW
  values are too short to vectorise.
- direct Numba loops for tiny problems (:mod:`convcore._direct`), whose fixed cost is
  lower than the NumPy calls around a GEMM, and for depthwise convolutions (one channel
  per group, one filter or a few, :mod:`convcore._depthwise`), where the GEMMs
  degenerate into matrix-vector products.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from convcore import _channels_last, _gemm, _winograd, _winograd_cl
from convcore._depthwise import depthwise_backward, depthwise_forward
from convcore._direct import tiny_backward, tiny_forward
from convcore._geometry import Geometry, as_pair, check_ndim, conv_geometry, resolve_dtypes
from convcore._threads import thread_count
from convcore.padding import ModePadding, pad_for_mode

__all__ = [
    "ConvCache",
    "conv2d",
    "conv2d_forward",
    "conv2d_backward",
    "conv_forward",
    "conv_backward",
    "prepare_conv",
]


class ConvCache(NamedTuple):
    """What :func:`conv2d_backward` needs from a forward pass.

    ``x`` and ``w`` are the inputs in the compute dtype (the caller's arrays themselves
    when no conversion was needed: do not modify them in place before the backward pass).
    The im2col columns are not kept; the backward pass recomputes them chunk by chunk
    inside the workspace, which costs less than faulting in fresh pages to hold them.
    ``padded`` is set for a padding_mode other than 'zeros': ``x`` is then the explicitly
    padded input and ``padded.fold`` maps its gradient back.
    """

    x: np.ndarray
    w: np.ndarray
    has_bias: bool
    geo: Geometry
    out_dtype: np.dtype
    padded: ModePadding | None = None


def prepare_conv(x, w, b, stride, padding, dilation, groups):
    """Validate and convert convolution inputs.

    Returns ``(x, w, b, geo, out_dtype)`` with ``x`` and ``w`` C-contiguous in the
    compute dtype (no copy when they already are).
    """
    x, w = np.asarray(x), np.asarray(w)
    b = None if b is None else np.asarray(b)
    compute, out_dtype = resolve_dtypes(x, w, b)
    check_ndim(x, 4, "x", "(N, C, H, W)")
    check_ndim(w, 4, "w", "(F, C/groups, KH, KW)")
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"b must have shape (F,) = ({w.shape[0]},), got {b.shape}")
    geo = conv_geometry(x.shape, w.shape, stride, padding, dilation, groups)
    x = np.ascontiguousarray(x, dtype=compute)
    w = np.ascontiguousarray(w, dtype=compute)
    b = None if b is None else np.ascontiguousarray(b, dtype=compute)
    return x, w, b, geo, out_dtype


# Below this many multiply-adds, direct loops beat im2col + GEMM (their fixed cost is a
# few microseconds of NumPy calls).
_DIRECT_MAX_MACS = 1 << 14
# Forces a strategy: "gemm", "tiny", "depthwise", "winograd", "winograd_cl" or
# "channels_last" (the tests run each over the same cases; the last three fall back to
# "gemm" where they do not apply).
_FORCE: str | None = None
# Winograd needs this many channels and filters: its transforms cost the same per input
# and output element whatever C and F, while the GEMMs it saves scale with C*F (on 3
# input channels it ran 2.3-2.4x slower than im2col + GEMM; benchmarks/engine_paths.py).
_WINOGRAD_MIN_CHANNELS = 8
# ... and, with several groups, this many channels and filters a group: against im2col +
# GEMM, forward+backward, float32 / float64, 0.82-0.89 / 0.76-0.88 with 16 to 32 a group
# (16x64x28x28 in 4 groups, 0.89 / 0.78); 1.04-1.11 / 0.91-0.98 with 8; 1.24 / 1.1-1.25
# with 4 (its 16 GEMMs a group are too small).
_WINOGRAD_MIN_GROUP_CHANNELS = 16
# ... and this many multiply-adds: its kernels take ~2.5 s per dtype to compile on first
# use (more than the rest of convcore), which only a large layer pays back.
_WINOGRAD_MIN_MACS = 1 << 26
# It also needs an image per thread or, for a smaller batch (split by rows and channels),
# outputs at least this wide: forward+backward of a batch of 1 on two threads against
# im2col + GEMM, float64 / float32, 0.79-0.91 / 0.82-0.96 from 48 to 112 wide with 16 to
# 128 channels; 0.89 / 1.02 at 40, 0.97 / 1.07 at 32, 1.15 / 1.26 at 28, 3.1 / 3.5 at 14.
_WINOGRAD_MIN_WIDTH_SPLIT = 48
# ... and, in float32, outputs at least this wide (16x16 outputs ran 1.05-1.07x slower;
# 32 to 64 wide, 0.70-0.80x).
_WINOGRAD_MIN_WIDTH_F32 = 24
# Layers of one group with an image per thread run Winograd over channels-last tiles
# (:mod:`convcore._winograd_cl`) instead, under the same channel and size thresholds,
# where every chunk holds whole images (one image's scratch within a chunk's 8 MiB: 56x56
# with 64 channels in float32, not with 128): in float64 with outputs at most this wide;
# in float32 with at least 2048 output positions a batch and outputs at most this wide,
# or at least 32 channels and filters. Forward+backward, interleaved, against the engine
# chosen without it (benchmarks/engine_paths.py --only winograd_cl): float32 0.71-0.93
# on 4 to 16 wide outputs with 32 to 256 channels (cifar_c32_16_k3 0.79), 0.79-0.95 on
# 28 to 56 wide ones with 32 or 64 (resnet_c64_56_k3 0.94); float64 0.43-0.94 on 4 to 16
# wide with 32 to 512. Left alone: float64 28 to 32 wide, 0.96-1.02; float32 with 16
# channels 32 and 64 wide, 1.10-1.27.
_WINOGRAD_CL_MAX_WIDTH = 16
_WINOGRAD_CL_MIN_CHANNELS_WIDE_F32 = 32
# ... and with fewer float32 output positions than this, the filter transforms and the
# transformed weight gradient of many channels are not paid back (8x512x7x7 2.54,
# 4x64x8x8 1.43, 64x512x4x4 1.53, 16x256x7x7 1.05), bar a small gain given up
# (8x256x14x14, 1568 positions, 0.96).
_WINOGRAD_CL_MIN_POSITIONS_F32 = 2048
# float32 layers with outputs at most this wide and at least this many channels run on a
# channels-last copy of the input (:mod:`convcore._channels_last`). Forward+backward
# against im2col + GEMM, interleaved (benchmarks/engine_paths.py): 0.72-0.97 on 8 to 16
# wide outputs with 12 to 128 channels; 1.00 on 24 wide, 1.08 on 28, 1.35 with 3
# channels. In float64 it measured 0.91-1.17, so float64 stays on im2col.
_CHANNELS_LAST_MAX_WIDTH = 16
_CHANNELS_LAST_MIN_CHANNELS = 12
# One input channel a group with several filters (a channel multiplier, or a
# single-channel input) also runs on the depthwise loops where filters per group x taps
# x stride phases is at most this and the batch has this many images: every filter
# rebuilds the channel's phases in the weight gradient, and that gradient's image blocks
# need a batch. Forward+backward against im2col + GEMM, interleaved
# (benchmarks/engine_paths.py --only multiplier): 0.35-0.67 with 2 or 4 filters a
# channel; 0.64-0.91 on 1-channel inputs with 4 to 16 filters (lenet_c1_28_k5
# 0.72-0.73); 0.82-0.83 at 200; 1.00-1.19 at 288 and 300; 1.4-1.5 on a batch of 1.
_MULTIPLIER_MAX_WORK = 200
_MULTIPLIER_MIN_BATCH = 8


def _strategy(geo: Geometry, dtype) -> str:
    """'tiny' loops for tiny problems, 'depthwise' shift-and-add loops for one channel and
    one filter per group (forward+backward 0.05-0.25x the time of im2col + GEMM,
    ``benchmarks/engine_paths.py --only depthwise``) and for one channel and a few filters
    per group (see above), 'winograd_cl' and 'winograd' for 3x3 stride-1 layers (the
    first for small images, and float32 ones of many channels) and 'channels_last' for
    float32 layers with short output rows where they measured faster
    (see the constants above), else 'gemm'."""
    macs = geo.N * geo.F * geo.P * geo.Cg * geo.KH * geo.KW
    if _FORCE is not None:
        if _FORCE == "winograd" and not _winograd.applies(geo):
            return "gemm"
        if _FORCE == "channels_last" and not _channels_last.applies(geo, np.dtype(dtype).itemsize):
            return "gemm"
        if _FORCE == "winograd_cl" and not _winograd_cl.applies(geo, np.dtype(dtype).itemsize):
            return "gemm"
        return _FORCE
    if macs <= _DIRECT_MAX_MACS:
        return "tiny"
    multiplier_work = geo.Fg * geo.KH * geo.KW * geo.sh * geo.sw
    few_filters = multiplier_work <= _MULTIPLIER_MAX_WORK and geo.N >= _MULTIPLIER_MIN_BATCH
    if geo.Cg == 1 and (geo.Fg == 1 or few_filters):
        return "depthwise"
    per_group = _WINOGRAD_MIN_CHANNELS if geo.groups == 1 else _WINOGRAD_MIN_GROUP_CHANNELS
    big = min(geo.Cg, geo.Fg) >= per_group and macs >= _WINOGRAD_MIN_MACS
    if _winograd.applies(geo) and big:
        image_a_thread = geo.N >= thread_count()
        if (
            image_a_thread
            and _winograd_cl_suits(geo, dtype)
            and _winograd_cl.applies(geo, np.dtype(dtype).itemsize)
        ):
            return "winograd_cl"  # (applies: one group, whole images in every chunk)
        wide_enough = np.dtype(dtype) != np.float32 or geo.OW >= _WINOGRAD_MIN_WIDTH_F32
        if (image_a_thread or geo.OW >= _WINOGRAD_MIN_WIDTH_SPLIT) and wide_enough:
            return "winograd"
    short_rows = geo.OW <= _CHANNELS_LAST_MAX_WIDTH and geo.C >= _CHANNELS_LAST_MIN_CHANNELS
    if short_rows and np.dtype(dtype) == np.float32 and _channels_last.applies(geo, 4):
        return "channels_last"
    return "gemm"


def _winograd_cl_suits(geo: Geometry, dtype) -> bool:
    """Where channels-last Winograd measured faster (see the constants above)."""
    narrow = geo.OW <= _WINOGRAD_CL_MAX_WIDTH
    if np.dtype(dtype) != np.float32:
        return narrow
    many = min(geo.C, geo.F) >= _WINOGRAD_CL_MIN_CHANNELS_WIDE_F32
    return geo.N * geo.P >= _WINOGRAD_CL_MIN_POSITIONS_F32 and (narrow or many)


_ENGINES = {
    "gemm": _gemm,
    "winograd": _winograd,
    "winograd_cl": _winograd_cl,
    "channels_last": _channels_last,
}


def _forward(x, w, b, geo: Geometry):
    y = np.empty((geo.N, geo.F, geo.OH, geo.OW), dtype=x.dtype)
    strategy = _strategy(geo, x.dtype)
    if strategy in _ENGINES:
        _ENGINES[strategy].forward(x, w, b, geo, y)
        return y
    if strategy == "depthwise":
        depthwise_forward(x, w, b, geo.kernel_args, geo.groups, y)
        return y
    tiny_forward(x, w, b, geo.kernel_args, geo.groups, y)
    return y


def _backward(dy, cache: ConvCache):
    """``(dx, dw, db)``; ``db`` is None without a bias."""
    geo, x = cache.geo, cache.x
    dx = np.empty_like(x)
    db = np.empty(geo.F, x.dtype) if cache.has_bias else None
    strategy = _strategy(geo, x.dtype)
    if strategy == "depthwise" and not np.isfinite(cache.w).all():
        strategy = "gemm"  # the depthwise input gradient would spread 0 * inf (see there)
    if strategy in _ENGINES:
        return dx, _ENGINES[strategy].backward(x, cache.w, dy, geo, dx, db), db
    dw = np.empty_like(cache.w)
    if strategy == "depthwise":
        depthwise_backward(x, cache.w, dy, geo.kernel_args, geo.groups, dx, dw, db)
        return dx, dw, db
    tiny_backward(x, cache.w, dy, geo.kernel_args, geo.groups, dx, dw, db)
    return dx, dw, db


def conv2d_forward(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """2-D convolution (cross-correlation) of NCHW input, keeping what backward needs.

    Parameters
    ----------
    x : array, shape (N, C, H, W)
    w : array, shape (F, C // groups, KH, KW)
    b : array, shape (F,), optional
    stride, dilation : int or (int, int)
    padding : int, (ph, pw), ((top, bottom), (left, right)), 'valid' or 'same'
    groups : int
        Divides C and F; group g sees channels ``g*C/groups ...`` and makes filters
        ``g*F/groups ...``.
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}
        What the padding holds; see :mod:`convcore.padding`.

    Returns
    -------
    y : ndarray, shape (N, F, OH, OW)
        ``OH = (H + pad_top + pad_bottom - dilation*(KH-1) - 1) // stride + 1``.
    cache : ConvCache
        Pass to :func:`conv2d_backward`, as often as needed.

    Examples
    --------
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> y, cache = conv2d_forward(x, np.ones((1, 1, 2, 2)))
    >>> y[0, 0]
    array([[ 8., 12.],
           [20., 24.]])
    """
    x, w, b, geo, out_dtype = prepare_conv(x, w, b, stride, padding, dilation, groups)
    x, geo, padded = pad_for_mode(x, geo, padding_mode)
    y = _forward(x, w, b, geo)
    cache = ConvCache(x, w, b is not None, geo, out_dtype, padded)
    return y.astype(out_dtype, copy=False), cache


def conv2d_backward(dy, cache: ConvCache):
    """Gradients of a convolution from the output gradient.

    Parameters
    ----------
    dy : array, shape (N, F, OH, OW)
        Gradient of the loss with respect to the forward output.
    cache : ConvCache
        From :func:`conv2d_forward`; not modified.

    Returns
    -------
    dx : ndarray, shape (N, C, H, W)
    dw : ndarray, shape (F, C // groups, KH, KW)
    db : ndarray, shape (F,), or None when the forward pass had no bias

    Examples
    --------
    >>> y, cache = conv2d_forward(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)))
    >>> dx, dw, db = conv2d_backward(np.ones_like(y), cache)
    >>> dx[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    if not isinstance(cache, ConvCache):
        raise TypeError(f"cache must come from conv2d_forward, got {type(cache).__name__}")
    geo = cache.geo
    dy = np.asarray(dy)
    resolve_dtypes(dy)
    expected = (geo.N, geo.F, geo.OH, geo.OW)
    if dy.shape != expected:
        raise ValueError(f"dy has shape {dy.shape} but the forward output had shape {expected}")
    dy = np.ascontiguousarray(dy, dtype=cache.x.dtype)
    dx, dw, db = _backward(dy, cache)
    if cache.padded is not None:
        dx = cache.padded.fold(dx)
    out = cache.out_dtype  # (no generator over the three: ~0.3 us a call)
    db = None if db is None else db.astype(out, copy=False)
    return dx.astype(out, copy=False), dw.astype(out, copy=False), db


def conv2d(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """2-D convolution of NCHW input; :func:`conv2d_forward` without the cache.

    Examples
    --------
    >>> conv2d(np.ones((2, 3, 8, 8)), np.ones((4, 3, 3, 3)), padding="same").shape
    (2, 4, 8, 8)
    """
    x, w, b, geo, out_dtype = prepare_conv(x, w, b, stride, padding, dilation, groups)
    x, geo, _ = pad_for_mode(x, geo, padding_mode)
    return _forward(x, w, b, geo).astype(out_dtype, copy=False)


def _conv_param(conv_param) -> dict:
    if not isinstance(conv_param, Mapping):
        raise TypeError(f"conv_param must be a dict, got {type(conv_param).__name__}")
    unknown = sorted(set(conv_param) - {"stride", "pad"})
    if unknown:
        raise ValueError(f"conv_param has unknown keys {unknown}; expected 'stride' and 'pad'")
    return {
        "stride": as_pair(conv_param.get("stride", 1), "conv_param['stride']"),
        "padding": as_pair(conv_param.get("pad", 0), "conv_param['pad']", minimum=0),
    }


def conv_forward(x, w, b, conv_param):
    """Drop-in for the classic ``conv_forward_naive(x, w, b, conv_param)``.

    ``conv_param = {'stride': s, 'pad': p}``, each key optional (defaults 1 and 0).
    Output size is floored; no divisibility is required.

    Examples
    --------
    >>> out, cache = conv_forward(np.ones((1, 3, 5, 5)), np.ones((2, 3, 3, 3)), np.zeros(2),
    ...                           {"stride": 2, "pad": 1})
    >>> out.shape
    (1, 2, 3, 3)
    """
    return conv2d_forward(x, w, b, **_conv_param(conv_param))


def conv_backward(dout, cache):
    """Drop-in for ``conv_backward_naive(dout, cache)``: returns ``(dx, dw, db)``."""
    return conv2d_backward(dout, cache)
