import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convcore as cc
from convcore.gradient_check import numerical_gradient, relative_error

from strategies import ENGINE_PATHS, arrays_for, conv_configs, engine_path


@pytest.mark.parametrize("path", ENGINE_PATHS)
@settings(max_examples=40)
@given(cfg=conv_configs(max_batch=2), seed=st.integers(0, 2**16))
def test_engine_gradients_match_numerical_gradients(path, cfg, seed):
    x, w, b = arrays_for(cfg, seed)
    with engine_path(path):
        errors = cc.gradcheck(x, w, b, **cfg["opts"], seed=seed)
    assert set(errors) == ({"dx", "dw", "db"} if cfg["bias"] else {"dx", "dw"})
    assert max(errors.values()) <= 1e-7, errors


@pytest.mark.parametrize(
    "opts",
    [
        dict(stride=2, padding=1),
        dict(padding="same", dilation=2),
        dict(groups=2, stride=(1, 3)),
        dict(padding=2, padding_mode="reflect"),
        dict(padding=(1, 2), stride=2, padding_mode="replicate"),
        dict(padding="same", dilation=2, padding_mode="circular"),
    ],
)
def test_gradcheck_named_configurations(opts):
    rng = np.random.default_rng(0)
    x, w, b = (
        rng.standard_normal((2, 4, 7, 6)),
        rng.standard_normal((4, 4 // opts.get("groups", 1), 3, 3)),
        rng.standard_normal(4),
    )
    assert max(cc.gradcheck(x, w, b, **opts).values()) <= 1e-7


def test_gradcheck_detects_a_wrong_gradient(monkeypatch):
    # a backward pass that drops the last filter's weight gradient must be reported
    import convcore.gradient_check as gc

    real = gc.conv2d_backward

    def broken(dy, cache):
        dx, dw, db = real(dy, cache)
        dw[-1] = 0
        return dx, dw, db

    monkeypatch.setattr(gc, "conv2d_backward", broken)
    rng = np.random.default_rng(0)
    errors = cc.gradcheck(rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((2, 2, 3, 3)))
    assert errors["dw"] > 0.1 and errors["dx"] < 1e-7


def test_numerical_gradient_of_a_known_function():
    a = np.array([1.0, -2.0, 3.0])
    g = numerical_gradient(lambda: float(np.sum(a**3)), a)
    np.testing.assert_allclose(g, 3 * np.array([1.0, 4.0, 9.0]), rtol=1e-8)
    np.testing.assert_array_equal(a, [1.0, -2.0, 3.0])  # restored


def test_relative_error():
    assert relative_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert relative_error([0.0, 4.0], [0.0, 3.0]) == 0.25
    assert relative_error([0.0], [0.0]) == 0.0
