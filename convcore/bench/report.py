"""Output formats: text tables, JSON, CSV and a plot."""

from __future__ import annotations

import csv
import json
import pathlib

__all__ = [
    "MissingExtra",
    "format_table",
    "sweep_table",
    "gate_table",
    "write_json",
    "write_csv",
    "require_matplotlib",
    "plot_sweep",
]


class MissingExtra(RuntimeError):
    """An optional dependency is not installed; the message names the extra to install."""


def format_table(header, rows, align=None) -> str:
    """Left-align the first column, right-align the rest (or per ``align``: '<' or '>')."""
    cells = [list(map(str, header))] + [list(map(str, r)) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    align = align or ["<"] + [">"] * (len(header) - 1)
    lines = ["  ".join(f"{c:{a}{w}}" for c, a, w in zip(r, align, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _ms(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3f}"


def sweep_table(rows) -> str:
    """The ``convcore bench`` table; estimated reference times carry a ``~`` and a note."""
    body = []
    for r in rows:
        ref = _ms(r.reference)
        if r.reference_estimated:
            ref = f"~{ref}"
        body.append(
            [
                r.config.label,
                "x".join(map(str, r.output_shape)),
                _ms(r.engine),
                ref,
                "-" if r.speedup is None else f"{r.speedup:.1f}x",
                f"{r.gflops:.3g}",
                "-" if r.max_error is None else f"{r.max_error:.1e}",
            ]
        )
    header = ["configuration", "output", "engine ms", "reference ms", "speedup", "GFLOP/s", "max err"]
    text = format_table(header, body, align=["<", "<", ">", ">", ">", ">", ">"])
    notes = ["times: forward+backward (median over rounds of the best of several calls)"]
    estimated = [r for r in rows if r.reference_estimated]
    if estimated:
        notes.append(
            "~ : reference timed on a subset of the batch and scaled to the whole batch; "
            "its max error is over that subset"
        )
    if any(r.max_error is not None for r in rows):
        notes.append("max err: largest |engine - reference| over y, dx, dw, db, relative to max |reference|")
    return text + "\n" + "\n".join(notes)


def gate_table(verdicts) -> str:
    """Old, new, change and its 95% confidence interval per configuration."""
    body = [
        [
            v.label,
            _ms(v.old),
            _ms(v.new),
            f"{v.change:+.1%}",
            f"[{v.ci[0] - 1:+.1%}, {v.ci[1] - 1:+.1%}]",
            ("SLOWER" if v.slower else "ok") + (" (re-measured)" if v.remeasured else ""),
        ]
        for v in verdicts
    ]
    return format_table(["configuration", "old ms", "new ms", "change", "95% CI", "verdict"], body)


def write_json(path, payload) -> None:
    pathlib.Path(path).write_text(json.dumps(payload, indent=2) + "\n")


def write_csv(path, records: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]) if records else ["label"])
        writer.writeheader()
        writer.writerows(records)


def require_matplotlib():
    """Return ``matplotlib.pyplot`` (non-interactive backend) or raise :class:`MissingExtra`."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtra(
            "--plot needs matplotlib: install the plot extra, pip install 'convcore[plot]'"
        ) from None
    return plt


def plot_sweep(path, rows) -> None:
    """Bar charts of engine and reference time, and of the speed-up, per configuration."""
    plt = require_matplotlib()
    labels = [r.config.label for r in rows]
    y = range(len(rows))
    fig, (ax_t, ax_s) = plt.subplots(1, 2, figsize=(12, 1.5 + 0.32 * len(rows)), sharey=True)
    ax_t.barh([i - 0.2 for i in y], [r.engine * 1e3 for r in rows], height=0.4, label="engine")
    ax_t.barh([i + 0.2 for i in y], [(r.reference or 0) * 1e3 for r in rows], height=0.4, label="reference")
    ax_t.set_xscale("log")
    ax_t.set_xlabel("forward+backward time (ms, log scale)")
    ax_t.legend(loc="lower right")
    ax_s.barh(list(y), [r.speedup or 0 for r in rows], color="tab:green")
    ax_s.set_xlabel("speed-up over the reference (x)")
    ax_t.set_yticks(list(y), labels, fontsize=8)
    ax_t.invert_yaxis()
    fig.suptitle("convcore bench")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
