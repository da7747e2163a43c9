"""The window kernels: thread splitting, determinism, concurrency, and the no-cache fallback."""

import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import convcore as cc
from convcore import _kernels, _threads, conv
from convcore._geometry import conv_geometry

from strategies import engine_path

ROOT = Path(__file__).resolve().parents[1]


def _fwd_bwd(x, w, b, **opts):
    y, cache = cc.conv2d_forward(x, w, b, **opts)
    dy = np.cos(np.arange(y.size, dtype=y.dtype)).reshape(y.shape)
    return (y, *cc.conv2d_backward(dy, cache))


def _problem(dtype=np.float32, n=6):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, 8, 20, 20)).astype(dtype)
    w = rng.standard_normal((12, 8, 3, 3)).astype(dtype)
    return x, w, rng.standard_normal(12).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_are_bitwise_reproducible(dtype):
    x, w, b = _problem(dtype)
    first = _fwd_bwd(x, w, b, padding=1, stride=(1, 2))
    for _ in range(3):
        for a, c in zip(first, _fwd_bwd(x, w, b, padding=1, stride=(1, 2)), strict=True):
            assert a.tobytes() == c.tobytes()


def test_threaded_split_equals_single_thread(monkeypatch):
    # depthwise: the shift-and-add kernels are the ones split over threads
    x, _, b = _problem(np.float64)
    w = np.random.default_rng(1).standard_normal((8, 1, 3, 3))
    monkeypatch.setattr(_threads, "_THREADS", 2)
    split = _fwd_bwd(x, w, b[:8], padding=2, dilation=2, groups=8)
    assert x.size * 9 >= _threads._MIN_PARALLEL_WORK  # the split path really ran
    monkeypatch.setattr(_threads, "_THREADS", 1)
    single = _fwd_bwd(x, w, b[:8], padding=2, dilation=2, groups=8)
    for a, c in zip(split, single, strict=True):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("threads", [3, 7])
def test_run_split_covers_every_job_once(monkeypatch, threads):
    monkeypatch.setattr(_threads, "_THREADS", threads)
    seen = np.zeros(50, np.int64)
    lock = threading.Lock()

    def job(out, lo, hi):
        with lock:
            out[lo:hi] += 1

    _threads.run_split(job, (seen,), 50, work=1 << 30)
    np.testing.assert_array_equal(seen, 1)


@pytest.mark.parametrize("threads", [1, 3])
def test_run_splits_covers_every_job_of_each_kernel_once(monkeypatch, threads):
    """Two kernels in one hand-off, one with fewer jobs than threads: each job of each
    runs once, and each thread's share of the first kernel before its share of the
    second."""
    monkeypatch.setattr(_threads, "_THREADS", threads)
    many, few = np.zeros(50, np.int64), np.zeros(2, np.int64)
    calls, lock = [], threading.Lock()

    def job(name, out, lo, hi):
        with lock:
            out[lo:hi] += 1
            calls.append((name, lo, hi))

    _threads.run_splits([(job, ("many", many), 50), (job, ("few", few), 2)], work=1 << 30)
    np.testing.assert_array_equal(many, 1)
    np.testing.assert_array_equal(few, 1)
    shares = zip(_threads.even_ranges(50, threads), _threads.even_ranges(2, threads), strict=True)
    for first, second in shares:
        if second[0] < second[1]:  # an empty share is not called
            assert calls.index(("many", *first)) < calls.index(("few", *second))
        else:
            assert ("few", *second) not in calls


def _assert_concurrent_runs_match_sequential(run, problems, copies=4):
    """``run(*problem)`` from ``copies`` threads per problem, all at once, gives the same
    bits as one sequential run of each."""
    expected = [run(*p) for p in problems]
    results = [None] * (copies * len(problems))

    def worker(i):
        results[i] = run(*problems[i % len(problems)])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, got in enumerate(results):
        for a, c in zip(got, expected[i % len(problems)], strict=True):
            assert a.tobytes() == c.tobytes()


def test_concurrent_calls_match_sequential_calls():
    # the largest batch is split over threads (the others run on the calling thread)
    problems = [_problem(dt, n) for dt in (np.float32, np.float64) for n in (1, 5, 24)]
    _assert_concurrent_runs_match_sequential(lambda x, w, b: _fwd_bwd(x, w, b, padding="same"), problems)


@pytest.mark.parametrize("path", ["winograd", "winograd_cl", "channels_last"])
def test_concurrent_engine_calls_match_sequential_calls(path):
    problems = [_problem(dt, n) for dt in (np.float32, np.float64) for n in (1, 24)]
    with engine_path(path):
        if path == "winograd_cl":  # every problem runs on it (whole images, an image a thread)
            for x, w, _ in problems:
                assert conv._strategy(conv_geometry(x.shape, w.shape, 1, 1, 1, 1), x.dtype) == path
        _assert_concurrent_runs_match_sequential(lambda x, w, b: _fwd_bwd(x, w, b, padding=1), problems)


