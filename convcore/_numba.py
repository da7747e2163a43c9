"""The Numba side of convcore: the one place compiler options are chosen, and the small
row helpers every kernel shares.

Kernels receive clean arrays: C-contiguous, one float dtype, geometry already validated.
Row helpers index flat arrays with unsigned offsets, so no negative-index wraparound check
sits in the inner loop and unit-stride rows vectorise.
"""

from __future__ import annotations

import warnings

import numba


def _jit(func):
    """The one place Numba options are chosen: compiled once per dtype, cached on disk,
    releasing the GIL. Where no cache directory can be written (a read-only install
    without NUMBA_CACHE_DIR and no writable user cache), the kernel is compiled in memory
    on first use instead, every time the package is imported."""
    try:
        kernel = numba.njit(cache=True, nogil=True)(func)
        _probe_cache(kernel)
        return kernel
    except (RuntimeError, OSError):  # Numba found no writable cache location for this file
        if not _CACHE_WARNING:
            _CACHE_WARNING.append(func.__name__)
            warnings.warn(
                "convcore: no writable Numba cache directory, kernels are compiled in memory "
                "(set NUMBA_CACHE_DIR to a writable directory to cache them)",
                RuntimeWarning,
                stacklevel=2,
            )
        return numba.njit(cache=False, nogil=True)(func)


_CACHE_WARNING: list[str] = []


def _probe_cache(kernel) -> None:
    """Raise OSError if the cache directory Numba chose for ``kernel`` cannot be written.

    Some of Numba's cache locators (the one for zip imports, for instance) do not check
    this themselves and then fail on the first call instead.
    """
    locator = getattr(getattr(getattr(kernel, "_cache", None), "_impl", None), "locator", None)
    if locator is not None:
        locator.ensure_cache_path()


@_jit
def _valid_range(offset, stride, size, count):
    """Outputs ``o`` in ``[lo, hi)`` with ``0 <= o * stride + offset < size``, clipped to count."""
    lo = min(max(-((offset) // stride), 0), count)
    hi = min(max(-((offset - size) // stride), lo), count)
    return lo, hi


def check_contiguous(*arrays) -> None:
    # the kernels index flat views; a copy made by ravel() would silently drop writes
    for a in arrays:  # a plain loop: a third cheaper than all() over a generator
        if not a.flags.c_contiguous:
            raise ValueError("window kernels need C-contiguous arrays")
