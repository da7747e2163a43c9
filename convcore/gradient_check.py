"""Numerical gradient check of the engine by centred differences."""

from __future__ import annotations

import numpy as np

from convcore.conv import conv2d, conv2d_backward, conv2d_forward

__all__ = ["gradcheck", "numerical_gradient", "relative_error"]


def relative_error(a, b) -> float:
    """``max|a - b| / max(max|a|, max|b|)``: error relative to the larger gradient's scale.

    Unlike an element-wise ratio it stays meaningful where a gradient entry is (nearly) zero.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0))
    if scale == 0.0:
        return 0.0
    return float(np.abs(a - b).max() / scale)


def numerical_gradient(f, a: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Centred-difference gradient of the scalar function ``f()`` with respect to ``a``.

    ``a`` is perturbed in place, one element at a time, and restored.
    """
    grad = np.zeros_like(a)
    flat, gflat = a.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = f()
        flat[i] = old - h
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return grad


def gradcheck(
    x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", seed=0, h=1e-5
) -> dict:
    """Compare :func:`conv2d_backward` with centred differences of :func:`conv2d`.

    The loss is ``sum(conv2d(x, w, b) * dy)`` for a random ``dy``; computed in float64.
    The options are :func:`conv2d`'s.

    Returns
    -------
    dict
        ``{'dx': err, 'dw': err, 'db': err}`` (``'db'`` only with a bias), each a
        :func:`relative_error`; near 1e-10 for a correct backward pass.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> errs = gradcheck(rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3)),
    ...                  rng.standard_normal(4), stride=2, padding=1)
    >>> all(e < 1e-7 for e in errs.values())
    True
    """
    opts = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode)
    x = np.array(x, dtype=np.float64)
    w = np.array(w, dtype=np.float64)
    b = None if b is None else np.array(b, dtype=np.float64)
    y, cache = conv2d_forward(x, w, b, **opts)
    dy = np.random.default_rng(seed).standard_normal(y.shape)
    analytic = dict(zip(("dx", "dw", "db"), conv2d_backward(dy, cache)))

    def loss():
        return float(np.sum(conv2d(x, w, b, **opts) * dy))

    errors = {
        "dx": relative_error(analytic["dx"], numerical_gradient(loss, x, h)),
        "dw": relative_error(analytic["dw"], numerical_gradient(loss, w, h)),
    }
    if b is not None:
        errors["db"] = relative_error(analytic["db"], numerical_gradient(loss, b, h))
    return errors
