"""convcore vs torch CPU, forward+backward, on shapes beyond the anchor suite: depthwise,
grouped, dilated, non-square kernels, odd sizes, batch 1, a large kernel with a large stride.
Interleaved blocks in one process, medians. Needs torch (`pip install torch==2.13.0`).

    python benchmarks/extra_shapes_vs_torch.py [f64]
"""

import sys
import time

import numpy as np
import torch
from extra_shapes import SHAPES

import convcore as cc


def times(f, reps):
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        out.append(time.perf_counter() - t0)
    return out


def pair(shape, dt):
    """Forward+backward closures for convcore and torch on one shape."""
    _, N, C, H, W, F, k, s, p, d, g = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W)).astype(dt)
    w = rng.standard_normal((F, C // g, *k)).astype(dt)
    b = rng.standard_normal(F).astype(dt)
    opts = dict(stride=s, padding=p, dilation=d, groups=g)
    dy = rng.standard_normal(cc.conv2d(x, w, b, **opts).shape).astype(dt)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    dyt = torch.tensor(dy)

    def engine():
        return cc.conv2d_backward(dy, cc.conv2d_forward(x, w, b, **opts)[1])

    def reference():
        y = torch.nn.functional.conv2d(xt, wt, bt, **opts)
        return torch.autograd.grad(y, (xt, wt, bt), dyt)

    return engine, reference


def main():
    torch.set_num_threads(2)
    dt = np.float64 if "f64" in sys.argv else np.float32
    ratios = []
    for shape in SHAPES:
        engine, reference = pair(shape, dt)
        engine(), reference()
        t0 = time.perf_counter()
        engine()
        reps = max(3, min(20, int(0.4 / max(time.perf_counter() - t0, 1e-5))))
        ours, theirs = [], []
        for _ in range(3):
            ours += times(engine, reps)
            theirs += times(reference, reps)
        tc, tt = float(np.median(ours)), float(np.median(theirs))
        ratios.append(tc / tt)
        print(f"{shape[0]:22s} torch {tt * 1e3:8.3f} ms  convcore {tc * 1e3:8.3f} ms  ratio {tc / tt:5.2f}")
    print(
        f"{np.dtype(dt).name}: convcore/torch geomean {np.exp(np.mean(np.log(ratios))):.2f} (worst {max(ratios):.2f})"
    )


if __name__ == "__main__":
    main()
