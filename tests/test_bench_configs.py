"""Grids and suites: one definition, validated values, invalid combinations skipped."""

import json
import sys

import pytest

from convcore.bench.configs import (
    ANCHOR_SHAPES,
    DEFAULT_GRID,
    PYTEST_GRID,
    Config,
    GridError,
    anchor_suite,
    build_grid,
    load_grid_file,
    parse_value,
)


def test_build_grid_is_the_cartesian_product():
    configs, notes = build_grid(
        dict(stride=[1, 2], padding=[0, "same"], kernel=[3], dtype=["f32", "float64"])
    )
    assert len(configs) == 8 and notes == []
    assert {(c.stride, c.padding, c.dtype) for c in configs} == {
        (s, p, d) for s in (1, 2) for p in (0, "same") for d in ("float32", "float64")
    }
    assert all(c.N == DEFAULT_GRID["batch"][0] and c.F == c.C for c in configs)


def test_build_grid_skips_invalid_combinations_with_a_note():
    configs, notes = build_grid(
        dict(size=[4], kernel=[3, 7], padding=[0], stride=[1], channels=[6], filters=[4])
    )
    assert [c.kernel for c in configs] == [3]
    assert len(notes) == 1 and "k7" in notes[0] and "padded input" in notes[0]
    configs, notes = build_grid(dict(kernel=[3], groups=[4], channels=[6], stride=[1], padding=[1]))
    assert configs == [] and "does not divide" in notes[0]


def test_depthwise_uses_one_filter_per_channel():
    configs, _ = build_grid(
        dict(groups=["dw"], channels=[8], filters=[16], kernel=[3], stride=[1], padding=[1])
    )
    (cfg,) = configs
    assert (cfg.groups, cfg.C, cfg.F, cfg.w_shape) == (8, 8, 8, (8, 1, 3, 3))
    assert cfg.label.endswith(" dw")


def test_pytest_grid_covers_the_issue_grid():
    configs, notes = build_grid(PYTEST_GRID)
    assert {c.stride for c in configs} == {1, 2, 3}
    assert {c.padding for c in configs} == {0, 1, "same"}
    assert {c.kernel for c in configs} == {1, 3, 5, 7}
    assert {c.dilation for c in configs} == {1, 2}
    assert {c.groups for c in configs} == {1, 16}
    assert {c.dtype for c in configs} == {"float32", "float64"}
    assert len({c.label for c in configs}) == len(configs)


def test_anchor_suite_matches_the_recorded_shapes():
    suite = anchor_suite(("float32", "float64"))
    assert len(suite) == 2 * len(ANCHOR_SHAPES) == 18
    resnet = next(c for c in suite if c.name == "resnet_c64_56_k3")
    assert (resnet.x_shape, resnet.w_shape, resnet.output_shape) == (
        (8, 64, 56, 56),
        (64, 64, 3, 3),
        (8, 64, 56, 56),
    )
    assert len({c.label for c in suite}) == len(suite)


def test_config_round_trips_and_counts_flops():
    cfg = Config(2, 3, 8, 8, 4, 3, stride=2, padding="same", dtype="float64")
    assert Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.output_shape == (2, 4, 4, 4)
    assert cfg.flops == 3 * 2 * (2 * 16) * (3 * 9) * 4


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("stride", "2", 2),
        ("padding", "same", "same"),
        ("padding", 0, 0),
        ("groups", "dw", "dw"),
        ("dtype", "f64", "float64"),
    ],
)
def test_parse_value_accepts(option, value, expected):
    assert parse_value(option, value) == expected


@pytest.mark.parametrize(
    "option, value, match",
    [
        ("stride", "0", ">= 1"),
        ("stride", "two", "integer"),
        ("padding", "-1", ">= 0"),
        ("padding", "full", "same"),
        ("kernel", 1.5, "integer"),
        ("dilation", True, "integer"),
        ("dtype", "float16", "float32"),
        ("colour", "red", "unknown grid option"),
    ],
)
def test_parse_value_rejects_naming_the_option(option, value, match):
    with pytest.raises(GridError, match=match) as info:
        parse_value(option, value)
    assert info.value.option == option


def test_build_grid_rejects_unknown_options():
    with pytest.raises(GridError, match="unknown grid option 'strides'"):
        build_grid({"strides": [1]})


def test_load_grid_file_json(tmp_path):
    path = tmp_path / "grid.json"
    path.write_text(json.dumps({"stride": [1, 2], "padding": "same"}))
    assert load_grid_file(path) == {"stride": [1, 2], "padding": "same"}
    path.write_text("{not json")
    with pytest.raises(GridError, match="invalid JSON"):
        load_grid_file(path)
    with pytest.raises(GridError, match="cannot read"):
        load_grid_file(tmp_path / "missing.json")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is in the standard library from 3.11")
def test_load_grid_file_toml(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text('stride = [1, 2]\npadding = [0, "same"]\n')
    configs, _ = build_grid(load_grid_file(path))
    assert {(c.stride, c.padding) for c in configs} == {(1, 0), (1, "same"), (2, 0), (2, "same")}
