"""Padding modes other than zeros: 'reflect', 'replicate' and 'circular'.

A convolution with such a mode pads its input explicitly (a gather of rows and columns),
then runs unpadded. The gather's adjoint folds the padded input's gradient back into the
input's: every padded row or column adds its gradient to the row or column it copies.

Per axis of size ``n``, padded position ``i`` (from ``-before`` to ``n + after - 1``) reads

- ``'reflect'``: the mirror image without repeating the edge (``-1 -> 1``, ``n -> n - 2``);
  each padding must be smaller than ``n``;
- ``'replicate'``: the nearest edge element;
- ``'circular'``: ``i mod n``, wrapping around; each padding must be at most ``n``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convcore._geometry import Geometry

__all__ = ["PADDING_MODES", "check_padding_mode", "ModePadding", "pad_for_mode"]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def check_padding_mode(mode) -> str:
    """Return ``mode`` if it is one of :data:`PADDING_MODES`, else raise."""
    if not isinstance(mode, str):
        raise TypeError(f"padding_mode must be a str, got {mode!r} of type {type(mode).__name__}")
    if mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {mode!r}")
    return mode


def _source_index(n: int, before: int, after: int, mode: str, axis: str) -> np.ndarray:
    """Index into an axis of size ``n`` read by each of its ``before + n + after`` padded positions."""
    pad = max(before, after)
    if mode == "reflect" and pad >= n:
        raise ValueError(
            f"padding_mode='reflect' needs each padding smaller than the input: padding {pad} "
            f"but the input has {n} {axis}"
        )
    if mode == "circular" and pad > n:
        raise ValueError(
            f"padding_mode='circular' needs each padding at most the input size: padding {pad} "
            f"but the input has {n} {axis}"
        )
    if mode == "replicate" and n == 0:
        raise ValueError(f"padding_mode='replicate' needs a non-empty input, got 0 {axis}")
    i = np.arange(-before, n + after)
    if mode == "reflect":
        return np.where(i < 0, -i, np.where(i >= n, 2 * (n - 1) - i, i))
    if mode == "replicate":
        return np.clip(i, 0, n - 1)
    return i % n


def _fold_axis(g: np.ndarray, index: np.ndarray, before: int, n: int, axis: int) -> np.ndarray:
    """Adjoint of ``take(x, index, axis)``: sum ``g`` along ``axis`` into ``n`` positions."""
    g = np.moveaxis(g, axis, 0)
    out = g[before : before + n].copy()
    for p in (*range(before), *range(before + n, len(index))):
        out[index[p]] += g[p]
    return np.moveaxis(out, 0, axis)


@dataclass(frozen=True, eq=False)
class ModePadding:
    """An explicit padding of ``(N, C, H, W)`` inputs: the mode, the sizes and the gathers."""

    mode: str
    H: int
    W: int
    pt: int
    pl: int
    rows: np.ndarray
    cols: np.ndarray

    @classmethod
    def create(cls, mode: str, H: int, W: int, pt: int, pb: int, pl: int, pr: int) -> ModePadding:
        rows = _source_index(H, pt, pb, mode, "rows")
        cols = _source_index(W, pl, pr, mode, "columns")
        return cls(mode, H, W, pt, pl, rows, cols)

    def pad(self, x: np.ndarray) -> np.ndarray:
        """``x (N, C, H, W)`` -> padded ``(N, C, H + pt + pb, W + pl + pr)``, a new array."""
        return np.ascontiguousarray(x[:, :, self.rows[:, None], self.cols[None, :]])

    def fold(self, dxp: np.ndarray) -> np.ndarray:
        """Adjoint of :meth:`pad`: the padded gradient summed back into ``(N, C, H, W)``."""
        d = _fold_axis(dxp, self.rows, self.pt, self.H, axis=2)
        return np.ascontiguousarray(_fold_axis(d, self.cols, self.pl, self.W, axis=3))


def pad_for_mode(x: np.ndarray, geo: Geometry, mode) -> tuple[np.ndarray, Geometry, ModePadding | None]:
    """Pad ``x`` explicitly for a non-'zeros' ``mode``.

    Returns ``(x, geo, padding)``: for 'zeros' (or no padding) the inputs unchanged and
    None; otherwise the padded input, its unpadded geometry and the :class:`ModePadding`
    whose :meth:`~ModePadding.fold` maps the padded input's gradient back.
    """
    mode = check_padding_mode(mode)
    if mode == "zeros" or not (geo.pt or geo.pb or geo.pl or geo.pr):
        return x, geo, None
    padding = ModePadding.create(mode, geo.H, geo.W, geo.pt, geo.pb, geo.pl, geo.pr)
    xp = padding.pad(x)
    geo = geo._replace(H=xp.shape[2], W=xp.shape[3], pt=0, pb=0, pl=0, pr=0)
    return xp, geo, padding
