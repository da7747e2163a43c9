"""``convcore bench``: argument parsing and the four modes (sweep, save, compare, against)."""

from __future__ import annotations

import argparse
import functools
import sys

from convcore.bench import configs as cfgs
from convcore.bench import gate, report

__all__ = ["build_parser", "run"]

EPILOG = """\
examples:
  convcore bench                                  default stride/padding sweep
  convcore bench --stride 1 2 --padding 0 same --kernel 3 5 --groups 1 dw
  convcore bench --grid grid.json --csv out.csv   grid from a JSON (or TOML) file
  convcore bench --suite anchor --plot anchor.png
  convcore bench --against main                   regression gate against a git ref
  convcore bench --save base.json                 record, then later:
  convcore bench --compare base.json --threshold 15%
exit status: 0 ok, 1 a configuration got slower, 2 bad arguments or the gate could not run
"""

GRID_HELP = {
    "stride": "strides",
    "padding": "paddings: integers, same or valid",
    "kernel": "square kernel sizes",
    "dilation": "dilations",
    "groups": "groups: integers, or dw for depthwise",
    "batch": "batch sizes N",
    "channels": "input channels C",
    "filters": "filters F (default: as many as input channels)",
    "size": "square input sizes H = W",
    "dtype": "float32 and/or float64",
}


def _grid_value(option: str, text: str):
    try:
        return cfgs.parse_value(option, text)
    except cfgs.GridError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r} (expected an integer >= 1)")
    return int(text)


def _percent(text: str) -> float:
    """'10%', '10' -> 0.10."""
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid percentage {text!r} (for example 10%)") from None
    if not 0 <= value < 1000:
        raise argparse.ArgumentTypeError(f"invalid percentage {text!r} (must be >= 0)")
    return value / 100


def build_parser(prog: str = "convcore bench") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Time convcore's forward+backward against the naive reference, "
        "or gate a change against a git ref or a saved record.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    grid = p.add_argument_group("grid (each option takes one or more values)")
    for option, text in GRID_HELP.items():
        grid.add_argument(
            f"--{option}", nargs="+", metavar="V", help=text, type=functools.partial(_grid_value, option)
        )
    grid.add_argument("--grid", metavar="FILE", help="grid options from a .json or .toml file")
    grid.add_argument("--suite", choices=["anchor"], help="a named suite instead of a grid")
    out = p.add_argument_group("output")
    out.add_argument("--json", metavar="FILE", help="write the results as JSON")
    out.add_argument("--csv", metavar="FILE", help="write the results as CSV")
    out.add_argument("--plot", metavar="FILE", help="draw time and speed-up (needs convcore[plot])")
    out.add_argument("--no-reference", action="store_true", help="do not run the naive reference")
    out.add_argument(
        "--reference-budget", type=float, default=1.5, metavar="S",
        help="seconds of reference loops per configuration before estimating from a subset (default 1.5)",
    )  # fmt: skip
    g = p.add_argument_group("regression gate")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--against", metavar="REF", help="gate the working tree against a git ref")
    mode.add_argument("--compare", metavar="FILE", help="gate against a record saved by --save")
    g.add_argument("--save", metavar="FILE", help="save calibrated timings for a later --compare")
    g.add_argument("--threshold", type=_percent, metavar="P%", help="allowed slowdown")
    g.add_argument("--rounds", type=_positive_int, default=15, help="gate rounds (default 15)")
    g.add_argument(
        "--threads", type=_positive_int, default=1,
        help="BLAS and Numba threads in the gate's workers (default 1)",
    )  # fmt: skip
    return p


def _configs(args, parser) -> list[cfgs.Config]:
    chosen = {k: getattr(args, k) for k in cfgs.GRID_KEYS if getattr(args, k) is not None}
    if args.suite:
        extra = sorted(set(chosen) - {"dtype"}) + (["grid"] if args.grid else [])
        if extra:
            parser.error(f"argument --suite: cannot be combined with --{extra[0]}")
        return cfgs.anchor_suite(tuple(chosen.get("dtype", ["float32"])))
    try:
        grid = {**(cfgs.load_grid_file(args.grid) if args.grid else {}), **chosen}
        configs, notes = cfgs.build_grid(grid)
    except cfgs.GridError as exc:
        parser.error(f"argument --{exc.option}: {exc}")
    for note in notes:
        print(note, file=sys.stderr)
    if not configs:
        parser.error("no valid configuration in the grid (see the notes above)")
    return configs


