"""``convcore``'s command line: ``convcore bench`` (also ``python -m convcore bench``).

``convcore check`` (and ``python -m convcore`` without arguments) runs a short self-check
of the engine against the naive reference.
"""

from __future__ import annotations

import sys

import numpy as np

USAGE = """\
usage: convcore {bench,check} ...

  bench   time the engine against the naive reference, or gate a change
          (convcore bench --help)
  check   a short self-check: a few configurations against the reference
"""

# (label, input shape, weight shape, options)
SELF_CHECK = [
    ("k3 s1 p0", (4, 3, 16, 16), (8, 3, 3, 3), dict(stride=1, padding=0)),
    ("k3 s1 p1", (4, 3, 16, 16), (8, 3, 3, 3), dict(stride=1, padding=1)),
    ("k3 s2 p1", (4, 8, 16, 16), (8, 8, 3, 3), dict(stride=2, padding=1)),
    ("k5 s2 same", (4, 3, 17, 15), (6, 3, 5, 5), dict(stride=2, padding="same")),
    ("k3 s1 d2 same", (4, 4, 12, 12), (4, 4, 3, 3), dict(padding="same", dilation=2)),
    ("k3 dw s1 p1", (4, 8, 16, 16), (8, 1, 3, 3), dict(padding=1, groups=8)),
]


def self_check(out=None) -> bool:
    """Run the engine and the reference on a few configurations; True when all agree."""
    out = sys.stdout if out is None else out
    import convcore
    from convcore import reference
    from convcore.bench.measure import best_of, forward_backward, make_inputs
    from convcore.bench.sweep import max_error

    print(f"{'configuration':16s} {'output':>16s} {'max rel err':>12s} {'speedup':>8s}", file=out)
    ok = True
    for label, xs, ws, opts in SELF_CHECK:
        x, w, b, rng = make_inputs(xs, ws, np.float64)
        y = reference.conv2d_forward(x, w, b, **opts)[0]
        args = (x, w, b, rng.standard_normal(y.shape), opts)
        got = forward_backward(convcore, *args)  # compiles outside the timing
        want = forward_backward(reference, *args)
        err = max_error(got, want)
        t_engine = best_of(lambda args=args: forward_backward(convcore, *args), 3)
        t_ref = best_of(lambda args=args: forward_backward(reference, *args), 1)
        ok &= err <= 1e-10
        print(f"{label:16s} {str(y.shape):>16s} {err:12.1e} {t_ref / t_engine:7.0f}x", file=out)
    print("all configurations agree with the reference" if ok else "MISMATCH", file=out)
    return ok


def main(argv=None) -> int:
    """Entry point of the ``convcore`` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv else "check"
    if command == "bench":
        from convcore.bench.cli import run

        return run(argv[1:], prog="convcore bench")
    if command == "check" and len(argv) <= 1:
        return 0 if self_check() else 1
    if command in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    print(USAGE, end="", file=sys.stderr)
    print(f"convcore: error: unknown command {command!r} (choose from bench, check)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
