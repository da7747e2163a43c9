"""examples/digits_cnn.py trains to at least 97% test accuracy (fewer epochs than its default)."""

import pathlib
import re
import subprocess
import sys

import pytest

pytest.importorskip("sklearn")

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "digits_cnn.py"


def test_digits_cnn_reaches_97_percent():
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), "--epochs", "10", "--seed", "0"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    epochs = re.findall(r"^epoch +(\d+) +loss ([\d.]+) .* test acc ([\d.]+)", run.stdout, flags=re.M)
    assert [int(e[0]) for e in epochs] == list(range(1, 11)), run.stdout
    losses = [float(e[1]) for e in epochs]
    assert losses[-1] < losses[0] / 5, losses
    final = float(re.search(r"^test accuracy ([\d.]+) after 10 epochs", run.stdout, flags=re.M).group(1))
    assert final == float(epochs[-1][2])
    assert final >= 0.97, run.stdout
