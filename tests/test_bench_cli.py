"""``convcore bench``: the sweep's table and files, and argument errors."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from convcore.__main__ import main
from convcore.bench import report
from convcore.bench.configs import Config
from convcore.bench.sweep import max_error, reference_images, run_config

TINY = [
    "--batch",
    "2",
    "--channels",
    "3",
    "--filters",
    "4",
    "--size",
    "8",
    "--kernel",
    "3",
    "--stride",
    "1",
    "2",
]


def test_sweep_prints_one_row_per_configuration(capsys, tmp_path):
    out_json, out_csv = tmp_path / "out.json", tmp_path / "out.csv"
    assert main(["bench", *TINY, "--padding", "1", "--json", str(out_json), "--csv", str(out_csv)]) == 0
    captured = capsys.readouterr()
    table = captured.out.splitlines()
    assert table[0].split()[:3] == ["configuration", "output", "engine"]
    rows = [line for line in table if line.startswith("f32 ")]
    assert [r.split()[:8] for r in rows] == [
        ["f32", "n2", "c3>4", "8x8", "k3", "s1", "p1", "2x4x8x8"],
        ["f32", "n2", "c3>4", "8x8", "k3", "s2", "p1", "2x4x4x4"],
    ]
    assert "[1/2]" in captured.err and "[2/2]" in captured.err  # progress on stderr
    records = json.loads(out_json.read_text())
    assert [r["output_shape"] for r in records] == ["2x4x8x8", "2x4x4x4"]
    assert all(r["max_error"] < 1e-5 and r["speedup"] > 0 for r in records)
    with open(out_csv) as f:
        assert [r["label"] for r in csv.DictReader(f)] == [r["label"] for r in records]


def test_sweep_row_agrees_with_a_hand_computation():
    cfg = Config(3, 2, 9, 7, 4, 3, stride=2, padding="same", dtype="float64")
    row = run_config(cfg, reference_budget=10.0)
    assert row.output_shape == (3, 4, 5, 4) and not row.reference_estimated
    assert row.speedup == pytest.approx(row.reference / row.engine)
    assert row.gflops == pytest.approx(3 * 2 * 3 * 20 * 2 * 9 * 4 / row.engine / 1e9)
    assert row.max_error < 1e-12


def test_reference_runs_on_a_subset_when_it_would_be_slow():
    cfg = Config(64, 3, 32, 32, 32, 3, padding=1)
    n = reference_images(cfg, budget=1.0)
    assert 1 <= n < cfg.N
    row = run_config(Config(16, 3, 32, 32, 32, 3, padding=1, dtype="float64"), reference_budget=0.2)
    assert row.reference_estimated and row.reference_images < 16
    assert row.max_error < 1e-12
    assert "~" in report.sweep_table([row])


def test_max_error_is_relative_to_the_largest_reference_value():
    want = (np.array([2.0, -4.0]), np.array([1.0]))
    assert max_error((np.array([2.0, -4.5]), np.array([1.0])), want) == pytest.approx(0.5 / 4)


def test_invalid_combinations_are_skipped_with_a_note(capsys):
    assert main(["bench", *TINY, "--padding", "0", "--kernel", "3", "11", "--no-reference"]) == 0
    captured = capsys.readouterr()
    assert "skipped f32 n2 c3>4 8x8 k11 s1 p0" in captured.err
    assert "k11" not in captured.out and "k3 s1 p0" in captured.out


def test_grid_file(tmp_path, capsys):
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"batch": 1, "channels": [2], "size": [6], "kernel": [3], "stride": [1],
                                "padding": ["same"], "dtype": ["float64"]}))  # fmt: skip
    assert main(["bench", "--grid", str(grid), "--no-reference"]) == 0
    assert "f64 n1 c2>2 6x6 k3 s1 same" in capsys.readouterr().out


def test_plot(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "sweep.png"
    assert main(["bench", *TINY, "--padding", "1", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit) as info:
        main(["bench", "--plot", "out.png"])
    assert info.value.code == 2
    assert "pip install 'convcore[plot]'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, option",
    [
        (["--stride", "0"], "--stride"),
        (["--padding", "full"], "--padding"),
        (["--groups", "x"], "--groups"),
        (["--dtype", "float16"], "--dtype"),
        (["--suite", "tiny"], "--suite"),
        (["--suite", "anchor", "--stride", "2"], "--suite"),
        (["--threshold", "abc", "--against", "main"], "--threshold"),
        (["--threshold", "10%"], "--threshold"),
        (["--compare", "x.json", "--kernel", "3"], "--compare"),
        (["--against", "main", "--compare", "x.json"], "--compare"),
    ],
)
def test_bad_arguments_give_a_one_line_error(args, option, capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", *args])
    assert info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("convcore bench: error: argument") and option in last


def test_console_script_error_has_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "convcore", "bench", "--kernel", "3", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "convcore bench: error: argument --kernel: invalid value 'x' (expected an integer >= 1)"
    )
    assert "Traceback" not in proc.stderr


def test_bad_grid_file_names_the_option(tmp_path, capsys):
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"kernel": [3, -1]}))
    with pytest.raises(SystemExit) as info:
        main(["bench", "--grid", str(grid)])
    assert info.value.code == 2
    assert "argument --kernel: invalid value -1" in capsys.readouterr().err


def test_compare_with_a_file_that_is_not_a_record(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    assert main(["bench", "--compare", str(bad)]) == 2
    assert "is not a saved benchmark record" in capsys.readouterr().err
    bad.write_text(json.dumps({"format": "convcore-bench-record/2", "results": [{"label": "x"}]}))
    assert main(["bench", "--compare", str(bad)]) == 2
    assert "a result is incomplete or invalid (KeyError" in capsys.readouterr().err


def test_unwritable_output_is_a_clear_error(tmp_path, capsys):
    target = tmp_path / "missing-dir" / "out.json"
    assert main(["bench", *TINY, "--padding", "1", "--no-reference", "--json", str(target)]) == 2
    assert capsys.readouterr().err.strip().endswith(f"cannot write {target}: No such file or directory")


def test_self_check_and_unknown_command(capsys):
    assert main(["check"]) == 0
    assert "all configurations agree" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
