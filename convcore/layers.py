"""Layers for small NumPy networks: Conv2D, ConvTranspose2D, MaxPool2D and AvgPool2D.

Each layer has ``forward(x)`` (also ``layer(x)``), which keeps what the backward pass
needs, and ``backward(dy) -> dx``, which also writes ``grads`` in place (the arrays stay
the same objects). ``params`` and ``grads`` map ``'w'`` and ``'b'`` to arrays; an
optimiser updates ``params`` in place, for example
``layer.params['w'] -= lr * layer.grads['w']``. Pooling layers have no parameters.

Initialisation is PyTorch's default for its convolution layers: Kaiming-uniform with
``a = sqrt(5)``, which draws weights from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, and the
bias from the same interval. ``fan_in = w.shape[1] * KH * KW``: ``in_channels / groups *
KH * KW`` for Conv2D and ``out_channels / groups * KH * KW`` for ConvTranspose2D.
"""

from __future__ import annotations

import math

import numpy as np

from convcore._checks import as_flag
from convcore._geometry import as_int, as_pair, check_ndim, conv_geometry
from convcore.conv import conv2d_backward, conv2d_forward
from convcore.padding import check_padding_mode
from convcore.pooling import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
    pool_options,
)
from convcore.transpose import conv_transpose2d_backward, conv_transpose2d_forward, transpose_options

__all__ = ["Layer", "Conv2D", "ConvTranspose2D", "MaxPool2D", "AvgPool2D", "kaiming_uniform"]


def _generator(rng) -> np.random.Generator:
    if rng is None or isinstance(rng, np.random.Generator):
        return np.random.default_rng(rng)
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, (bool, np.bool_)):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be None, an int seed or a numpy Generator, got {rng!r}")


def _float_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def kaiming_uniform(shape, fan_in: int, rng: np.random.Generator, dtype) -> np.ndarray:
    """Draw from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``: Kaiming-uniform with ``a = sqrt(5)``.

    The Kaiming bound is ``gain * sqrt(3 / fan_in)`` with ``gain = sqrt(2 / (1 + a**2))``;
    ``a = sqrt(5)`` makes it ``1 / sqrt(fan_in)``.
    """
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


class Layer:
    """Base class: ``__call__`` runs ``forward``; ``backward`` needs a forward pass first."""

    def __init__(self):
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self._cache = None

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dy):  # pragma: no cover - abstract
        raise NotImplementedError

    def _forward_cache(self):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward needs a forward pass first")
        return self._cache

    def _check_channels(self, x, channels: int) -> np.ndarray:
        x = np.asarray(x)
        check_ndim(x, 4, "x", "(N, C, H, W)")
        if x.shape[1] != channels:
            raise ValueError(
                f"{type(self).__name__} expects x with {channels} channels, got x of shape {x.shape}"
            )
        return x

    def _owned(self, x: np.ndarray) -> np.ndarray:
        """A private copy of ``x`` for the cache (unless the forward pass converts it anyway),
        so a caller reusing its input buffer cannot change the gradients."""
        dtype = self.params["w"].dtype
        return x.copy() if x.dtype == dtype and x.flags.c_contiguous else x

    def _store_grads(self, dw, db):
        """Write the gradients into the ``grads`` arrays, in place, in the parameters' dtype."""
        np.copyto(self.grads["w"], dw, casting="unsafe")
        if db is not None:
            np.copyto(self.grads["b"], db, casting="unsafe")

    def _init_params(self, w_shape, bias_size, rng, dtype):
        """Kaiming-uniform ``'w'`` and, unless ``bias_size`` is 0, ``'b'``; zero ``grads``."""
        rng, dtype = _generator(rng), _float_dtype(dtype)
        fan_in = w_shape[1] * w_shape[2] * w_shape[3]
        self.params["w"] = kaiming_uniform(w_shape, fan_in, rng, dtype)
        if bias_size:
            self.params["b"] = kaiming_uniform((bias_size,), fan_in, rng, dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}