def _check_modes(args, parser) -> None:
    gating = args.against or args.compare or args.save
    if gating and args.plot:
        parser.error("argument --plot: only for the sweep, not with --against, --save or --compare")
    if args.threshold is not None and not (args.against or args.compare):
        parser.error("argument --threshold: needs --against or --compare")
    if args.against and args.save:
        parser.error("argument --save: cannot be combined with --against")
    if args.compare and (args.suite or args.grid or any(getattr(args, k) for k in cfgs.GRID_KEYS)):
        parser.error("argument --compare: measures the record's configurations; drop the grid options")
    if args.reference_budget <= 0:
        parser.error("argument --reference-budget: must be > 0")
    if args.plot:
        try:
            report.require_matplotlib()
        except report.MissingExtra as exc:
            parser.error(f"argument --plot: {exc}")


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _finish(verdicts, args) -> int:
    print(report.gate_table(verdicts))
    records = [
        dict(label=v.label, old_s=v.old, new_s=v.new, change=v.change, ci_low=v.ci[0] - 1, ci_high=v.ci[1] - 1,
             slower=v.slower, remeasured=v.remeasured)
        for v in verdicts
    ]  # fmt: skip
    if args.json:
        report.write_json(args.json, records)
    if args.csv:
        report.write_csv(args.csv, records)
    slower = [v for v in verdicts if v.slower]
    if slower:
        print(f"FAIL: {len(slower)} configuration(s) slower than the threshold:")
        for v in slower:
            print(f"  {v.label}: {v.change:+.1%} (95% CI {v.ci[0] - 1:+.1%} to {v.ci[1] - 1:+.1%})")
        return 1
    print(f"ok: no configuration slower than the threshold ({len(verdicts)} checked)")
    return 0


def _sweep(configs, args) -> int:
    from convcore.bench import sweep

    rows = sweep.sweep(
        configs, with_reference=not args.no_reference, reference_budget=args.reference_budget,
        progress=_progress,
    )  # fmt: skip
    print(report.sweep_table(rows))
    if args.json:
        report.write_json(args.json, [r.to_dict() for r in rows])
    if args.csv:
        report.write_csv(args.csv, [r.to_dict() for r in rows])
    if args.plot:
        report.plot_sweep(args.plot, rows)
    return 0


def _gate(args, parser) -> int:
    options = dict(rounds=args.rounds, threads=args.threads, progress=_progress)
    if args.against:
        threshold = gate.DEFAULT_AGAINST_THRESHOLD if args.threshold is None else args.threshold
        verdicts, commit = gate.against(args.against, _configs(args, parser), threshold=threshold, **options)
        print(f"gate: working tree against {args.against} ({commit[:12]}), threshold {threshold:.0%}")
        return _finish(verdicts, args)
    if args.compare:
        threshold = gate.DEFAULT_COMPARE_THRESHOLD if args.threshold is None else args.threshold
        verdicts, new = gate.compare(gate.load_record(args.compare), threshold=threshold, **options)
        if args.save:
            report.write_json(args.save, new)
        print(f"gate: against the record {args.compare}, threshold {threshold:.0%}")
        return _finish(verdicts, args)
    saved = gate.record(_configs(args, parser), **options)
    report.write_json(args.save, saved)
    body = [[r["label"], f"{r['seconds'] * 1e3:.3f}", f"{r['relative']:.3f}"] for r in saved["results"]]
    print(report.format_table(["configuration", "ms", "x calibration GEMM"], body))
    print(f"saved {len(body)} configurations to {args.save}")
    return 0


def run(argv=None, prog: str = "convcore bench") -> int:
    """Parse ``argv`` and run; returns the exit status."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    _check_modes(args, parser)
    try:
        if args.against or args.compare or args.save:
            return _gate(args, parser)
        return _sweep(_configs(args, parser), args)
    except gate.GateError as exc:
        message = str(exc)
    except OSError as exc:  # an output file that cannot be written
        message = f"cannot write {exc.filename}: {exc.strerror}"
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return 2
