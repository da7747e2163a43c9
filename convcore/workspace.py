"""The workspace limit: how much scratch memory (im2col columns and their gradients) one
convolution call may hold at once, all its threads together. Larger batches run in chunks
of images, and an image whose columns exceed a thread's share in bands of output rows.

The limit is read from the environment variable ``CONVCORE_WORKSPACE_MB`` at import
(default 256 MiB) and can be changed with :func:`set_workspace_limit`.
"""

from __future__ import annotations

import math
import os
import threading
import weakref

import numpy as np

__all__ = ["get_workspace_limit", "set_workspace_limit", "scratch", "release_workspace"]

_DEFAULT_MB = 256


def _from_env() -> int:
    raw = os.environ.get("CONVCORE_WORKSPACE_MB")
    if raw is None:
        return _DEFAULT_MB << 20
    try:
        mb = float(raw)
    except ValueError:
        raise ValueError(f"CONVCORE_WORKSPACE_MB must be a number of MiB, got {raw!r}") from None
    if mb <= 0:
        raise ValueError(f"CONVCORE_WORKSPACE_MB must be > 0, got {raw!r}")
    return int(mb * (1 << 20))


_limit = _from_env()


def get_workspace_limit() -> int:
    """Return the workspace limit in bytes."""
    return _limit


def set_workspace_limit(nbytes: int) -> int:
    """Set the workspace limit in bytes and return the previous one.

    At least one output row of one image is processed per chunk, so a limit below one
    row's columns still runs, row by row.

    Examples
    --------
    >>> old = set_workspace_limit(64 << 20)
    >>> _ = set_workspace_limit(old)
    """
    global _limit
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes <= 0:
        raise ValueError(f"nbytes must be a positive int, got {nbytes!r}")
    previous, _limit = _limit, nbytes
    return previous


_ALIGN = 64
_SMALL = 4096  # elements


class _Holder:
    """One thread's workspace buffer, and the offset of its first aligned byte."""

    __slots__ = ("buffer", "aligned", "__weakref__")

    def __init__(self):
        self.buffer, self.aligned = None, 0


_local = threading.local()
_holders: weakref.WeakSet = weakref.WeakSet()  # every live thread's, for release_workspace
_holders_lock = threading.Lock()


def _forget_lock() -> None:
    # a forked child has only the forking thread: a lock another thread held stays held
    global _holders_lock
    _holders_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_lock)


def _holder() -> _Holder:
    """This thread's holder, registered on first use (it goes when the thread does)."""
    holder = getattr(_local, "holder", None)
    if holder is None:
        holder = _local.holder = _Holder()
        with _holders_lock:
            _holders.add(holder)
    return holder


def scratch(dtype, *shapes) -> list[np.ndarray]:
    """Uninitialised arrays of the given shapes, carved from this thread's workspace buffer.

    The buffer is reused from call to call (no fresh pages to fault in) and grows to the
    largest request seen; the engine plans its requests to fit the limit (each of its
    threads holds at most its share).
    The arrays are only valid until the next call of this function on the same thread.
    """
    counts = [math.prod(s) for s in shapes]
    if sum(counts) <= _SMALL:  # cheaper to allocate than to carve
        return [np.empty(s, dtype=dtype) for s in shapes]
    dtype = np.dtype(dtype)
    sizes = [-(-n * dtype.itemsize // _ALIGN) * _ALIGN for n in counts]
    holder = _holder()
    buf, start = holder.buffer, holder.aligned
    total = sum(sizes)
    if buf is None or buf.size < total + _ALIGN or buf.size > max(total, _limit) + _ALIGN:
        holder.buffer = buf = None  # free the old buffer before allocating its successor
        buf = np.empty(total + _ALIGN, dtype=np.uint8)
        start = -buf.__array_interface__["data"][0] % _ALIGN
        holder.buffer, holder.aligned = buf, start
    out = []
    for shape, n, size in zip(shapes, counts, sizes, strict=True):
        out.append(buf[start : start + n * dtype.itemsize].view(dtype).reshape(shape))
        start += size
    return out


def fit_workspace(nbytes: int) -> None:
    """Free this thread's buffer if it is larger than ``nbytes`` plus alignment (a thread
    whose share of the limit shrank, when a call splits over more threads than the last)."""
    holder = _holder()
    buf = holder.buffer  # read once: release_workspace may clear it meanwhile
    if buf is not None and buf.size > nbytes + _ALIGN:
        holder.buffer = None


def release_workspace() -> None:
    """Free the workspace buffers of every thread convcore has run on, the pool's
    included; each is reallocated on that thread's next convolution. Arrays a running
    convolution carved from one stay valid until it is done with them.

    Examples
    --------
    >>> release_workspace()
    """
    with _holders_lock:
        holders = list(_holders)
    for holder in holders:
        holder.buffer = None
