"""Statistics of the regression gate: ratios, medians and bootstrap confidence intervals.

Deterministic: every bootstrap draws from a generator seeded by the caller (default 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "paired_ratios",
    "bootstrap_ci",
    "median_of_minima",
    "nested_ratio_ci",
    "Verdict",
    "judge",
]


def _samples(values, name: str) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"{name} must hold positive, finite times")
    return a


def paired_ratios(old, new) -> np.ndarray:
    """``new[i] / old[i]`` for times measured in the same round ``i``."""
    old, new = _samples(old, "old"), _samples(new, "new")
    if old.shape != new.shape:
        raise ValueError(f"old and new must pair up round by round, got {old.size} and {new.size} rounds")
    return new / old


def _percentile_interval(stats: np.ndarray, level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_ci(samples, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of ``samples``.

    Parameters
    ----------
    samples : sequence of float
        Positive values, for example per-round ratios new / old.
    level : float
        Coverage of the interval, in (0, 1).
    n_boot : int
        Number of resamples.
    seed : int
        Seed of the resampling generator: the same inputs give the same interval.

    Returns
    -------
    (float, float)
        Lower and upper end of the interval.

    Examples
    --------
    >>> bootstrap_ci([1.0, 1.0, 1.0])
    (1.0, 1.0)
    """
    a = _samples(samples, "samples")
    rng = np.random.default_rng(seed)
    draws = a[rng.integers(0, a.size, size=(n_boot, a.size))]
    return _percentile_interval(np.median(draws, axis=1), level)


def _groups(groups, name: str) -> list[np.ndarray]:
    if not groups:
        raise ValueError(f"{name} must hold at least one group of samples")
    return [_samples(g, name) for g in groups]


def median_of_minima(groups) -> float:
    """Median over groups (worker processes) of each group's minimum.

    Examples
    --------
    >>> median_of_minima([[3.0, 2.0], [1.0, 5.0], [4.0, 6.0]])
    2.0
    """
    return float(np.median([g.min() for g in _groups(groups, "groups")]))


def nested_ratio_ci(old, new, level: float = 0.95, n_boot: int = 2000, seed: int = 0):
    """Bootstrap interval of ``median_of_minima(new) / median_of_minima(old)``.

    Samples are resampled within each group (each worker process keeps its own samples),
    for two independent runs ``old`` and ``new``, each a list of groups.
    """
    old, new = _groups(old, "old"), _groups(new, "new")
    rng = np.random.default_rng(seed)

    def resampled(groups):
        minima = [g[rng.integers(0, g.size, size=(n_boot, g.size))].min(axis=1) for g in groups]
        return np.median(np.stack(minima), axis=0)

    return _percentile_interval(resampled(new) / resampled(old), level)


@dataclass(frozen=True)
class Verdict:
    """One configuration's outcome: times in seconds, ``ratio`` = new / old."""

    label: str
    old: float
    new: float
    ratio: float
    ci: tuple[float, float]
    slower: bool
    remeasured: bool = False

    @property
    def change(self) -> float:
        """Relative change of the time, ``ratio - 1`` (0.25 is 25% slower)."""
        return self.ratio - 1.0


def judge(ratio: float, ci: tuple[float, float], threshold: float) -> bool:
    """True when a configuration counts as slower.

    Its ratio must exceed ``1 + threshold`` and the interval must exclude 1: a change both
    larger than the noise allowance and distinguishable from no change at all.
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    return bool(ratio > 1.0 + threshold and ci[0] > 1.0)
