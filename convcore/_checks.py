"""Small argument checks shared by the layer operations (pooling, transposed convolution)."""

from __future__ import annotations

import numpy as np

from convcore._geometry import resolve_dtypes

__all__ = ["float_input", "output_grad", "as_flag"]


def float_input(a) -> tuple[np.ndarray, np.dtype]:
    """Return ``(a as a C-contiguous compute-dtype array, output dtype)``."""
    a = np.asarray(a)
    compute, out = resolve_dtypes(a)
    return np.ascontiguousarray(a, dtype=compute), out


def output_grad(dy, expected: tuple[int, ...], dtype: np.dtype, name: str = "dy") -> np.ndarray:
    """Validate the gradient of a forward output and return it C-contiguous in ``dtype``."""
    dy = np.asarray(dy)
    resolve_dtypes(dy)
    if dy.shape != tuple(expected):
        raise ValueError(f"{name} has shape {dy.shape} but the forward output had shape {tuple(expected)}")
    return np.ascontiguousarray(dy, dtype=dtype)


def as_flag(value, name: str) -> bool:
    """Accept a Python or NumPy bool only."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r} of type {type(value).__name__}")
    return bool(value)
