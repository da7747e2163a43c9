"""The Winograd engine against im2col + GEMM on the same 3x3 stride-1 layers.

    python benchmarks/engine_paths.py [--repeats 5]

Forward+backward of each layer with the engine forced onto each path (``conv._FORCE``),
the two paths interleaved, median of the per-round medians; printed as milliseconds and
the ratio winograd / gemm, per dtype. These are the measurements behind the conditions in
``convcore.conv._strategy``.
"""

import argparse
import time

import numpy as np

import convcore as cc
from convcore import conv

LAYERS = [  # N, C, H, W, F; 3x3 kernel, stride 1, padding 1
    (8, 64, 56, 56, 64),  # resnet_c64_56_k3
    (16, 128, 28, 28, 128),
    (16, 16, 64, 64, 16),
    (64, 16, 32, 32, 16),
    (64, 32, 16, 16, 64),  # cifar_c32_16_k3
    (64, 3, 32, 32, 32),  # cifar_c3_32_k3
]
PATHS = ("gemm", "winograd")


def _median_ms(run, reps: int = 10) -> float:
    run()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for N, C, H, W, F in LAYERS:
        for dtype in (np.float32, np.float64):
            x = rng.standard_normal((N, C, H, W)).astype(dtype)
            w = rng.standard_normal((F, C, 3, 3)).astype(dtype)
            dy = rng.standard_normal((N, F, H, W)).astype(dtype)

            def run(x=x, w=w, dy=dy):
                _, cache = cc.conv2d_forward(x, w, padding=1)
                cc.conv2d_backward(dy, cache)

            rounds = {path: [] for path in PATHS}
            try:
                for _ in range(args.repeats):
                    for path in PATHS:
                        conv._FORCE = path
                        rounds[path].append(_median_ms(run))
            finally:
                conv._FORCE = None
            gemm, wino = (float(np.median(rounds[path])) for path in PATHS)
            print(
                f"{N}x{C}x{H}x{W} -> {F:<4d} {np.dtype(dtype).name:8s} "
                f"gemm {gemm:8.2f} ms  winograd {wino:8.2f} ms  ratio {wino / gemm:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
