"""Engine forward, backward and forward+backward, and the naive reference, per configuration.

Configurations: the anchor suite (float32 and float64) and the stride/padding/kernel/
dilation/groups/dtype grid of :data:`convcore.bench.configs.PYTEST_GRID`. Select with
``-k``, for example ``pytest benchmarks/ -k "anchor and f32"``.
"""

import pytest
from benchsupport import (
    PHASES,
    assert_agrees,
    engine_target,
    record_figures,
    reference_target,
    reference_too_slow,
)

from convcore.bench.configs import PYTEST_GRID, anchor_suite, build_grid

GRID, _ = build_grid(PYTEST_GRID)
CONFIGS = [("anchor", c) for c in anchor_suite(("float32", "float64"))] + [("grid", c) for c in GRID]
IDS = [f"{kind} {cfg.label}".replace(" ", "-") for kind, cfg in CONFIGS]


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("kind, cfg", CONFIGS, ids=IDS)
def test_engine(benchmark, kind, cfg, phase, calibration):
    benchmark.group = cfg.label
    benchmark(engine_target(cfg, phase))
    record_figures(benchmark, cfg, phase, calibration)
    assert_agrees(cfg)


@pytest.mark.parametrize("kind, cfg", CONFIGS, ids=IDS)
def test_reference(benchmark, kind, cfg, calibration):
    if reference_too_slow(cfg):
        pytest.skip("the naive reference would take more than a few seconds here")
    benchmark.group = cfg.label
    benchmark.pedantic(reference_target(cfg), rounds=2, iterations=1)
    record_figures(benchmark, cfg, "forward+backward", calibration, is_reference=True)
