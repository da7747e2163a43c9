"""Fixtures of the pytest-benchmark suite.

Run with ``pytest benchmarks/`` (never under pytest-xdist: pytest-benchmark disables
itself there). Each configuration's group holds the engine's forward, backward and
forward+backward benchmarks next to the naive reference's forward+backward.
"""

import pytest

from convcore.bench import measure


@pytest.fixture(scope="session")
def calibration() -> float:
    """Best time of the calibration GEMM, measured once in this run."""
    gemm = measure.calibration_gemm()
    gemm()
    return measure.best_of(gemm, 20)
