"""Helpers of the pytest-benchmark suite: inputs, reference figures and ``extra_info``."""

from __future__ import annotations

import functools
import time

import numpy as np

import convcore
from convcore import reference
from convcore._geometry import conv_geometry
from convcore.bench import measure, sweep
from convcore.bench.configs import Config

PHASES = ("forward", "backward", "forward+backward")
# the reference is benchmarked only where its forward+backward is expected within this
REFERENCE_SECONDS = 3.0


@functools.lru_cache(maxsize=4)
def prepared(cfg: Config):
    """The engine's inputs for ``cfg``, warmed up (Numba compiles here, not in a round)."""
    case = measure.Case(convcore, cfg.spec())
    case.warm_up()
    return case


@functools.cache
def reference_figures(cfg: Config) -> dict:
    """One timed reference forward and backward, on a subset of images when the batch is slow.

    Returns times scaled to the whole batch, whether they are estimates, and the max error
    of the engine against the reference on the same images.
    """
    case = prepared(cfg)
    n = sweep.reference_images(cfg, budget=1.0)
    x, dy = case.x[:n], case.dy[:n]
    t0 = time.perf_counter()
    y, cache = reference.conv2d_forward(x, case.w, case.b, **case.options)
    t1 = time.perf_counter()
    grads = reference.conv2d_backward(dy, cache)
    t2 = time.perf_counter()
    got = measure.forward_backward(convcore, x, case.w, case.b, dy, case.options)
    scale = cfg.N / n
    return {
        "forward": (t1 - t0) * scale,
        "backward": (t2 - t1) * scale,
        "forward+backward": (t2 - t0) * scale,
        "estimated": n < cfg.N,
        "max_error": sweep.max_error(got, (y, *grads)),
    }


@functools.cache
def gemm_bound(cfg: Config) -> dict:
    """Per phase, the time of the GEMMs an im2col engine cannot avoid, with NumPy's BLAS
    (its own thread count): per group, columns ``(N*OH*OW, Cg*KH*KW)`` times the weights
    (forward), and the weight gradient and column gradient (backward). Best of 5."""
    case = prepared(cfg)
    geo = conv_geometry(case.x.shape, case.w.shape, **case.options)
    rng = np.random.default_rng(2)
    m = geo.N * geo.P
    cols = rng.standard_normal((m, geo.window_rows)).astype(cfg.dtype)
    wm = rng.standard_normal((geo.window_rows, geo.Fg)).astype(cfg.dtype)
    dy = rng.standard_normal((m, geo.Fg)).astype(cfg.dtype)

    def forward():
        for _ in range(geo.groups):
            cols @ wm

    def backward():
        for _ in range(geo.groups):
            dy.T @ cols
            dy @ wm.T

    forward(), backward()  # first touch of the products' pages
    fwd, bwd = measure.best_of(forward, 5), measure.best_of(backward, 5)
    return {"forward": fwd, "backward": bwd, "forward+backward": fwd + bwd}


def phase_flops(cfg: Config, phase: str) -> int:
    """Forward is one of the three GEMMs, backward the other two."""
    return {"forward": cfg.flops // 3, "backward": 2 * cfg.flops // 3, "forward+backward": cfg.flops}[phase]


def record_figures(benchmark, cfg: Config, phase: str, calibration: float, is_reference=False) -> None:
    """Fill ``extra_info``: GFLOP/s, speed-up over the reference, time over the GEMM bound,
    max error, time / calibration."""
    ref = reference_figures(cfg)
    info = benchmark.extra_info
    info.update(config=cfg.label, phase=phase, max_error=ref["max_error"], calibration_s=calibration)
    info["reference_s"] = ref[phase]
    info["reference_estimated"] = ref["estimated"]
    if benchmark.stats is None:  # --benchmark-disable: nothing was timed
        return
    best = benchmark.stats.stats.min
    info["gflops"] = phase_flops(cfg, phase) / best / 1e9
    info["relative_to_calibration"] = best / calibration
    if not is_reference:
        info["strategy"] = strategy(cfg)
        info["speedup"] = ref[phase] / best
        info["gemm_bound_s"] = gemm_bound(cfg)[phase]
        info["relative_to_gemm_bound"] = best / info["gemm_bound_s"]


def strategy(cfg: Config) -> str:
    """The engine path ``cfg`` runs on ('gemm', 'winograd', 'winograd_cl', 'channels_last',
    'depthwise' or 'tiny'): a change of path explains a jump in the figures."""
    return convcore.conv._strategy(cfg.geometry(), np.dtype(cfg.dtype))


def reference_too_slow(cfg: Config) -> bool:
    return reference_figures(cfg)["forward+backward"] > REFERENCE_SECONDS


def engine_target(cfg: Config, phase: str):
    """The callable to time for ``phase`` (backward reuses one forward cache)."""
    case = prepared(cfg)
    if phase == "forward":
        return lambda: convcore.conv2d_forward(case.x, case.w, case.b, **case.options)
    if phase == "backward":
        _, cache = convcore.conv2d_forward(case.x, case.w, case.b, **case.options)
        return lambda: convcore.conv2d_backward(case.dy, cache)
    return case.run


def reference_target(cfg: Config):
    """The reference's forward+backward on the engine's inputs."""
    case = prepared(cfg)
    return lambda: measure.forward_backward(reference, case.x, case.w, case.b, case.dy, case.options)


def assert_agrees(cfg: Config) -> None:
    """The benchmark measures a correct result: engine and reference agree."""
    tolerance = 1e-4 if cfg.dtype == "float32" else 1e-10
    assert reference_figures(cfg)["max_error"] <= tolerance, cfg.label
