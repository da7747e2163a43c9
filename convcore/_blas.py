"""BLAS thread control: single-threaded BLAS while convcore's own threads run GEMMs.

The im2col + GEMM engine splits a batch over its thread pool, and each thread calls BLAS
on its own share. A multi-threaded BLAS inside each of them would oversubscribe the
cores, so while any such call is in flight the BLAS libraries NumPy loaded
(found by ``threadpoolctl``) run one thread; the previous count is restored when the last
concurrent call leaves. Other code calling BLAS at the same time also sees one thread,
and a ``threadpoolctl.threadpool_limits`` block in another thread that starts during a
convolution and ends after it restores the count it saw when it started: one.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["single_threaded_blas"]

_lock = threading.Lock()
_active = 0
_saved: list[int] = []
_libraries: list | None = None


class _Library(NamedTuple):
    get_num_threads: Callable[[], int]
    set_num_threads: Callable[[int], object]


def _openblas(controller) -> _Library | None:
    # OpenBLAS's own entry points: threadpoolctl lets only one 'controlling' thread change
    # OpenBLAS's process-wide thread count, and convcore may be called from any thread
    for prefix, suffix in itertools.product(("", "scipy_"), ("", "64_", "_64")):
        get = getattr(controller.dynlib, f"{prefix}openblas_get_num_threads{suffix}", None)
        set_ = getattr(controller.dynlib, f"{prefix}openblas_set_num_threads{suffix}", None)
        if get is not None and set_ is not None:
            return _Library(get, set_)
    return None


def _blas_libraries() -> list[_Library]:
    global _libraries
    if _libraries is None:
        from threadpoolctl import ThreadpoolController

        found = []
        for c in ThreadpoolController().lib_controllers:
            if c.user_api != "blas":
                continue
            lib = _openblas(c) if c.internal_api == "openblas" else None
            found.append(lib or _Library(c.get_num_threads, c.set_num_threads))
        _libraries = found
    return _libraries


class _SingleThreadedBlas:
    """Context manager: BLAS limited to one thread in the body (re-entrant, thread-safe)."""

    def __enter__(self):
        global _active, _saved
        libraries = _blas_libraries()
        with _lock:
            if _active == 0:
                _saved = [lib.get_num_threads() for lib in libraries]
                for lib in libraries:
                    lib.set_num_threads(1)
            _active += 1

    def __exit__(self, *exc):
        global _active
        with _lock:
            _active -= 1
            if _active == 0:
                for lib, n in zip(_libraries, _saved):
                    lib.set_num_threads(n)


_SINGLE = _SingleThreadedBlas()


def single_threaded_blas() -> _SingleThreadedBlas:
    """``with single_threaded_blas(): ...`` runs the body with BLAS limited to one thread."""
    return _SINGLE


def _after_fork() -> None:
    # a forked child has none of the parent's other threads, so none of their calls:
    # give its BLAS back the thread count they had changed
    global _lock, _active
    if _active and _libraries is not None:
        for lib, n in zip(_libraries, _saved):
            lib.set_num_threads(n)
    _lock, _active = threading.Lock(), 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
