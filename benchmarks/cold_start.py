"""Cold and warm start: import plus the first float32 and float64 forward+backward.

    python benchmarks/cold_start.py [--repeats 3]

Each measurement is a fresh interpreter. Cold: an empty NUMBA_CACHE_DIR, so every kernel
the calls need is compiled. Warm: the same directory again, so they load from the cache.
Six workloads: the seeds' 3x3 input with a 2x2 filter (direct loops), a 16-channel
32x32 batch (im2col + GEMM + col2im), a 32-channel 16x16 batch (channels-last in
float32, im2col in float64), a depthwise 32-channel 32x32 batch (the depthwise loops),
resnet_c64_56_k3's shape (the Winograd engine in float64, channels-last Winograd in
float32) and cifar_c32_16_k3's (channels-last Winograd).
"""

import argparse
import os
import subprocess
import sys
import tempfile

CHILD = """
import time
t0 = time.perf_counter()
import numpy as np
import convcore as cc
for dt in (np.float32, np.float64):
    x = np.ones({x}, dt)
    w = np.ones({w}, dt)
    y, cache = cc.conv2d_forward(x, w, np.zeros(w.shape[0], dt), padding={p}, groups={g})
    cc.conv2d_backward(np.ones_like(y), cache)
print(time.perf_counter() - t0)
"""

WORKLOADS = {
    "seed 3x3, 2x2 filter": dict(x=(1, 1, 3, 3), w=(1, 1, 2, 2), p=0, g=1),
    "8x16x32x32, 3x3 filter": dict(x=(8, 16, 32, 32), w=(16, 16, 3, 3), p=1, g=1),
    "16x32x16x16, 3x3 filter": dict(x=(16, 32, 16, 16), w=(32, 32, 3, 3), p=1, g=1),
    "8x32x32x32, depthwise": dict(x=(8, 32, 32, 32), w=(32, 1, 3, 3), p=1, g=32),
    "8x64x56x56, Winograd": dict(x=(8, 64, 56, 56), w=(64, 64, 3, 3), p=1, g=1),
    "64x32x16x16, Winograd cl": dict(x=(64, 32, 16, 16), w=(64, 32, 3, 3), p=1, g=1),
}


def run(code, cache_dir):
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for name, shapes in WORKLOADS.items():
        code = CHILD.format(**shapes)
        cold, warm = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as cache_dir:
                cold.append(run(code, cache_dir))
                warm.append(run(code, cache_dir))
        print(
            f"{name:24s} cold {min(cold):.2f} s (max {max(cold):.2f})   warm {min(warm):.2f} s (max {max(warm):.2f})"
        )


if __name__ == "__main__":
    main()
