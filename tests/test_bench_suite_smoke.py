"""The pytest-benchmark suite in benchmarks/ still runs: a few of its benchmarks, untimed."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_benchmark_suite_smoke():
    selection = "seed_3x3 or (grid and f64 and k3 and s2 and p1 and not d2 and not dw) or warm_cache"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks", "--benchmark-disable", "-p", "no:cacheprovider",
         "-k", selection],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # 2 anchors (f32, f64) + 1 grid config: 3 engine phases + reference each, and the cold start
    assert "13 passed" in proc.stdout, proc.stdout[-1000:]
