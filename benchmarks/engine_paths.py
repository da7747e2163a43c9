"""The Winograd, channels-last and depthwise engines against im2col + GEMM on the same
layers, channels-last Winograd against the engine chosen without it, and small layers on
one thread against split over the threads.

    python benchmarks/engine_paths.py [--repeats 5]
        [--only winograd|winograd_cl|channels_last|depthwise|multiplier|threads]

``multiplier``: layers with one input channel and several filters per group on the
depthwise loops. ``threads``: small layers on the engine convcore picks for them, their
im2col + GEMM work kept on the calling thread against split over all of convcore's
threads (two on a 2-CPU machine; the threshold ``convcore._gemm._MIN_PARALLEL_MAC_BYTES``
decides between them).

Forward+backward of each layer under each of two settings (an engine forced with
``conv._FORCE``, or the threshold set to split always or never), interleaved, median of
the per-round medians; printed as milliseconds and the ratio of the second setting to
the first (engine / gemm, or split / one thread), per dtype. These are the measurements
behind the conditions in ``convcore.conv._strategy`` and the threshold.
"""

import argparse
import time

import numpy as np

import convcore as cc
from convcore import _gemm, conv

# N, C, H, W, F, (KH, KW), stride, padding, dilation
WINOGRAD = [  # 3x3, stride 1, padding 1
    (8, 64, 56, 56, 64, (3, 3), 1, 1, 1),  # resnet_c64_56_k3
    (16, 128, 28, 28, 128, (3, 3), 1, 1, 1),
    (16, 16, 64, 64, 16, (3, 3), 1, 1, 1),
    (64, 16, 32, 32, 16, (3, 3), 1, 1, 1),
    (64, 32, 16, 16, 64, (3, 3), 1, 1, 1),  # cifar_c32_16_k3
    (64, 3, 32, 32, 32, (3, 3), 1, 1, 1),  # cifar_c3_32_k3
]
WINOGRAD_CL = [  # 3x3, stride 1, padding 1: small images, then wider ones and few positions
    (64, 32, 16, 16, 64, (3, 3), 1, 1, 1),  # cifar_c32_16_k3
    (64, 64, 16, 16, 128, (3, 3), 1, 1, 1),
    (64, 64, 8, 8, 64, (3, 3), 1, 1, 1),
    (32, 128, 8, 8, 128, (3, 3), 1, 1, 1),
    (128, 64, 4, 4, 64, (3, 3), 1, 1, 1),
    (64, 256, 7, 7, 256, (3, 3), 1, 1, 1),
    (16, 256, 14, 14, 256, (3, 3), 1, 1, 1),
    (64, 8, 16, 16, 16, (3, 3), 1, 1, 1),
    (16, 64, 28, 28, 64, (3, 3), 1, 1, 1),  # 28 wide
    (32, 32, 32, 32, 32, (3, 3), 1, 1, 1),  # 32 wide
    (8, 64, 56, 56, 64, (3, 3), 1, 1, 1),  # resnet_c64_56_k3
    (8, 512, 7, 7, 512, (3, 3), 1, 1, 1),  # 392 positions
    (64, 512, 4, 4, 512, (3, 3), 1, 1, 1),  # 1024 positions
]
CHANNELS_LAST = [  # short output rows, then the wider ones and few channels it loses on
    (128, 64, 8, 8, 64, (3, 3), 1, 1, 1),
    (64, 128, 8, 8, 128, (3, 3), 1, 1, 1),
    (64, 32, 12, 12, 32, (3, 3), 1, 1, 1),
    (64, 16, 16, 16, 32, (3, 3), 1, 1, 1),
    (64, 32, 16, 16, 64, (3, 3), 1, 1, 1),  # cifar_c32_16_k3
    (64, 32, 16, 16, 64, (5, 5), 1, 2, 1),
    (64, 64, 16, 16, 128, (3, 3), 2, 1, 1),  # down_c64_16_k3s2
    (16, 12, 37, 29, 24, (5, 5), 3, 2, 1),  # 10 wide
    (32, 64, 24, 24, 64, (3, 3), 1, 1, 1),
    (32, 16, 28, 28, 32, (3, 3), 1, 1, 1),
    (16, 32, 32, 32, 32, (3, 3), 1, 2, 2),  # dilated, 32 wide
    (64, 3, 32, 32, 32, (3, 3), 1, 1, 1),  # cifar_c3_32_k3
]
DEPTHWISE = [  # one channel and one filter per group: groups last
    (8, 64, 56, 56, 64, (3, 3), 1, 1, 1, 64),  # dw_c64_56_k3
    (16, 128, 28, 28, 128, (3, 3), 2, 1, 1, 128),  # dw_c128_28_k3s2
    (8, 32, 112, 112, 32, (3, 3), 1, 1, 1, 32),
    (16, 256, 14, 14, 256, (5, 5), 1, 2, 1, 256),
    (16, 32, 32, 32, 32, (3, 3), 1, 2, 2, 32),  # dilated
    (1, 64, 56, 56, 64, (3, 3), 1, 1, 1, 64),  # a batch of 1
]
MULTIPLIER = [  # one channel and several filters per group, on the depthwise loops: groups last
    (8, 32, 56, 56, 64, (3, 3), 1, 1, 1, 32),  # 2 filters a channel
    (16, 64, 28, 28, 256, (3, 3), 2, 1, 1, 64),  # 4, stride 2
    (8, 16, 32, 32, 128, (5, 5), 1, 2, 1, 16),  # 8, 5x5: 200, the bound
    (64, 1, 28, 28, 6, (5, 5), 1, 0, 1, 1),  # lenet_c1_28_k5
    (64, 1, 28, 28, 8, (3, 3), 1, 1, 1, 1),
    (64, 1, 28, 28, 16, (3, 3), 1, 1, 1, 1),
    (32, 1, 64, 64, 4, (3, 3), 2, 1, 1, 1),
    (64, 1, 28, 28, 12, (5, 5), 1, 0, 1, 1),  # 300: stays on im2col
    (32, 1, 64, 64, 8, (3, 3), 2, 1, 1, 1),  # 288: stays on im2col
    (1, 1, 224, 224, 8, (3, 3), 1, 1, 1, 1),  # a batch of 1: stays on im2col
]
THREADS = [  # small layers either side of the two-thread threshold
    (1, 16, 32, 32, 16, (3, 3), 1, 1, 1),  # b1_c16_32x32_k3
    (2, 16, 32, 32, 16, (3, 3), 1, 1, 1),
    (4, 16, 32, 32, 16, (3, 3), 1, 1, 1),
    (8, 16, 32, 32, 16, (3, 3), 1, 1, 1),
    (2, 32, 16, 16, 32, (3, 3), 1, 1, 1),
    (4, 32, 16, 16, 32, (3, 3), 1, 1, 1),
    (8, 8, 24, 24, 16, (3, 3), 1, 1, 1),
    (16, 8, 16, 16, 16, (3, 3), 1, 1, 1),
    (16, 3, 32, 32, 16, (3, 3), 1, 1, 1),
    (4, 8, 48, 48, 8, (3, 3), 1, 1, 1),
    (1, 32, 32, 32, 32, (3, 3), 1, 1, 1),
    (16, 12, 37, 29, 24, (5, 5), 3, 2, 1),  # odd_c12_37x29_k5s3
    (32, 3, 32, 32, 32, (3, 3), 1, 1, 1),
]