def test_concurrent_depthwise_calls_match_sequential_calls():
    problems = [_problem(dt, n) for dt in (np.float32, np.float64) for n in (1, 24)]
    problems = [(x, w[:8, :1].copy(), b[:8]) for x, w, b in problems]  # one filter per channel
    geo = conv_geometry(problems[0][0].shape, problems[0][1].shape, 1, 1, 1, 8)
    assert conv._strategy(geo, np.float32) == "depthwise"  # even the single image
    _assert_concurrent_runs_match_sequential(lambda x, w, b: _fwd_bwd(x, w, b, padding=1, groups=8), problems)


def test_concurrent_transposed_convolutions_match_sequential_calls():
    def run(x, w, b):
        y, cache = cc.conv_transpose2d_forward(x, w, b, stride=2, padding=1, output_padding=1)
        return (y, *cc.conv_transpose2d_backward(np.cos(y), cache))

    problems = [_problem(dt, n) for dt in (np.float32, np.float64) for n in (1, 30)]
    problems = [(x, w.transpose(1, 0, 2, 3)[:, :6].copy(), b[:6]) for x, w, b in problems]
    _assert_concurrent_runs_match_sequential(run, problems)


def test_run_split_waits_for_the_pool_when_the_callers_share_fails(monkeypatch):
    monkeypatch.setattr(_threads, "_THREADS", 2)
    done = []

    def kernel(lo, hi):
        if lo == 0:
            raise RuntimeError("caller's share failed")
        time.sleep(0.2)
        done.append((lo, hi))

    with pytest.raises(RuntimeError, match="caller's share failed"):
        _threads.run_split(kernel, (), 2, work=1 << 30)
    assert done == [(1, 2)]  # the pool's share had finished before the error surfaced


def test_parallel_work_asked_for_on_a_pool_thread_runs_there(monkeypatch):
    monkeypatch.setattr(_threads, "_THREADS", 2)  # a pool of one worker
    nested = _threads._get_pool().submit(lambda: _threads.run_tasks([lambda: 1, lambda: 2]))
    assert nested.result(timeout=10) == [1, 2]  # waiting on the pool from inside it would hang


def test_kernels_refuse_non_contiguous_buffers():
    x = np.zeros((2, 1, 4, 4))
    cols = np.zeros((4, 2 * 9 * 2))[:, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        _kernels.im2col_into(x, (2, 2, 1, 1, 1, 1, 0, 0, 3, 3), cols)


def test_bad_thread_count_in_environment():
    env = {**os.environ, "CONVCORE_NUM_THREADS": "zero"}
    proc = subprocess.run([sys.executable, "-c", "import convcore"], env=env, capture_output=True, text=True)
    assert (
        proc.returncode != 0 and "CONVCORE_NUM_THREADS must be a positive integer, got 'zero'" in proc.stderr
    )


SCRIPT = """
import numpy as np, convcore as cc
for dt in (np.float32, np.float64):
    y, cache = cc.conv2d_forward(np.ones((2, 3, 9, 9), dt), np.ones((4, 3, 3, 3), dt), padding=1)
    dx, dw, db = cc.conv2d_backward(np.ones_like(y), cache)
    y2, cache = cc.conv2d_forward(np.ones((1, 1, 3, 3), dt), np.ones((1, 1, 2, 2), dt))
    assert y[0, 0, 4, 4] == 27 and dw[0, 0, 1, 1] == 162 and y2.sum() == 16
print("ok")
"""


def test_works_where_no_cache_can_be_written(tmp_path):
    # Imported from a zip archive, the kernels have no source directory Numba could cache
    # next to; with the user cache pointed at a file, no cache location exists at all.
    archive = tmp_path / "convcore.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in (ROOT / "convcore").rglob("*.py"):
            z.write(path, path.relative_to(ROOT).as_posix())
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(PYTHONPATH=str(archive), XDG_CACHE_HOME=str(blocker), HOME=str(blocker))
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert "Traceback" not in proc.stderr
    assert "compiled in memory" in proc.stderr  # one clear warning, not one per kernel
    assert proc.stderr.count("RuntimeWarning") == 1


def test_numba_cache_dir_is_used(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True)
        assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    assert list((tmp_path / "cache").rglob("*.nbi"))


FORK_SCRIPT = """
import multiprocessing as mp
import numpy as np
import convcore as cc

x = np.ones((8, 16, 32, 32), np.float32)
w = np.ones((16, 16, 3, 3), np.float32)


def child(_):
    return float(cc.conv2d(x, w, padding=1).sum())


if __name__ == "__main__":
    want = child(0)  # the parent's kernel thread pool now exists
    with mp.get_context("fork").Pool(1) as pool:
        got = pool.map_async(child, [0]).get(timeout=60)
    assert got == [want], (got, want)
    print("ok")
"""


def test_forked_children_get_their_own_thread_pool(tmp_path):
    script = tmp_path / "fork_child.py"
    script.write_text(FORK_SCRIPT)
    env = {**os.environ, "CONVCORE_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
