"""Measure the regression gate's A/A noise: the same code on both sides, many times.

``python benchmarks/aa_noise.py [RUNS] [against|compare]`` runs, RUNS times each
(default 10), the ``--against HEAD`` gate with the working tree unchanged and the
``--save``/``--compare`` pair (or only the mode named), on ``convcore bench``'s default grid, and prints the distribution of the measured
changes. The gate's default thresholds (README, "Benchmarking") come from these figures.
Run it from a clean checkout: the working tree must equal HEAD for an A/A comparison.
"""

from __future__ import annotations

import sys

import numpy as np

from convcore.bench import configs, gate
from convcore.bench.stats import judge


def _quiet(message: str) -> None:
    pass


THRESHOLDS = (0.05, 0.075, 0.10, 0.15, 0.20)


def summarise(name: str, verdicts: list) -> None:
    """Spread of the measured changes, and how often each threshold would flag a config."""
    changes = np.array([v.change for v in verdicts])
    c = np.abs(changes)
    print(
        f"{name}: {len(changes)} config-runs; |change| median {np.median(c):.1%}, "
        f"95th percentile {np.quantile(c, 0.95):.1%}, 99th {np.quantile(c, 0.99):.1%}, "
        f"max {c.max():.1%}; largest slowdown {changes.max():+.1%}"
    )
    for t in THRESHOLDS:
        flagged = sum(judge(v.ratio, v.ci, t) for v in verdicts)
        print(f"  threshold {t:.1%}: {flagged} of {len(verdicts)} config-runs flagged before re-measuring")


def _run(name: str, runs: int, one_run) -> None:
    verdicts = []
    for i in range(runs):
        got = one_run()
        verdicts += got
        print(f"{name} {i + 1}/{runs}: largest slowdown {max(v.change for v in got):+.1%}", flush=True)
    summarise(name, verdicts)


def main(runs: int, modes) -> None:
    grid, _ = configs.build_grid({})
    raw = dict(threshold=float("inf"), progress=_quiet)  # nothing flagged, nothing re-measured
    if "against" in modes:
        _run("--against HEAD", runs, lambda: gate.against("HEAD", grid, **raw)[0])
    if "compare" not in modes:
        return
    state = {"base": gate.record(grid, progress=_quiet)}

    def compare_with_previous():
        verdicts, state["base"] = gate.compare(state["base"], **raw)
        return verdicts

    _run("--save/--compare", runs, compare_with_previous)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10, sys.argv[2:] or ["against", "compare"])
