"""Statistics of the regression gate: ratios, medians and bootstrap confidence intervals.

Deterministic: every bootstrap draws from a generator seeded by the caller (default 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["paired_ratios", "bootstrap_ci", "ratio_ci", "Verdict", "judge"]


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


def ratio_ci(old, new, statistic=np.median, level: float = 0.95, n_boot: int = 2000, seed: int = 0):
    """Bootstrap interval of ``statistic(new) / statistic(old)`` for two independent samples.

    ``statistic`` reduces along axis 1 (``np.median``, ``np.min``).
    """
    old, new = _samples(old, "old"), _samples(new, "new")
    rng = np.random.default_rng(seed)
    s_old = statistic(old[rng.integers(0, old.size, size=(n_boot, old.size))], axis=1)
    s_new = statistic(new[rng.integers(0, new.size, size=(n_boot, new.size))], axis=1)
    return _percentile_interval(s_new / s_old, level)


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
