"""Where a forward+backward pass spends its time, per anchor shape, on one thread.

    python benchmarks/profile_anchors.py [--dtype float32 float64] [--repeats 10] [--extra]

``--extra`` profiles the shapes of ``extra_shapes.py`` too.

The engine's pieces are timed by wrapping them: the im2col and col2im kernels (NCHW and
channels-last), the Winograd engines' four transforms each ("transform"), the BLAS
products (``np.matmul``, every engine), and the transposed copies between GEMM layouts
and NCHW (``np.copyto``/``np.add``, the channels-last engine's transposes and the
channels-last Winograd engine's phase copies). "other" is the
rest of the wall time: argument checks, output allocation and first touch, bias, the
bias gradient, planning and Python overhead. One
thread (and single-threaded BLAS, as always inside the engine) so the pieces add up;
with two threads each thread runs about half of each piece.
"""

import argparse
import time
from collections import Counter
from types import SimpleNamespace

import numpy as np

import convcore as cc
from convcore import _channels_last, _gemm, _threads, _winograd, _winograd_cl
from convcore.bench.configs import anchor_suite

PIECES = ("im2col", "gemm", "col2im", "transform", "copies", "other")
TRANSFORMS = (
    "_input_transform",
    "_output_transform",
    "_output_transform_adjoint",
    "_input_transform_adjoint",
)


def _timed(totals: Counter, piece: str, function):
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[piece] += time.perf_counter() - start

    return timed


class _TimedNumPy:
    """Stands in for ``np`` inside the engine module, timing the calls that matter."""

    def __init__(self, totals: Counter):
        self.matmul = _timed(totals, "gemm", np.matmul)
        self.copyto = _timed(totals, "copies", np.copyto)
        self.add = _timed(totals, "copies", np.add)

    def __getattr__(self, name):
        return getattr(np, name)


def profile(cfg, repeats: int, totals: Counter) -> dict:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(cfg.x_shape).astype(cfg.dtype)
    w = rng.standard_normal(cfg.w_shape).astype(cfg.dtype)
    b = np.zeros(cfg.F, cfg.dtype)
    opts = cfg.options
    y, _ = cc.conv2d_forward(x, w, b, **opts)
    dy = rng.standard_normal(y.shape).astype(cfg.dtype)

    def run():
        _, cache = cc.conv2d_forward(x, w, b, **opts)
        cc.conv2d_backward(dy, cache)

    run()
    run()
    totals.clear()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    wall = (time.perf_counter() - start) / repeats
    ms = {piece: totals[piece] / repeats * 1e3 for piece in PIECES[:-1]}
    ms["other"] = wall * 1e3 - sum(ms.values())
    return {"total": wall * 1e3, **ms}


def _extra_configs(dtypes) -> list:
    """The shapes of ``extra_shapes.py`` in the form :func:`profile` reads (they have
    non-square kernels and paddings that :class:`convcore.bench.configs.Config` lacks)."""
    from extra_shapes import SHAPES

    return [
        SimpleNamespace(
            x_shape=(N, C, H, W),
            w_shape=(F, C // g, *k),
            F=F,
            dtype=dt,
            options=dict(stride=s, padding=p, dilation=d, groups=g),
            label=f"{name} {'f32' if dt == 'float32' else 'f64'}",
        )
        for dt in dtypes
        for name, N, C, H, W, F, k, s, p, d, g in SHAPES
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--extra", action="store_true", help="also the shapes of extra_shapes.py")
    args = parser.parse_args()
    totals = Counter()
    _threads._THREADS = 1
    configs = anchor_suite(tuple(args.dtype)) + (_extra_configs(args.dtype) if args.extra else [])
    for cfg in configs:  # compile every kernel first: Numba cannot type the stand-in for np
        profile(cfg, 1, Counter())
    _gemm.np = _TimedNumPy(totals)
    _gemm.im2col_into = _timed(totals, "im2col", _gemm.im2col_into)
    _gemm.col2im_into = _timed(totals, "col2im", _gemm.col2im_into)
    _winograd.np = _TimedNumPy(totals)
    _channels_last.np = _TimedNumPy(totals)
    _channels_last.im2col_cl_into = _timed(totals, "im2col", _channels_last.im2col_cl_into)
    _channels_last.col2im_cl_into = _timed(totals, "col2im", _channels_last.col2im_cl_into)
    for name in ("to_channels_last", "from_channels_last"):
        setattr(_channels_last, name, _timed(totals, "copies", getattr(_channels_last, name)))
    _winograd_cl.np = _TimedNumPy(totals)
    _winograd_cl._phase_copy = _timed(totals, "copies", _winograd_cl._phase_copy)
    for module in (_winograd, _winograd_cl):
        for name in TRANSFORMS:
            setattr(module, name, _timed(totals, "transform", getattr(module, name)))
    print(
        f"{'configuration':22s} {'total ms':>9s} " + " ".join(f"{p:>9s}" for p in PIECES) + "  (% of total)"
    )
    for cfg in configs:
        ms = profile(cfg, args.repeats, totals)
        shares = " ".join(f"{100 * ms[p] / ms['total']:8.0f}%" for p in PIECES)
        print(f"{cfg.label:22s} {ms['total']:9.2f} {shares}")


if __name__ == "__main__":
    main()
