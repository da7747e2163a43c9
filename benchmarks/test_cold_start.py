"""Cold start: a fresh process imports convcore and runs its first float32 and float64
forward+backward. Measured in a subprocess, with an empty Numba cache (every kernel
compiles) and with the cache left warm by a previous process.
"""

import os
import subprocess
import sys
import tempfile

import pytest

FIRST_CALLS = """
import numpy as np
import convcore
for dtype in (np.float32, np.float64):
    x = np.ones((2, 3, 8, 8), dtype)
    y, cache = convcore.conv2d_forward(x, np.ones((4, 3, 3, 3), dtype), np.zeros(4, dtype), padding=1)
    convcore.conv2d_backward(np.ones_like(y), cache)
"""


def _run(cache_dir: str) -> None:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    subprocess.run([sys.executable, "-c", FIRST_CALLS], env=env, check=True)


@pytest.fixture(scope="module")
def warm_cache():
    with tempfile.TemporaryDirectory(prefix="convcore-numba-") as cache_dir:
        _run(cache_dir)
        yield cache_dir


def test_cold_start_empty_cache(benchmark):
    benchmark.group = "cold start"
    scratch = []

    def fresh_cache():
        scratch.append(tempfile.TemporaryDirectory(prefix="convcore-numba-"))
        return (scratch[-1].name,), {}

    try:
        benchmark.pedantic(_run, setup=fresh_cache, rounds=3, iterations=1)
    finally:
        for directory in scratch:
            directory.cleanup()
    benchmark.extra_info["numba_cache"] = "empty"


def test_cold_start_warm_cache(benchmark, warm_cache):
    benchmark.group = "cold start"
    benchmark.pedantic(_run, args=(warm_cache,), rounds=5, iterations=1)
    benchmark.extra_info["numba_cache"] = "warm"
