import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import convcore as cc
from convcore import workspace


@pytest.fixture
def limit():
    def set_limit(nbytes):
        old = cc.set_workspace_limit(nbytes)
        restore.append(old)

    restore = []
    yield set_limit
    for old in reversed(restore):
        cc.set_workspace_limit(old)


def test_default_limit_is_256_mib():
    env = {k: v for k, v in os.environ.items() if k != "CONVCORE_WORKSPACE_MB"}
    code = "import convcore; print(convcore.get_workspace_limit())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == str(256 << 20)


def test_limit_from_environment():
    env = {**os.environ, "CONVCORE_WORKSPACE_MB": "1.5"}
    code = "import convcore; print(convcore.get_workspace_limit())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == str(3 << 19)


@pytest.mark.parametrize("raw", ["lots", "0", "-3"])
def test_bad_limit_in_environment(raw):
    env = {**os.environ, "CONVCORE_WORKSPACE_MB": raw}
    out = subprocess.run([sys.executable, "-c", "import convcore"], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "CONVCORE_WORKSPACE_MB must be" in out.stderr and repr(raw) in out.stderr


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "1"])
def test_bad_limit(bad):
    with pytest.raises(ValueError, match=r"nbytes must be a positive int, got"):
        cc.set_workspace_limit(bad)


def test_set_limit_returns_previous(limit):
    before = cc.get_workspace_limit()
    limit(12345)
    assert cc.get_workspace_limit() == 12345
    assert cc.set_workspace_limit(before) == 12345


def test_scratch_reuses_one_buffer():
    workspace.release_workspace()
    a, b = workspace.scratch(np.float32, (100, 100), (7, 50))
    a2, b2 = workspace.scratch(np.float64, (50, 90), (30,))
    assert np.shares_memory(a, a2) and a.shape == (100, 100) and b.shape == (7, 50)
    assert a2.dtype == np.float64 and b2.shape == (30,)
    assert not np.shares_memory(a, b)
    for arr in (a, b, a2, b2):
        assert arr.ctypes.data % 64 == 0


def test_release_frees_every_threads_buffer(monkeypatch):
    """The pool thread's buffer goes too, not only the caller's; the next call reallocates."""
    from convcore import _gemm, _threads

    monkeypatch.setattr(_threads, "_THREADS", 2)
    monkeypatch.setattr(_gemm, "_MIN_PARALLEL_MAC_BYTES", 0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8, 16, 16))
    w = rng.standard_normal((8, 8, 3, 3))
    first = cc.conv2d(x, w, padding=1)

    def held():
        return sum(h.buffer is not None for h in list(workspace._holders))

    assert held() >= 2  # the caller's and the pool thread's
    workspace.release_workspace()
    assert held() == 0
    np.testing.assert_array_equal(cc.conv2d(x, w, padding=1), first)
    assert held() >= 2


def test_small_requests_are_plain_allocations():
    (a,) = workspace.scratch(np.float32, (4, 4))
    (b,) = workspace.scratch(np.float32, (4, 4))
    assert not np.shares_memory(a, b)


@pytest.mark.parametrize("nbytes", [1, 50_000, 400_000, 1 << 30])
def test_different_chunkings_agree(limit, nbytes):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 4, 12, 12)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    y, cache = cc.conv2d_forward(x, w, stride=(1, 2), padding=1)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    want = (y, *cc.conv2d_backward(dy, cache)[:2])
    limit(nbytes)
    y, cache = cc.conv2d_forward(x, w, stride=(1, 2), padding=1)
    got = (y, *cc.conv2d_backward(dy, cache)[:2])
    for g, r in zip(got, want, strict=True):
        assert np.abs(g - r).max() <= 2e-5 * np.abs(r).max()


def test_peak_memory_is_outputs_plus_limit(limit):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 16, 28, 28)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    b = np.zeros(16, np.float32)
    dy = rng.standard_normal((32, 16, 28, 28)).astype(np.float32)
    nbytes = 4 << 20  # below the 30 MiB the whole batch needs: four chunks
    cc.conv2d_backward(dy[:1], cc.conv2d_forward(x[:1], w, b, padding=1)[1])  # load the kernels
    limit(nbytes)
    workspace.release_workspace()
    tracemalloc.start()
    try:
        y, cache = cc.conv2d_forward(x, w, b, padding=1)
        dx, dw, db = cc.conv2d_backward(dy, cache)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    returned = y.nbytes + dx.nbytes + dw.nbytes + db.nbytes
    assert peak <= 1.1 * (returned + nbytes)
