"""Peak memory of one forward+backward pass against what it returns, plus the workspace limit.

    python benchmarks/peak_memory.py [N] [--limit-mb MB]

Shape: the resnet_c64_56_k3 anchor (C=F=64, 56x56, 3x3, padding 1), float32. Peak is
measured with tracemalloc (NumPy reports its array buffers to it), from just before the
forward pass; inputs x, w, b and the output gradient dy exist before and are not counted.
"""

import argparse
import tracemalloc

import numpy as np

import convcore as cc
from convcore import workspace


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=256)
    parser.add_argument("--limit-mb", type=float, default=None)
    args = parser.parse_args()
    if args.limit_mb is not None:
        cc.set_workspace_limit(int(args.limit_mb * (1 << 20)))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n, 64, 56, 56), dtype=np.float32)
    w = rng.standard_normal((64, 64, 3, 3), dtype=np.float32)
    b = np.zeros(64, np.float32)
    dy = rng.standard_normal((args.n, 64, 56, 56), dtype=np.float32)
    cc.conv2d_backward(dy[:1], cc.conv2d_forward(x[:1], w, b, padding=1)[1])  # load the kernels
    workspace.release_workspace()
    tracemalloc.start()
    y, cache = cc.conv2d_forward(x, w, b, padding=1)
    dx, dw, db = cc.conv2d_backward(dy, cache)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    returned = y.nbytes + dx.nbytes + dw.nbytes + db.nbytes
    limit = cc.get_workspace_limit()
    mib = 1 << 20
    print(
        f"N={args.n}: peak {peak / mib:.1f} MiB; returned {returned / mib:.1f} MiB + limit "
        f"{limit / mib:.1f} MiB = {(returned + limit) / mib:.1f} MiB; "
        f"peak / (returned + limit) = {peak / (returned + limit):.3f}"
    )


if __name__ == "__main__":
    main()
