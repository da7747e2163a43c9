"""The sweep behind ``convcore bench``: engine against the naive reference, per configuration."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

import convcore
from convcore import reference
from convcore.bench import measure
from convcore.bench.configs import Config

__all__ = ["Row", "max_error", "reference_images", "run_config", "sweep"]

# Rough cost of one reference loop iteration (one window, forward or backward), used only
# to choose how many images the reference runs on.
_REFERENCE_SECONDS_PER_WINDOW = 3e-6


@dataclass(frozen=True)
class Row:
    """One configuration's figures; times in seconds, ``max_error`` relative (see below)."""

    config: Config
    output_shape: tuple
    engine: float
    reference: float | None
    reference_images: int
    max_error: float | None

    @property
    def reference_estimated(self) -> bool:
        """True when the reference ran on a subset of the batch and its time was scaled."""
        return self.reference is not None and self.reference_images < self.config.N

    @property
    def speedup(self) -> float | None:
        return None if self.reference is None else self.reference / self.engine

    @property
    def gflops(self) -> float:
        return self.config.flops / self.engine / 1e9

    def to_dict(self) -> dict:
        return dict(
            label=self.config.label,
            **self.config.to_dict(),
            output_shape="x".join(map(str, self.output_shape)),
            engine_s=self.engine,
            reference_s=self.reference,
            reference_estimated=self.reference_estimated,
            reference_images=self.reference_images,
            speedup=self.speedup,
            gflops=self.gflops,
            max_error=self.max_error,
        )


def max_error(got, want) -> float:
    """Largest ``|got - want|`` over all arrays, relative to the largest ``|want|``."""
    scale = max(float(np.abs(w).max(initial=0.0)) for w in want) or 1.0
    return max(float(np.abs(np.asarray(g, float) - w).max(initial=0.0)) for g, w in zip(got, want)) / scale


def reference_images(cfg: Config, budget: float) -> int:
    """How many of the batch's images the reference can loop over in about ``budget`` s."""
    geo = cfg.geometry()
    per_image = 3 * cfg.F * geo.P * _REFERENCE_SECONDS_PER_WINDOW
    return int(max(1, min(cfg.N, budget // per_image)))


def _time(run, rounds: int) -> float:
    calls = measure.calls_for(measure.best_of(run, 1), 0.02, lo=1, hi=20)
    return float(np.median([measure.best_of(run, calls) for _ in range(rounds)]))


def run_config(cfg: Config, *, with_reference=True, reference_budget=1.5, rounds=5) -> Row:
    """Time the engine's forward+backward on ``cfg`` and, optionally, the reference's.

    Parameters
    ----------
    cfg : Config
        The configuration.
    with_reference : bool
        Also run the naive reference, for its time and the max error.
    reference_budget : float
        Seconds of reference loops to aim for; beyond it the reference runs on a subset
        of the batch and its time is scaled to the whole batch.
    rounds : int
        Rounds of the engine's timing; the result is their median of best-of-several.

    Returns
    -------
    Row
    """
    case = measure.Case(convcore, cfg.spec())
    case.warm_up()
    engine = _time(case.run, rounds)
    ref_time, n, err = None, 0, None
    if with_reference:
        n = reference_images(cfg, reference_budget)
        args = (case.x[:n], case.w, case.b, case.dy[:n], case.options)
        got = measure.forward_backward(convcore, *args)  # the engine on the same images
        t0 = time.perf_counter()
        want = measure.forward_backward(reference, *args)
        ref_time = (time.perf_counter() - t0) * cfg.N / n
        err = max_error(got, want)
    return Row(cfg, cfg.output_shape, engine, ref_time, n, err)


def sweep(configs, *, with_reference=True, reference_budget=1.5, progress=print) -> list[Row]:
    """Run :func:`run_config` on each configuration, reporting progress."""
    rows = []
    for i, cfg in enumerate(configs):
        progress(f"[{i + 1}/{len(configs)}] {cfg.label}")
        rows.append(run_config(cfg, with_reference=with_reference, reference_budget=reference_budget))
    return rows