def _channels(in_channels, out_channels, groups) -> tuple[int, int, int]:
    cin = as_int(in_channels, "in_channels", 1)
    cout = as_int(out_channels, "out_channels", 1)
    g = as_int(groups, "groups", 1)
    if cin % g or cout % g:
        raise ValueError(f"groups={g} must divide both in_channels={cin} and out_channels={cout}")
    return cin, cout, g


class Conv2D(Layer):
    """2-D convolution layer; see :func:`convcore.conv2d_forward` for the options.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
    stride, padding, dilation, groups, padding_mode
        As in :func:`convcore.conv2d_forward`.
    bias : bool
        Whether the layer has ``params['b']``.
    dtype : float32 or float64
        Of the parameters.
    rng : None, int or numpy.random.Generator
        Source of the initial weights.

    Attributes
    ----------
    params, grads : dict
        ``'w'`` of shape ``(out_channels, in_channels // groups, KH, KW)`` and ``'b'`` of
        shape ``(out_channels,)`` (without bias, no ``'b'``).

    Examples
    --------
    >>> conv = Conv2D(3, 8, 3, padding=1, rng=0)
    >>> y = conv(np.ones((2, 3, 6, 6), np.float32))
    >>> dx = conv.backward(np.ones_like(y))
    >>> y.shape, dx.shape, conv.grads["w"].shape
    ((2, 8, 6, 6), (2, 3, 6, 6), (8, 3, 3, 3))
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        *,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=True,
        padding_mode="zeros",
        dtype=np.float32,
        rng=None,
    ):
        super().__init__()
        self.in_channels, self.out_channels, groups = _channels(in_channels, out_channels, groups)
        kh, kw = as_pair(kernel_size, "kernel_size")
        w_shape = (self.out_channels, self.in_channels // groups, kh, kw)
        # validate the options once, on an input the dilated kernel just fits
        span = [d * (k - 1) + 1 for d, k in zip(as_pair(dilation, "dilation"), (kh, kw))]
        conv_geometry((1, self.in_channels, *span), w_shape, stride, padding, dilation, groups)
        self.options = dict(
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            padding_mode=check_padding_mode(padding_mode),
        )
        self._init_params(w_shape, self.out_channels if as_flag(bias, "bias") else 0, rng, dtype)

    def forward(self, x):
        """``x (N, in_channels, H, W)`` -> ``y (N, out_channels, OH, OW)``."""
        x = self._owned(self._check_channels(x, self.in_channels))
        y, self._cache = conv2d_forward(x, self.params["w"], self.params.get("b"), **self.options)
        return y

    def backward(self, dy):
        """``dy (N, out_channels, OH, OW)`` -> ``dx``; fills ``grads``."""
        dx, dw, db = conv2d_backward(dy, self._forward_cache())
        self._store_grads(dw, db)
        return dx

    def __repr__(self):
        kh, kw = self.params["w"].shape[2:]
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return (
            f"Conv2D({self.in_channels}, {self.out_channels}, kernel_size={(kh, kw)}, {opts}, "
            f"bias={'b' in self.params}, dtype={self.params['w'].dtype})"
        )


class ConvTranspose2D(Layer):
    """Transposed 2-D convolution layer; see :func:`convcore.conv_transpose2d_forward`.

    ``params['w']`` has shape ``(in_channels, out_channels // groups, KH, KW)`` and
    ``params['b']`` shape ``(out_channels,)``. Other parameters as in :class:`Conv2D`.

    Examples
    --------
    >>> up = ConvTranspose2D(4, 2, 3, stride=2, padding=1, output_padding=1, rng=0)
    >>> up(np.ones((1, 4, 5, 5), np.float32)).shape
    (1, 2, 10, 10)
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        *,
        stride=1,
        padding=0,
        output_padding=0,
        dilation=1,
        groups=1,
        bias=True,
        dtype=np.float32,
        rng=None,
    ):
        super().__init__()
        self.in_channels, self.out_channels, groups = _channels(in_channels, out_channels, groups)
        kh, kw = as_pair(kernel_size, "kernel_size")
        self.options = transpose_options(stride, padding, output_padding, dilation, groups)
        w_shape = (self.in_channels, self.out_channels // groups, kh, kw)
        self._init_params(w_shape, self.out_channels if as_flag(bias, "bias") else 0, rng, dtype)

    def forward(self, x):
        """``x (N, in_channels, H, W)`` -> ``y (N, out_channels, OH, OW)``."""
        x = self._owned(self._check_channels(x, self.in_channels))
        o = self.options
        (pt, pb), (pl, pr) = o.padding[:2], o.padding[2:]
        y, self._cache = conv_transpose2d_forward(
            x,
            self.params["w"],
            self.params.get("b"),
            stride=o.stride,
            padding=((pt, pb), (pl, pr)),
            output_padding=o.output_padding,
            dilation=o.dilation,
            groups=o.groups,
        )
        return y

    def backward(self, dy):
        """``dy (N, out_channels, OH, OW)`` -> ``dx``; fills ``grads``."""
        dx, dw, db = conv_transpose2d_backward(dy, self._forward_cache())
        self._store_grads(dw, db)
        return dx

    def __repr__(self):
        kh, kw = self.params["w"].shape[2:]
        o = self.options
        return (
            f"ConvTranspose2D({self.in_channels}, {self.out_channels}, kernel_size={(kh, kw)}, "
            f"stride={o.stride}, padding={o.padding}, output_padding={o.output_padding}, "
            f"dilation={o.dilation}, groups={o.groups}, bias={'b' in self.params}, "
            f"dtype={self.params['w'].dtype})"
        )


class MaxPool2D(Layer):
    """Max pooling layer; see :func:`convcore.max_pool2d_forward`.

    Examples
    --------
    >>> pool = MaxPool2D(2)
    >>> pool(np.ones((1, 3, 4, 4))).shape, pool
    ((1, 3, 2, 2), MaxPool2D(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1), ceil_mode=False))
    """

    def __init__(self, kernel_size, *, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__()
        self.options = pool_options(kernel_size, stride, padding, dilation, ceil_mode)

    def forward(self, x):
        """``x (N, C, H, W)`` -> ``y (N, C, OH, OW)``."""
        o = self.options
        y, self._cache = max_pool2d_forward(
            x, o.kernel_size, stride=o.stride, padding=o.padding, dilation=o.dilation, ceil_mode=o.ceil_mode
        )
        return y

    def backward(self, dy):
        """``dy (N, C, OH, OW)`` -> ``dx (N, C, H, W)``."""
        return max_pool2d_backward(dy, self._forward_cache())

    def __repr__(self):
        o = self.options
        return (
            f"MaxPool2D(kernel_size={o.kernel_size}, stride={o.stride}, padding={o.padding}, "
            f"dilation={o.dilation}, ceil_mode={o.ceil_mode})"
        )


class AvgPool2D(Layer):
    """Average pooling layer; see :func:`convcore.avg_pool2d_forward`.

    Examples
    --------
    >>> AvgPool2D(3, stride=2, padding=1)(np.ones((1, 1, 5, 5))).shape
    (1, 1, 3, 3)
    """

    def __init__(self, kernel_size, *, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.options = pool_options(kernel_size, stride, padding, 1, ceil_mode)
        self.count_include_pad = as_flag(count_include_pad, "count_include_pad")

    def forward(self, x):
        """``x (N, C, H, W)`` -> ``y (N, C, OH, OW)``."""
        o = self.options
        y, self._cache = avg_pool2d_forward(
            x,
            o.kernel_size,
            stride=o.stride,
            padding=o.padding,
            ceil_mode=o.ceil_mode,
            count_include_pad=self.count_include_pad,
        )
        return y

    def backward(self, dy):
        """``dy (N, C, OH, OW)`` -> ``dx (N, C, H, W)``."""
        return avg_pool2d_backward(dy, self._forward_cache())

    def __repr__(self):
        o = self.options
        return (
            f"AvgPool2D(kernel_size={o.kernel_size}, stride={o.stride}, padding={o.padding}, "
            f"ceil_mode={o.ceil_mode}, count_include_pad={self.count_include_pad})"
        )
