"""Timing primitives, and the gate's worker process.

This module imports nothing from convcore: the module to time is passed in. That lets the
regression gate run it as a script (``python measure.py``) under a ``PYTHONPATH`` that
selects which tree's convcore the worker imports, old or new, whatever that tree contains.

Worker protocol: one JSON object per line on stdin, one JSON reply per line on stdout.
``{"op": "load", "specs": [...]}`` builds and warms up the cases (Numba compiles here,
outside any measurement); ``{"op": "time", "index": i, "calls": k}`` returns the minimum
of ``k`` forward+backward calls; ``{"op": "calibrate", "calls": k}`` the minimum of ``k``
calibration GEMMs; ``{"op": "quit"}`` ends the worker.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

__all__ = [
    "THREAD_VARIABLES",
    "Case",
    "make_inputs",
    "forward_backward",
    "best_of",
    "calls_for",
    "calibration_gemm",
    "serve",
]

# environment variables that set BLAS and Numba thread counts; the gate pins all of them
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "CONVCORE_NUM_THREADS",
)

CALIBRATION_SIZE = 256


def make_inputs(x_shape, w_shape, dtype, seed=0):
    """Random ``x, w, b, dy`` for a convolution; ``dy`` has the forward output's shape."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    return x, w, b, rng


def forward_backward(module, x, w, b, dy, options):
    """One forward and one backward pass with ``module``'s ``conv2d_forward/backward``."""
    y, cache = module.conv2d_forward(x, w, b, **options)
    return (y, *module.conv2d_backward(dy, cache))


def best_of(f, calls: int) -> float:
    """Minimum wall time of ``calls`` calls of ``f()``, in seconds."""
    best = float("inf")
    for _ in range(calls):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def calls_for(seconds_per_call: float, target: float, lo: int = 3, hi: int = 50) -> int:
    """How many calls make a sample of about ``target`` seconds, within ``[lo, hi]``."""
    return int(min(hi, max(lo, target / max(seconds_per_call, 1e-7))))


class Case:
    """Inputs for one configuration and a forward+backward closure over ``module``.

    ``spec`` holds ``x_shape``, ``w_shape``, ``dtype`` and ``options`` (see
    :meth:`convcore.bench.configs.Config.spec`).
    """

    def __init__(self, module, spec: dict, seed: int = 0):
        self.options = dict(spec["options"])
        self.x, self.w, self.b, rng = make_inputs(spec["x_shape"], spec["w_shape"], spec["dtype"], seed)
        self.module = module
        y, _ = module.conv2d_forward(self.x, self.w, self.b, **self.options)  # compiles
        self.dy = rng.standard_normal(y.shape).astype(spec["dtype"])

    def run(self):
        return forward_backward(self.module, self.x, self.w, self.b, self.dy, self.options)

    def warm_up(self) -> float:
        """Run twice (compilation lands in the first call); return the second call's time."""
        self.run()
        return best_of(self.run, 1)


def calibration_gemm(dtype="float64", size: int = CALIBRATION_SIZE):
    """A fixed GEMM workload whose time tracks the machine's speed; returns a closure."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((size, size)).astype(dtype)
    c = rng.standard_normal((size, size)).astype(dtype)
    return lambda: a @ c


def _reply(out, **payload):
    out.write(json.dumps(payload) + "\n")
    out.flush()


def serve(module, inp=sys.stdin, out=sys.stdout) -> None:
    """Answer worker requests (see the module docstring) until ``quit`` or end of input."""
    cases: list[Case] = []
    calibrate = calibration_gemm()
    for line in inp:
        request = json.loads(line)
        op = request.get("op")
        try:
            if op == "load":
                cases = [Case(module, spec) for spec in request["specs"]]
                warm = [case.warm_up() for case in cases]
                calibrate()
                _reply(out, module=os.path.abspath(module.__file__), warm=warm)
            elif op == "time":
                _reply(out, t=best_of(cases[request["index"]].run, request["calls"]))
            elif op == "calibrate":
                _reply(out, t=best_of(calibrate, request["calls"]))
            elif op == "quit":
                _reply(out, bye=True)
                return
            else:
                _reply(out, error=f"unknown request {op!r}")
        except Exception as exc:  # reported to the gate, which stops with the message
            _reply(out, error=f"{type(exc).__name__}: {exc}")


def _worker_main() -> None:
    # Running as a script puts this file's directory first on sys.path; drop it so that
    # `import convcore` finds the tree named by PYTHONPATH and nothing here shadows stdlib.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    import convcore

    serve(convcore)


if __name__ == "__main__":
    _worker_main()
