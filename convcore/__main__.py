"""``python -m convcore``: a short self-check of the engine against the naive reference."""

from __future__ import annotations

import sys
import time

import numpy as np

import convcore
from convcore import reference

# (label, input shape, weight shape, options)
SELF_CHECK = [
    ("k3 s1 p0", (4, 3, 16, 16), (8, 3, 3, 3), dict(stride=1, padding=0)),
    ("k3 s1 p1", (4, 3, 16, 16), (8, 3, 3, 3), dict(stride=1, padding=1)),
    ("k3 s2 p1", (4, 8, 16, 16), (8, 8, 3, 3), dict(stride=2, padding=1)),
    ("k5 s2 same", (4, 3, 17, 15), (6, 3, 5, 5), dict(stride=2, padding="same")),
    ("k3 s1 d2 same", (4, 4, 12, 12), (4, 4, 3, 3), dict(padding="same", dilation=2)),
    ("k3 dw s1 p1", (4, 8, 16, 16), (8, 1, 3, 3), dict(padding=1, groups=8)),
]


def _best_of(f, repeats=3):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def _fwd_bwd(module, x, w, b, dy, opts):
    y, cache = module.conv2d_forward(x, w, b, **opts)
    return (y, *module.conv2d_backward(dy, cache))


def self_check(out=sys.stdout) -> bool:
    """Run the engine and the reference on a few configurations; True when all agree."""
    rng = np.random.default_rng(0)
    print(f"{'configuration':16s} {'output':>16s} {'max rel err':>12s} {'speedup':>8s}", file=out)
    ok = True
    for label, xs, ws, opts in SELF_CHECK:
        x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
        y = reference.conv2d_forward(x, w, b, **opts)[0]
        dy = rng.standard_normal(y.shape)
        _fwd_bwd(convcore, x, w, b, dy, opts)  # compile outside the timing
        got = _fwd_bwd(convcore, x, w, b, dy, opts)
        want = _fwd_bwd(reference, x, w, b, dy, opts)
        err = max(np.abs(g - r).max() / np.abs(r).max() for g, r in zip(got, want))
        args = (x, w, b, dy, opts)
        t_engine = _best_of(lambda args=args: _fwd_bwd(convcore, *args))
        t_ref = _best_of(lambda args=args: _fwd_bwd(reference, *args), repeats=1)
        ok &= err <= 1e-10
        print(f"{label:16s} {str(y.shape):>16s} {err:12.1e} {t_ref / t_engine:7.0f}x", file=out)
    print("all configurations agree with the reference" if ok else "MISMATCH", file=out)
    return ok


def main(argv=None) -> int:
    return 0 if self_check() else 1


if __name__ == "__main__":
    sys.exit(main())