def _force_path(path):
    def apply():
        conv._FORCE = path

    return apply


_WINOGRAD_CL_SUITS = conv._winograd_cl_suits


def _without_winograd_cl():
    conv._FORCE, conv._winograd_cl_suits = None, lambda geo, dtype: False


def _with_winograd_cl():
    conv._FORCE, conv._winograd_cl_suits = "winograd_cl", _WINOGRAD_CL_SUITS


def _split(on: bool):
    def apply():
        _gemm._MIN_PARALLEL_MAC_BYTES = 0 if on else 1 << 62

    return apply


def _against_gemm(path: str, layers) -> tuple:
    """``path`` forced against 'gemm' forced, on ``layers``."""
    return f"{path} / gemm", {"gemm": _force_path("gemm"), path: _force_path(path)}, layers


# name: (title, {setting: how to apply it}, its layers); each ratio is the second setting
# over the first
ENGINES = {
    "winograd": _against_gemm("winograd", WINOGRAD),
    "winograd_cl": (
        "winograd_cl / without",
        {"without": _without_winograd_cl, "winograd_cl": _with_winograd_cl},
        WINOGRAD_CL,
    ),
    "channels_last": _against_gemm("channels_last", CHANNELS_LAST),
    "depthwise": _against_gemm("depthwise", DEPTHWISE),
    "multiplier": _against_gemm("depthwise", MULTIPLIER),
    "threads": ("split / one thread", {"one": _split(False), "split": _split(True)}, THREADS),
}


def _median_ms(run, reps: int = 10) -> float:
    run()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def compare(settings: dict, layer, dtype, repeats: int, rng) -> list[float]:
    """Median forward+backward milliseconds under each of ``settings``, interleaved."""
    N, C, H, W, F, kernel, stride, padding, dilation, *groups = layer
    groups = groups[0] if groups else 1
    opts = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((F, C // groups, *kernel)).astype(dtype)
    b = rng.standard_normal(F).astype(dtype)
    dy = rng.standard_normal(cc.conv2d(x, w, b, **opts).shape).astype(dtype)

    def run():
        cc.conv2d_backward(dy, cc.conv2d_forward(x, w, b, **opts)[1])

    rounds = {name: [] for name in settings}
    saved = _gemm._MIN_PARALLEL_MAC_BYTES
    try:
        for _ in range(repeats):
            for name, apply in settings.items():
                apply()
                rounds[name].append(_median_ms(run))
    finally:
        conv._FORCE, _gemm._MIN_PARALLEL_MAC_BYTES = None, saved
        conv._winograd_cl_suits = _WINOGRAD_CL_SUITS
    return [float(np.median(r)) for r in rounds.values()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=list(ENGINES))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for name, (title, settings, layers) in ENGINES.items():
        if args.only not in (None, name):
            continue
        print(title)
        first, second = settings
        for layer in layers:
            N, C, H, W, F, (KH, KW), s, p, d, *g = layer
            label = (
                f"{N}x{C}x{H}x{W} -> {F} {KH}x{KW}"
                + (f" s{s}" if s > 1 else "")
                + (f" d{d}" if d > 1 else "")
                + ("" if not g or g[0] == 1 else " dw" if g[0] == F else f" g{g[0]}")
            )
            for dtype in (np.float32, np.float64):
                a, b = compare(settings, layer, dtype, args.repeats, rng)
                print(
                    f"  {label:30s} {np.dtype(dtype).name:8s} {first} {a:8.2f} ms  {second} {b:8.2f} ms"
                    f"  ratio {b / a:.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
